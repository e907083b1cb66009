/**
 * The fault suite's short run (test/faults/run.ts; `npm run faults -- --budget-s 1200` for the long one): every
 * fault class tried, all survived, no data lost. About 90 s on 2 cores.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatTable, runFaults } from './faults/run.js';
import { CI } from './helpers/ci.js';

test('fault suite, short budget: every class survives with 0 data lost', { timeout: 170_000 }, async (t) => {
  const rows = await runFaults({ seed: Number(process.env.AUTOGLM_FAULTS_SEED ?? 1), budgetS: 45 });
  for (const line of formatTable(rows).split('\n')) t.diagnostic(line);
  for (const r of rows) {
    if (r.skipped) {
      assert.ok(!CI || r.optional, `${r.fault} was not run under CI=true: ${r.skipped}`);
      continue;
    }
    assert.ok(r.tries >= 1);
    assert.equal(r.survived, r.tries, `${r.fault}: ${r.details.join('; ')}`);
    assert.equal(r.dataLost, 0, `${r.fault}: ${r.details.join('; ')}`);
  }
});
