/**
 * Task 'dpo': preference tuning of a Hugging Face decoder (gpt2, llama, qwen2, mistral, glm) with Direct Preference
 * Optimization, as TRL's DPOTrainer does it, on the one training loop (loop.ts: accumulation, guarded update,
 * schedules, evaluation, early stopping, checkpoints and exact resume).
 *
 * - Data: `{prompt, chosen, rejected}` records, plain or conversational, with the prompt explicit or implicit
 *   (src/sft/preference.ts); JSONL, JSON, CSV or Parquet; the model's chat template (or config `chatTemplate`).
 * - KTO (dpoLossType 'kto', TRL's KTOTrainer): unpaired `{prompt, completion, label}` records, or pairs unpaired. Each
 *   example is held as a pair whose 'chosen' side is its completion and whose 'rejected' side is its KL completion
 *   (another example's completion after its prompt), so that the reference, checkpoints and data parallelism work as
 *   for pairs; the loss (src/sft/dpo.ts) scores the completions against the KL estimate of the KL completions.
 * - Reference model: the model as it is before training (with LoRA, the base; with full fine-tuning, the loaded
 *   weights). Its log-probabilities of every pair are computed once, before the first step (`prepare`; TRL's
 *   `precompute_ref_log_probs`), so no second model is held in memory and a step costs one forward and backward pass
 *   of the policy. Checkpoints keep them with a digest of the pairs' tokens: a resumed run takes them from there.
 * - Loss (`dpoLossType`): 'sigmoid' (DPO, with `labelSmoothing` as conservative DPO's ε), 'ipo' or 'hinge', with
 *   `dpoBeta` (src/sft/dpo.ts); `rpoAlpha` adds RPO's alpha x the chosen answers' mean next-token NLL (TRL's rpo_alpha),
 *   which keeps DPO from lowering the likelihood of the chosen answers along with the rejected ones. Without a
 *   reference model (none is scored, none kept in checkpoints): 'simpo' (TRL's CPOTrainer with loss_type 'simpo';
 *   `simpoGamma`; `rpoAlpha` is CPO's cpo_alpha) and 'orpo' (TRL's ORPOTrainer: the odds-ratio term weighted by
 *   `dpoBeta` plus the chosen answers' mean NLL). The base model's dropout is off (TRL's `disable_dropout`, its
 *   default): the reference was computed without it; the adapters' `loraDropout` stays as set.
 * - Logs: each logged step and each evaluation carry the rewards TRL logs (chosen, rejected, margin, accuracy = the
 *   share of pairs whose chosen reward is the larger); an evaluation's `accuracy` is that reward accuracy, so early
 *   stopping can watch 'val_accuracy' as well as 'val_loss'.
 * - Outputs: the adapter in PEFT's layout (or the whole model) with the tokenizer and chat template beside it, as task
 *   sft writes them, dpo.json, and greedy answers to validation prompts in samples.jsonl; a loaded run predicts
 *   (answers through the chat template) and evaluates on preference files (the reference: the base with the adapters
 *   off, or the base model named in autoglm.json).
 *
 * Data-parallel (`autoglm launch`): every rank draws the same global batch of pairs and trains on its block, its loss
 * scaled to its share of the global mean; reference and evaluation log-probabilities are computed by every W-th pair's
 * rank and gathered.
 */
import path from 'node:path';
import { writeFileSync } from 'node:fs';
import { autocast } from '../tensor/precision.js';
import { slice } from '../tensor/ops/movement.js';
import { noGrad } from '../tensor/autograd.js';
import { AutoGLMError, ConfigError, DatasetError, CheckpointError } from '../errors.js';
import { createHash } from 'node:crypto';
import { manualSeed } from '../nn/init.js';
import { Dropout } from '../nn/layers.js';
import type { LoraModel } from '../peft/index.js';
import type { Sampler } from '../data/index.js';
import { BadLineSink } from '../data/bad-lines.js';
import type { CausalLM } from '../models/hf/family.js';
import type { HFTokenizer } from '../models/hf/tokenizer.js';
import { loadSplitsWith, readFileWith } from '../sft/dataset.js';
import type { ChatTemplate } from '../sft/template.js';
import { padBatch } from '../sft/batch.js';
import { pairPrompt, pairRow, toPreference, toUnpaired, tokenizePair, type PreferenceExample, type TokenizedPair, type UnpairedExample } from '../sft/preference.js';
import { REWARD_SUM_KEYS, dpoLoss, dpoTerms, emptyRewardSums, ktoKl, ktoLoss, ktoTerms, referenceFree, rewardMeans, sequenceLogProbs, type DpoLossOptions, type KtoOptions,
  type RewardSums } from '../sft/dpo.js';
import { Rng } from '../backend/rng.js';
import { shuffleInPlace } from '../data/split.js';
import type { ChatGenerationOptions, ChatPrediction } from '../sft/types.js';
import type { RunInfo } from './outputs.js';
import type { PreferenceRewards } from './history.js';
import { SFT_ONLY, evalBatchOf, isDefaultValue } from './config.js';
import { CAUSAL_LM_REFUSES, DecoderTask, checkCausalLM, decoderForTraining, loadDecoder, samplerOf } from './causal-lm.js';
import { loadChatRun, predictChat, sampleAnswers, saveChatOutputs, templateFor } from './sft.js';
import { noteSkipped, type EvalSplit, type FinetuneArgs, type MicroBatchLoss, type TaskContext, type TaskDefinition, type TaskEval, type TrainingTask } from './task.js';
import { evalBatches, type EvalPace } from './pace.js';

type Split = 'train' | EvalSplit;

interface DpoData {
  name: string;
  /** Pairs; KTO: each example's completion as 'chosen' and its KL completion (another example's) as 'rejected'. */
  pairs: Record<Split, TokenizedPair[]>;
  /** KTO: whether each example's completion is desirable. */
  labels: Record<Split, boolean[]> | null;
  /** Validation pairs as read (sample generations). */
  validationExamples: PreferenceExample[];
}

/** Where a run's data came from (autoglm.json). */
interface DpoDataInfo {
  dataset: string;
  evalDataset?: string;
  testDataset?: string;
  validationFraction?: number;
  maxTrain?: number;
  maxEval?: number;
}

/** What `AutoGLMTrainer.evaluate` (and `autoglm eval`) reports for a DPO run. */
export interface DpoEvalResult {
  /** Mean preference loss over the pairs. */
  loss: number;
  /** Share of pairs whose chosen answer has the larger reward. */
  accuracy: number;
  rewards: PreferenceRewards;
  /** Pairs scored. */
  n: number;
}

/** Reads the pairs of one file; bad records go to the sink with their file, line or row, and field. */
export function readPreferenceFile(file: string, sink: BadLineSink): Promise<PreferenceExample[]> {
  return readFileWith(file, sink, toPreference);
}

/** KTO: reads the unpaired examples of one file, by record (a pair is two examples; splits keep them together). */
function readUnpairedFile(file: string, sink: BadLineSink) {
  return readFileWith(file, sink, toUnpaired);
}

/** A split's records as examples, each with its record's place in the file. */
const unpaired = (records: ReturnType<typeof toUnpaired>[]): UnpairedExample[] =>
  records.flatMap((r) => r.examples.map((e) => ({ ...e, pair: { ...e.pair, source: r.source } })));

/**
 * KTO's examples as pairs: 'chosen' its completion, 'rejected' its KL completion, the completion of the next example
 * in a seeded cycle through the split (TRL pairs each prompt with another example's completion in its batch), cut to
 * fit maxLength after the prompt.
 */
function tokenizeUnpaired(ctx: TaskContext | null, xs: readonly UnpairedExample[], tok: HFTokenizer, template: ChatTemplate, maxLength: number, split: string, seed: number):
  { pairs: TokenizedPair[]; labels: boolean[] } {
  const kept: { t: TokenizedPair; label: boolean }[] = [];
  for (const x of xs) {
    const t = tokenizePair(x.pair, tok, template, maxLength);
    if (t) kept.push({ t, label: x.label });
  }
  if (kept.length < xs.length) ctx?.note(`${split}: dropped ${xs.length - kept.length} example(s) with no completion token within maxLength ${maxLength}`);
  const order = shuffleInPlace(kept.map((_, i) => i), new Rng(seed)), partner = new Array<number>(kept.length);
  order.forEach((i, k) => (partner[i] = order[(k + 1) % order.length]!));
  const pairs = kept.map(({ t }, i) => ({ prompt: t.prompt, chosen: t.chosen, rejected: kept[partner[i]!]!.t.chosen.slice(0, Math.max(0, maxLength - t.prompt.length)) }));
  return { pairs, labels: kept.map((k) => k.label) };
}

/** The scored tokens of each row of pairs' batch (chosen rows, then rejected rows): their answers' lengths. */
const answerCounts = (pairs: readonly TokenizedPair[]) => [...pairs.map((p) => p.chosen.length), ...pairs.map((p) => p.rejected.length)];

function tokenizePairs(ctx: TaskContext | null, xs: readonly PreferenceExample[], tok: HFTokenizer, template: ChatTemplate, maxLength: number, split: string): TokenizedPair[] {
  const out: TokenizedPair[] = [];
  for (const x of xs) {
    const p = tokenizePair(x, tok, template, maxLength);
    if (p) out.push(p);
  }
  if (out.length < xs.length) ctx?.note(`${split}: dropped ${xs.length - out.length} pair(s) with no answer token within maxLength ${maxLength}`);
  return out;
}

type SplitSpec = Parameters<typeof loadSplitsWith>[0];

/** The run's pairs, read and tokenized. */
async function pairData(ctx: TaskContext, spec: SplitSpec, tok: HFTokenizer, template: ChatTemplate, maxLength: number): Promise<DpoData> {
  const splits = await loadSplitsWith(spec, readPreferenceFile);
  noteSkipped(ctx, splits.skipped, 'record');
  if (splits.train.some((e) => e.kind === 'conversation')) ctx.note(`chat template: ${template.origin}`);
  const enc = (xs: PreferenceExample[], split: string) => tokenizePairs(ctx, xs, tok, template, maxLength, split);
  const data: DpoData = { name: splits.name, pairs: { train: enc(splits.train, 'train'), validation: enc(splits.validation, 'validation'), test: enc(splits.test, 'test') },
    labels: null, validationExamples: splits.validation };
  if (data.pairs.train.length === 0) throw new DatasetError(`'${splits.name}' has no training pair with an answer token within maxLength ${maxLength}`);
  return data;
}

/** KTO: the run's unpaired examples (pairs unpaired), read and tokenized with their KL completions. */
async function ktoData(ctx: TaskContext, spec: SplitSpec, tok: HFTokenizer, template: ChatTemplate, maxLength: number): Promise<DpoData> {
  const splits = await loadSplitsWith(spec, readUnpairedFile);
  noteSkipped(ctx, splits.skipped, 'record');
  const xs = { train: unpaired(splits.train), validation: unpaired(splits.validation), test: unpaired(splits.test) };
  if (xs.train.some((e) => e.pair.kind === 'conversation')) ctx.note(`chat template: ${template.origin}`);
  const enc = (split: Split) => tokenizeUnpaired(ctx, xs[split], tok, template, maxLength, split, spec.seed ?? 42);
  const train = enc('train'), validation = enc('validation'), test = enc('test');
  if (train.pairs.length === 0) throw new DatasetError(`'${splits.name}' has no training example with a completion token within maxLength ${maxLength}`);
  const good = train.labels.filter(Boolean).length, bad = train.labels.length - good;
  ctx.note(`kto: ${good} desirable and ${bad} undesirable training examples`);
  // TRL's advice: desirableWeight x desirable examples to undesirableWeight x undesirable ones within 1:1 to 4:3
  const c = ctx.config, ratio = (c.desirableWeight * good) / (c.undesirableWeight * bad);
  if (good && bad && !(ratio >= 1 && ratio <= 4 / 3)) {
    // the advice: raise the rarer kind's weight
    const hint = ratio > 4 / 3
      ? `undesirableWeight ${((3 / 4) * c.desirableWeight * good / bad).toFixed(2)}-${(c.desirableWeight * good / bad).toFixed(2)} with desirableWeight ${c.desirableWeight}`
      : `desirableWeight ${(c.undesirableWeight * bad / good).toFixed(2)}-${((4 / 3) * c.undesirableWeight * bad / good).toFixed(2)} with undesirableWeight ${c.undesirableWeight}`;
    ctx.note(`kto: desirableWeight x desirable examples to undesirableWeight x undesirable ones is ${ratio.toFixed(2)}; KTO's authors advise 1 to 4/3 (${hint})`);
  }
  return { name: splits.name, pairs: { train: train.pairs, validation: validation.pairs, test: test.pairs },
    labels: { train: train.labels, validation: validation.labels, test: test.labels },
    validationExamples: xs.validation.filter((e) => e.label).map((e) => e.pair) };
}

/** A digest of pairs' token ids (a checkpoint's reference log-probabilities are for exactly these pairs). */
function pairsDigest(pairs: readonly TokenizedPair[]): string {
  const h = createHash('sha256');
  for (const p of pairs) for (const ids of [p.prompt, p.chosen, p.rejected]) h.update(Int32Array.from(ids)).update('|');
  return h.digest('hex').slice(0, 32);
}

export class DpoTask extends DecoderTask implements TrainingTask<number[]> {
  readonly name = 'dpo';
  protected readonly sampler: Sampler | null;
  private readonly padId: number;
  /** Reference log-probabilities of each split's pairs: chosen, rejected per pair. */
  private readonly reference: Partial<Record<Split, Float32Array>> = {};
  /** This micro-batch's reward sums (this rank's pairs), then the optimizer step's (every rank's). */
  private pending: RewardSums = emptyRewardSums();
  private stepSums: RewardSums = emptyRewardSums();
  private dataInfo: DpoDataInfo | null = null;
  private lastEval: DpoEvalResult | null = null;

  private constructor(protected readonly ctx: TaskContext, readonly model: CausalLM, readonly baseName: string, readonly tokenizer: HFTokenizer,
    readonly template: ChatTemplate, private readonly data: DpoData, readonly lora: LoraModel | null) {
    super();
    this.padId = tokenizer.padTokenId ?? 0;
    const train = data.pairs.train;
    const lengths = train.map((p) => p.prompt.length + Math.max(p.chosen.length, p.rejected.length));
    this.sampler = samplerOf(lengths, ctx.config);
  }

  static async create(ctx: TaskContext, args: FinetuneArgs): Promise<DpoTask> {
    const c = ctx.config, spec = ctx.modelSpec;
    if (typeof spec !== 'string') throw new ConfigError(`task 'dpo' takes a Hugging Face decoder folder or Hub id as 'model'`);
    if (typeof args.dataset !== 'string') throw new ConfigError(`task 'dpo' takes a preference file as 'dataset' (.jsonl, .json, .csv or .parquet with 'chosen' and 'rejected', and 'prompt' or a prompt they share; with dpoLossType 'kto' also 'prompt', 'completion' and 'label')`);
    manualSeed(c.seed);
    const model = await loadDecoder(spec, 'dpo', c);
    const tok = model.hf?.tokenizer as HFTokenizer;
    const template = templateFor(tok, model.hf?.source ?? null, c);
    const dataSpec = { dataset: args.dataset, evalDataset: args.evalDataset, testDataset: args.testDataset, onBadLine: args.onBadLine, seed: c.seed,
      validationFraction: args.validationFraction, maxTrain: args.maxTrain, maxEval: args.maxEval };
    const maxLength = Math.min(c.maxLength, model.maxPositions ?? Infinity);
    const data = c.dpoLossType === 'kto' ? await ktoData(ctx, dataSpec, tok, template, maxLength) : await pairData(ctx, dataSpec, tok, template, maxLength);
    const lora = decoderForTraining(model, ctx, spec);
    // TRL's disable_dropout: the reference log-probabilities are the model's without dropout, and so is the policy's
    let off = 0;
    for (const [name, m] of model.namedModules()) {
      if (m instanceof Dropout && m.p > 0 && !/(^|\.)lora_dropout(\.|$)/.test(name)) {
        m.p = 0;
        off++;
      }
    }
    if (off) ctx.note(`dpo: the model's dropout is off (${off} layer(s)), as TRL's disable_dropout; loraDropout stays as set`);
    const t = new DpoTask(ctx, model, spec, tok, template, data, lora);
    t.dataInfo = { dataset: args.dataset, evalDataset: args.evalDataset, testDataset: args.testDataset, validationFraction: args.validationFraction, maxTrain: args.maxTrain, maxEval: args.maxEval };
    model.train();
    return t;
  }

  /**
   * The reference: the model before its first step (LoRA's B is zero: the base), each split's pairs scored once. A
   * resumed run has them from its checkpoint (state()), computed by the run's start from the same initial model.
   */
  async prepare(): Promise<void> {
    if (this.referenceFree) {
      this.ctx.note(`dpo: loss '${this.c.dpoLossType}' takes no reference model`);
      return;
    }
    const splits = (['train', 'validation', 'test'] as const).filter((s) => !this.reference[s] && this.data.pairs[s].length);
    if (splits.length === 0) {
      if (this.data.pairs.train.length) this.ctx.note('dpo: reference log-probabilities from the checkpoint');
      return;
    }
    const t0 = performance.now();
    for (const s of splits) this.reference[s] = await this.logProbs(this.data.pairs[s]);
    const n = splits.reduce((a, s) => a + this.data.pairs[s].length, 0);
    this.ctx.note(`dpo: reference log-probabilities of ${n} ${this.data.labels ? 'examples (and their KL completions)' : 'pairs'} computed in ${((performance.now() - t0) / 1e3).toFixed(1)} s (the model before training)`);
  }

  /** A finished run rebuilt from its folder, for predict and evaluate. */
  static async load(ctx: TaskContext, dir: string, info: RunInfo): Promise<DpoTask> {
    const { model, lora, tokenizer, template } = await loadChatRun(ctx, dir, info, 'dpo');
    const empty: DpoData = { name: info.dataset, pairs: { train: [], validation: [], test: [] }, labels: null, validationExamples: [] };
    const t = new DpoTask(ctx, model, info.model, tokenizer, template, empty, lora);
    t.dataInfo = (info as RunInfo & { dpoData?: DpoDataInfo }).dpoData ?? null;
    model.eval();
    return t;
  }

  private get ktoOptions(): KtoOptions {
    return { beta: this.c.dpoBeta, desirableWeight: this.c.desirableWeight, undesirableWeight: this.c.undesirableWeight };
  }

  private get lossOptions(): DpoLossOptions {
    return { beta: this.c.dpoBeta, lossType: this.c.dpoLossType, labelSmoothing: this.c.labelSmoothing, gamma: this.c.simpoGamma };
  }

  /** SimPO and ORPO compare the policy's own log-probabilities: no reference model. */
  private get referenceFree(): boolean {
    return referenceFree(this.c.dpoLossType);
  }

  /** The weight of the chosen answers' mean NLL in the loss: ORPO's 1, else rpoAlpha (RPO; CPO's alpha with SimPO). */
  private get nllWeight(): number {
    return this.c.dpoLossType === 'orpo' ? 1 : this.c.rpoAlpha;
  }

  /** The batch of pairs: their chosen rows, then their rejected rows, right-padded. */
  private rows(pairs: readonly TokenizedPair[]) {
    return padBatch([...pairs.map((p) => pairRow(p, 'chosen')), ...pairs.map((p) => pairRow(p, 'rejected'))], this.padId);
  }

  /**
   * The mean preference loss of the batch's pairs. Data-parallel: every rank draws the same global batch, trains on
   * its block of pairs and returns its share of the global mean (its mean x its pairs / the batch's pairs).
   */
  loss(idx: number[]): MicroBatchLoss {
    if (this.c.dpoLossType === 'kto') return this.ktoLoss(idx);
    const dp = this.ctx.dp, train = this.data.pairs.train, ref = this.reference.train;
    if (!ref && !this.referenceFree) throw new AutoGLMError(`task 'dpo': the reference log-probabilities are computed by prepare(), which the training loop calls before the first step`);
    const mine = dp ? dp.shard(idx) : idx;
    if (mine.length === 0) return { loss: null };
    const b = this.rows(mine.map((i) => train[i]!));
    const reference = ref ? [...mine.map((i) => ref[2 * i]!), ...mine.map((i) => ref[2 * i + 1]!)] : null;
    const policy = autocast(this.ctx.compute, () => sequenceLogProbs(this.model, b));
    const { loss, sums } = dpoLoss(policy, reference, answerCounts(mine.map((i) => train[i]!)), this.lossOptions);
    let total = dp ? loss.scale(mine.length / idx.length) : loss;
    const alpha = this.nllWeight;
    if (alpha > 0) {
      // RPO, ORPO: alpha x the mean NLL over the batch's chosen tokens (this rank's share: its tokens' NLL / the batch's tokens)
      const tokens = idx.reduce((a, i) => a + train[i]!.chosen.length, 0);
      const nll = slice(policy, 0, 0, mine.length).sum().scale(-alpha / tokens);
      total = total.add(nll);
    }
    this.pending = sums;
    return { loss: total };
  }

  /**
   * KTO's loss of the batch's examples, the mean over the global batch (a rank: its share). The KL estimate is the
   * policy's against the reference on the batch's KL rows (each prompt with another example's completion), without
   * gradient and in eval mode (no dropout draws); every rank scores the whole global batch's KL rows, so the ranks
   * agree on it without communicating.
   */
  private ktoLoss(idx: number[]): MicroBatchLoss {
    const dp = this.ctx.dp, train = this.data.pairs.train, ref = this.reference.train, labels = this.data.labels?.train;
    if (!ref || !labels) throw new AutoGLMError(`task 'dpo': the reference log-probabilities are computed by prepare(), which the training loop calls before the first step`);
    this.model.eval();
    let policyKl: Float32Array;
    try {
      policyKl = noGrad(() => autocast(this.ctx.compute, () => sequenceLogProbs(this.model, padBatch(idx.map((i) => pairRow(train[i]!, 'rejected')), this.padId)))).f32();
    } finally {
      this.model.train();
    }
    const kl = ktoKl(policyKl, idx.map((i) => ref[2 * i + 1]!));
    const mine = dp ? dp.shard(idx) : idx;
    if (mine.length === 0) return { loss: null };
    const policy = autocast(this.ctx.compute, () => sequenceLogProbs(this.model, padBatch(mine.map((i) => pairRow(train[i]!, 'chosen')), this.padId)));
    const { loss, sums } = ktoLoss(policy, mine.map((i) => ref[2 * i]!), mine.map((i) => labels[i]!), kl, this.ktoOptions, idx.length);
    // the estimate is the same on every rank: counted once in the step's sums
    if (dp && dp.rank !== 0) sums.kl = sums.nKl = 0;
    this.pending = sums;
    return { loss };
  }

  /** The micro-batch's reward sums join the step's (added over the ranks when data-parallel). */
  async afterBackward(): Promise<void> {
    let p = this.pending;
    this.pending = emptyRewardSums();
    if (this.ctx.dp) {
      const all = await this.ctx.dp.sumNumbers(REWARD_SUM_KEYS.map((k) => p[k]));
      p = Object.fromEntries(REWARD_SUM_KEYS.map((k, i) => [k, all[i]!])) as unknown as RewardSums;
    }
    for (const k of REWARD_SUM_KEYS) this.stepSums[k] += p[k];
  }

  stepLog() {
    const s = this.stepSums;
    this.stepSums = emptyRewardSums();
    return s.n ? { rewards: rewardMeans(s) } : {};
  }

  /**
   * Log-probabilities of pairs' answers under the model as it is (eval mode, no gradients): chosen and rejected per
   * pair. Data-parallel: each rank computes every W-th pair and they are gathered.
   */
  private async logProbs(pairs: readonly TokenizedPair[], model: CausalLM = this.model, pace?: EvalPace): Promise<Float32Array> {
    const dp = this.ctx.dp;
    const mine = dp ? pairs.filter((_, i) => i % dp.worldSize === dp.rank) : pairs;
    // evalBatchSize rows at once: half as many pairs
    const out = new Float32Array(2 * mine.length), bs = Math.max(1, Math.floor(evalBatchOf(this.c, true) / 2));
    const compute = this.ctx.compute, rows = (ps: readonly TokenizedPair[]) => this.rows(ps);
    function* steps(): Generator<void> {
      for (let s = 0; s < mine.length; s += bs) {
        const chunk = mine.slice(s, s + bs), n = chunk.length;
        const lp = autocast(compute, () => sequenceLogProbs(model, rows(chunk))).f32();
        for (let k = 0; k < n; k++) {
          out[2 * (s + k)] = lp[k]!;
          out[2 * (s + k) + 1] = lp[n + k]!;
        }
        yield;
      }
    }
    await evalBatches(model, steps(), pace); // pace: training's validation (pace.ts)
    return dp ? dp.gatherStrided(out, pairs.length, 2) : out;
  }

  /**
   * Loss, reward accuracy and rewards of pairs from their policy and reference log-probabilities. KTO (`labels`
   * given): of the examples, against the KL estimate over the whole split.
   */
  private scores(pairs: readonly TokenizedPair[], policy: Float32Array, reference: Float32Array | null, labels: readonly boolean[] | null): DpoEvalResult {
    const n = pairs.length;
    if (labels) {
      if (!reference) throw new AutoGLMError(`task 'dpo': loss 'kto' needs the reference model's log-probabilities`);
      const side = (a: Float32Array, k: 0 | 1) => Array.from({ length: n }, (_, i) => a[2 * i + k]!);
      const kl = ktoKl(side(policy, 1), side(reference, 1));
      const { losses, sums } = ktoTerms(side(policy, 0), side(reference, 0), labels, kl, this.ktoOptions);
      const rewards = rewardMeans(sums);
      return { loss: losses.reduce((a, l) => a + l, 0) / n, accuracy: rewards.accuracy, rewards, n };
    }
    const order = (a: Float32Array) => [...Array.from({ length: n }, (_, i) => a[2 * i]!), ...Array.from({ length: n }, (_, i) => a[2 * i + 1]!)];
    const { losses, sums } = dpoTerms(order(policy), reference && order(reference), answerCounts(pairs), this.lossOptions);
    const rewards = rewardMeans(sums);
    let loss = losses.reduce((a, l) => a + l, 0) / n;
    if (this.nllWeight > 0) {
      // RPO's (ORPO's) term, as in training: alpha x the mean NLL over the chosen answers' tokens
      let nll = 0, tokens = 0;
      pairs.forEach((p, i) => {
        nll -= policy[2 * i]!;
        tokens += p.chosen.length;
      });
      loss += this.nllWeight * nll / tokens;
    }
    return { loss, accuracy: rewards.accuracy, rewards, n };
  }

  async evaluate(split: EvalSplit, pace?: EvalPace): Promise<TaskEval | null> {
    const pairs = this.data.pairs[split];
    if (pairs.length === 0) return null;
    const reference = this.reference[split] ?? null;
    if (!reference && !this.referenceFree) throw new AutoGLMError(`task 'dpo': no reference log-probabilities of the ${split} pairs (prepare() computes them before the first step)`);
    const r = this.scores(pairs, await this.logProbs(pairs, this.model, pace), reference, this.data.labels?.[split] ?? null);
    this.lastEval = r;
    return { loss: r.loss, accuracy: r.accuracy, rewards: r.rewards };
  }

  /** The sampler, and the reference log-probabilities (a resumed run does not compute them again). */
  state(): Record<string, unknown> {
    const digests = Object.fromEntries((['train', 'validation', 'test'] as const).map((k) => [k, pairsDigest(this.data.pairs[k])]));
    return { sampler: this.sampler?.state() ?? null, reference: { ...this.reference }, pairs: digests };
  }

  load(state: Record<string, unknown>, where: string): void {
    if (!state || typeof state['sampler'] !== 'object' || state['sampler'] === null) throw new CheckpointError(`checkpoint '${where}' has no sampler state for task 'dpo'`);
    const ref = (state['reference'] ?? {}) as Partial<Record<Split, unknown>>, digests = (state['pairs'] ?? {}) as Partial<Record<Split, unknown>>;
    for (const s of ['train', 'validation', 'test'] as const) {
      const r = ref[s], pairs = this.data.pairs[s];
      if (r === undefined) continue;
      // the same pairs, token for token: other data, maxLength or chat template would make the stored reference wrong
      if (!(r instanceof Float32Array) || r.length !== 2 * pairs.length || digests[s] !== pairsDigest(pairs)) {
        throw new CheckpointError(`checkpoint '${where}' holds the reference log-probabilities of other ${s} pairs than this run's ${pairs.length} (other data, maxLength or chat template than the run that wrote it); resume with the same settings`);
      }
      this.reference[s] = r;
    }
    this.sampler?.load(state['sampler'] as Record<string, unknown>);
  }

  runInfo(): RunInfo {
    return { model: this.baseName, method: this.c.method, labels: [], config: this.c, dataset: this.data.name, ...(this.dataInfo ? { dpoData: this.dataInfo } : {}) } as RunInfo;
  }

  /** The adapter (PEFT layout, tokenizer files and chat template beside it) or the model; dpo.json; samples.jsonl. */
  async saveOutputs(dir: string): Promise<Record<string, string>> {
    const out = await saveChatOutputs(this.model, this.lora, this.tokenizer, this.template, dir);
    out.summary = path.join(dir, 'dpo.json');
    const counts = { train: this.data.pairs.train.length, validation: this.data.pairs.validation.length, test: this.data.pairs.test.length };
    writeFileSync(out.summary, `${JSON.stringify({
      ...(this.data.labels ? { examples: counts, desirable_weight: this.c.desirableWeight, undesirable_weight: this.c.undesirableWeight } : { pairs: counts }),
      beta: this.c.dpoBeta, loss_type: this.c.dpoLossType, label_smoothing: this.c.labelSmoothing, rpo_alpha: this.c.rpoAlpha,
      ...(this.c.dpoLossType === 'simpo' ? { simpo_gamma: this.c.simpoGamma } : {}),
      reference: this.referenceFree ? null : 'the model before training (log-probabilities precomputed)',
      chat_template: this.template.origin, last_evaluation: this.lastEval,
    }, null, 2)}\n`);
    const prompts = this.data.validationExamples.map(pairPrompt);
    const samples = sampleAnswers(this.model, this.tokenizer, this.template, prompts, this.c.sampleGenerations);
    if (samples.length) {
      out.samples = path.join(dir, 'samples.jsonl');
      writeFileSync(out.samples, samples.map((s) => JSON.stringify(s)).join('\n') + '\n');
    }
    return out;
  }

  /** Each text as a user message, answered through the chat template (greedy unless opts.doSample). */
  async predict(texts: string[], opts: ChatGenerationOptions = {}): Promise<ChatPrediction[]> {
    return predictChat(this.model, this.tokenizer, this.template, texts, opts);
  }

  /**
   * Preference loss, reward accuracy and rewards on a split of the run's data or on a preference file. A loaded run's
   * reference is the base model: its adapters turned off (LoRA), or the base named in autoglm.json loaded (full).
   */
  async evaluateOn(split: EvalSplit | string | unknown[], opts: { maxEval?: number } = {}): Promise<DpoEvalResult> {
    if (typeof split !== 'string') throw new ConfigError(`a DPO run evaluates on 'validation', 'test' or a preference file (.jsonl, .json, .csv, .parquet)`);
    const unknown = Object.keys(opts).filter((k) => k !== 'maxEval' && (opts as Record<string, unknown>)[k] !== undefined);
    if (unknown.length) throw new ConfigError(`evaluation options ${unknown.map((k) => `'${k}'`).join(', ')} do not apply to dpo runs (they take maxEval)`);
    const maxLength = Math.min(this.c.maxLength, this.model.maxPositions ?? Infinity);
    let pairs: TokenizedPair[], reference: Float32Array | undefined, labels: boolean[] | null;
    if ((split === 'validation' || split === 'test') && this.data.pairs.train.length) {
      pairs = this.data.pairs[split];
      reference = this.reference[split];
      labels = this.data.labels?.[split] ?? null;
    } else {
      ({ pairs, labels } = await this.examplesOf(split, maxLength));
    }
    if (opts.maxEval !== undefined) {
      pairs = pairs.slice(0, opts.maxEval);
      labels = labels?.slice(0, pairs.length) ?? null;
      reference = reference?.slice(0, 2 * pairs.length);
    }
    if (pairs.length === 0) throw new DatasetError(`'${split}' has no preference ${labels ? 'example' : 'pair'} with an answer token within maxLength ${maxLength}`);
    const policy = await this.logProbs(pairs);
    if (!this.referenceFree) reference ??= await this.baseLogProbs(pairs);
    return this.scores(pairs, policy, reference ?? null, labels);
  }

  /** The pairs (KTO: examples) of a split re-read from the files autoglm.json names, or of a file; tokenized. */
  private async examplesOf(split: string, maxLength: number): Promise<{ pairs: TokenizedPair[]; labels: boolean[] | null }> {
    const kto = this.c.dpoLossType === 'kto';
    const encode = async (read: <T>(r: (f: string, s: BadLineSink) => Promise<T[]>) => Promise<T[]>) => {
      if (kto) return tokenizeUnpaired(null, unpaired(await read(readUnpairedFile)), this.tokenizer, this.template, maxLength, split, this.c.seed);
      return { pairs: tokenizePairs(null, await read(readPreferenceFile), this.tokenizer, this.template, maxLength, split), labels: null };
    };
    if (split !== 'validation' && split !== 'test') return encode((r) => r(split, new BadLineSink('error')));
    const info = this.dataInfo;
    if (!info) throw new ConfigError(`this DPO run's folder does not say which data it was trained on; evaluate it on a preference file instead of '${split}'`);
    if (split === 'test' && !info.testDataset) throw new ConfigError(`this DPO run had no test file (testDataset); evaluate it on 'validation' or on a preference file`);
    return encode(async (r) => (await loadSplitsWith({ ...info, seed: this.c.seed, onBadLine: 'skip' }, r))[split]);
  }

  /** Reference log-probabilities of a loaded run: the base model's. */
  private async baseLogProbs(pairs: readonly TokenizedPair[]): Promise<Float32Array> {
    if (this.lora) {
      this.lora.disableAdapters();
      try {
        return await this.logProbs(pairs);
      } finally {
        this.lora.enableAdapters();
      }
    }
    return this.logProbs(pairs, await loadDecoder(this.baseName, 'dpo'));
  }
}

/** The losses that take labelSmoothing (the label noise ε). */
const SMOOTHED_LOSSES: readonly string[] = ['sigmoid', 'simpo', 'robust', 'exo_pair'];

export const dpoTask: TaskDefinition = {
  name: 'dpo',
  description: 'preference tuning of a decoder on chosen / rejected answers (DPO, IPO, SLiC hinge against the initial model; SimPO, ORPO without one) or on desirable / undesirable ones (KTO)',
  refuses: {
    ...CAUSAL_LM_REFUSES,
    datasetFormat: "task 'dpo' reads preference records ('prompt', 'chosen', 'rejected'); datasetFormat selects the record shape of task 'sft'",
    completionOnlyLoss: "task 'dpo' always scores the answers only (the prompt is shared by both sides of a pair)",
    packing: SFT_ONLY.packing!,
  },
  monitors: ['val_loss', 'val_accuracy'],
  dataParallel: true,
  check: (c) => {
    checkCausalLM(c, 'dpo');
    if (c.labelSmoothing >= 0.5) throw new ConfigError(`config key 'labelSmoothing' is ${c.labelSmoothing}: with task 'dpo' it is conservative DPO's epsilon, the share of pairs taken to be mislabelled; expected a value below 0.5`);
    if (c.labelSmoothing > 0 && !SMOOTHED_LOSSES.includes(c.dpoLossType)) {
      throw new ConfigError(`config key 'labelSmoothing' is ${c.labelSmoothing}: with task 'dpo' it is the share of pairs taken to be mislabelled, which applies to dpoLossType ${SMOOTHED_LOSSES.map((l) => `'${l}'`).join(', ')}, not '${c.dpoLossType}'`);
    }
    if (!isDefaultValue('simpoGamma', c.simpoGamma) && c.dpoLossType !== 'simpo') {
      throw new ConfigError(`config key 'simpoGamma' is ${c.simpoGamma}: it is SimPO's target margin, which applies to dpoLossType 'simpo', not '${c.dpoLossType}'`);
    }
    for (const k of ['desirableWeight', 'undesirableWeight'] as const) {
      if (!isDefaultValue(k, c[k]) && c.dpoLossType !== 'kto') throw new ConfigError(`config key '${k}' is ${c[k]}: it weighs KTO's examples, which applies to dpoLossType 'kto', not '${c.dpoLossType}'`);
    }
    if (c.rpoAlpha > 0 && c.dpoLossType === 'kto') {
      throw new ConfigError(`config key 'rpoAlpha' is ${c.rpoAlpha}: RPO's NLL term is on the chosen answers of pairs; dpoLossType 'kto' has unpaired examples`);
    }
    if (c.rpoAlpha > 0 && c.dpoLossType === 'orpo') {
      throw new ConfigError(`config key 'rpoAlpha' is ${c.rpoAlpha}: dpoLossType 'orpo' adds the chosen answers' NLL with weight 1 itself (set the odds-ratio term's weight with dpoBeta)`);
    }
  },
  create: (ctx, args) => DpoTask.create(ctx, args),
  load: (ctx, dir, info) => DpoTask.load(ctx, dir, info),
};
