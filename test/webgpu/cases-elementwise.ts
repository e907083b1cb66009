/** Kernel cases: elementwise, casts, copies, reductions, random. Each runs portable and WebGPU on the same inputs. */
import type { BinaryOp, UnaryOp } from '../../src/backend/backend.js';
import type { PortableBackend } from '../../src/backend/portable.js';
import type { WebGpuBackend } from '../../src/backend/webgpu/index.js';
import type { Twin } from './twin.js';

export interface Case {
  name: string;
  run(t: Twin, P: PortableBackend, G: WebGpuBackend): void | Promise<void>;
}

const UNARY: UnaryOp[] = ['neg', 'exp', 'log', 'sqrt', 'rsqrt', 'tanh', 'sigmoid', 'relu', 'gelu', 'gelu_tanh', 'silu', 'abs', 'square',
  'reciprocal', 'sign'];
const POSITIVE = new Set<UnaryOp>(['log', 'sqrt', 'rsqrt']);
const BINARY: BinaryOp[] = ['add', 'sub', 'mul', 'div', 'pow', 'max', 'min', 'eq', 'gt', 'ge', 'lt', 'le'];

export const elementwiseCases: Case[] = [
  ...UNARY.map((op): Case => ({
    name: `unary ${op} and its backward`,
    run(t, P, G) {
      const n = 1000;
      const x = POSITIVE.has(op) ? t.f32(n, 0.05, 4) : t.f32(n, -6, 6);
      const y = t.out(n), dx = t.out(n), dy = t.f32(n);
      P.unary(op, x.c, y.c); G.unary(op, x.g, y.g);
      P.unaryBackward(op, x.c, y.c, dy.c, dx.c); G.unaryBackward(op, x.g, y.g, dy.g, dx.g);
      t.check('y', y, 2e-6, 1e-6);
      t.check('dx', dx, 1e-5, 1e-6);
    },
  })),
  ...BINARY.map((op): Case => ({
    name: `binary ${op} with broadcasting`,
    run(t, P, G) {
      // a: (3, 1, 5) broadcast against b: (4, 5) viewed as (1, 4, 5); out (3, 4, 5)
      const a = op === 'pow' ? t.f32(15, 0.1, 3) : t.f32(15), b = op === 'pow' ? t.f32(20, -2, 2) : t.f32(20);
      if (op === 'eq') { b.c.set(a.c.subarray(0, 5)); G.ctx.write(b.g, b.c); }
      const o = t.out(60);
      P.binary(op, a.c, [5, 0, 1], b.c, [0, 5, 1], [3, 4, 5], o.c);
      G.binary(op, a.g, [5, 0, 1], b.g, [0, 5, 1], [3, 4, 5], o.g);
      t.check('out', o, 2e-6, 1e-6);
    },
  })),
  {
    name: 'binary on offset views and a transposed operand',
    run(t, P, G) {
      const a = t.f32(40), b = t.f32(40), o = t.out(12);
      // a[3:] viewed (3, 4) with strides [1, 3] (a transpose), b[7:] (3, 4) contiguous
      P.binary('mul', a.c.subarray(3), [1, 3], b.c.subarray(7), [4, 1], [3, 4], o.c);
      G.binary('mul', a.g.subarray(3), [1, 3], b.g.subarray(7), [4, 1], [3, 4], o.g);
      t.check('out', o, 0, 0);
    },
  },
  {
    name: 'a chain of 700 dependent dispatches (several command batches, shared parameter slots)',
    run(t, P, G) {
      const x = t.f32(100);
      for (let i = 0; i < 700; i++) {
        P.affine(x.c, 1, i % 7, x.c);
        G.affine(x.g, 1, i % 7, x.g);
      }
      t.check('x', x, 1e-6, 1e-6);
    },
  },
  {
    name: 'where, axpby, affine, fill',
    run(t, P, G) {
      const c = t.in(Float32Array.from({ length: 12 }, (_, i) => i % 3 === 0 ? 1 : 0));
      const a = t.f32(24), b = t.f32(2), o = t.out(24);
      P.where(c.c, [0, 1], a.c, [12, 1], b.c, [1, 0], [2, 12], o.c);
      G.where(c.g, [0, 1], a.g, [12, 1], b.g, [1, 0], [2, 12], o.g);
      t.check('where', o, 0, 0);
      const x = t.f32(333), y = t.f32(333), z = t.out(333), w = t.out(333);
      P.axpby(0.5, x.c, -1.25, y.c, z.c); G.axpby(0.5, x.g, -1.25, y.g, z.g);
      t.check('axpby', z, 1e-6, 1e-7);
      P.axpby(2, x.c, 3, y.c, x.c); G.axpby(2, x.g, 3, y.g, x.g);
      t.check('axpby in place', x, 1e-6, 1e-7);
      P.affine(y.c, 3, -0.5, w.c); G.affine(y.g, 3, -0.5, w.g);
      t.check('affine', w, 1e-6, 1e-7);
      const f = t.out(77), fi = t.out(50, 'i32');
      P.fill(f.c.subarray(5, 70), 2.5); G.fill(f.g.subarray(5, 70), 2.5);
      P.fill(fi.c, -7); G.fill(fi.g, -7);
      t.check('fill f32 view', f, 0, 0);
      t.check('fill i32', fi, 0, 0);
    },
  },
  {
    name: 'cast between f32, bf16, f16, i32, i8 (bit-exact, odd offsets, specials)',
    run(t, P, G) {
      const specials = [0, -0, 1, -1, 65504, 65520, 1e-8, 6e-5, 3e-8, -2.5e-6, 1e30, -1e30, Infinity, -Infinity, NaN, 0.333, 127.6, -128.7, 300, -3e9];
      const src = new Float32Array(301);
      src.set(t.rand(301, -50, 50));
      src.set(specials, 10);
      const x = t.in(src);
      for (const dt of ['bf16', 'f16', 'i32', 'i8'] as const) {
        const o = t.out(301, dt);
        // a view at odd offset 3 of length 297 in both, the rest left zero
        P.cast(x.c.subarray(1, 298), 'f32', o.c.subarray(3, 300), dt);
        G.cast(x.g.subarray(1, 298), 'f32', o.g.subarray(3, 300), dt);
        t.check(`f32 -> ${dt}`, o, 0, 0);
        const back = t.out(301);
        P.cast(o.c, dt, back.c, 'f32');
        G.cast(o.g, dt, back.g, 'f32');
        t.check(`${dt} -> f32`, back, 0, 0);
      }
      const bits = t.in(Uint16Array.from({ length: 4096 }, (_, i) => (i * 16 + (i >> 8)) & 0xffff), 'f16');
      const wide = t.out(4096);
      P.cast(bits.c, 'f16', wide.c, 'f32'); G.cast(bits.g, 'f16', wide.g, 'f32');
      t.check('every f16 exponent -> f32', wide, 0, 0);
      const i = t.in(Int32Array.from([0, 5, -5, 127, 128, -129, 100000]), 'i32'), i8 = t.out(7, 'i8');
      P.cast(i.c, 'i32', i8.c, 'i8'); G.cast(i.g, 'i32', i8.g, 'i8');
      t.check('i32 -> i8', i8, 0, 0);
    },
  },
  {
    name: 'stridedCopy (f32 transpose, bf16 permute, scatter at dstStrides)',
    run(t, P, G) {
      const x = t.f32(2 * 3 * 5), o = t.out(30);
      P.stridedCopy(x.c, [5, 3, 2], [1, 5, 15], o.c); G.stridedCopy(x.g, [5, 3, 2], [1, 5, 15], o.g);
      t.check('f32 permute', o, 0, 0);
      const h = t.in(Uint16Array.from(t.int(35, 65536)), 'bf16'), ho = t.out(35, 'bf16');
      P.stridedCopy(h.c, [7, 5], [1, 7], ho.c); G.stridedCopy(h.g, [7, 5], [1, 7], ho.g);
      t.check('bf16 transpose', ho, 0, 0);
      const s = t.f32(12), d = t.out(40);
      P.stridedCopy(s.c, [3, 4], [4, 1], d.c.subarray(2), [10, 2]); G.stridedCopy(s.g, [3, 4], [4, 1], d.g.subarray(2), [10, 2]);
      t.check('dstStrides', d, 0, 0);
      for (const dt of ['bf16', 'i8'] as const) {
        const src = t.in(dt === 'i8' ? Int8Array.from(t.int(12, 255), (v) => v - 127) : Uint16Array.from(t.int(12, 65536)), dt);
        const dst = t.out(41, dt);
        P.stridedCopy(src.c, [3, 4], [4, 1], dst.c.subarray(3), [10, 3]); G.stridedCopy(src.g, [3, 4], [4, 1], dst.g.subarray(3), [10, 3]);
        t.check(`${dt} at dstStrides (elements sharing words)`, dst, 0, 0);
      }
    },
  },
  {
    name: 'reduce (sum, max, min over rows and middle axes), argmax, sumSquares',
    async run(t, P, G) {
      const x = t.f32(6 * 300 * 7);
      for (const op of ['sum', 'max', 'min'] as const) {
        const rowOut = t.out(42), midOut = t.out(42);
        P.reduce(op, x.c, 42, 300, 1, rowOut.c); G.reduce(op, x.g, 42, 300, 1, rowOut.g);
        P.reduce(op, x.c, 6, 300, 7, midOut.c); G.reduce(op, x.g, 6, 300, 7, midOut.g);
        t.check(`${op} rows`, rowOut, 1e-5, 1e-5);
        t.check(`${op} middle`, midOut, 1e-5, 1e-5);
      }
      const am = t.out<Int32Array>(42, 'i32');
      P.argmax(x.c, 6, 300, 7, am.c); G.argmax(x.g, 6, 300, 7, am.g);
      t.check('argmax', am, 0, 0);
      const want = P.sumSquares(x.c), got = await G.sumSquares(x.g);
      if (Math.abs(got - want) > 1e-5 * want) throw new Error(`sumSquares: got ${got}, want ${want}`);
    },
  },
  {
    name: 'dropout mask (bit-identical)',
    run(t, P, G) {
      for (const p of [0.1, 0.5, 0.3333333]) {
        const m = t.out(5000);
        P.dropoutMask(12345, p, m.c); G.dropoutMask(12345, p, m.g);
        t.check(`p=${p}`, m, 0, 0);
      }
    },
  },
  {
    name: 'rope forward and inverse',
    run(t, P, G) {
      const rows = 3, T = 5, D = 8, rot = 6;
      const x = t.f32(rows * T * D), cos = t.f32(T * 3), sin = t.f32(T * 3), o = t.out(rows * T * D), inv = t.out(rows * T * D);
      P.rope(x.c, cos.c, sin.c, rows, T, D, rot, false, o.c); G.rope(x.g, cos.g, sin.g, rows, T, D, rot, false, o.g);
      P.rope(x.c, cos.c, sin.c, rows, T, D, rot, true, inv.c); G.rope(x.g, cos.g, sin.g, rows, T, D, rot, true, inv.g);
      t.check('forward', o, 1e-6, 1e-6);
      t.check('inverse', inv, 1e-6, 1e-6);
    },
  },
];
