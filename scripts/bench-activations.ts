/**
 * The MLP activations' native kernels alone against the bytes they move: unaryBf16Grad (value and derivative, bf16
 * out; of an f32 x, and of a bf16 x, which looks its values up in a table) and unaryBf16 for gelu, gelu_tanh and silu
 * over 2048 x 1024 values of |x| <= 3, beside two f32 -> bf16 casts of the same array (the same bytes read and written)
 * and mulBf16. Best and median ms of 30 calls.
 *
 *   node --import tsx scripts/bench-activations.ts          (AVX-512 where the CPU has it: native/gelu512.cc)
 *   AUTOGLM_NO_AVX512=1 node --import tsx scripts/bench-activations.ts   (the AVX2 path)
 */
import { loadNativeBackend } from '../src/backend/native.js';

const be = loadNativeBackend();
const n = 2048 * 1024;
const x = Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 3);
const y = new Uint16Array(n), d = new Uint16Array(n), y2 = new Uint16Array(n), g = new Float32Array(n);
const time = (f: () => void): string => {
  const ts: number[] = [];
  for (let i = 0; i < 30; i++) {
    const t0 = performance.now();
    f();
    ts.push(performance.now() - t0);
  }
  ts.sort((a, b) => a - b);
  return `best ${ts[0]!.toFixed(3)} ms, median ${ts[15]!.toFixed(3)} ms`;
};
console.log(`${be.describe?.() ?? 'native'}; AVX-512 activations ${process.env.AUTOGLM_NO_AVX512 === '1' ? 'off' : 'where the CPU has them'}`);
const x16 = new Uint16Array(n);
be.cast(x, 'f32', x16, 'bf16');
for (const op of ['gelu', 'gelu_tanh', 'silu'] as const) {
  console.log(`unaryBf16Grad ${op}: ${time(() => be.unaryBf16Grad!(op, x, y, d))}`);
  console.log(`unaryBf16Grad ${op}, bf16 x (a table's lookups): ${time(() => be.unaryBf16Grad!(op, x16, y, d))}`);
  console.log(`unaryBf16 ${op}: ${time(() => be.unaryBf16!(op, x, y))}`);
}
console.log(`two casts f32 -> bf16: ${time(() => { be.cast(x, 'f32', y, 'bf16'); be.cast(x, 'f32', y2, 'bf16'); })}`);
console.log(`mulBf16: ${time(() => be.mulBf16!(x, d, g))}`);
