/** The PyTorch reference's environment (src/bench/compare.ts torchEnv): its best configuration on this CPU. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { torchEnv } from '../src/bench/compare.js';
import { openblasCoreType } from '../src/backend/native.js';

test("torchEnv('best'): OpenBLAS's OpenMP build with our backend's core type for this CPU, or the caller's; 'installed' leaves both alone", () => {
  const saved = process.env.OPENBLAS_CORETYPE;
  try {
    delete process.env.OPENBLAS_CORETYPE;
    const best = torchEnv('best');
    assert.equal(best.LD_LIBRARY_PATH, '/usr/lib/x86_64-linux-gnu/openblas-openmp');
    assert.equal(best.OPENBLAS_CORETYPE, openblasCoreType() ?? 'Haswell');
    process.env.OPENBLAS_CORETYPE = 'Zen';
    assert.equal(torchEnv('best').OPENBLAS_CORETYPE, 'Zen');
    assert.equal(torchEnv('installed').OPENBLAS_CORETYPE, undefined);
  } finally {
    if (saved === undefined) delete process.env.OPENBLAS_CORETYPE;
    else process.env.OPENBLAS_CORETYPE = saved;
  }
});
