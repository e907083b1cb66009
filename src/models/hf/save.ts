/**
 * Saving a model in the Hugging Face layout that the loader reads: config.json (the original keys, with
 * `architectures` and `torch_dtype` brought up to date), model.safetensors or, past `maxShardBytes`, shards
 * model-0000i-of-0000n.safetensors with model.safetensors.index.json, and the tokenizer files.
 * Tensors are written in the checkpoint's layout (GPT-2's Conv1D weights transposed back) and dtype.
 */
import { mkdirSync, readdirSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { saveSafetensors } from '../safetensors.js';
import { noGrad } from '../../tensor/autograd.js';
import { cast } from '../../tensor/ops/elementwise.js';
import type { Tensor } from '../../tensor/tensor.js';
import { ConfigError } from '../../errors.js';
import { familyByName, type HFModel } from './family.js';

export interface SaveHFOptions {
  /** 'keep' (default): each tensor in its current dtype; or convert every float tensor. */
  dtype?: 'keep' | 'f32' | 'bf16' | 'f16';
  /** Shard past this many bytes per file (default 5 GB, as transformers). */
  maxShardBytes?: number;
}

const TORCH_DTYPE: Record<string, string> = { f32: 'float32', bf16: 'bfloat16', f16: 'float16' };

/** The model's tensors under their checkpoint keys and layout. */
export function checkpointState(model: HFModel, dtype: SaveHFOptions['dtype'] = 'keep'): Map<string, Tensor> {
  if (!model.hf) throw new ConfigError(`'saveHFModel' needs a model from loadHFModel or buildHFModel (it has no Hugging Face config)`);
  const family = familyByName(model.hf.family);
  return noGrad(() => {
    const out = new Map<string, Tensor>();
    for (const [key, p] of model.namedParameters()) {
      let t = family.toCheckpoint ? family.toCheckpoint(key, p) : p;
      if (dtype !== 'keep' && t.dtype !== dtype) t = cast(t, dtype);
      out.set(key, t);
    }
    return out;
  });
}

/** Writes `model` (and its tokenizer) to `dir` so that loadHFModelFromDir(dir) gives identical tensors. */
export function saveHFModel(model: HFModel, dir: string, opts: SaveHFOptions = {}): void {
  const state = checkpointState(model, opts.dtype ?? 'keep');
  const hf = model.hf as NonNullable<HFModel['hf']>;
  const maxShard = opts.maxShardBytes ?? 5e9;
  mkdirSync(dir, { recursive: true });

  const keys = [...state.keys()].sort();
  const shards: string[][] = [[]];
  let size = 0, total = 0;
  for (const k of keys) {
    const n = (state.get(k) as Tensor).nbytes;
    if (size > 0 && size + n > maxShard) {
      shards.push([]);
      size = 0;
    }
    shards[shards.length - 1].push(k);
    size += n;
    total += n;
  }
  const written = new Set<string>();
  const meta = { format: 'pt' };
  if (shards.length === 1) {
    saveSafetensors(path.join(dir, 'model.safetensors'), state, meta);
    written.add('model.safetensors');
  } else {
    const weightMap: Record<string, string> = {};
    shards.forEach((ks, i) => {
      const name = `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`;
      saveSafetensors(path.join(dir, name), new Map(ks.map((k) => [k, state.get(k) as Tensor])), meta);
      for (const k of ks) weightMap[k] = name;
      written.add(name);
    });
    writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2) + '\n');
    written.add('model.safetensors.index.json');
  }
  // Weight files of an earlier save would shadow or contradict these.
  for (const f of readdirSync(dir)) {
    if (!written.has(f) && (f === 'model.safetensors' || f === 'model.safetensors.index.json' || /^model-\d{5}-of-\d{5}\.safetensors$/.test(f))) unlinkSync(path.join(dir, f));
  }

  const dtypes = new Set([...state.values()].map((t) => t.dtype));
  const config: Record<string, unknown> = { ...hf.config, architectures: [model.architectureName] };
  if (dtypes.size === 1) config.torch_dtype = TORCH_DTYPE[[...dtypes][0]] ?? config.torch_dtype;
  const n = (model as unknown as { numLabels?: number }).numLabels;
  const labels = config.id2label && typeof config.id2label === 'object' ? Object.keys(config.id2label).length : null;
  if (model.task === 'sequence-classification' && n !== undefined && labels !== n) {
    // A new head: transformers derives num_labels from id2label, so a stale label map must go.
    delete config.id2label;
    delete config.label2id;
    config.num_labels = n;
  }
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n');
  if (hf.generationConfig) writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify(hf.generationConfig, null, 2) + '\n');
  hf.tokenizer?.save(dir);
}
