/**
 * Task 'sft': supervised fine-tuning of a Hugging Face decoder (gpt2, llama, qwen2, mistral, glm) on chat or
 * instruction data, as TRL's SFTTrainer does it, on the one training loop (loop.ts: accumulation, guarded update,
 * schedules, evaluation, early stopping, checkpoints and exact resume).
 *
 * What the task brings (the pieces live in src/sft): records in the shapes the field uses (chat messages,
 * ShareGPT, Alpaca, prompt/completion, text; JSONL, JSON, CSV, Parquet); the model's chat template
 * (tokenizer_config.json, chat_template.jinja, or config `chatTemplate`; ChatML when there is none); the loss on
 * assistant turns / completions only (`completionOnlyLoss`, default true); padded batches, or packed rows
 * (`packing`) whose examples are kept apart by position ids and a per-document causal mask; validation / test
 * loss and perplexity over the scored tokens; the adapter in PEFT's layout (or the whole model) with the tokenizer
 * files and chat template next to it; greedy sample answers to validation prompts in samples.jsonl; and
 * `predict` (AutoGLMTrainer.predict) that answers user messages through the chat template.
 */
import path from 'node:path';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { autocast } from '../tensor/precision.js';
import { ConfigError, DatasetError, AutoGLMError } from '../errors.js';
import { manualSeed } from '../nn/init.js';
import { saveAdapter, loadAdapter, LoraModel } from '../peft/index.js';
import { quantizeRunBase } from './setup.js';
import type { Sampler } from '../data/index.js';
import { causalLMLoss, causalLMLossFromHidden } from '../models/hf/heads.js';
import { generate } from '../models/hf/generate.js';
import type { CausalLM } from '../models/hf/family.js';
import type { HFTokenizer } from '../models/hf/tokenizer.js';
import { loadSftSplits, readSftFile } from '../sft/dataset.js';
import { BadLineSink } from '../data/bad-lines.js';
import { chatTemplateOf, type ChatTemplate } from '../sft/template.js';
import { tokenizeAll, type TokenizedExample } from '../sft/tokenize.js';
import { packRows, packedBatch, padBatch, type SftBatch } from '../sft/batch.js';
import { configEos, generateChat } from '../sft/chat.js';
import type { ChatMessage, ChatGenerationOptions, ChatPrediction, SftEvalOptions, SftEvalResult, SftExample } from '../sft/types.js';
import type { RunInfo } from './outputs.js';
import { DPO_ONLY, evalBatchOf, type TrainerConfig } from './config.js';
import { CAUSAL_LM_REFUSES, DECODER_KEEP_PRECISION, DecoderTask, checkCausalLM, loadDecoder, samplerOf, decoderForTraining, perplexity, requireCausalLM, shardedPerplexity } from './causal-lm.js';
import { noteSkipped, type EvalSplit, type FinetuneArgs, type MicroBatchLoss, type TaskContext, type TaskDefinition, type TaskEval, type TrainingTask } from './task.js';
import type { EvalPace } from './pace.js';

interface SftData {
  name: string;
  train: TokenizedExample[];
  validation: TokenizedExample[];
  test: TokenizedExample[];
  /** Validation and test examples as read (sample generations, exact match). */
  validationExamples: SftExample[];
  testExamples: SftExample[];
}

/** Where a run's data came from (autoglm.json), so that a loaded run can evaluate on its own splits again. */
interface SftDataInfo {
  dataset: string;
  evalDataset?: string;
  testDataset?: string;
  textField?: string;
  validationFraction?: number;
  maxTrain?: number;
  maxEval?: number;
}

export type { ChatPrediction };

/** The chat template of config `chatTemplate` (its text, or a file), else the model's. */
export function templateFor(tok: HFTokenizer, dir: string | null, c: TrainerConfig): ChatTemplate {
  let text = c.chatTemplate;
  if (text && !text.includes('{') && (text.endsWith('.jinja') || existsSync(text))) {
    try {
      text = readFileSync(text, 'utf8');
    } catch (e) {
      throw new ConfigError(`config key 'chatTemplate': cannot read '${c.chatTemplate}': ${(e as Error).message}`, { cause: e });
    }
  }
  return chatTemplateOf(tok, dir, { template: text });
}

/** The prompt (every message before the last assistant turn) and the reference answer of an example, or null. */
function promptOf(e: SftExample): { messages?: SftExample & { kind: 'conversation' }; prompt?: string; reference: string; chat: boolean } | null {
  if (e.kind === 'conversation') {
    const last = e.messages.map((m) => m.role).lastIndexOf('assistant');
    if (last < 1) return null;
    return { messages: { kind: 'conversation', messages: e.messages.slice(0, last) }, reference: e.messages[last].content, chat: true };
  }
  if (e.kind === 'prompt-completion') return { prompt: e.prompt, reference: e.completion, chat: false };
  return null;
}

/** A prompt to answer: messages through the chat template, or plain text. */
export interface ChatPrompt {
  chat: boolean;
  messages?: ChatMessage[];
  prompt?: string;
}

/** The model's answer to a prompt (greedy unless opts.doSample), up to its end-of-turn or eos token. */
export function answerChat(model: CausalLM, tok: HFTokenizer, template: ChatTemplate, p: ChatPrompt, opts: ChatGenerationOptions): string {
  if (p.chat) return generateChat(model, tok, template, p.messages!, opts).text;
  const ids = tok.encode(p.prompt!);
  const gen = generate(model, ids, { ...opts, eosTokenId: configEos(model) });
  return tok.decode(gen.slice(ids.length), { skipSpecialTokens: true });
}

/** Runs fn with the model in eval mode, then puts its mode back. */
function inEval<T>(model: CausalLM, fn: () => T): T {
  const wasTraining = model.training;
  model.eval();
  try {
    return fn();
  } finally {
    model.train(wasTraining);
  }
}

/** Greedy answers to the first n prompts (validation), beside their references: a run's samples.jsonl. */
export function sampleAnswers(model: CausalLM, tok: HFTokenizer, template: ChatTemplate, prompts: ReadonlyArray<ChatPrompt & { reference: string }>, n: number): Array<Record<string, unknown>> {
  return inEval(model, () => prompts.slice(0, n).map((p) => {
    const maxNewTokens = Math.min(256, 2 * tok.encode(p.reference, { addSpecialTokens: false }).length + 8);
    const generated = answerChat(model, tok, template, p, { maxNewTokens });
    return { ...(p.chat ? { messages: p.messages } : { prompt: p.prompt }), reference: p.reference, generated };
  }));
}

/** Each text as a user message, answered through the chat template (greedy unless opts.doSample): `predict` of tasks sft and dpo. */
export function predictChat(model: CausalLM, tok: HFTokenizer, template: ChatTemplate, texts: string[], opts: ChatGenerationOptions): ChatPrediction[] {
  return inEval(model, () => texts.map((prompt) => ({ prompt, completion: answerChat(model, tok, template, { chat: true, messages: [{ role: 'user', content: prompt }] }, { maxNewTokens: 128, ...opts }) })));
}

/** A decoder run's outputs (tasks sft and dpo): the adapter in PEFT's layout with the tokenizer files and chat template beside it, or the whole model. */
export async function saveChatOutputs(model: CausalLM, lora: LoraModel | null, tokenizer: HFTokenizer, template: ChatTemplate, dir: string): Promise<Record<string, string>> {
  const config = { ...tokenizer.config, chat_template: template.source };
  const { HFTokenizer } = await import('../models/hf/tokenizer.js');
  const tok = new HFTokenizer(tokenizer.json, config);
  if (lora) {
    const adapter = path.dirname(saveAdapter(lora, path.join(dir, 'adapter')).weights);
    tok.save(adapter);
    return { adapter };
  }
  const { saveHFModel } = await import('../models/hf/save.js');
  const hf = model.hf as NonNullable<CausalLM['hf']>;
  model.hf = { ...hf, tokenizer: tok };
  try {
    saveHFModel(model, path.join(dir, 'model'));
  } finally {
    model.hf = hf;
  }
  return { model: path.join(dir, 'model') };
}

/** A finished decoder run's model (base + its adapter, or the saved model), tokenizer and chat template. */
export async function loadChatRun(ctx: TaskContext, dir: string, info: RunInfo, task: string): Promise<{ model: CausalLM; lora: LoraModel | null; tokenizer: HFTokenizer; template: ChatTemplate }> {
  const { loadHFModelFromDir } = await import('../models/hf/loader.js');
  const adapter = path.join(dir, 'adapter');
  let model: CausalLM, lora: LoraModel | null = null;
  if (existsSync(path.join(adapter, 'adapter_config.json'))) {
    model = await loadDecoder(info.model, task, ctx.config);
    lora = new LoraModel(model, { targetModules: ctx.config.loraTargets }, 'scratch');
    loadAdapter(lora, adapter, 'default');
    lora.deleteAdapter('scratch');
    quantizeRunBase(model, ctx.config, DECODER_KEEP_PRECISION); // the base it was trained on (decoderForTraining's)
  } else {
    model = requireCausalLM(loadHFModelFromDir(path.join(dir, 'model')), path.join(dir, 'model'), task);
  }
  const saved = existsSync(path.join(adapter, 'tokenizer.json')) ? (await import('../models/hf/tokenizer.js')).HFTokenizer.fromDir(adapter) : null;
  const tokenizer = saved ?? (model.hf?.tokenizer as HFTokenizer);
  const template = templateFor(tokenizer, existsSync(adapter) ? adapter : model.hf?.source ?? null, ctx.config);
  return { model, lora, tokenizer, template };
}

export class SftTask extends DecoderTask implements TrainingTask<number[]> {
  readonly lora: LoraModel | null;
  protected readonly sampler: Sampler | null;
  private readonly padId: number;
  /** Packed rows (indices into data.train), when packing. */
  private readonly rows: number[][] | null;
  private tokens = 0;
  private scored = 0;
  private trainStart = 0;
  private evalSeconds = 0;
  private tokensPerSecond = NaN;
  /** The run's data files and options (null: a run folder from before they were recorded). */
  private dataInfo: SftDataInfo | null = null;

  private constructor(readonly name: string, protected readonly ctx: TaskContext, readonly model: CausalLM, readonly baseName: string,
    readonly tokenizer: HFTokenizer, readonly template: ChatTemplate, private readonly data: SftData, lora: LoraModel | null | undefined) {
    super();
    const c = ctx.config;
    this.lora = lora === undefined ? decoderForTraining(model, ctx, baseName) : lora;
    model.train();
    this.padId = tokenizer.padTokenId ?? 0;
    const maxLength = Math.min(c.maxLength, model.maxPositions ?? Infinity);
    this.rows = c.packing && data.train.length ? packRows(data.train.map((e) => e.ids.length), maxLength) : null;
    const lengths = this.rows ? this.rows.map((r) => r.reduce((a, i) => a + data.train[i].ids.length, 0)) : data.train.map((e) => e.ids.length);
    this.sampler = samplerOf(lengths, c, c.lengthBucketing && !this.rows);
    // Packed rows are filled to maxLength by best fit, so bucketing them saves no padding; and BucketSampler, which
    // orders rows of equal length by index, then batches the same neighbours together in every epoch (measured on
    // scripts/sft-synthetic.ts --packing: 70.4% exact match against 100% with rows drawn uniformly).
    if (this.rows && c.lengthBucketing) ctx.note('packing: lengthBucketing does not apply to packed rows (they are filled to maxLength); rows are drawn uniformly');
  }

  static async create(ctx: TaskContext, args: FinetuneArgs): Promise<SftTask> {
    const c = ctx.config, spec = ctx.modelSpec;
    if (typeof spec !== 'string') throw new ConfigError(`task 'sft' takes a Hugging Face decoder folder or Hub id as 'model'`);
    if (typeof args.dataset !== 'string') throw new ConfigError(`task 'sft' takes a dataset file as 'dataset' (.jsonl, .json, .csv or .parquet with chat messages, ShareGPT conversations, Alpaca, prompt/completion or text records)`);
    manualSeed(c.seed);
    const model = await loadDecoder(spec, 'sft', c);
    const tok = model.hf?.tokenizer as HFTokenizer;
    const template = templateFor(tok, model.hf?.source ?? null, c);
    const splits = await loadSftSplits({
      dataset: args.dataset, evalDataset: args.evalDataset, testDataset: args.testDataset, format: c.datasetFormat, textField: args.textField,
      onBadLine: args.onBadLine, seed: c.seed, validationFraction: args.validationFraction, maxTrain: args.maxTrain, maxEval: args.maxEval,
    });
    noteSkipped(ctx, splits.skipped, 'record');
    if (splits.train.some((e) => e.kind === 'conversation')) ctx.note(`chat template: ${template.origin}`);
    const maxLength = Math.min(c.maxLength, model.maxPositions ?? Infinity);
    const opts = { maxLength, completionOnlyLoss: c.completionOnlyLoss };
    const enc = (xs: SftExample[], split: string) => {
      const r = tokenizeAll(xs, tok, template, opts);
      if (r.dropped) ctx.note(`${split}: dropped ${r.dropped} example(s) with no token to score within maxLength ${maxLength}`);
      return r.examples;
    };
    const data: SftData = { name: splits.name, train: enc(splits.train, 'train'), validation: enc(splits.validation, 'validation'), test: enc(splits.test, 'test'),
      validationExamples: splits.validation, testExamples: splits.test };
    if (data.train.length === 0) throw new DatasetError(`'${splits.name}' has no training example with a token to score within maxLength ${maxLength}`);
    const t = new SftTask('sft', ctx, model, spec, tok, template, data, undefined);
    t.dataInfo = { dataset: args.dataset, evalDataset: args.evalDataset, testDataset: args.testDataset, textField: args.textField,
      validationFraction: args.validationFraction, maxTrain: args.maxTrain, maxEval: args.maxEval };
    return t;
  }

  /** A finished run rebuilt from its folder (adapter or model), for predict. */
  static async load(ctx: TaskContext, dir: string, info: RunInfo): Promise<SftTask> {
    const { model, lora, tokenizer, template } = await loadChatRun(ctx, dir, info, 'sft');
    const empty: SftData = { name: info.dataset, train: [], validation: [], test: [], validationExamples: [], testExamples: [] };
    const t = new SftTask('sft', ctx, model, info.model, tokenizer, template, empty, lora);
    t.dataInfo = (info as RunInfo & { sftData?: SftDataInfo }).sftData ?? null;
    model.eval();
    return t;
  }

  /** The padded (or packed) batch of sampler indices. */
  batch(idx: number[]): SftBatch {
    const train = this.data.train;
    if (this.rows) return packedBatch(idx.map((r) => this.rows![r].map((i) => train[i])), this.padId);
    return padBatch(idx.map((i) => train[i]), this.padId);
  }

  /**
   * The mean loss over the scored tokens of the batch. Data-parallel: every rank draws the same global batch, trains
   * on its block of rows, and returns its tokens' share of the global mean (its mean x its scored tokens / the global
   * batch's), so that the gradients summed over ranks are the global batch's.
   */
  loss(idx: number[]): MicroBatchLoss {
    if (this.trainStart === 0) this.trainStart = performance.now();
    const dp = this.ctx.dp;
    const global = this.batch(idx);
    this.tokens += global.tokens;
    this.scored += global.scored;
    const mine = dp ? dp.shard(idx) : idx;
    if (mine.length === 0) return { loss: null };
    const b = dp ? this.batch(mine) : global;
    if (dp && b.scored === 0) return { loss: null };
    const opts = { attentionMask: b.attentionMask, positionIds: b.positionIds, documentIds: b.documentIds };
    const ls = { labelSmoothing: this.c.labelSmoothing };
    const loss = autocast(this.ctx.compute, () => {
      const head = this.model.headWeights();
      return head ? causalLMLossFromHidden(this.model.hidden(b.ids, opts), head, b.labels, ls) : causalLMLoss(this.model.forward(b.ids, opts), b.labels, ls);
    });
    return { loss: dp ? loss.scale(b.scored / global.scored) : loss };
  }

  async evaluate(split: EvalSplit, pace?: EvalPace): Promise<TaskEval | null> {
    const seqs = this.data[split];
    if (seqs.length === 0) return null;
    const t0 = performance.now();
    // data-parallel: each rank scores every W-th sequence; the token-weighted sums are added over ranks
    const r = await shardedPerplexity(this.ctx.dp, this.model, seqs, this.padId, evalBatchOf(this.c, true), this.ctx.compute, pace);
    this.evalSeconds += (performance.now() - t0) / 1e3;
    return r;
  }

  state(): Record<string, unknown> {
    return { sampler: this.sampler?.state() ?? null, tokens: this.tokens, scored: this.scored };
  }

  load(state: Record<string, unknown>, where: string): void {
    if (!state || typeof state['sampler'] !== 'object' || state['sampler'] === null) throw new AutoGLMError(`checkpoint '${where}' has no sampler state for task '${this.name}'`);
    this.sampler?.load(state['sampler'] as Record<string, unknown>);
    this.tokens = Number(state['tokens'] ?? 0);
    this.scored = Number(state['scored'] ?? 0);
  }

  /** Training throughput: tokens (not padding) per second of training time, evaluations excluded. */
  finish(): void {
    const s = (performance.now() - this.trainStart) / 1e3 - this.evalSeconds;
    this.tokensPerSecond = this.trainStart && s > 0 ? this.tokens / s : NaN;
  }

  runInfo(): RunInfo {
    return { model: this.baseName, method: this.c.method, labels: [], config: this.c, dataset: this.data.name, ...(this.dataInfo ? { sftData: this.dataInfo } : {}) } as RunInfo;
  }

  /** The adapter (PEFT layout, with the tokenizer files and chat template beside it) or the model; sft.json; samples.jsonl. */
  async saveOutputs(dir: string): Promise<Record<string, string>> {
    const out = await saveChatOutputs(this.model, this.lora, this.tokenizer, this.template, dir);
    out.summary = path.join(dir, 'sft.json');
    writeFileSync(out.summary, `${JSON.stringify({
      examples: { train: this.data.train.length, validation: this.data.validation.length, test: this.data.test.length },
      packing: this.c.packing, rows: this.rows?.length ?? null, completion_only_loss: this.c.completionOnlyLoss, chat_template: this.template.origin,
      tokens: this.tokens, scored_tokens: this.scored, tokens_per_s: Number.isFinite(this.tokensPerSecond) ? Math.round(this.tokensPerSecond) : null,
    }, null, 2)}\n`);
    const samples = this.samples(this.c.sampleGenerations);
    if (samples.length) {
      out.samples = path.join(dir, 'samples.jsonl');
      writeFileSync(out.samples, samples.map((s) => JSON.stringify(s)).join('\n') + '\n');
    }
    return out;
  }

  /** Greedy answers to the first n validation prompts, beside their references. */
  samples(n: number): Array<Record<string, unknown>> {
    const prompts = this.data.validationExamples.map(promptOf).filter((p) => p !== null).map((p) => ({ chat: p.chat, messages: p.messages?.messages, prompt: p.prompt, reference: p.reference }));
    return sampleAnswers(this.model, this.tokenizer, this.template, prompts, n);
  }

  /** Each text as a user message, answered through the chat template (greedy unless opts.doSample). */
  async predict(texts: string[], opts: ChatGenerationOptions = {}): Promise<ChatPrediction[]> {
    return predictChat(this.model, this.tokenizer, this.template, texts, opts);
  }

  /** The model's answer to a prompt: a conversation through the chat template, or a plain-text prompt. */
  private answer(p: ChatPrompt, opts: ChatGenerationOptions): string {
    return answerChat(this.model, this.tokenizer, this.template, p, opts);
  }

  /** The examples of a split of the run's data (re-read from the files autoglm.json names when the run was loaded), or of a dataset file. */
  private async examplesOf(split: EvalSplit | string): Promise<{ examples: SftExample[]; name: string }> {
    if (split !== 'validation' && split !== 'test') {
      const sink = new BadLineSink('error');
      return { examples: await readSftFile(split, sink, this.c.datasetFormat, this.dataInfo?.textField ?? 'text'), name: split };
    }
    const have = split === 'validation' ? this.data.validationExamples : this.data.testExamples;
    if (have.length || this.data.train.length) return { examples: have, name: `${this.data.name} (${split})` };
    if (!this.dataInfo) throw new ConfigError(`this SFT run's folder does not say which data it was trained on; evaluate it on a dataset file instead of '${split}'`);
    if (split === 'test' && !this.dataInfo.testDataset) throw new ConfigError(`this SFT run had no test file (testDataset); evaluate it on '${split === 'test' ? 'validation' : split}' or on a dataset file`);
    const s = await loadSftSplits({ ...this.dataInfo, format: this.c.datasetFormat, seed: this.c.seed, onBadLine: 'skip' });
    return { examples: s[split], name: `${this.dataInfo.dataset} (${split})` };
  }

  /**
   * Loss and perplexity over the scored tokens of a split or a dataset file (the same tokenization and masking as
   * training); with `exactMatch`, also each prompt answered (greedy by default) and compared with its reference.
   */
  async evaluateOn(split: EvalSplit | string | unknown[], opts: SftEvalOptions = {}): Promise<SftEvalResult> {
    if (typeof split !== 'string') throw new ConfigError(`an SFT run evaluates on 'validation', 'test' or a dataset file (.jsonl, .json, .csv, .parquet), not on classification examples`);
    const { examples: all } = await this.examplesOf(split);
    const examples = opts.maxEval !== undefined ? all.slice(0, opts.maxEval) : all;
    const maxLength = Math.min(this.c.maxLength, this.model.maxPositions ?? Infinity);
    const seqs = tokenizeAll(examples, this.tokenizer, this.template, { maxLength, completionOnlyLoss: this.c.completionOnlyLoss }).examples;
    const r = seqs.length ? await perplexity(this.model, seqs, this.padId, evalBatchOf(this.c, true), this.ctx.compute) : { loss: NaN, perplexity: NaN, tokens: 0 };
    const out: SftEvalResult = { loss: r.loss, perplexity: r.perplexity, tokens: r.tokens, n: seqs.length };
    if (!opts.exactMatch) return out;
    const { exactMatch: _e, maxEval: _m, ...gen } = opts;
    const wasTraining = this.model.training;
    this.model.eval();
    let right = 0, answered = 0;
    const samples: NonNullable<SftEvalResult['samples']> = [];
    try {
      for (const e of examples) {
        const p = promptOf(e);
        if (!p) continue;
        const maxNewTokens = gen.maxNewTokens ?? Math.min(256, 2 * this.tokenizer.encode(p.reference, { addSpecialTokens: false }).length + 8);
        const generated = this.answer({ chat: p.chat, messages: p.messages?.messages, prompt: p.prompt }, { ...gen, maxNewTokens });
        answered++;
        if (generated.trim() === p.reference.trim()) right++;
        if (samples.length < 5) samples.push({ prompt: p.chat ? p.messages!.messages.at(-1)!.content : p.prompt!, reference: p.reference, generated });
      }
    } finally {
      this.model.train(wasTraining);
    }
    if (answered === 0) throw new DatasetError(`exact match needs examples with a reference answer (a conversation ending in an assistant turn, or prompt/completion); '${split}' has none`);
    return { ...out, exact_match: right / answered, answered, samples };
  }
}

export const sftTask: TaskDefinition = {
  name: 'sft',
  description: 'supervised fine-tuning of a decoder on chat / instruction data: chat template, loss on the answers, packing',
  refuses: { ...CAUSAL_LM_REFUSES, ...DPO_ONLY },
  monitors: ['val_loss'],
  dataParallel: true,
  check: (c) => checkCausalLM(c, 'sft'),
  create: (ctx, args) => SftTask.create(ctx, args),
  load: (ctx, dir, info) => SftTask.load(ctx, dir, info),
};
