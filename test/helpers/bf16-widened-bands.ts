// bf16 products on the widening path (run with AUTOGLM_BF16_PATH=sgemm, so on any CPU) whose operands outgrow the
// per-thread widening scratch (native/matmul.cc: 4M floats a slot, or AUTOGLM_WIDEN_SCRATCH; the test runs this at
// 4M and at 1M floats): a left operand cut into bands of rows (batches folded into rows) against a right one widened
// once or in blocks for each band, a right one in blocks, transposed layouts, a bias, accumulation and a batch of
// distinct right operands. Each result against the f32 product of the widened operands on the same backend (equal up
// to summation order: sgemm on a band of rows may add in another order than on all of them); prints one JSON line.
import { loadNativeBackend } from '../../src/backend/native.js';

interface Case { batch: number; M: number; N: number; K: number; transA: boolean; transB: boolean; strideA: number; strideB: number; alpha: number; beta: number; bias: boolean }

const CASES: Case[] = [
  { batch: 1, M: 2100, N: 48, K: 1024, transA: false, transB: true, strideA: 0, strideB: 0, alpha: 1, beta: 0, bias: true },
  { batch: 1, M: 2100, N: 48, K: 1024, transA: false, transB: false, strideA: 0, strideB: 0, alpha: 0.5, beta: 1, bias: false },
  { batch: 3, M: 700, N: 40, K: 1024, transA: false, transB: true, strideA: 700 * 1024, strideB: 0, alpha: 1, beta: 0, bias: false },
  { batch: 1, M: 48, N: 1024, K: 2100, transA: true, transB: false, strideA: 0, strideB: 0, alpha: 1, beta: 1, bias: false },
  { batch: 1, M: 40, N: 2100, K: 1024, transA: false, transB: true, strideA: 0, strideB: 0, alpha: 1, beta: 0, bias: false },
  { batch: 1, M: 3, N: 5, K: 3_000_000, transA: false, transB: true, strideA: 0, strideB: 0, alpha: 1, beta: 0, bias: false },
  { batch: 2, M: 1100, N: 30, K: 1024, transA: false, transB: true, strideA: 1100 * 1024, strideB: 30 * 1024, alpha: 1, beta: 0, bias: false },
  { batch: 1, M: 2100, N: 1100, K: 1024, transA: false, transB: true, strideA: 0, strideB: 0, alpha: 1, beta: 0, bias: true },
  { batch: 1, M: 5000, N: 40, K: 1024, transA: false, transB: false, strideA: 0, strideB: 0, alpha: 1, beta: 1, bias: false },
];

const be = loadNativeBackend();
let s = 7;
const rnd = (n: number): Float32Array => Float32Array.from({ length: n }, () => {
  s = (Math.imul(s, 1103515245) + 12345) >>> 0;
  return s / 4294967296 - 0.5;
});
const results: { case: number; err: number }[] = [];
for (const [i, c] of CASES.entries()) {
  const na = (c.strideA ? (c.batch - 1) * c.strideA : 0) + c.M * c.K, nb = (c.strideB ? (c.batch - 1) * c.strideB : 0) + c.K * c.N;
  const a16 = new Uint16Array(na), b16 = new Uint16Array(nb);
  be.cast(rnd(na), 'f32', a16, 'bf16');
  be.cast(rnd(nb), 'f32', b16, 'bf16');
  const a32 = new Float32Array(na), b32 = new Float32Array(nb);
  be.cast(a16, 'bf16', a32, 'f32');
  be.cast(b16, 'bf16', b32, 'f32');
  const start = rnd(c.batch * c.M * c.N), bias = c.bias ? rnd(c.N) : null;
  const got = start.slice(), want = start.slice();
  const shape = { batch: c.batch, M: c.M, N: c.N, K: c.K, transA: c.transA, transB: c.transB, strideA: c.strideA, strideB: c.strideB, alpha: c.alpha, beta: c.beta, bias };
  be.matmul({ ...shape, a: a16, b: b16, out: got, dtype: 'bf16' });
  be.matmul({ ...shape, a: a32, b: b32, out: want, dtype: 'f32' });
  // the largest difference against the largest value: a misplaced band or block is of the order of 1
  let diff = 0, top = 0;
  for (let j = 0; j < got.length; j++) {
    diff = Math.max(diff, Math.abs(got[j] - want[j]));
    top = Math.max(top, Math.abs(want[j]));
  }
  results.push({ case: i, err: diff / top });
}
console.log(JSON.stringify({ describe: be.describe(), results }));
