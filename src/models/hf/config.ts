/**
 * `config.json` of a Hugging Face model directory: a typed reader whose every error names the file, the key,
 * the value found and what was expected, and the resolution of `model_type` / `architectures` to one of our
 * architecture families and a task (causal LM, sequence classification, bare backbone).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../../errors.js';

export type HFTask = 'causal-lm' | 'sequence-classification' | 'base';
export const HF_TASKS: readonly HFTask[] = ['causal-lm', 'sequence-classification', 'base'];

type Json = Record<string, unknown>;

/**
 * Upper bounds of structural sizes, far above any published model (Llama 3.1 405B: 126 layers, hidden 16384,
 * intermediate 53248, 128 heads). The model skeleton allocates norms and biases before the checkpoint is read, so
 * these bound what a damaged config.json can make it allocate (512 layers of 2^18-wide biases: about 2 GB at most).
 */
const INT_LIMITS: Record<string, number> = {
  n_layer: 512, num_hidden_layers: 512, n_head: 16384, num_attention_heads: 16384, num_key_value_heads: 16384, num_labels: 1 << 20,
  n_embd: 1 << 16, hidden_size: 1 << 16, head_dim: 1 << 12, n_inner: 1 << 18, intermediate_size: 1 << 18,
};

export class HFConfig {
  constructor(readonly raw: Json, readonly file: string) {}

  static read(dir: string): HFConfig {
    const file = path.join(dir, 'config.json');
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new ConfigError(`cannot read '${file}': ${(e as Error).message}; a Hugging Face model directory needs a config.json`, { cause: e });
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (e) {
      throw new ConfigError(`'${file}' is not valid JSON (${(e as Error).message})`, { cause: e });
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError(`'${file}' holds ${JSON.stringify(raw)?.slice(0, 40)}; expected a JSON object`);
    return new HFConfig(raw as Json, file);
  }

  has(key: string): boolean {
    return this.raw[key] !== undefined && this.raw[key] !== null;
  }

  private fail(key: string, expected: string): never {
    const v = this.raw[key];
    throw new ConfigError(v === undefined
      ? `'${this.file}' has no key '${key}'; expected ${expected}`
      : `'${this.file}' key '${key}' is ${JSON.stringify(v)}; expected ${expected}`);
  }

  /**
   * A positive integer (or a non-negative one with `min` 0) up to a sane bound (INT_LIMITS, else 2^31 - 1), so that
   * a damaged config cannot make the model skeleton build a billion layers; `def` when the key is absent or null.
   */
  int(key: string, def?: number, min = 1): number {
    const max = INT_LIMITS[key] ?? 2 ** 31 - 1;
    if (!this.has(key)) {
      if (def !== undefined) return def;
      this.fail(key, `an integer in [${min}, ${max}]`);
    }
    const v = this.raw[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) this.fail(key, `an integer in [${min}, ${max}]`);
    return v;
  }

  num(key: string, def?: number): number {
    if (!this.has(key)) {
      if (def !== undefined) return def;
      this.fail(key, 'a number');
    }
    const v = this.raw[key];
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(key, 'a finite number');
    return v;
  }

  /** A probability in [0, 1). */
  prob(key: string, def: number): number {
    const v = this.num(key, def);
    if (!(v >= 0 && v < 1)) this.fail(key, 'a probability in [0, 1)');
    return v;
  }

  bool(key: string, def: boolean): boolean {
    if (!this.has(key)) return def;
    const v = this.raw[key];
    if (typeof v !== 'boolean') this.fail(key, 'true or false');
    return v;
  }

  str(key: string, def?: string): string {
    if (!this.has(key)) {
      if (def !== undefined) return def;
      this.fail(key, 'a string');
    }
    const v = this.raw[key];
    if (typeof v !== 'string') this.fail(key, 'a string');
    return v;
  }

  /** One of `choices`. */
  choice<T extends string>(key: string, choices: readonly T[], def: T): T {
    const v = this.str(key, def);
    if (!choices.includes(v as T)) this.fail(key, `one of ${choices.map((c) => `'${c}'`).join(', ')}`);
    return v as T;
  }

  /** A token id or list of ids (eos_token_id is either); [] when absent. */
  ids(key: string): number[] {
    if (!this.has(key)) return [];
    const v = this.raw[key];
    const list = Array.isArray(v) ? v : [v];
    if (list.some((x) => typeof x !== 'number' || !Number.isInteger(x) || x < 0)) this.fail(key, 'a token id or a list of token ids');
    return list as number[];
  }

  /** A nested object (rope_scaling), or null. */
  object(key: string): Json | null {
    if (!this.has(key)) return null;
    const v = this.raw[key];
    if (typeof v !== 'object' || Array.isArray(v)) this.fail(key, 'an object');
    return v as Json;
  }

  /** `architectures[0]`, when present. */
  get architecture(): string | null {
    const a = this.raw.architectures;
    return Array.isArray(a) && typeof a[0] === 'string' ? a[0] : null;
  }

  /** The number of labels of a classifier: num_labels, else the size of id2label, else 2 (HF's default). */
  numLabels(): number {
    if (this.has('num_labels')) return this.int('num_labels');
    const m = this.raw.id2label;
    if (m && typeof m === 'object') return Object.keys(m).length;
    return 2;
  }
}

/** The task a checkpoint's `architectures[0]` names (GPT2LMHeadModel -> causal-lm), or null when unknown. */
export function taskOfArchitecture(arch: string | null): HFTask | null {
  if (!arch) return null;
  if (/(ForCausalLM|LMHeadModel)$/.test(arch)) return 'causal-lm';
  if (/ForSequenceClassification$/.test(arch)) return 'sequence-classification';
  if (/(Model|ForPreTraining|ForMaskedLM)$/.test(arch)) return 'base';
  return null;
}
