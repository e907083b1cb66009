/**
 * Causal-LM fine-tuning (config `task: 'causal-lm'`): a Hugging Face decoder (gpt2, llama, qwen2, mistral, glm)
 * trained on texts with the shifted next-token loss, padding ignored, with LoRA or full fine-tuning, and
 * evaluated by perplexity = exp(mean next-token NLL over every predicted token).
 *
 * Texts come from a .txt file (one text per line), or a JSONL/JSON/CSV file's `textField`; missing splits are
 * carved from the training texts with a seeded shuffle. The optimizer, schedule, clipping, precision policy and
 * the non-finite-step guard are the classification loop's.
 */
import { Tensor } from '../tensor/tensor.js';
import { noGrad } from '../tensor/autograd.js';
import { autocast } from '../tensor/precision.js';
import { Rng } from '../backend/rng.js';
import { readFileSync, existsSync } from 'node:fs';
import { DatasetError, ConfigError } from '../errors.js';
import { readRecords } from '../data/readers.js';
import { BadLineSink } from '../data/bad-lines.js';
import { shuffleInPlace } from '../data/split.js';
import { padIds } from '../data/encode.js';
import type { BadLine } from '../data/types.js';
import { causalLMLoss, causalLMLossFromHidden, lmLabels, IGNORE_INDEX } from '../models/hf/heads.js';
import type { CausalLM } from '../models/hf/family.js';
import type { HFTokenizer } from '../models/hf/tokenizer.js';

export interface TextSplits {
  name: string;
  train: string[];
  validation: string[];
  test: string[];
  skipped: BadLine[];
}

/** Texts of one file: a .txt file's non-empty lines, or the `field` of each record of a JSONL/JSON/CSV file. */
export function readTexts(file: string, field: string, sink: BadLineSink): string[] {
  if (!existsSync(file)) throw new DatasetError(`dataset file '${file}' does not exist`);
  if (file.endsWith('.txt')) return readFileSync(file, 'utf8').split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
  const out: string[] = [];
  for (const r of readRecords(file, sink)) {
    const v = (r.value as Record<string, unknown> | null)?.[field];
    if (typeof v !== 'string') sink.report(r.file, r.line, `field '${field}' is ${v === undefined ? 'missing' : `not a string (${typeof v})`}`);
    else if (v.length > 0) out.push(v);
  }
  return out;
}

export function loadTextSplits(spec: { dataset: string; evalDataset?: string; testDataset?: string; textField?: string; onBadLine?: 'skip' | 'error'; seed: number;
  validationFraction?: number; maxTrain?: number; maxEval?: number }): TextSplits {
  const sink = new BadLineSink(spec.onBadLine ?? 'error');
  const field = spec.textField ?? 'text';
  let train = readTexts(spec.dataset, field, sink);
  let validation = spec.evalDataset ? readTexts(spec.evalDataset, field, sink) : [];
  const test = spec.testDataset ? readTexts(spec.testDataset, field, sink) : [];
  if (!spec.evalDataset) {
    const shuffled = shuffleInPlace([...train], new Rng(spec.seed));
    const nVal = Math.max(1, Math.round(shuffled.length * (spec.validationFraction ?? 0.1)));
    validation = shuffled.slice(0, nVal);
    train = shuffled.slice(nVal);
  }
  const cap = (a: string[], n?: number) => (n !== undefined ? a.slice(0, n) : a);
  if (train.length === 0) throw new DatasetError(`dataset '${spec.dataset}' has no training texts (field '${field}')`);
  return { name: spec.dataset, train: cap(train, spec.maxTrain), validation: cap(validation, spec.maxEval), test: cap(test, spec.maxEval), skipped: sink.skipped };
}

/** Token ids of texts (with the tokenizer's special tokens), cut to maxLength; texts shorter than 2 tokens are dropped. */
export function tokenizeTexts(tok: HFTokenizer, texts: string[], maxLength: number): number[][] {
  return texts.map((t) => tok.encode(t).slice(0, maxLength)).filter((s) => s.length >= 2);
}

/** Right-padded ids and mask (1 = token) of some sequences. */
export function padSequences(seqs: number[][], padId: number): { ids: Tensor; mask: Tensor } {
  const p = padIds(seqs, padId, 2);
  return { ids: new Tensor(p.ids, 'i32', [seqs.length, p.T]), mask: new Tensor(p.mask, 'f32', [seqs.length, p.T]) };
}

/** Mean next-token loss of a batch (padding ignored). */
export function lmBatchLoss(model: CausalLM, seqs: number[][], padId: number): Tensor {
  const { ids, mask } = padSequences(seqs, padId);
  const head = model.headWeights();
  if (head) return causalLMLossFromHidden(model.hidden(ids, { attentionMask: mask }), head, lmLabels(ids, mask));
  return causalLMLoss(model.forward(ids, { attentionMask: mask }), lmLabels(ids, mask));
}

/** Perplexity over texts: exp of the mean NLL of every predicted token (token-weighted across batches). */
export function perplexity(model: CausalLM, seqs: number[][], padId: number, batchSize: number, compute: 'f32' | 'bf16' | 'f16'): { loss: number; perplexity: number; tokens: number } {
  let nll = 0, tokens = 0;
  const wasTraining = model.training;
  model.eval();
  noGrad(() => {
    for (let s = 0; s < seqs.length; s += batchSize) {
      const batch = seqs.slice(s, s + batchSize);
      const predicted = batch.reduce((a, q) => a + q.length - 1, 0);
      const l = autocast(compute, () => lmBatchLoss(model, batch, padId)).item();
      nll += l * predicted;
      tokens += predicted;
    }
  });
  model.train(wasTraining);
  const loss = tokens ? nll / tokens : NaN;
  return { loss, perplexity: Math.exp(loss), tokens };
}

export function requireCausalLM(m: unknown, name: string): CausalLM {
  const c = m as Partial<CausalLM>;
  if (!c || c.task !== 'causal-lm' || typeof c.forward !== 'function') {
    throw new ConfigError(`task 'causal-lm' needs a decoder with an LM head; model '${name}' is not one (load a Hugging Face causal-LM folder: --model path/to/dir)`);
  }
  if (!c.hf?.tokenizer) throw new ConfigError(`model '${name}' has no tokenizer.json; a causal-LM fine-tune needs one`);
  return c as CausalLM;
}

export { IGNORE_INDEX };
