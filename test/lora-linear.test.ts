/**
 * loraLinear (LoRA's base + adapter product as one op) against the composition it replaces under autocast
 * (linear, lora_A's linear, addLinear), forward and backward, and against finite differences.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loraLinear } from '../src/tensor/ops/lora-linear.js';
import { addLinear, linear } from '../src/tensor/ops/linalg.js';
import { autocast, type ComputeDType } from '../src/tensor/precision.js';
import { randn } from '../src/tensor/creation.js';
import { gradcheck } from '../src/tensor/gradcheck.js';
import { Tensor } from '../src/tensor/tensor.js';
import { ShapeError } from '../src/errors.js';
import { manualSeed } from '../src/nn/init.js';
import { Linear } from '../src/nn/layers.js';
import { LoraLinear } from '../src/peft/lora/layer.js';
import { backend } from '../src/backend/index.js';
import { spawnSync } from 'node:child_process';
import { loadNativeBackend, nativeLoadError } from '../src/backend/native.js';
import { requirePiece } from './helpers/ci.js';
import { f32BitsToBf16 } from '../src/backend/portable/cast.js';

/** Whether loraLinear appends the factors to the base product here (bf16 products in hardware). */
const appended = () => !!backend().nativeBf16 && !!backend().castRowsBf16;
const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
const maxAbs = (a: Float32Array) => a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);

function setup(o: { trainW: boolean; sep: boolean; bias: boolean }) {
  const x = randn([3, 5, 24], 1).requireGrad();
  const W = randn([20, 24], 2).scale(0.2).requireGrad(o.trainW);
  const b = o.bias ? randn([20], 3).requireGrad() : null;
  const A = randn([4, 24], 4).scale(0.2).requireGrad();
  const B = randn([20, 4], 5).scale(0.2).requireGrad();
  const mask = randn([3, 5, 24], 6).gt(0).to('f32').scale(2); // a dropout of 1/2, as a fixed mask
  return { x, W, b, A, B, xa: (x: Tensor) => (o.sep ? x.mul(mask) : x) };
}

for (const compute of ['bf16', 'f32'] as ComputeDType[]) {
  for (const o of [{ trainW: false, sep: false, bias: true }, { trainW: true, sep: false, bias: false }, { trainW: false, sep: true, bias: true }]) {
    test(`loraLinear = linear + lora_A + addLinear (${compute}, W ${o.trainW ? 'trained' : 'frozen'}, ${o.sep ? 'dropout' : 'no dropout'}, ${o.bias ? 'bias' : 'no bias'})`, () => {
      const run = (fused: boolean) => {
        const s = setup(o);
        const gy = randn([3, 5, 20], 7);
        const y = autocast(compute, () => {
          const xa = s.xa(s.x);
          if (fused) return loraLinear(s.x, s.W, s.b, s.A, s.B, 2, xa);
          return addLinear(linear(s.x, s.W, s.b), linear(xa, s.A, null), s.B, 2, { inPlace: true });
        });
        y.backward({ gradient: gy });
        return { y: y.f32(), grads: [s.x, s.W, s.b, s.A, s.B].map((t) => (t && t.grad ? t.grad.f32() : null)) };
      };
      const f = run(true), c = run(false);
      // the factors appended to the base product (bf16 in hardware, frozen W, no dropout) sum in another order: the
      // rank-r intermediate, rounded to bf16, may land one bf16 step apart
      const tol = compute === 'bf16' && appended() && !o.trainW && !o.sep ? 1e-2 : 1e-5;
      if (tol === 1e-5) assert.deepEqual(Array.from(f.y), Array.from(c.y), 'forward: the same products, the same bits');
      else assert.ok(maxDiff(f.y, c.y) <= tol * maxAbs(c.y), `forward: max diff ${maxDiff(f.y, c.y)}`);
      f.grads.forEach((g, i) => {
        const want = c.grads[i];
        assert.equal(g === null, want === null, `gradient ${i} present in both or neither`);
        if (g && want) assert.ok(maxDiff(g, want) <= tol * Math.max(1, maxAbs(want)), `gradient ${i}: max diff ${maxDiff(g, want)}`);
      });
    });
  }
}

test('loraLinear: gradients against finite differences (f32)', () => {
  const x = randn([2, 3, 6], 11).requireGrad(), W = randn([5, 6], 12).requireGrad(), b = randn([5], 13).requireGrad();
  const A = randn([2, 6], 14).requireGrad(), B = randn([5, 2], 15).requireGrad();
  const r = gradcheck((x, W, b, A, B) => loraLinear(x, W, b, A, B, 1.5), [x, W, b, A, B], { eps: 1e-2, atol: 1e-2, rtol: 1e-2 });
  assert.ok(r.ok, JSON.stringify(r.details));
});

test('loraLinear: shapes are checked, naming the argument', () => {
  const x = randn([2, 6], 1), W = randn([5, 6], 2), A = randn([2, 6], 3), B = randn([5, 2], 4);
  assert.throws(() => loraLinear(x, W, null, randn([2, 7], 5), B, 1), (e: unknown) => e instanceof ShapeError && /'A'/.test(e.message));
  assert.throws(() => loraLinear(x, W, null, A, randn([4, 2], 6), 1), (e: unknown) => e instanceof ShapeError && /'B'/.test(e.message));
  assert.throws(() => loraLinear(randn([2, 5], 7), W, null, A, B, 1), (e: unknown) => e instanceof ShapeError && /'x'/.test(e.message));
});

test('LoraLinear under bf16 autocast takes the fused op, with the composition\'s outputs', () => {
  manualSeed(3);
  const layer = new LoraLinear(new Linear(24, 20));
  layer.addAdapter('default', { r: 4, alpha: 8, dropout: 0, useRslora: false, useDora: false, init: false, seed: 1 });
  const x = randn([6, 24], 9);
  const fused = autocast('bf16', () => layer.forward(x));
  assert.equal(fused.node?.op, 'loraLinear');
  const xg = x.detach().requireGrad();
  assert.equal(autocast('bf16', () => layer.forward(xg)).node?.op, 'loraLinear');
  assert.notEqual(autocast('f32', () => layer.forward(xg)).node?.op, 'loraLinear', 'fp32 keeps the composition');
  const A = (layer.lora_A.get('default') as Linear).weight, B = (layer.lora_B.get('default') as Linear).weight;
  const comp = autocast('bf16', () => addLinear(linear(x, layer.weight, layer.bias), linear(x, A, null), B, 2));
  assert.deepEqual(Array.from(fused.f32()), Array.from(comp.f32()));
});

/** y, dx, dA, dB in f64 from the bf16-rounded operands, h = x A^T rounded to bf16 as the product's operand. */
function reference(x: Float32Array, W: Float32Array, A: Float32Array, B: Float32Array, gy: Float32Array, rows: number, nIn: number, nOut: number, r: number, s: number) {
  const rb = (v: number) => { const f = new Float32Array([v]); const u = new Uint32Array(f.buffer); u[0] = f32BitsToBf16(u[0]) << 16; return f[0]; };
  const [xb, Wb, Ab, Bb, gb] = [x, W, A, B, gy].map((t) => Array.from(t, rb));
  const y = new Float64Array(rows * nOut), dx = new Float64Array(rows * nIn), dA = new Float64Array(r * nIn), dB = new Float64Array(nOut * r);
  for (let i = 0; i < rows; i++) {
    const h = new Float64Array(r), dh = new Float64Array(r);
    for (let k = 0; k < r; k++) { let t = 0; for (let j = 0; j < nIn; j++) t += xb[i * nIn + j] * Ab[k * nIn + j]; h[k] = rb(s * t); }
    for (let o = 0; o < nOut; o++) {
      let t = 0;
      for (let j = 0; j < nIn; j++) t += xb[i * nIn + j] * Wb[o * nIn + j];
      for (let k = 0; k < r; k++) t += h[k] * Bb[o * r + k];
      y[i * nOut + o] = t;
    }
    for (let k = 0; k < r; k++) { let t = 0; for (let o = 0; o < nOut; o++) t += gb[i * nOut + o] * Bb[o * r + k]; dh[k] = rb(s * t); }
    for (let j = 0; j < nIn; j++) {
      let t = 0;
      for (let o = 0; o < nOut; o++) t += gb[i * nOut + o] * Wb[o * nIn + j];
      for (let k = 0; k < r; k++) t += dh[k] * Ab[k * nIn + j];
      dx[i * nIn + j] = t;
    }
    for (let k = 0; k < r; k++) for (let j = 0; j < nIn; j++) dA[k * nIn + j] += dh[k] * xb[i * nIn + j];
    for (let o = 0; o < nOut; o++) for (let k = 0; k < r; k++) dB[o * r + k] += gb[i * nOut + o] * h[k];
  }
  return { y, dx, dA, dB };
}

test('loraLinear under bf16 autocast against an f64 reference of its bf16 operands (frozen W, factors appended where bf16 runs in hardware)', () => {
  // ranks up to 16 take the kernel that casts the rows (loraRows), 20 the products of their own; x in bf16 (an
  // activation made in bf16, as GELU's output under autocast) is copied with the rank-r columns beside it
  for (const [rows, nIn, nOut, r, bf16In] of [[37, 40, 72, 4, 0], [64, 96, 24, 8, 0], [301, 45, 33, 12, 0], [20, 24, 16, 20, 0], [70, 48, 40, 8, 1]]) {
    const x = randn([rows, nIn], 21).requireGrad(), W = randn([nOut, nIn], 22).scale(0.2);
    const A = randn([r, nIn], 23).scale(0.2).requireGrad(), B = randn([nOut, r], 24).scale(0.2).requireGrad();
    const gy = randn([rows, nOut], 25);
    const y = autocast('bf16', () => loraLinear(bf16In ? x.to('bf16') : x, W, null, A, B, 2));
    y.backward({ gradient: gy });
    const ref = reference(x.f32(), W.f32(), A.f32(), B.f32(), gy.f32(), rows, nIn, nOut, r, 2);
    // f32 accumulation against f64, and the bf16 roundings of h and dh, which a different summation order may move
    // by one bf16 step (2^-8 of the value) times |B| or |A|
    const check = (name: string, got: Float32Array, want: Float64Array) => {
      let m = 0, mx = 0;
      for (let i = 0; i < want.length; i++) { m = Math.max(m, Math.abs(got[i] - want[i])); mx = Math.max(mx, Math.abs(want[i])); }
      assert.ok(m <= 1e-2 * mx, `${name} (${rows}x${nIn}->${nOut}, r ${r}): max diff ${m} of max ${mx}`);
    };
    check('y', y.f32(), ref.y);
    check('dx', x.grad!.f32(), ref.dx);
    check('dA', A.grad!.f32(), ref.dA);
    check('dB', B.grad!.f32(), ref.dB);
  }
});

let nativeOk = false;
try { nativeOk = loadNativeBackend() !== null; } catch { /* reported by the skip message */ }
const skipNative = requirePiece('native addon', nativeOk, nativeLoadError() ?? 'unknown reason');

test('loraLinear appends the factors to the base product wherever the oneDNN bf16 path is forced (AUTOGLM_BF16_PATH=onednn)', { skip: skipNative || (process.env.AUTOGLM_BF16_PATH === 'onednn' ? 'this is the forced run' : false) }, () => {
  // CPUs without bf16 instructions take the appended path only when told to: this file's tests again, so; and with
  // oneDNN held below AVX512-BF16, where the rank-r kernels (loraRows, loraOuter) take their AVX2 code on any CPU
  for (const isa of [{}, { ONEDNN_MAX_CPU_ISA: 'AVX512_CORE' }]) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', new URL(import.meta.url).pathname],
      { encoding: 'utf8', env: { ...process.env, NODE_TEST_CONTEXT: undefined, AUTOGLM_BACKEND: 'native', AUTOGLM_BF16_PATH: 'onednn', ...isa } });
    assert.equal(r.status, 0, `${JSON.stringify(isa)}: ${r.stdout}${r.stderr}`);
    assert.match(r.stdout, /# fail 0/);
  }
});
