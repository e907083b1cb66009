/**
 * Model setup shared by every task: the training method (LoRA adapters with the task's new modules saved,
 * full fine-tuning, or the head alone), activation checkpointing, the optimizer's parameter groups (head
 * learning rate, layer-wise decay, LoRA+, no weight decay on biases and norms) and the optimizer itself.
 */
import type { Tensor } from '../tensor/tensor.js';
import type { Module } from '../nn/module.js';
import { setGradientCheckpointing } from '../nn/checkpoint.js';
import type { Optimizer, ParamsInput } from '../optim/optimizer.js';
import { AdamW, Adam } from '../optim/adam.js';
import { AdamW8bit } from '../optim/adamw8bit.js';
import { SGD } from '../optim/sgd.js';
import { RMSprop } from '../optim/rmsprop.js';
import { LoraModel, layerIndex } from '../peft/lora/model.js';
import { quantizeBase, quantizeLinears, type QuantizeReport } from '../peft/quant.js';
import type { LoadReport } from '../models/hf/loader.js';
import { ConfigError } from '../errors.js';
import { DEFAULT_HEAD_LR, DEFAULT_LR, type TrainerConfig } from './config.js';

/** Peak learning rate of the backbone's trainable weights (config, else the method's default). */
export function learningRate(c: TrainerConfig): number {
  return c.learningRate ?? DEFAULT_LR[c.method];
}

/** The head's learning rate: headLearningRate, else learningRate (method 'head') or 2e-2. */
export function headLearningRate(c: TrainerConfig): number {
  return c.headLearningRate ?? (c.method === 'head' ? learningRate(c) : DEFAULT_HEAD_LR);
}

export interface MethodOptions {
  /** Module paths of the task's new modules (classification heads): saved with LoRA, trained with 'head'. */
  heads: string[];
  /** The base model's name (adapter_config.json, notes). */
  baseName: string;
  /** PEFT task type of the adapter ('SEQ_CLS' default, 'CAUSAL_LM'). */
  taskType?: 'SEQ_CLS' | 'CAUSAL_LM';
  /** Modules kept out of base quantisation besides the heads (e.g. 'lm_head'). */
  keepPrecision?: string[];
  note(msg: string): void;
}

const quantizeOptions = (c: TrainerConfig, skip: string[]) => ({ skip, ...(c.baseQuantization === 'nf4' ? { doubleQuant: c.baseDoubleQuant } : {}) });

/**
 * A LoRA run's base Linear layers quantised before the adapters are injected (`quantizeLinears`: LoRA then wraps
 * the quantised layers, as PEFT wraps a model bitsandbytes loaded, so DoRA's magnitude starts at the norms of the
 * weight the forward pass reads); `skip` left as they are. Null for 'none'.
 */
export function quantizeRunLinears(model: Module, c: TrainerConfig, skip: string[]): QuantizeReport | null {
  return c.baseQuantization === 'none' ? null : quantizeLinears(model, c.baseQuantization, quantizeOptions(c, skip));
}

/**
 * A LoRA run's `baseQuantization` (and `baseDoubleQuant`) applied to `model`'s frozen weights, `skip` (heads, layers
 * kept in their precision) left as they are; says what it did through `note` when given, counting what `earlier`
 * did (quantizeRunLinears) and the layers converted while the checkpoint loaded (`loadReport.quantized`). Nothing
 * for 'none'. Training and a finished run's reload both call it, so a run is evaluated on the base it was trained on.
 */
export function quantizeRunBase(model: Module, c: TrainerConfig, skip: string[], note?: (m: string) => void, earlier: QuantizeReport | null = null): void {
  if (c.baseQuantization === 'none') return;
  const q = quantizeBase(model, c.baseQuantization, quantizeOptions(c, skip));
  if (!note) return;
  const t: QuantizeReport = { layers: 0, embeddings: 0, bytesBefore: 0, bytesAfter: 0 };
  for (const r of [q, earlier, (model as { loadReport?: LoadReport }).loadReport?.quantized]) {
    if (!r) continue;
    t.layers += r.layers;
    t.bytesBefore += r.bytesBefore;
    t.bytesAfter += r.bytesAfter;
  }
  const what = c.baseQuantization === 'nf4' ? `nf4${c.baseDoubleQuant ? ' (double-quantised absmax)' : ''}` : c.baseQuantization;
  note(`frozen base in ${what}: ${t.layers} layers, ${(t.bytesBefore / 2 ** 20).toFixed(1)} MB -> ${(t.bytesAfter / 2 ** 20).toFixed(1)} MB`);
}

/** Applies the method to `model`: LoRA injection (and a quantised frozen base), or freezing. Returns the LoRA state or null. */
export function applyMethod(model: Module, c: TrainerConfig, o: MethodOptions): LoraModel | null {
  let lora: LoraModel | null = null;
  if (c.method === 'lora') {
    const skip = [...o.heads, ...(o.keepPrecision ?? [])];
    const linears = quantizeRunLinears(model, c, skip);
    lora = new LoraModel(model, {
      r: c.loraRank, alpha: c.loraAlpha ?? 2 * c.loraRank, dropout: c.loraDropout, targetModules: c.loraTargets,
      modulesToSave: o.heads.length ? o.heads : undefined, useRslora: c.useRslora, useDora: c.useDora, seed: c.seed,
      baseModelNameOrPath: o.baseName, ...(o.taskType ? { taskType: o.taskType } : {}),
    });
    quantizeRunBase(model, c, skip, o.note, linears);
  } else {
    for (const [p, t] of model.namedParameters()) t.requiresGrad = (c.method === 'full' && t.dtype === 'f32') || o.heads.some((h) => p.startsWith(`${h}.`));
  }
  applyCheckpointing(model, c, o);
  return lora;
}

/** `gradientCheckpointing`: on in every layer stack (or MLP, for 'mlp') of the model, or a ConfigError where it has none. */
function applyCheckpointing(model: Module, c: TrainerConfig, o: MethodOptions): void {
  const mode = c.gradientCheckpointing;
  if (!mode) return;
  const n = setGradientCheckpointing(model, mode);
  const what = mode === 'mlp' ? 'MLP' : 'layer stack';
  if (n === 0) throw new ConfigError(`config key 'gradientCheckpointing' is ${JSON.stringify(mode)}, but model '${o.baseName}' has no ${what} that supports it`);
  o.note(`gradient checkpointing: ${mode === 'mlp' ? 'MLP pre-activations recomputed' : 'on'} (${n} ${what}${n > 1 ? 's' : ''})`);
}

export interface GroupOptions {
  /** Parameters at the head learning rate (new task heads). */
  isHead?: (path: string) => boolean;
  /** Parameters above the layer stack (a decoder's final norm and LM head): no layer-wise decay. */
  isTop?: (path: string) => boolean;
}

/**
 * Parameter groups of `named`: heads at the head lr; layer i of L at lr * layerwiseLrDecay^(L - 1 - i) (parameters
 * outside the stack, the embeddings, at decay^L; `isTop` ones undecayed); LoRA B matrices x loraPlusRatio; no
 * weight decay on biases and norm weights (ndim < 2).
 */
export function paramGroups(named: Array<[string, Tensor]>, c: TrainerConfig, o: GroupOptions = {}): ParamsInput {
  const lr = learningRate(c), headScale = headLearningRate(c) / lr;
  const layers = Math.max(0, ...named.map(([p]) => (layerIndex(p) ?? -1) + 1));
  const scaleOf = (p: string): number => {
    if (o.isHead?.(p)) return headScale;
    const li = layerIndex(p);
    const depth = li === null ? (o.isTop?.(p) ? 0 : layers) : layers - 1 - li;
    const scale = c.layerwiseLrDecay === 1 ? 1 : c.layerwiseLrDecay ** depth;
    return /\.lora_B\.|\.lora_embedding_B\./.test(p) ? scale * c.loraPlusRatio : scale;
  };
  const groups = new Map<string, { params: Tensor[]; lrScale: number; weightDecay: number }>();
  for (const [p, t] of named) {
    if (!t.requiresGrad) continue;
    const scale = scaleOf(p);
    const wd = t.ndim < 2 ? 0 : c.weightDecay;
    const g = groups.get(`${scale}|${wd}`) ?? { params: [], lrScale: scale, weightDecay: wd };
    g.params.push(t);
    groups.set(`${scale}|${wd}`, g);
  }
  return [...groups.values()].map((g) => ({ ...g, lr: lr * g.lrScale }));
}

export function makeOptimizer(groups: ParamsInput, c: TrainerConfig): Optimizer {
  const lr = learningRate(c);
  switch (c.optimizer) {
    case 'adamw': return new AdamW(groups, { lr, betas: c.betas, eps: c.eps, weightDecay: c.weightDecay });
    case 'adamw8bit': return new AdamW8bit(groups, { lr, betas: c.betas, eps: c.eps, weightDecay: c.weightDecay });
    case 'adam': return new Adam(groups, { lr, betas: c.betas, eps: c.eps });
    case 'sgd': return new SGD(groups, { lr, momentum: c.momentum ?? 0.9, nesterov: c.nesterov, weightDecay: c.weightDecay });
    case 'rmsprop': return new RMSprop(groups, { lr, eps: c.eps, momentum: c.momentum ?? 0, weightDecay: c.weightDecay });
  }
}

/** Trainable parameters of a module by name, in model order. */
export function trainableOf(model: Module): Array<[string, Tensor]> {
  return [...model.namedParameters()].filter(([, t]) => t.requiresGrad);
}
