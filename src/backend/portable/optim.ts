/**
 * Optimizer updates in place (PyTorch AdamW and SGD semantics, evaluated per element in float64, stored as
 * float32) and the counter-based dropout mask.
 */
import type { AdamWArgs, SGDArgs } from '../backend.js';
import { mix32 } from '../rng.js';

export function adamw(args: AdamWArgs): void {
  const { param, grad, m, v, lr, beta1, beta2, eps, weightDecay, step, gradScale } = args;
  const bc1 = 1 - Math.pow(beta1, step);
  const bc2 = 1 - Math.pow(beta2, step);
  const decay = lr * weightDecay;
  // native/optim.cc's form (PyTorch's): the bias corrections folded into two scalars
  const stepSize = lr / bc1, invSqrtBc2 = 1 / Math.sqrt(bc2);
  const n = param.length;
  for (let i = 0; i < n; i++) {
    const g = grad[i] * gradScale;
    let p = param[i];
    p -= decay * p;
    m[i] = beta1 * m[i] + (1 - beta1) * g;
    v[i] = beta2 * v[i] + (1 - beta2) * g * g;
    p -= stepSize * (m[i] / (Math.sqrt(v[i]) * invSqrtBc2 + eps));
    param[i] = p;
  }
}

export function sgd(args: SGDArgs): void {
  const { param, grad, buf, lr, momentum, dampening, nesterov, weightDecay, firstStep, gradScale } = args;
  const n = param.length;
  for (let i = 0; i < n; i++) {
    const p = param[i];
    let g = grad[i] * gradScale;
    if (weightDecay !== 0) g += weightDecay * p;
    if (momentum !== 0) {
      const b = firstStep ? g : momentum * buf[i] + (1 - dampening) * g;
      buf[i] = b;
      const bs = buf[i]; // the stored (float32) buffer, as the next step sees it
      g = nesterov ? g + momentum * bs : bs;
    }
    param[i] = p - lr * g;
  }
}

/** mask[i] = hashUniform(seed, i) >= p ? fround(1 / (1 - p)) : 0. */
export function dropoutMask(seed: number, p: number, mask: Float32Array): void {
  const scale = Math.fround(1 / (1 - p));
  const key = mix32((seed + 0x9e3779b9) >>> 0); // hash32(seed, i) = mix32(i ^ key), inlined from rng.ts
  const n = mask.length;
  for (let i = 0; i < n; i++) mask[i] = (mix32((i ^ key) >>> 0) >>> 8) / 16777216 >= p ? scale : 0;
}
