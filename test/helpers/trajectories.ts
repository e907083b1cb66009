/**
 * The loss trajectories that test/bf16-trajectory.test.ts checks, in one place: the test compares them with its
 * stored values, and scripts/experiments/bf16-trajectory.ts prints them when a change legitimately moves bf16 bits.
 */
import { blockWorkload } from '../../src/bench/workloads.js';
import { EncoderClassifier } from '../../src/bench/model-workloads.js';
import { randint } from '../../src/tensor/creation.js';
import { crossEntropy } from '../../src/tensor/ops/nn.js';
import { manualSeed } from '../../src/nn/init.js';
import { AdamW } from '../../src/optim/adam.js';
import { LoraModel } from '../../src/peft/index.js';
import { autocast } from '../../src/tensor/precision.js';

/** 6 SGD steps (lr 0.1) of the block workload. */
export function blockTrajectory(dt: 'bf16' | 'f32'): number[] {
  const w = blockWorkload(1e-1);
  return Array.from({ length: 6 }, () => w.step(dt));
}

/** 6 AdamW steps of the cls model with LoRA on qkv, proj, fc1, fc2 (head saved). */
export function clsLoraTrajectory(dt: 'bf16' | 'f32'): number[] {
  manualSeed(0);
  const m = new EncoderClassifier();
  new LoraModel(m, { r: 8, alpha: 16, targetModules: ['qkv', 'proj', 'fc1', 'fc2'], modulesToSave: ['head'] });
  const idx = randint([16, 32], 8002, 1), y = randint([16], 150, 2);
  const opt = new AdamW(m.trainableParameters(), { lr: 1e-2, weightDecay: 0.01 });
  return Array.from({ length: 6 }, () => {
    opt.zeroGrad();
    const l = autocast(dt, () => crossEntropy(m.forward(idx), y));
    l.backward();
    opt.step();
    return l.item();
  });
}
