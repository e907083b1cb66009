/**
 * The training workloads of WORKLOADS.md on whole models: gpt2-lora / gpt2-full (GPT-2-small-shaped causal LM,
 * B8 T128, AdamW lr 1e-4 wd 0.01; LoRA r=8 alpha=16 on every block's fused qkv) and cls-lora / cls-full (a 4-block
 * bidirectional encoder classifier, B64 T32, vocab 8002, 150 classes; LoRA on qkv, proj, fc1, fc2 plus the head).
 * Options: `--base bf16|int8|nf4` keeps the frozen base of the LoRA workloads in low precision.
 */
import { Tensor } from '../tensor/tensor.js';
import { randint, arange } from '../tensor/creation.js';
import { crossEntropy } from '../tensor/ops/nn.js';
import { autocast } from '../tensor/precision.js';
import { Module, ModuleList } from '../nn/module.js';
import { Embedding, LayerNorm, Linear } from '../nn/layers.js';
import { Block } from '../nn/transformer.js';
import { manualSeed } from '../nn/init.js';
import { AdamW } from '../optim/adam.js';
import { LoraModel, quantizeBase, type BaseQuantization } from '../peft/index.js';
import { TinyGPT } from '../models/tiny-gpt.js';
import { releaseWithGraph } from '../tensor/autograd.js';
import { runLayers, setGradientCheckpointing, type GradientCheckpointing } from '../nn/checkpoint.js';
import { collectGarbage, makeRecord, resetPeakRss, timed, trainPeakRssMb, type BenchRecord } from './measure.js';

export interface ModelWorkloadOptions {
  dtype: 'fp32' | 'bf16';
  steps: number;
  warmup: number;
  base?: BaseQuantization | 'none';
  /** gpt2 workloads: gradient checkpointing of every block (true = 'full'), or of the MLP pre-activations ('mlp'). */
  checkpointing?: GradientCheckpointing;
}

/** The cls workloads' encoder: token + position embeddings, 4 pre-LN blocks (no mask), final LN, mean-pool, head. */
export class EncoderClassifier extends Module {
  readonly wte = this.module('wte', new Embedding(8002, 256));
  readonly wpe = this.module('wpe', new Embedding(128, 256));
  readonly blocks = this.module('blocks', new ModuleList(Array.from({ length: 4 }, () => new Block({ dim: 256, heads: 4, mlpDim: 1024, causal: false }))));
  readonly ln_f = this.module('ln_f', new LayerNorm(256));
  readonly head = this.module('head', new Linear(256, 150));
  forward(ids: Tensor): Tensor {
    const T = ids.shape[1];
    const x = this.wte.forward(ids).add(this.wpe.forward(arange(0, T, 1, 'i32'))); // (B, T, C)
    const y = runLayers(this.blocks, false, (b, h) => b.forward(h), x);
    const z = this.ln_f.forward(y);
    // the embeddings, the last block's output and the final norm's are read by the first block, the final norm and
    // the pooling alone
    releaseWithGraph(x, y, z);
    return this.head.forward(z.mean(1)); // (B, 150)
  }
}

function runTraining(name: string, o: ModelWorkloadOptions, model: Module, lossFn: () => Tensor, tokens: number): BenchRecord[] {
  const params = model.trainableParameters();
  const opt = new AdamW(params, { lr: 1e-4, weightDecay: 0.01 });
  const compute = o.dtype === 'bf16' ? 'bf16' : 'f32';
  const step = () => {
    opt.zeroGrad();
    const loss = autocast(compute, lossFn);
    loss.backward();
    opt.step();
  };
  // The training phase's own peak: the process peak also holds the set-up (a random f32 model before it is
  // quantised, which a checkpoint loaded in 16-bit never has).
  collectGarbage();
  resetPeakRss();
  const t = timed(step, o.steps, o.warmup);
  const { trainable, total } = model.parameterCounts();
  const suffix = `${o.base && o.base !== 'none' ? `-${o.base}-base` : ''}${o.checkpointing === 'mlp' ? '-ckpt-mlp' : o.checkpointing ? '-ckpt' : ''}`;
  return [makeRecord(`${name}${suffix}`, o.dtype, t,
    { tokens_per_s: Math.round((tokens / t.med) * 10) / 10, trainable_params: trainable, total_params: total, train_peak_rss_mb: trainPeakRssMb() })];
}

function gpt2(lora: boolean) {
  return (o: ModelWorkloadOptions): BenchRecord[] => {
    const B = 8, T = 128;
    manualSeed(0);
    const m = new TinyGPT({ vocabSize: 50257, contextLength: 1024, dim: 768, heads: 12, layers: 12, mlpDim: 3072 });
    setGradientCheckpointing(m, o.checkpointing ?? false);
    if (lora) {
      new LoraModel(m, { r: 8, alpha: 16, targetModules: ['qkv'] });
      if (o.base && o.base !== 'none') quantizeBase(m, o.base);
    }
    const idx = randint([B, T], 50257, 1), y = randint([B, T], 50257, 2);
    return runTraining(lora ? 'gpt2-lora' : 'gpt2-full', o, m, () => m.loss(idx, y), B * T);
  };
}

function cls(lora: boolean) {
  return (o: ModelWorkloadOptions): BenchRecord[] => {
    const B = 64, T = 32;
    manualSeed(0);
    const m = new EncoderClassifier();
    if (lora) {
      new LoraModel(m, { r: 8, alpha: 16, targetModules: ['qkv', 'proj', 'fc1', 'fc2'], modulesToSave: ['head'] });
      if (o.base && o.base !== 'none') quantizeBase(m, o.base, { skip: ['head'] });
    }
    const idx = randint([B, T], 8002, 1), y = randint([B], 150, 2);
    return runTraining(lora ? 'cls-lora' : 'cls-full', o, m, () => crossEntropy(m.forward(idx), y), B * T);
  };
}

export const MODEL_WORKLOADS = {
  'gpt2-lora': gpt2(true),
  'gpt2-full': gpt2(false),
  'cls-lora': cls(true),
  'cls-full': cls(false),
};
