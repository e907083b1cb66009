/**
 * The fault suite: `npm run faults -- [--seed N] [--budget-s S] [--only substring] [--short] [--min-tries N]`
 * (--short: the CI's run, without the long-only classes; --min-tries: each class at least N times, default 1).
 * Runs every fault class for its share of the time budget (at least `minTries` each), then prints one table: fault,
 * tries, survived, data lost.
 * Exits 1 when a try did not survive or lost data (its first details are printed under the table). Seeded: the
 * same seed and budget replay the same tries (up to timing-dependent kill points).
 *
 *   npm run faults                        # 60 s
 *   npm run faults -- --budget-s 1200 --min-tries 5    # the long run: every class at least 5 times (about 25 min)
 */
import { ConfigError } from '../../src/errors.js';
import { Rng } from '../../src/backend/rng.js';
import { FUZZ_CLASSES, type FaultClass } from './fuzz-classes.js';
import { KILL_CLASSES, stopDetections } from './kill-classes.js';
import { STORE_CLASSES } from './store-classes.js';
import { glooLengths } from './gloo-fuzz.js';

export interface Row { fault: string; tries: number; survived: number; dataLost: number; details: string[]; skipped?: string; optional?: boolean; longOnly?: boolean }

/** `short`: the CI's run, which leaves out the classes marked longOnly (each says which faster test covers it). */
export async function runFaults(opts: { seed: number; budgetS: number; only?: string; minTries?: number; short?: boolean; log?: (s: string) => void }): Promise<Row[]> {
  const log = opts.log ?? (() => undefined);
  const all: FaultClass[] = [...FUZZ_CLASSES, glooLengths, ...KILL_CLASSES, ...STORE_CLASSES];
  const classes = all.filter((c) => !opts.only || c.name.includes(opts.only));
  if (!classes.length) {
    throw new ConfigError(`fault suite: --only '${opts.only}' matches no fault class; the classes are:\n  ${all.map((c) => c.name).join('\n  ')}`);
  }
  const total = classes.reduce((s, c) => s + c.weight, 0);
  const rows: Row[] = [];
  for (const [i, c] of classes.entries()) {
    const row: Row = { fault: c.name, tries: 0, survived: 0, dataLost: 0, details: [], optional: c.optional, longOnly: !!c.longOnly };
    rows.push(row);
    const ready = opts.short && c.longOnly ? `long run only; in CI: ${c.longOnly}` : c.setup ? await c.setup() : true;
    if (ready !== true) {
      row.skipped = ready;
      log(`${c.name}: not run (${ready})`);
      continue;
    }
    const rng = new Rng(opts.seed * 1000 + i);
    const until = performance.now() + (1000 * opts.budgetS * c.weight) / total;
    while (row.tries < (opts.minTries ?? 1) || performance.now() < until) {
      const r = await c.attempt(rng);
      row.tries++;
      if (r.survived) row.survived++;
      if (r.dataLost) row.dataLost++;
      if ((!r.survived || r.dataLost) && row.details.length < 5) row.details.push(r.detail ?? '?');
    }
    log(`${c.name}: ${row.survived}/${row.tries} survived, ${row.dataLost} data lost`);
  }
  return rows;
}

export function formatTable(rows: Row[]): string {
  const head = ['fault', 'tries', 'survived', 'data lost'];
  const body = rows.map((r) => [r.fault, r.skipped ? '-' : String(r.tries), r.skipped ? 'not run' : String(r.survived), r.skipped ? '-' : String(r.dataLost)]);
  const w = head.map((_, j) => Math.max(head[j]!.length, ...body.map((b) => b[j]!.length)));
  const line = (cells: string[]) => cells.map((c, j) => (j === 0 ? c.padEnd(w[j]!) : c.padStart(w[j]!))).join('  ');
  const out = [line(head), w.map((n) => '-'.repeat(n)).join('  '), ...body.map(line)];
  for (const r of rows) for (const d of r.details) out.push(`  ${r.fault}: ${d}`);
  for (const r of rows) if (r.skipped) out.push(`  ${r.fault}: not run: ${r.skipped}`);
  if (stopDetections.length) {
    const ms = [...stopDetections].sort((a, b) => a - b);
    out.push(`SIGSTOPped rank noticed by the others after: median ${ms[ms.length >> 1]!.toFixed(0)} ms, max ${ms[ms.length - 1]!.toFixed(0)} ms (${ms.length} stops; must be < 1000)`);
  }
  return out.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = (name: string): string | undefined => {
    const i = process.argv.indexOf(name);
    return i >= 0 ? process.argv[i + 1] : undefined;
  };
  const seed = Number(arg('--seed') ?? 1), budgetS = Number(arg('--budget-s') ?? 60), minTries = Number(arg('--min-tries') ?? 1);
  if (!Number.isInteger(seed) || !(budgetS > 0) || !Number.isInteger(minTries) || minTries < 1) {
    process.stderr.write('usage: npm run faults -- [--seed N] [--budget-s S] [--only substring] [--short] [--min-tries N]\n');
    process.exit(2);
  }
  const t0 = performance.now();
  let rows: Row[];
  try {
    rows = await runFaults({ seed, budgetS, only: arg('--only'), short: process.argv.includes('--short'), minTries, log: (s) => process.stderr.write(`faults: ${s}\n`) });
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    process.stderr.write(`${e.message}\n`);
    process.exit(2);
  }
  console.log(`fault suite: seed ${seed}, budget ${budgetS} s, took ${((performance.now() - t0) / 1e3).toFixed(0)} s`);
  console.log(formatTable(rows));
  const bad = rows.some((r) => r.survived < r.tries || r.dataLost > 0);
  process.exit(bad ? 1 : 0);
}
