/**
 * matmul's `bias` (a Linear's bias added by the backend; oneDNN's bf16 product adds it in its epilogue) against
 * what callers did before: out filled with the bias, then the product accumulated onto it (beta = 1). On every
 * backend, f32 and bf16, with a transposed weight, a batch over one shared weight, and alpha != 1 (which oneDNN
 * does not fuse with a bias, so the native backend fills out first there too), and sizes that run on several threads.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../src/backend/rng.js';
import { testBackends } from './helpers/backends.js';

const seeded = (n: number, seed: number) => {
  const r = new Rng(seed);
  return Float32Array.from({ length: n }, () => r.normal());
};

for (const b of testBackends()) {
  for (const dtype of ['f32', 'bf16'] as const) {
    test(`${b.name} ${dtype}: matmul with a bias = bias rows + product (beta = 1)`, () => {
      for (const [batch, M, K, N, transB, alpha, strideB] of [[1, 37, 64, 48, true, 1, 0], [1, 33, 40, 24, false, 1, 0], [2, 9, 32, 16, true, 1, 0], [1, 20, 16, 12, true, 0.5, 0],
        // large enough for threads: rows split (wasm: op(B) packed once), columns split (the bias from the part's column on)
        [1, 300, 256, 77, true, 1, 0], [1, 40, 200, 300, false, 1, 0]] as const) {
        const lowp = (f: Float32Array) => {
          if (dtype === 'f32') return f;
          const h = new Uint16Array(f.length);
          b.cast(f, 'f32', h, 'bf16');
          return h;
        };
        const a = lowp(seeded(batch * M * K, 1)), w = lowp(seeded(K * N, 2)), bias = seeded(N, 3);
        const args = { a, b: w, dtype, batch, M, N, K, transA: false, transB, strideA: M * K, strideB, alpha } as const;
        const fused = new Float32Array(batch * M * N).fill(NaN);
        b.matmul({ ...args, out: fused, beta: 0, bias });
        const want = new Float32Array(batch * M * N);
        for (let r = 0; r < batch * M; r++) want.set(bias, r * N);
        b.matmul({ ...args, out: want, beta: 1 });
        let worst = 0;
        for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(fused[i] - want[i]));
        assert.ok(worst <= 1e-5, `${batch}x${M}x${K}x${N} transB=${transB} alpha=${alpha}: max diff ${worst}`);
      }
    });
  }
  test(`${b.name}: a bias with beta != 0 is refused`, () => {
    const f = seeded(16, 4);
    assert.throws(() => b.matmul({ a: f, b: f, out: new Float32Array(16), dtype: 'f32', batch: 1, M: 4, N: 4, K: 4, transA: false, transB: false, strideA: 0, strideB: 0, alpha: 1, beta: 1, bias: f.subarray(0, 4) }), /bias/);
  });
  test(`${b.name}: matmulLowp refuses a bias (its kernels have no epilogue for one)`, () => {
    const f = seeded(16, 5), w = new Uint16Array(16);
    b.cast(f, 'f32', w, 'bf16');
    const args = { a: f, b: w, bDtype: 'bf16', scales: null, out: new Float32Array(16), batch: 1, M: 4, N: 4, K: 4, transA: false, transB: true, strideA: 0, alpha: 1, beta: 0 } as const;
    // not in the type (MatmulLowpArgs omits it): an untyped caller's bias must not be dropped silently
    assert.throws(() => b.matmulLowp({ ...args, bias: f.subarray(0, 4) } as typeof args), /takes no bias/);
  });
}
