/**
 * A LoRA adapter (PEFT layout) folded into its base model and written as a complete Hugging Face folder:
 * config.json, model.safetensors, tokenizer.json / tokenizer_config.json (with the chat template), a
 * chat_template.jinja when the base has one (the tokenizer files saved beside the adapter by an SFT run win, so the
 * merged model carries the chat template it was trained with), and generation_config.json (the base's, or one made from config.json's
 * bos / eos / pad ids as transformers' GenerationConfig.from_model_config does). `autoglm generate` and transformers'
 * from_pretrained load it as an ordinary model.
 */
import { copyFileSync, existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CheckpointError, ConfigError } from '../errors.js';
import { loadHFModel, loadHFModelFromDir } from '../models/hf/loader.js';
import { Tensor } from '../tensor/tensor.js';
import { noGrad } from '../tensor/autograd.js';
import { saveHFModel } from '../models/hf/save.js';
import { HFTokenizer } from '../models/hf/tokenizer.js';
import type { HFModel } from '../models/hf/family.js';
import { LoraModel, loadAdapter, readAdapterConfig } from '../peft/index.js';

export interface MergeOptions {
  /** The base model (folder or Hub id); default: the adapter's base_model_name_or_path. */
  base?: string;
  /** Weights' dtype in the merged folder (default 'f32'). */
  dtype?: 'f32' | 'bf16' | 'f16';
}

export interface MergeResult {
  dir: string;
  base: string;
  /** Largest error of re-storing a merged weight in a quantised base (0 for f32). */
  storageError: number;
  /** Largest |logit| difference between base + adapter and the saved folder reloaded, on a probe sequence. */
  maxLogitDiff: number;
  model: HFModel;
}

/** A few ids every vocabulary has, for the merge check. */
function probeIds(model: HFModel): Tensor {
  const V = Number(model.hf?.config.vocab_size ?? 2);
  const ids = Array.from({ length: 8 }, (_, i) => (i * 7 + 1) % V);
  return new Tensor(Int32Array.from(ids), 'i32', [1, ids.length]);
}

function logits(model: HFModel, ids: Tensor): Float32Array {
  return Float32Array.from(noGrad(() => (model as unknown as { forward(ids: Tensor): Tensor }).forward(ids)).f32());
}

/** The adapter folder of a run folder (<run>/adapter) or of an adapter folder itself. */
export function adapterDirOf(dirOrRun: string): string {
  if (existsSync(path.join(dirOrRun, 'adapter_config.json'))) return dirOrRun;
  const inner = path.join(dirOrRun, 'adapter');
  if (existsSync(path.join(inner, 'adapter_config.json'))) return inner;
  throw new CheckpointError(`'${dirOrRun}' holds no LoRA adapter: expected adapter_config.json there or in '${inner}'`);
}

/** Merges the adapter of `adapterOrRun` into its base and saves the folder `out`. */
export async function mergeAdapterToHF(adapterOrRun: string, out: string, opts: MergeOptions = {}): Promise<MergeResult> {
  const adapterDir = adapterDirOf(adapterOrRun);
  const cfg = readAdapterConfig(adapterDir);
  const base = opts.base ?? cfg.baseModelNameOrPath;
  if (!base) throw new ConfigError(`${path.join(adapterDir, 'adapter_config.json')} names no base_model_name_or_path; pass the base model (--base)`);
  const model = await loadHFModel(base);
  if (!model.hf) throw new CheckpointError(`base '${base}' did not load as a Hugging Face model`);
  const lora = new LoraModel(model, { targetModules: cfg.targetModules }, 'scratch');
  loadAdapter(lora, adapterDir, 'merged');
  lora.deleteAdapter('scratch');
  // the tokenizer files an SFT run saved beside its adapter carry the chat template it was trained with
  const trained = existsSync(path.join(adapterDir, 'tokenizer.json')) ? HFTokenizer.fromDir(adapterDir) : null;
  if (trained) model.hf = { ...model.hf, tokenizer: trained };
  const probe = probeIds(model);
  const before = logits(model, probe);
  const { maxError } = lora.mergeAndUnload();
  saveHFModel(model, out, { dtype: opts.dtype ?? 'f32' });
  const after = logits(loadHFModelFromDir(out), probe);
  let maxLogitDiff = 0;
  for (let i = 0; i < before.length; i++) maxLogitDiff = Math.max(maxLogitDiff, Math.abs(before[i] - after[i]));
  const source = model.hf.source;
  if (source && existsSync(path.join(source, 'chat_template.jinja'))) copyFileSync(path.join(source, 'chat_template.jinja'), path.join(out, 'chat_template.jinja'));
  if (!model.hf.generationConfig) {
    const c = model.hf.config;
    const g: Record<string, unknown> = {};
    for (const k of ['bos_token_id', 'eos_token_id', 'pad_token_id', 'decoder_start_token_id']) if (c[k] !== undefined && c[k] !== null) g[k] = c[k];
    writeFileSync(path.join(out, 'generation_config.json'), `${JSON.stringify(g, null, 2)}\n`);
  }
  return { dir: out, base, storageError: maxError, maxLogitDiff, model };
}
