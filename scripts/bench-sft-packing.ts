/**
 * Packed vs padded SFT batches, side by side in one process: forward + backward of the same examples on the tiny
 * chat model (or --model DIR), alternating the two layouts so that load on the machine hits both alike; prints the
 * median tokens/s (tokens that are not padding) of each, the ratio, and the padding share of the padded batches.
 *
 *   node --import tsx scripts/bench-sft-packing.ts [--model DIR] [--examples 256 --batch 32 --max-length 128 --repeats 5 --threads 1]
 */
import { parseArgs } from 'node:util';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadHFModelFromDir, type CausalLM } from '../src/models/hf/index.js';
import { causalLMLossFromHidden } from '../src/models/hf/heads.js';
import { makeTinyChatModel } from '../src/sft/tiny-chat-model.js';
import { syntheticSplits } from '../src/sft/synthetic.js';
import { chatTemplateOf } from '../src/sft/template.js';
import { tokenizeAll } from '../src/sft/tokenize.js';
import { packRows, packedBatch, padBatch, type SftBatch } from '../src/sft/batch.js';
import { applyThreads } from '../src/cli/options.js';
import { shuffleInPlace } from '../src/data/split.js';
import { Rng } from '../src/backend/rng.js';

const { values: a } = parseArgs({ options: {
  model: { type: 'string' }, examples: { type: 'string', default: '256' }, batch: { type: 'string', default: '32' },
  'max-length': { type: 'string', default: '128' }, repeats: { type: 'string', default: '5' }, threads: { type: 'string', default: '1' },
} });
applyThreads(Number(a.threads));
const dir = a.model ?? makeTinyChatModel(path.join(mkdtempSync(path.join(tmpdir(), 'bench-sft-')), 'tiny'), {}).dir;
const model = loadHFModelFromDir(dir) as unknown as CausalLM;
model.train();
const tok = model.hf!.tokenizer!;
// mixed lengths: addition (short) and lookup (longer) conversations, shuffled together
const convs = [...syntheticSplits({ task: 'addition', train: Number(a.examples) / 2, test: 0, seed: 1, digits: 3 }).train,
  ...syntheticSplits({ task: 'lookup', train: Number(a.examples) / 2, test: 0, seed: 2 }).train];
const ex = shuffleInPlace(tokenizeAll(convs.map((c) => ({ kind: 'conversation' as const, messages: c.messages })), tok, chatTemplateOf(tok, dir), { maxLength: Number(a['max-length']) }).examples, new Rng(3));
const B = Number(a.batch), pad = tok.padTokenId ?? 0;
const padded: SftBatch[] = [];
for (let i = 0; i < ex.length; i += B) padded.push(padBatch(ex.slice(i, i + B), pad));
const rows = packRows(ex.map((e) => e.ids.length), Number(a['max-length']));
const perRow = ex.length / rows.length;
const packed: SftBatch[] = [];
const rb = Math.max(1, Math.round(B / perRow)); // rows per batch: about B examples per step, as the padded batches
for (let i = 0; i < rows.length; i += rb) packed.push(packedBatch(rows.slice(i, i + rb).map((r) => r.map((j) => ex[j])), pad));

function run(batches: SftBatch[]): number {
  const t0 = performance.now();
  let tokens = 0;
  for (const b of batches) {
    const h = model.hidden(b.ids, { attentionMask: b.attentionMask, positionIds: b.positionIds, documentIds: b.documentIds });
    causalLMLossFromHidden(h, model.headWeights()!, b.labels).backward();
    model.zeroGrad();
    tokens += b.tokens;
  }
  return tokens / ((performance.now() - t0) / 1e3);
}
const median = (x: number[]) => [...x].sort((p, q) => p - q)[Math.floor(x.length / 2)];
run(padded.slice(0, 2)); run(packed.slice(0, 2)); // warm up
const tp: number[] = [], tk: number[] = [];
for (let r = 0; r < Number(a.repeats); r++) { tp.push(run(padded)); tk.push(run(packed)); }
const slots = padded.reduce((s, b) => s + b.ids.size, 0), real = padded.reduce((s, b) => s + b.tokens, 0);
console.log(JSON.stringify({
  bench: 'sft-packing', model: dir, examples: ex.length, max_length: Number(a['max-length']), threads: Number(a.threads), repeats: Number(a.repeats),
  padded: { batches: padded.length, padding_share: +(1 - real / slots).toFixed(3), tokens_per_s_median: Math.round(median(tp)) },
  packed: { batches: packed.length, rows: rows.length, examples_per_row: +perRow.toFixed(2), tokens_per_s_median: Math.round(median(tk)) },
  packed_over_padded: +(median(tk) / median(tp)).toFixed(3),
}));
