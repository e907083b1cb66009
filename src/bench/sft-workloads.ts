/**
 * The SFT step on the gpt2-lora workload of WORKLOADS.md: the same GPT-2-small-shaped decoder (12 pre-LN blocks,
 * d 768, 12 heads, MLP 3072 with erf GELU, vocab 50257, B 8, T 128), LoRA r=8 alpha=16 on every block's fused qkv
 * (`c_attn`), AdamW lr 1e-4 wd 0.01, but each step is task sft's: the Hugging Face GPT-2 model the loader builds,
 * batches made by src/sft/batch.ts, and the loss of SftTask.loss (completion-only labels, padding ignored).
 *
 * - gpt2-lora-sft: padded rows. Example i (0..7) has 128 - 8i tokens, its first half the prompt (not scored);
 *   rows are right-padded to 128 and the padding masked from attention.
 * - gpt2-lora-sft-packed: packed rows, no padding. Row r holds 4 examples of 48, 40, 24 and 16 tokens, rotated by
 *   r; positions restart in each example, a per-document causal mask keeps them apart, each example's first half
 *   is its prompt.
 *
 * - gpt2-lora-dpo: task dpo's step on gpt2-lora-sft's padded rows read as 4 pairs (see `dpo` below).
 * - gpt2-lora-kto: KTO's step (dpoLossType 'kto') on those rows read as 8 unpaired examples (see `kto` below).
 *
 * scripts/torch-sft-reference.py times the same steps in PyTorch (`autoglm bench gpt2-lora-sft --vs-torch`).
 * The one difference of model: Hugging Face GPT-2 ties the LM head to the token embedding, the reference's head is
 * untied; with a frozen base the head's matrix products are the same.
 */
import { randint } from '../tensor/creation.js';
import { autocast } from '../tensor/precision.js';
import { manualSeed } from '../nn/init.js';
import { AdamW } from '../optim/adam.js';
import { LoraModel } from '../peft/index.js';
import { buildHFModel } from '../models/hf/loader.js';
import { causalLMLossFromHidden, causalLMLoss } from '../models/hf/heads.js';
import type { CausalLM } from '../models/hf/family.js';
import { packedBatch, padBatch, type SftBatch } from '../sft/batch.js';
import { IGNORE_INDEX, type TokenizedExample } from '../sft/tokenize.js';
import { dpoLoss, ktoKl, ktoLoss, scoredCounts, sequenceLogProbs } from '../sft/dpo.js';
import { noGrad } from '../tensor/autograd.js';
import type { Tensor } from '../tensor/tensor.js';
import { collectGarbage, makeRecord, resetPeakRss, timed, trainPeakRssMb, type BenchRecord } from './measure.js';

const B = 8, T = 128, VOCAB = 50257;

/** The example lengths of each row: padded (one example per row) or packed (four per row, 128 tokens). */
export function sftRowLengths(packed: boolean): number[][] {
  if (!packed) return Array.from({ length: B }, (_, i) => [T - 8 * i]);
  const docs = [48, 40, 24, 16];
  return Array.from({ length: B }, (_, r) => docs.map((_, k) => docs[(k + r) % docs.length]));
}

/** An example of `len` random tokens whose first half is the prompt. */
function example(len: number, seed: number): TokenizedExample {
  const ids = Array.from(randint([len], VOCAB, seed).i32('ids'));
  return { ids, labels: ids.map((id, t) => (t < Math.floor(len / 2) ? IGNORE_INDEX : id)) };
}

export interface SftWorkloadOptions {
  dtype: 'fp32' | 'bf16';
  steps: number;
  warmup: number;
}

/** The gpt2-lora model: GPT-2 small's shape, random weights, LoRA r 8 on the fused qkv, in training mode. */
function gpt2Lora(): CausalLM {
  const model = buildHFModel({
    model_type: 'gpt2', vocab_size: VOCAB, n_positions: 1024, n_embd: 768, n_layer: 12, n_head: 12, n_inner: 3072,
    activation_function: 'gelu', embd_pdrop: 0, resid_pdrop: 0, attn_pdrop: 0, layer_norm_epsilon: 1e-5,
  }, { task: 'causal-lm' }) as CausalLM;
  new LoraModel(model, { r: 8, alpha: 16, targetModules: ['c_attn'] });
  model.train();
  return model;
}

function sft(packed: boolean) {
  return (o: SftWorkloadOptions): BenchRecord[] => {
    manualSeed(0);
    const model = gpt2Lora();
    let seed = 1;
    const rows = sftRowLengths(packed).map((lens) => lens.map((len) => example(len, seed++)));
    const batch: SftBatch = packed ? packedBatch(rows, 0) : padBatch(rows.map((r) => r[0]), 0);
    const opts = { attentionMask: batch.attentionMask, positionIds: batch.positionIds, documentIds: batch.documentIds };
    const params = model.trainableParameters();
    const opt = new AdamW(params, { lr: 1e-4, weightDecay: 0.01 });
    const compute = o.dtype === 'bf16' ? 'bf16' : 'f32';
    const loss = () => { // SftTask.loss
      const head = model.headWeights();
      return head ? causalLMLossFromHidden(model.hidden(batch.ids, opts), head, batch.labels) : causalLMLoss(model.forward(batch.ids, opts), batch.labels);
    };
    const step = () => {
      opt.zeroGrad();
      autocast(compute, loss).backward();
      opt.step();
    };
    collectGarbage();
    resetPeakRss();
    const t = timed(step, o.steps, o.warmup);
    const { trainable, total } = model.parameterCounts();
    return [makeRecord(packed ? 'gpt2-lora-sft-packed' : 'gpt2-lora-sft', o.dtype, t, {
      tokens_per_s: Math.round((batch.tokens / t.med) * 10) / 10, trainable_params: trainable, total_params: total, train_peak_rss_mb: trainPeakRssMb(),
      tokens: batch.tokens, scored_tokens: batch.scored,
    })];
  };
}

/**
 * A preference step on the padded batch of gpt2-lora-sft (each row's second half its answer), timed: `loss` makes the
 * step's loss from the model, the batch and fixed reference log-probabilities of the rows (a uniform model's: task
 * dpo computes its reference once, before training); then backward and AdamW.
 */
function preferenceStep(name: string, extra: Record<string, number>, loss: (model: CausalLM, batch: SftBatch, compute: 'bf16' | 'f32', reference: number[]) => Tensor) {
  return (o: SftWorkloadOptions): BenchRecord[] => {
    manualSeed(0);
    const model = gpt2Lora();
    let seed = 1;
    const batch = padBatch(sftRowLengths(false).map((lens) => example(lens[0]!, seed++)), 0);
    const opt = new AdamW(model.trainableParameters(), { lr: 1e-4, weightDecay: 0.01 });
    const compute = o.dtype === 'bf16' ? 'bf16' : 'f32';
    const reference = Array.from({ length: B }, (_, r) => -Math.log(VOCAB) * Math.floor((T - 8 * r) / 2));
    const step = () => {
      opt.zeroGrad();
      loss(model, batch, compute, reference).backward();
      opt.step();
    };
    collectGarbage();
    resetPeakRss();
    const t = timed(step, o.steps, o.warmup);
    const { trainable, total } = model.parameterCounts();
    return [makeRecord(name, o.dtype, t, {
      tokens_per_s: Math.round((batch.tokens / t.med) * 10) / 10, trainable_params: trainable, total_params: total, train_peak_rss_mb: trainPeakRssMb(),
      tokens: batch.tokens, scored_tokens: batch.scored, ...extra,
    })];
  };
}

/** gpt2-lora-dpo: task dpo's step on the rows read as 4 pairs (rows 0-3 chosen, 4-7 rejected), the sigmoid loss. */
const dpo = preferenceStep('gpt2-lora-dpo', { pairs: B / 2 }, (model, batch, compute, reference) => {
  const policy = autocast(compute, () => sequenceLogProbs(model, batch));
  return dpoLoss(policy, reference, scoredCounts(batch), { beta: 0.1, lossType: 'sigmoid' }).loss;
});

/**
 * gpt2-lora-kto: KTO's step on the rows read as 8 unpaired examples (even rows desirable): the KL rows'
 * log-probabilities without gradient in eval mode (the same 8 rows stand for the KL completions: the same work), the
 * KL estimate, the examples' log-probabilities, KTO's loss.
 */
const kto = preferenceStep('gpt2-lora-kto', { examples: B }, (model, batch, compute, reference) => {
  model.eval();
  const klRows = noGrad(() => autocast(compute, () => sequenceLogProbs(model, batch))).f32();
  model.train();
  const policy = autocast(compute, () => sequenceLogProbs(model, batch));
  const labels = Array.from({ length: B }, (_, r) => r % 2 === 0);
  return ktoLoss(policy, reference, labels, ktoKl(klRows, reference), { beta: 0.1, desirableWeight: 1, undesirableWeight: 1 }, B).loss;
});

export const SFT_WORKLOADS = { 'gpt2-lora-sft': sft(false), 'gpt2-lora-sft-packed': sft(true), 'gpt2-lora-dpo': dpo, 'gpt2-lora-kto': kto };
