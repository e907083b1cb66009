/**
 * Data-parallel SFT as a user runs it: `autoglm launch --nproc 2 finetune --task sft ...` (local worker threads)
 * trains the same adapter as one process on the same global batches, padded and packed, within float summation
 * order; the validation loss (each rank scores half the sequences) is the single process's; the run folder is
 * complete (adapter, sft.json with the global token counts). The same for task causal-lm on plain texts of unequal
 * lengths (each rank's loss weighted by its share of the global batch's predicted tokens); and for task dpo (each rank's pairs
 * weighted by their share of the batch, the reference log-probabilities computed by half the ranks each, the rewards
 * in the logs summed over the ranks).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadSafetensors } from '../src/models/safetensors.js';
import { makeTinyChatModel } from '../src/sft/tiny-chat-model.js';
import { syntheticSplits } from '../src/sft/synthetic.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(ROOT, 'src/cli/launch-entry.ts');
const root = mkdtempSync(path.join(tmpdir(), 'autoglm-sft-dp-'));
const model = path.join(root, 'tiny');
makeTinyChatModel(model, { hiddenSize: 32, layers: 2, heads: 2, seed: 0 });
const data = path.join(root, 'train.jsonl');
writeFileSync(data, syntheticSplits({ task: 'addition', train: 80, test: 0, seed: 3, digits: 2 }).train.map((x) => JSON.stringify(x)).join('\n') + '\n');

const texts = path.join(root, 'texts.txt');
writeFileSync(texts, Array.from({ length: 60 }, (_, i) => `note ${i}: ${'the quick brown fox jumps over the lazy dog '.slice(0, 8 + ((i * 7) % 37))}`).join('\n') + '\n');

function cli(args: string[]): Promise<{ code: number | null; stderr: string; stdout: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, AUTOGLM_NUM_THREADS: '1' } });
    let stderr = '', stdout = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ code, stderr, stdout }));
  });
}

/** SGD (the update is linear in the gradient, so two halves vs one batch differ at float rounding only), no dropout. */
const run = (out: string, extra: string[]) => ['finetune', '--task', 'sft', '--model', model, '--dataset', data, '--method', 'lora', '--max-steps', '4',
  '--batch-size', '8', '--max-length', '64', '--optimizer', 'sgd', '--learning-rate', '0.5', '--mixed-precision', 'fp32', '--sample-generations', '1',
  '--eval-every', '2', '--seed', '5', '--output-dir', out, '--quiet', '--json', ...extra];

/**
 * One process (`one`) and `launch --nproc 2` (`two`) of the same run: both exit 0, the adapter trained (LoRA's B starts
 * at 0) and equals within float summation order, and the last validation loss (each rank scoring half) is the same.
 */
async function oneAndTwoRanks(args: (out: string) => string[], one: string, two: string): Promise<void> {
  const [a, b] = await Promise.all([cli(args(one)), cli(['launch', '--nproc', '2', '--backend', 'local', ...args(two)])]);
  assert.equal(a.code, 0, a.stderr.slice(-3000));
  assert.equal(b.code, 0, b.stderr.slice(-3000));
  const wa = loadSafetensors(path.join(one, 'adapter/adapter_model.safetensors')).tensors, wb = loadSafetensors(path.join(two, 'adapter/adapter_model.safetensors')).tensors;
  assert.deepEqual([...wb.keys()].sort(), [...wa.keys()].sort());
  let diff = 0, moved = 0;
  for (const [k, x] of wa) {
    const p = x.f32(), q = wb.get(k)!.f32();
    for (let i = 0; i < p.length; i++) diff = Math.max(diff, Math.abs(p[i] - q[i]));
    if (k.includes('lora_B')) for (const v of p) moved = Math.max(moved, Math.abs(v));
  }
  assert.ok(moved > 1e-3, `the adapter did not train (max |B| ${moved})`);
  assert.ok(diff < 1e-5, `2 ranks vs 1 process: max adapter difference ${diff}`);
  const last = (s: string) => JSON.parse(s.trim().split('\n').filter((l) => l.startsWith('{')).at(-1)!) as { eval_loss: number };
  const ea = last(a.stdout).eval_loss, eb = last(b.stdout.replace(/^\[rank \d+\] /gm, '')).eval_loss;
  assert.ok(Math.abs(ea - eb) < 1e-4 * Math.abs(ea), `validation loss ${eb} (2 ranks) vs ${ea} (1 process)`);
}

for (const packing of [false, true]) {
  test(`autoglm launch --nproc 2 finetune --task sft${packing ? ' --packing' : ''}: the adapter of one process on the same global batches`, async () => {
    const extra = packing ? ['--packing', 'true'] : [];
    const one = path.join(root, `one-${packing}`), two = path.join(root, `two-${packing}`);
    await oneAndTwoRanks((out) => run(out, extra), one, two);
    const sa = JSON.parse(readFileSync(path.join(one, 'sft.json'), 'utf8')), sb = JSON.parse(readFileSync(path.join(two, 'sft.json'), 'utf8'));
    assert.equal(sb.tokens, sa.tokens);
    assert.equal(sb.scored_tokens, sa.scored_tokens);
  });
}

test('autoglm launch --nproc 2 finetune --task causal-lm: the adapter and the validation loss of one process on the same global batches', async () => {
  const args = (out: string) => ['finetune', '--task', 'causal-lm', '--model', model, '--dataset', texts, '--method', 'lora', '--max-steps', '4',
    '--batch-size', '8', '--max-length', '64', '--optimizer', 'sgd', '--learning-rate', '0.5', '--mixed-precision', 'fp32', '--eval-every', '2',
    '--seed', '5', '--output-dir', out, '--quiet', '--json'];
  await oneAndTwoRanks(args, path.join(root, 'lm-one'), path.join(root, 'lm-two'));
});

for (const loss of ['sigmoid', 'orpo', 'kto'] as const) test(`autoglm launch --nproc 2 finetune --task dpo --dpo-loss-type ${loss}: the adapter, the validation loss and the rewards of one process on the same global batches${loss === 'orpo' ? " (no reference; the NLL term's tokens shared over the ranks)" : loss === 'kto' ? ' (the pairs unpaired; the KL estimate of the whole global batch on every rank)' : ''}`, async () => {
  const prefs = path.join(root, `prefs-${loss}.jsonl`);
  const pairs = syntheticSplits({ task: 'addition', train: 48, test: 0, seed: 4, digits: 2 }).train.map((x) => {
    const [user, assistant] = x.messages;
    return { prompt: [user], chosen: [assistant], rejected: [{ role: 'assistant', content: [...assistant!.content].reverse().join('') }] };
  });
  writeFileSync(prefs, pairs.map((p) => JSON.stringify(p)).join('\n') + '\n');
  // 5 pairs a batch: the ranks hold 3 and 2 pairs, so the shares of the global mean are unequal
  const args = (out: string) => ['finetune', '--task', 'dpo', '--model', model, '--dataset', prefs, '--method', 'lora', '--max-steps', '4',
    '--batch-size', '5', '--max-length', '64', '--dpo-loss-type', loss, '--optimizer', 'sgd', '--learning-rate', '0.5', '--mixed-precision', 'fp32', '--eval-every', '2',
    '--sample-generations', '0', '--seed', '5', '--output-dir', out, '--quiet', '--json'];
  const one = path.join(root, `dpo-${loss}-one`), two = path.join(root, `dpo-${loss}-two`);
  await oneAndTwoRanks(args, one, two);
  const rewards = (dir: string) => readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { kind: string; rewards?: Record<string, number> })
    .filter((l) => l.kind === 'step' || l.kind === 'eval').map((l) => l.rewards!);
  const ra = rewards(one), rb = rewards(two);
  assert.equal(rb.length, ra.length);
  // (not the reward accuracy: a pair whose margin is within rounding of 0, as every pair's is at the first step, may
  // count either way)
  ra.forEach((a, i) => {
    for (const k of ['chosen', 'rejected', 'margin']) assert.ok(Math.abs(a[k]! - rb[i]![k]!) < 1e-4 * Math.max(1e-2, Math.abs(a[k]!)), `${k} of log line ${i}: ${rb[i]![k]} (2 ranks) vs ${a[k]} (1 process)`);
  });
});
