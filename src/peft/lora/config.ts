/**
 * LoRA configuration: a plain serialisable object, validated when built (a typed error naming the key), with
 * PEFT's names and defaults. `toPeftJson` / `fromPeftJson` map it to and from `adapter_config.json`.
 */
import { z } from 'zod';
import { ConfigError } from '../../errors.js';

const targetSchema = z.union([z.array(z.string().min(1)).min(1), z.string().min(1)]);

export const loraConfigSchema = z.object({
  /** Rank of the update B A. */
  r: z.number().int().positive().default(8),
  /** Scaling numerator: scaling = alpha / r (or alpha / sqrt(r) with useRslora). */
  alpha: z.number().positive().default(8),
  dropout: z.number().min(0).lt(1).default(0),
  /**
   * Which Linear/Embedding modules get adapters: names or dotted-path suffixes (`['q_proj', 'v_proj']`), a
   * regular expression string matched against the full path, or 'all-linear' (every Linear but the output head).
   * When a LoraModel's config names none, it takes PEFT's default for the model's architecture (c_attn on GPT-2,
   * q_proj and v_proj on Llama, query and value on BERT; qkv on this library's own blocks).
   */
  targetModules: targetSchema.default(['qkv']),
  /** Modules trained fully and saved with the adapter (a classifier head). */
  modulesToSave: z.array(z.string().min(1)).default([]),
  bias: z.enum(['none', 'all', 'lora_only']).default('none'),
  /** PEFT's default (true): A kaiming-uniform, B zeros; 'gaussian': A ~ N(0, 1/r), B zeros. */
  initLoraWeights: z.union([z.boolean(), z.literal('gaussian')]).default(true),
  useRslora: z.boolean().default(false),
  useDora: z.boolean().default(false),
  /** Layer indices (the integer in the module path) to adapt; all when absent. */
  layersToTransform: z.array(z.number().int().nonnegative()).optional(),
  /** Per-module overrides of r / alpha, keyed by a name suffix or a regular expression. */
  rankPattern: z.record(z.string(), z.number().int().positive()).default({}),
  alphaPattern: z.record(z.string(), z.number().positive()).default({}),
  /**
   * PEFT's `fan_in_fan_out`: the adapted layers are stored (in, out) in the checkpoint (GPT-2's Conv1D). Here those
   * layers are (out, in) Linear layers, and PEFT's lora_A (r, in) and lora_B (out, r) have the same layout for a
   * Conv1D as for a Linear (only PEFT's merge transposes B A), so the flag changes no tensor: it is read from PEFT's
   * files and set, as PEFT sets it, when the adapted layers are GPT-2's Conv1D ones (false elsewhere, with a warning,
   * as PEFT does for a torch Linear).
   */
  fanInFanOut: z.boolean().default(false),
  /** Saved in adapter_config.json. */
  taskType: z.string().default('SEQ_CLS'),
  baseModelNameOrPath: z.string().nullable().default(null),
  /** Seed of the adapter's initialisation. */
  seed: z.number().int().default(0),
}).strict();

export type LoraConfig = z.infer<typeof loraConfigSchema>;
export type LoraConfigInput = z.input<typeof loraConfigSchema>;

/** Validates and fills defaults; errors name the key, the value and what is allowed. */
export function loraConfig(input: LoraConfigInput = {}): LoraConfig {
  const r = loraConfigSchema.safeParse(input);
  if (!r.success) {
    const issue = r.error.issues[0];
    const key = issue.path.join('.') || (issue.code === 'unrecognized_keys' ? issue.keys.join(', ') : '(config)');
    const value = issue.path.length ? JSON.stringify(issue.path.reduce<unknown>((o, k) => (o as Record<string, unknown>)?.[k as string], input)) : '';
    throw new ConfigError(`LoRA config key '${key}'${value ? ` is ${value}` : ''}: ${issue.message}`);
  }
  return r.data;
}

/** The entry in a pattern map that matches a module path (suffix or regular expression), if any. */
export function patternValue<T>(patterns: Record<string, T>, path: string): T | undefined {
  for (const [k, v] of Object.entries(patterns)) {
    if (path === k || path.endsWith(`.${k}`)) return v;
  }
  for (const [k, v] of Object.entries(patterns)) {
    try {
      if (new RegExp(`^(.*\\.)?${k}$`).test(path)) return v;
    } catch { /* not a regular expression */ }
  }
  return undefined;
}

/** adapter_config.json in PEFT's layout. */
export function toPeftJson(c: LoraConfig): Record<string, unknown> {
  return {
    peft_type: 'LORA', task_type: c.taskType, r: c.r, lora_alpha: c.alpha, lora_dropout: c.dropout,
    target_modules: c.targetModules, modules_to_save: c.modulesToSave.length ? c.modulesToSave : null, bias: c.bias,
    use_rslora: c.useRslora, use_dora: c.useDora, init_lora_weights: c.initLoraWeights,
    layers_to_transform: c.layersToTransform ?? null, rank_pattern: c.rankPattern, alpha_pattern: c.alphaPattern,
    base_model_name_or_path: c.baseModelNameOrPath, fan_in_fan_out: c.fanInFanOut, inference_mode: true, revision: null,
    library: 'open-autoglm',
  };
}

/** Reads adapter_config.json (PEFT's keys); unknown PEFT keys that change nothing here are ignored. */
export function fromPeftJson(j: Record<string, unknown>, file: string): LoraConfig {
  if (j.peft_type !== 'LORA') throw new ConfigError(`${file}: peft_type is ${JSON.stringify(j.peft_type)}; only "LORA" is supported`);
  if (j.fan_in_fan_out !== undefined && j.fan_in_fan_out !== null && typeof j.fan_in_fan_out !== 'boolean') {
    throw new ConfigError(`${file}: fan_in_fan_out is ${JSON.stringify(j.fan_in_fan_out)}; expected true or false`);
  }
  const pick = <T>(k: string): T | undefined => (j[k] === null || j[k] === undefined ? undefined : (j[k] as T));
  try {
    return loraConfig({
      r: pick('r'), alpha: pick('lora_alpha'), dropout: pick('lora_dropout'), targetModules: pick('target_modules'),
      modulesToSave: pick('modules_to_save'), bias: pick('bias'), initLoraWeights: pick('init_lora_weights'),
      useRslora: pick('use_rslora'), useDora: pick('use_dora'), layersToTransform: typeof j.layers_to_transform === 'number' ? [j.layers_to_transform] : pick('layers_to_transform'),
      rankPattern: pick('rank_pattern'), alphaPattern: pick('alpha_pattern'), taskType: pick('task_type'),
      baseModelNameOrPath: pick('base_model_name_or_path') ?? null, fanInFanOut: pick('fan_in_fan_out'),
    });
  } catch (e) {
    throw new ConfigError(`${file}: ${(e as Error).message}`, { cause: e });
  }
}
