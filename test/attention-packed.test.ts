/**
 * Packed rows on the fused attention path: each query's first allowed key (its document's start), passed as a
 * PackedMask, gives what the dense per-document causal mask gives in the composed form, forward and gradients, on
 * every backend (portable, native, wasm), on a problem large enough to run the kernels' parallel paths. The
 * finite-difference and cross-backend checks of the same option are in test/ops.test.ts's table. Documents that are
 * not contiguous runs fall back to the dense mask.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../src/backend/rng.js';
import { Tensor } from '../src/tensor/tensor.js';
import * as T from '../src/tensor/index.js';
import { documentMask, documentStarts } from '../src/models/hf/layers.js';
import { ShapeError } from '../src/errors.js';
import { relErr, testBackends, withBackend } from './helpers/backends.js';

function rn(shape: number[], seed: number): Tensor {
  const r = new Rng(seed);
  return new Tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => r.normal()), 'f32', shape).requireGrad();
}

// 3 rows of 20 positions: documents of various lengths, the last row ending in padding (document -1)
const DOCS = [
  [...Array(7).fill(0), ...Array(9).fill(1), ...Array(4).fill(2)],
  [...Array(20).fill(5)],
  [...Array(3).fill(0), ...Array(5).fill(1), ...Array(2).fill(2), ...Array(10).fill(-1)],
].flat();
const docIds = new Tensor(Int32Array.from(DOCS), 'i32', [3, 20]);

test('documentStarts: each query its document start; non-contiguous documents give null (dense mask instead)', () => {
  const s = documentStarts(docIds, 20, false)!;
  assert.deepEqual(Array.from(s.subarray(0, 20)), [0, 0, 0, 0, 0, 0, 0, 7, 7, 7, 7, 7, 7, 7, 7, 7, 16, 16, 16, 16]);
  assert.ok(s.subarray(20, 40).every((x) => x === 0));
  assert.deepEqual(Array.from(s.subarray(40, 60)), [0, 0, 0, 3, 3, 3, 3, 3, 8, 8, ...Array(10).fill(10)]);
  assert.equal(documentStarts(new Tensor(Int32Array.from([0, 0, 1, 0]), 'i32', [1, 4]), 4, false), null);
  assert.equal(documentStarts(null, 4, false), null);
  assert.throws(() => T.scaledDotProductAttention(rn([1, 1, 4, 2], 1), rn([1, 1, 4, 2], 2), rn([1, 1, 4, 2], 3), { causal: true, mask: { keyMask: null, firstKey: Int32Array.from([0, 0, 4, 0]) } }), ShapeError);
});

for (const b of testBackends()) {
  test(`fused attention with first keys equals the composed form with the dense per-document mask, forward and gradients (${b.name})`, () => withBackend(b, () => {
    const q = rn([3, 4, 20, 16], 10), k = rn([3, 2, 20, 16], 11), v = rn([3, 2, 20, 16], 12), w = rn([3, 4, 20, 16], 13);
    const keyMask = new Tensor(Float32Array.from({ length: 60 }, (_, i) => (i === 5 || i === 33 ? 1 : 0)), 'f32', [3, 20]);
    const dense = T.maximum(documentMask(docIds, 20, false)!, T.reshape(keyMask, [3, 1, 1, 20]));
    const firstKey = documentStarts(docIds, 20, false)!;
    const run = (fused: boolean) => {
      const [qq, kk, vv] = [q, k, v].map((t) => t.detach().requireGrad());
      const y = fused
        ? T.scaledDotProductAttention(qq, kk, vv, { causal: true, mask: { keyMask, firstKey } })
        : T.composedAttention(qq, kk, vv, true, dense, 1 / 4, 20, 20);
      y.mul(w).sum().backward();
      return [y.f32(), ...[qq, kk, vv].map((t) => (t.grad as Tensor).f32())];
    };
    const f = run(true), c = run(false);
    f.forEach((x, i) => assert.ok(relErr(x, c[i]) < 1e-5, `output/grad ${i}: ${relErr(x, c[i])}`));
    // the fused qkv path: the same
    const x = rn([3, 20, 3 * 32], 14);
    const fq = T.fusedQKVAttention(x, 4, { causal: true, mask: { keyMask: null, firstKey } }).f32();
    const parts = [0, 1, 2].map((i) => T.slice(x, 2, i * 32, (i + 1) * 32).reshape([3, 20, 4, 8]).transpose(1, 2));
    const cq = T.composedAttention(parts[0], parts[1], parts[2], true, documentMask(docIds, 20, false), 1 / Math.sqrt(8), 20, 20).transpose(1, 2).reshape([3, 20, 32]).f32();
    assert.ok(relErr(fq, cq) < 1e-5, `fused qkv: ${relErr(fq, cq)}`);
  }));
}
