/**
 * The fault suite's short run (test/faults/run.ts; `npm run faults -- --budget-s 1200` for the long one): every
 * fault class but the long-only ones (3-rank gloo jobs, covered here by test/distributed-gloo.test.ts) tried, all
 * survived, no data lost. About 170 s on 2 cores under a load average of 14; the 3-minute timeout is the CI bound.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatTable, runFaults } from './faults/run.js';
import { CI } from './helpers/ci.js';

test('fault suite, short budget: every class survives with 0 data lost', { timeout: 180_000 }, async (t) => {
  const rows = await runFaults({ seed: Number(process.env.AUTOGLM_FAULTS_SEED ?? 1), budgetS: 30, short: true });
  for (const line of formatTable(rows).split('\n')) t.diagnostic(line);
  for (const r of rows) {
    if (r.skipped) {
      assert.ok(!CI || r.optional || r.longOnly, `${r.fault} was not run under CI=true: ${r.skipped}`);
      continue;
    }
    assert.ok(r.tries >= 1);
    assert.equal(r.survived, r.tries, `${r.fault}: ${r.details.join('; ')}`);
    assert.equal(r.dataLost, 0, `${r.fault}: ${r.details.join('; ')}`);
  }
});

test('fault suite: --only that matches no class is a ConfigError listing the classes, not an empty table', async () => {
  await assert.rejects(runFaults({ seed: 1, budgetS: 1, only: 'no such fault' }), (e: Error) =>
    e.name === 'ConfigError' && /matches no fault class/.test(e.message) && e.message.includes('fuzz: safetensors reader'));
});
