/**
 * fp16 training end to end through overflows (the CLI, mixedPrecision fp16, a learning rate high enough that the
 * first update makes every later fp16 forward overflow; 30 was not enough on every CPU: on an AVX2-only Zen 3 the
 * overflows began at step 5, so 8 steps held only 4): each overflowing step is skipped with the weights and the
 * optimizer state untouched (checkpoints before and after are equal, bit for bit), the loss scale backs off by half
 * from 2^16 as torch.cuda.amp.GradScaler's does (65536 -> 32768 -> ...), and after 5 overflows in a row the run
 * falls back to bf16 (or fp32), trains on, and ends with finite weights.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { listCheckpoints, loadCheckpoint } from '../src/train/checkpoint.js';
import type { Tensor } from '../src/tensor/tensor.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(ROOT, 'src/cli/launch-entry.ts');

const same = (a: Map<string, Tensor>, b: Map<string, Tensor>): boolean =>
  a.size === b.size && [...a].every(([k, t]) => Buffer.from(t.f32().buffer).equals(Buffer.from(b.get(k)!.f32().buffer)));

test('fp16 through overflows: skipped steps change nothing, the loss scale halves, fallback after 5, training goes on', { timeout: 300_000 }, () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'autoglm-fp16-'));
  try {
    const r = spawnSync(process.execPath, ['--import', 'tsx', CLI, 'finetune', '--max-train', '64', '--max-eval', '16', '--max-steps', '8', '--batch-size', '16',
      '--max-length', '24', '--mixed-precision', 'fp16', '--learning-rate', '300', '--seed', '3', '--save-every', '1', '--keep-last', '100', '--no-baseline',
      '--output-dir', dir], { cwd: ROOT, env: { ...process.env, AUTOGLM_NUM_THREADS: '1' }, encoding: 'utf8' });
    const out = r.stdout + r.stderr;
    assert.equal(r.status, 0, out);
    const skipped = [...out.matchAll(/step (\d+): non-finite loss or gradients; the step was skipped and the loss scale lowered to (\d+)/g)].map((m) => [Number(m[1]), Number(m[2])]);
    assert.ok(skipped.length >= 5, `expected at least 5 overflows:\n${out}`);
    skipped.slice(0, 5).forEach(([, scale], i) => assert.equal(scale, 2 ** (15 - i), `the ${i + 1}th backoff`));
    assert.match(out, /fp16 overflowed 5 steps in a row: falling back to (bf16|fp32)/);
    const cks = new Map(listCheckpoints(dir).map((d) => [Number(path.basename(d).split('-')[1]), loadCheckpoint(d)]));
    for (const [step] of skipped) {
      const before = cks.get(step - 1), after = cks.get(step);
      if (!before || !after) continue;
      assert.ok(same(before.weights, after.weights), `step ${step} was skipped but the weights changed`);
      assert.ok(same(before.optimizer, after.optimizer), `step ${step} was skipped but the optimizer state changed`);
    }
    const last = cks.get(8)!, lastSkipped = cks.get(Math.max(...skipped.map(([s]) => s)))!;
    assert.ok(!same(last.weights, lastSkipped.weights), 'no step was applied after the fallback');
    for (const [k, t] of last.weights) assert.ok(t.f32().every(Number.isFinite), `${k} is not finite at the end`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
