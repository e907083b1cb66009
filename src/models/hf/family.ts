/**
 * What every Hugging Face architecture folder provides (an `HFFamily`: config parsing, a model builder per
 * task, the key conventions of its checkpoints), the model interfaces the heads and the generator program
 * against (`Backbone`, `CausalLM`), and the registry of families by `model_type` (a duplicate throws).
 */
import type { HeadWeights } from '../../peft/quant.js';
import type { Tensor } from '../../tensor/tensor.js';
import { Module } from '../../nn/module.js';
import { ConfigError } from '../../errors.js';
import type { HFConfig, HFTask } from './config.js';
import type { KVCache } from './layers.js';
import type { HFTokenizer } from './tokenizer.js';

export interface ForwardOptions {
  /** (B, T) with 1 at tokens and 0 at padding (padded keys are not attended to); with a cache, (B, past + T). */
  attentionMask?: Tensor | null;
  /** (B, T) segment ids (BERT). */
  tokenTypeIds?: Tensor | null;
  /**
   * (B, T) i32 position of each token (decoders); default 0..T-1 after the cache. Packed sequences restart
   * positions at 0 in each document.
   */
  positionIds?: Tensor | null;
  /**
   * (B, T) packed-document id of each token (decoders): a token attends only to earlier tokens of its own
   * document. Padding in a packed row is a document of its own; no attentionMask is needed with it.
   */
  documentIds?: Tensor | null;
  /** Keys and values of earlier positions (decoders): the new ids continue them, and the cache is extended. */
  cache?: KVCache | null;
}

/** What the loader records about a model that came from (or goes to) a Hugging Face directory. */
export interface HFInfo {
  family: string;
  task: HFTask;
  /** config.json as read (unknown keys kept, so that a save writes them back). */
  config: Record<string, unknown>;
  tokenizer: HFTokenizer | null;
  /** generation_config.json, when the directory had one. */
  generationConfig: Record<string, unknown> | null;
  /** Where it was loaded from. */
  source: string | null;
}

/** A top-level model of a Hugging Face architecture: a Module whose parameter names are the checkpoint keys. */
export abstract class HFModel extends Module {
  hf: HFInfo | null = null;
  /**
   * NEFTune (Jain et al. 2023; transformers' `neftune_noise_alpha`): in training mode, the token embeddings get
   * uniform noise in [-a, a], a = alpha / sqrt(T * hidden) for a (B, T) batch, before positions are added; 0 = off.
   * A backbone's forward reads its own (a causal LM's is `model.backbone.neftuneAlpha`).
   */
  neftuneAlpha = 0;
  abstract readonly task: HFTask;
  /** The `architectures[0]` name that a save writes (GPT2LMHeadModel, LlamaForCausalLM...). */
  abstract readonly architectureName: string;
}

/** A transformer body: ids (B, T) -> hidden states (B, T, D). */
export interface Backbone extends Module {
  readonly hiddenSize: number;
  /** NEFTune's alpha (HFModel.neftuneAlpha): noise on the token embeddings in training mode; 0 = off. */
  neftuneAlpha: number;
  forward(ids: Tensor, opts?: ForwardOptions): Tensor;
}

/** A decoder with its LM head: ids (B, T) -> logits (B, T, vocab). */
export interface CausalLM extends HFModel {
  readonly vocabSize: number;
  readonly numLayers: number;
  /** The longest sequence the position scheme allows (learned positions), or null (rotary). */
  readonly maxPositions: number | null;
  readonly backbone: Backbone;
  forward(ids: Tensor, opts?: ForwardOptions): Tensor;
  /** The final hidden states (B, T, hidden) that the LM head reads. */
  hidden(ids: Tensor, opts?: ForwardOptions): Tensor;
  /** The LM head's weights when it is a plain (or quantised, or tied) layer; null for an adapted head. */
  headWeights(): HeadWeights | null;
}

export function isCausalLM(m: Module): m is CausalLM {
  return m instanceof HFModel && m.task === 'causal-lm';
}

export interface BuildOptions {
  task: HFTask;
  /** Sequence classification: pooling of the hidden states ('cls' | 'mean' | 'last'); the family's default if unset. */
  pooling?: Pooling;
  numLabels?: number;
}

export type Pooling = 'cls' | 'mean' | 'last';

export interface HFFamily<C = unknown> {
  /** Our name for the family ('gpt2', 'llama', 'bert', 'glm'). */
  readonly name: string;
  /** The `model_type` values it loads ('llama', 'qwen2', 'mistral'). */
  readonly modelTypes: readonly string[];
  /** The `architectures[0]` names it recognises when `model_type` is absent. */
  readonly architectures: readonly string[];
  /** The task when neither the caller nor `architectures` says. */
  readonly defaultTask: HFTask;
  /** The backbone's attribute name inside task models ('transformer', 'model', 'bert'): keys of a bare backbone lack it. */
  readonly basePrefix: string;
  /** Checkpoint keys that are buffers, not parameters (GPT-2's `attn.bias`, BERT's `position_ids`). */
  readonly ignoredKeys: readonly RegExp[];
  parseConfig(c: HFConfig): C;
  build(c: C, opts: BuildOptions): HFModel;
  /** A checkpoint tensor in the model's layout (GPT-2's Conv1D weights are transposed); identity when absent. */
  toModel?(key: string, t: Tensor): Tensor;
  /** The inverse of `toModel`, for saving (and for comparing gradients with a reference). */
  toCheckpoint?(key: string, t: Tensor): Tensor;
}

const families = new Map<string, HFFamily<unknown>>();
const byModelType = new Map<string, HFFamily<unknown>>();

export function registerFamily<C>(f: HFFamily<C>): void {
  if (families.has(f.name)) throw new ConfigError(`architecture family '${f.name}' is already registered`);
  for (const t of f.modelTypes) {
    if (byModelType.has(t)) throw new ConfigError(`model_type '${t}' is already registered by family '${byModelType.get(t)?.name}'`);
  }
  families.set(f.name, f as HFFamily<unknown>);
  for (const t of f.modelTypes) byModelType.set(t, f as HFFamily<unknown>);
}

export function supportedModelTypes(): string[] {
  return [...byModelType.keys()].sort();
}

export function familyByName(name: string): HFFamily<unknown> {
  const f = families.get(name);
  if (!f) throw new ConfigError(`unknown architecture family '${name}'; expected one of ${[...families.keys()].sort().join(', ')}`);
  return f;
}

/** The family of a config: by `model_type`, else by `architectures[0]`. */
export function familyOf(c: HFConfig): HFFamily<unknown> {
  const supported = supportedModelTypes().join(', ');
  if (c.has('model_type')) {
    const t = c.str('model_type');
    const f = byModelType.get(t);
    if (!f) throw new ConfigError(`'${c.file}' key 'model_type' is '${t}', which is not supported; expected one of ${supported}`);
    return f;
  }
  const arch = c.architecture;
  for (const f of families.values()) if (arch && f.architectures.includes(arch)) return f;
  throw new ConfigError(`'${c.file}' has no key 'model_type'${arch ? ` and architecture '${arch}' is not recognised` : ' and no architectures'}; expected a model_type among ${supported}`);
}
