/**
 * QLoRA's 4-bit NormalFloat base (src/peft/nf4.ts, Nf4Linear, linearNf4): the format against its definition
 * (bitsandbytes' levels, nearest-level codes, high nibble first, absmax per 64), double quantisation against
 * bitsandbytes' dynamic map (values from torch), the product and its gradient against the dequantised f32 weight
 * and finite differences, and LoRA on an NF4 base end to end.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Tensor } from '../src/tensor/tensor.js';
import { linear, linearNf4 } from '../src/tensor/index.js';
import { randint } from '../src/tensor/creation.js';
import { noGrad } from '../src/tensor/autograd.js';
import { Rng } from '../src/backend/rng.js';
import { NF4_LEVELS } from '../src/backend/nf4.js';
import { manualSeed } from '../src/nn/init.js';
import { Linear } from '../src/nn/layers.js';
import { Module } from '../src/nn/module.js';
import { TinyGPT } from '../src/models/tiny-gpt.js';
import { AdamW } from '../src/optim/adam.js';
import { LoraModel, Nf4Linear, quantizeBase } from '../src/peft/index.js';
import { dequantizeAbsmax, dequantizeNf4, nf4CodeOf, quantizeAbsmax, quantizeNf4, quantizeNf4Reference, signedDynamicMap } from '../src/peft/nf4.js';
import { ConfigError, DTypeError, ShapeError } from '../src/errors.js';
import { relErr } from './helpers/backends.js';

function randn(seed: number, n: number, scale = 1): Float32Array {
  const rng = new Rng(seed), x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = rng.normal() * scale;
  return x;
}
const code = (codes: Int8Array, e: number) => ((codes[e >> 1] & 0xff) >> ((e & 1) === 0 ? 4 : 0)) & 15;

test('NF4 codes: each element the nearest level to x / absmax of its block of 64, two a byte, high nibble first', () => {
  // bitsandbytes' levels: 16, sorted, -1 .. 1 with an exact zero at code 7
  assert.equal(NF4_LEVELS.length, 16);
  assert.ok(NF4_LEVELS.every((v, i) => i === 0 || v > NF4_LEVELS[i - 1]));
  assert.deepEqual([NF4_LEVELS[0], NF4_LEVELS[7], NF4_LEVELS[15]], [-1, 0, 1]);
  for (const n of [1, 63, 64, 65, 200, 1001]) {
    const w = randn(n, n, 0.02);
    const { codes, absmax } = quantizeNf4(w);
    assert.equal(codes.length, Math.ceil(n / 2));
    assert.equal(absmax.length, Math.ceil(n / 64));
    for (let b = 0; b < absmax.length; b++) {
      let mx = 0;
      for (let e = b * 64; e < Math.min(n, b * 64 + 64); e++) mx = Math.max(mx, Math.abs(w[e]));
      assert.equal(absmax[b], mx, `absmax of block ${b}`);
    }
    for (let e = 0; e < n; e++) {
      const x = w[e] / absmax[e >> 6], c = code(codes, e);
      const best = Math.min(...Array.from(NF4_LEVELS, (v) => Math.abs(v - x)));
      assert.ok(Math.abs(NF4_LEVELS[c] - x) <= best + 1e-6, `n ${n} element ${e}: code ${c} for ${x}`);
    }
    // the round trip: within half the widest gap between levels (-1 to -0.696: 0.304) times the block's absmax
    const back = dequantizeNf4(codes, absmax, n);
    for (let e = 0; e < n; e++) assert.ok(Math.abs(back[e] - w[e]) <= 0.1520 * absmax[e >> 6] + 1e-9, `round trip ${e}`);
  }
  // the table-driven coder gives the codes of the midpoint search (nf4CodeOf) exactly, midpoints and their ulps included
  const mids = Array.from({ length: 15 }, (_, i) => Math.fround((NF4_LEVELS[i] + NF4_LEVELS[i + 1]) / 2));
  const probe = Float32Array.from([...mids.flatMap((m) => [m, m * (1 + 2 ** -23), m * (1 - 2 ** -23), m + 2 ** -24, m - 2 ** -24]), ...randn(99, 20000, 0.4)].map((v) => Math.max(-1, Math.min(1, v))));
  // one block per value (absmax 1 with a 1 beside it), so each is coded as itself
  const blocks = new Float32Array(probe.length * 64);
  probe.forEach((v, i) => { blocks[i * 64] = v; blocks[i * 64 + 1] = 1; });
  const coded = quantizeNf4(blocks).codes;
  probe.forEach((v, i) => assert.equal(code(coded, i * 64), nf4CodeOf(v), `value ${v}`));
  // the backend's kernel (native) gives the TypeScript reference's bits, odd lengths and zero blocks included
  for (const n of [1, 65, 127, 100001]) {
    const w = randn(n + 7, n, 0.03);
    if (n > 100) w.fill(0, 64, 128);
    const fast = quantizeNf4(w), ref = quantizeNf4Reference(w);
    assert.deepEqual([...fast.absmax], [...ref.absmax], `absmax, n ${n}`);
    assert.ok(fast.codes.every((c, i) => c === ref.codes[i]), `codes, n ${n}`);
  }
  assert.throws(() => quantizeNf4(Float32Array.from({ length: 300 }, (_, i) => (i === 200 ? Infinity : i))), (e: unknown) => e instanceof DTypeError && /element 200 is Infinity/.test(e.message));
  // packing, by hand: 1 -> code 15, -1 -> 0, 0 -> 7, 0.5 of absmax 1 -> 12 (0.4407; the midpoint to 0.5626 is 0.5017),
  // so bytes 0xF0, 0x7C
  const { codes, absmax } = quantizeNf4(Float32Array.of(1, -1, 0, 0.5));
  assert.deepEqual([...new Uint8Array(codes.buffer)], [0xf0, 0x7c]);
  assert.deepEqual([...absmax], [1]);
  // an all-zero block: code 7 (0.0) and absmax 0, so it widens to zeros
  const z = quantizeNf4(new Float32Array(70));
  assert.ok(dequantizeNf4(z.codes, z.absmax, 70).every((v) => v === 0));
  assert.throws(() => quantizeNf4(Float32Array.of(1, NaN, 2), "the weight of 'fc'"), (e: unknown) => e instanceof DTypeError && /'fc'/.test(e.message) && /element 1 is NaN/.test(e.message));
});

test("double quantisation: bitsandbytes' signed dynamic map (torch's values within an ulp) and the absmaxes' 8-bit round trip", () => {
  const map = signedDynamicMap();
  assert.equal(map.length, 256);
  assert.ok(map.every((v, i) => i === 0 || v >= map[i - 1]));
  // create_dynamic_map(signed=True) as torch 1.13 computes it (its linspace's last bit depends on torch's build)
  const torch: [number, number][] = [[0, -0.992968738079071], [1, -0.9789062142372131], [4, -0.9367187023162842],
    [100, -0.0074687497690320015], [127, 0], [128, 5.500000384017767e-7], [129, 3.250000190746505e-6],
    [200, 0.23359376192092896], [254, 0.992968738079071], [255, 1]];
  for (const [i, v] of torch) assert.ok(Math.abs(map[i] - v) <= Math.abs(v) * 2 ** -23, `map[${i}] = ${map[i]}, torch ${v}`);
  const absmax = Float32Array.from(randn(7, 1000, 0.01), (v) => Math.abs(v) + 0.02);
  const q = quantizeAbsmax(absmax);
  assert.equal(q.codes.length, 1000);
  assert.equal(q.absmax.length, 4);
  let mean = 0;
  for (const v of absmax) mean += v / absmax.length;
  assert.ok(Math.abs(q.offset - mean) < 1e-7, `offset ${q.offset} = the mean ${mean}`);
  const back = dequantizeAbsmax(q);
  // the map's widest gap is 0.0141 (between 0.1 and 1), so each value is within 0.0071 of its block's scale
  for (let i = 0; i < absmax.length; i++) {
    assert.ok(Math.abs(back[i] - absmax[i]) <= 0.0071 * q.absmax[i >> 8] + 1e-8, `absmax ${i}: ${back[i]} for ${absmax[i]}`);
  }
});

test('linearNf4: forward and input/bias gradients equal a linear with the dequantised weight; finite differences', () => {
  for (const [nOut, nIn, doubleQuant] of [[7, 9, false], [48, 64, true], [33, 130, false]] as const) {
    const w = randn(nOut * 1000 + nIn, nOut * nIn, 0.05);
    const l = new Nf4Linear(nOut, nIn, w, new Tensor(randn(3, nOut), 'f32', [nOut]), doubleQuant);
    l.bias!.requireGrad(); // frozen by default; LoRA's bias 'all' trains it
    const dense = l.denseWeight();
    const x = new Tensor(randn(5, 3 * 2 * nIn), 'f32', [3, 2, nIn]).requireGrad();
    const x2 = new Tensor(x.f32().slice(), 'f32', [3, 2, nIn]).requireGrad();
    const b2 = new Tensor(l.bias!.f32().slice(), 'f32', [nOut]).requireGrad();
    const c = new Tensor(randn(9, 6 * nOut), 'f32', [3, 2, nOut]);
    const y = l.forward(x), yRef = linear(x2, dense, b2);
    assert.ok(relErr(y.f32(), yRef.f32()) < 1e-5, `forward ${nOut}x${nIn}`);
    y.mul(c).sum().backward();
    yRef.mul(c).sum().backward();
    assert.ok(relErr(x.grad!.f32(), x2.grad!.f32()) < 1e-5, 'dx');
    assert.ok(relErr(l.bias!.grad!.f32(), b2.grad!.f32()) < 1e-5, 'dbias');
    // finite differences of sum(y * c) in x (central, f64 sums of the f32 outputs)
    const f = (xs: Float32Array) => noGrad(() => {
      const yy = l.forward(new Tensor(xs, 'f32', [3, 2, nIn])).f32(), cc = c.f32();
      let s = 0;
      for (let i = 0; i < yy.length; i++) s += yy[i] * cc[i];
      return s;
    });
    const base = x.f32(), g = x.grad!.f32();
    for (const i of [0, nIn - 1, 2 * nIn + 3]) {
      const h = 1e-2, xp = base.slice(), xm = base.slice();
      xp[i] += h; xm[i] -= h;
      const fd = (f(xp) - f(xm)) / (2 * h);
      assert.ok(Math.abs(fd - g[i]) <= 2e-3 * Math.max(1, Math.abs(g[i])), `fd ${fd} vs ${g[i]} at ${i}`);
    }
  }
  // bad arguments: typed errors naming the argument
  assert.throws(() => new Nf4Linear(4, 5, new Float32Array(19), null, true), (e: unknown) => e instanceof ShapeError && /4 x 5/.test(e.message) && /got 19/.test(e.message));
  const codes = new Tensor(new Int8Array(8), 'i8', [8]);
  assert.throws(() => linearNf4(new Tensor(new Float32Array(4), 'f32', [1, 4]), codes, new Tensor(new Float32Array(1), 'f32', [1]), [4, 5], null), (e: unknown) => e instanceof DTypeError && /'codes'/.test(e.message));
  assert.throws(() => linearNf4(new Tensor(new Float32Array(4), 'f32', [1, 4]), codes, new Tensor(new Float32Array(2), 'f32', [2]), [4, 4], null), (e: unknown) => e instanceof ShapeError && /'absmax'/.test(e.message));
  assert.throws(() => linearNf4(new Tensor(new Float32Array(5), 'f32', [1, 5]), codes, new Tensor(new Float32Array(1), 'f32', [1]), [4, 4], null), (e: unknown) => e instanceof ShapeError && /'x'/.test(e.message));
});

const CFG = { vocabSize: 40, contextLength: 16, dim: 64, heads: 4, layers: 2, mlpDim: 128 };
const ids = randint([2, 8], 40, 11), targets = randint([2, 8], 40, 12);
const logits = (m: TinyGPT) => noGrad(() => m.forward(ids).f32());

test('quantizeBase nf4: 4-bit Linear layers, bf16 embeddings, LoRA trains on top, merge reports the re-quantisation error', () => {
  for (const doubleQuant of [true, false]) {
    manualSeed(0);
    const m = new TinyGPT(CFG);
    const y32 = logits(m);
    const lora = new LoraModel(m, { r: 4, alpha: 8, targetModules: ['qkv', 'fc1', 'fc2', 'proj'] });
    const counts = m.parameterCounts();
    const q = quantizeBase(m, 'nf4', { skip: ['head'], doubleQuant });
    // parameters are counted by their weights' sizes, not the packed bytes or the absmaxes (PEFT counts 4-bit weights so)
    assert.deepEqual(m.parameterCounts(), counts);
    assert.equal(q.layers, 8);
    assert.equal(q.embeddings, 2);
    // the model's output layer (headWeights) stays bf16, so the fused loss reads it (no vocabulary-wide logits)
    const frozenHead = new TinyGPT(CFG);
    for (const p of frozenHead.parameters()) p.requiresGrad = false;
    quantizeBase(frozenHead, 'nf4');
    assert.ok(frozenHead.blocks.at(0).mlp.fc1 instanceof Nf4Linear);
    assert.ok(frozenHead.head instanceof Linear && frozenHead.head.weight.dtype === 'bf16');
    assert.ok(frozenHead.headWeights() !== null);
    const base = new Map(m.namedModules()).get('blocks.0.mlp.fc1.base_layer');
    assert.ok(base instanceof Nf4Linear && base.doubleQuant === doubleQuant, 'fc1 is NF4 under its adapter');
    // the 8 Linear weights: 0.5 byte each + 4 bytes (1 double-quantised) per 64, embeddings 2 bytes
    assert.ok(q.bytesAfter < q.bytesBefore / 3.5, JSON.stringify(q));
    assert.ok(relErr(logits(m), y32) < 0.15, `NF4 base close to f32: ${relErr(logits(m), y32)}`);
    const opt = new AdamW(lora.parameterGroups({ lr: 5e-2 }), { lr: 5e-2, weightDecay: 0 });
    const l0 = m.loss(ids, targets).item();
    for (let i = 0; i < 5; i++) { opt.zeroGrad(); m.loss(ids, targets).backward(); opt.step(); }
    assert.ok(m.loss(ids, targets).item() < l0, 'LoRA trains on an NF4 base');
    const y = logits(m);
    const { maxError } = lora.merge();
    assert.ok(maxError > 0 && maxError < 0.1, `re-quantisation error ${maxError}`);
    assert.ok(relErr(logits(m), y) < 0.2, `merged ${relErr(logits(m), y)}`);
  }
  manualSeed(0);
  const int8 = new TinyGPT(CFG), before = int8.parameterCounts();
  for (const p of int8.parameters()) p.requiresGrad = false;
  quantizeBase(int8, 'int8');
  assert.equal(int8.parameterCounts().total, before.total, 'int8: scales are not counted');
  assert.throws(() => quantizeBase(new TinyGPT(CFG), 'int8', { doubleQuant: true }), ConfigError);
  assert.throws(() => quantizeBase(new TinyGPT(CFG), 'nf5' as 'nf4'), ConfigError);
});

test('quantizeBase nf4 keeps a frozen lm_head in bf16 (as transformers loads 4-bit models) where no headWeights() names it', () => {
  manualSeed(1);
  class Net extends Module {
    readonly body = this.module('body', new Linear(16, 16));
    readonly lm_head = this.module('lm_head', new Linear(16, 40, { bias: false }));
  }
  const m = new Net();
  for (const p of m.parameters()) p.requiresGrad = false;
  quantizeBase(m, 'nf4');
  const mods = new Map(m.namedModules());
  assert.ok(mods.get('lm_head') instanceof Linear);
  assert.equal((mods.get('lm_head') as Linear).weight.dtype, 'bf16');
  assert.ok(mods.get('body') instanceof Nf4Linear);
});
