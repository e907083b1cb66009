/**
 * The block workload's model, data and SGD step (shared/bench/WORKLOADS.md), apart from workloads.ts so that a
 * browser page can build it too (no Node imports): the WebGPU trajectory test runs it in headless Chromium.
 */
import { randn, randint } from '../tensor/creation.js';
import { crossEntropy } from '../tensor/ops/nn.js';
import { autocast } from '../tensor/precision.js';
import { Block } from '../nn/transformer.js';
import { Linear } from '../nn/layers.js';
import { manualSeed } from '../nn/init.js';
import { SGD } from '../optim/sgd.js';
import type { Tensor } from '../tensor/tensor.js';

export interface BlockWorkload {
  /** One step; returns the loss (read back synchronously: CPU backends). */
  step: (compute?: 'f32' | 'bf16') => number;
  /** One step; returns the loss tensor without reading it (device backends: `await loss.value()`). */
  stepTensor: (compute?: 'f32' | 'bf16') => Tensor;
  params: Tensor[];
  /** The input activations (B, T, d); the targets stay on the CPU. */
  x: Tensor;
  tokens: number;
}

/**
 * The block workload's model, data and SGD step (B8 T128 d256 h4 ff1024, head to 512 classes, lr 1e-3). `batch`
 * replaces B = 8 (the same model and the same first rows of data; for slow backends' tests).
 */
export function blockWorkload(lr = 1e-3, opts: { batch?: number } = {}): BlockWorkload {
  const B = 8, T = 128, d = 256;
  manualSeed(0);
  const blk = new Block({ dim: d, heads: 4, mlpDim: 1024, causal: true });
  const head = new Linear(d, 512);
  let x = randn([B, T, d], 1);
  let y = randint([B * T], 512, 2);
  const b = opts.batch ?? B;
  if (b !== B) {
    x = x.slice(0, 0, b).contiguous();
    y = y.slice(0, 0, b * T).contiguous();
  }
  const params = [...blk.parameters(), ...head.parameters()];
  const opt = new SGD(params, { lr });
  const stepTensor = (compute: 'f32' | 'bf16' = 'f32') => {
    opt.zeroGrad();
    // the logits are read by the loss alone: its log-probabilities take their buffer (consumeLogits), where a
    // second logits-sized buffer would come fresh from the system each step (PyTorch's caching allocator has one)
    // the block's output is read by the head alone (consume: under bf16 autocast its f32 buffer goes back to the pool
    // once the head has its bf16 copy, as PyTorch frees it then; else it waited for V8, 1 MB of fresh memory a step)
    const loss = autocast(compute, () => crossEntropy(head.forward(blk.forward(x), { consume: true }).reshape([b * T, 512]), y, { consumeLogits: true }));
    loss.backward(); // the backward products reuse the dtype recorded in the forward pass
    opt.step();
    return loss;
  };
  return { step: (compute) => stepTensor(compute).item(), stepTensor, params, x, tokens: b * T };
}
