import { backend } from '../backend/index.js';
import { peekGrad, setPrivateGrad, type Tensor } from '../tensor/tensor.js';

/** Global L2 norm of the parameters' gradients (one sum-of-squares pass each); NaN or Infinity when any gradient is non-finite. */
export function gradNorm(params: Iterable<Tensor>): number {
  let ss = 0;
  for (const p of params) {
    const g = peekGrad(p);
    if (g) ss += backend().sumSquares(g.f32());
  }
  return Math.sqrt(ss);
}

/** `gradNorm` on any backend: on a device-resident one (WebGPU) the sums are read back (one wait for all). */
export async function gradNormAsync(params: Iterable<Tensor>): Promise<number> {
  const dev = backend().device;
  if (!dev) return gradNorm(params);
  const sums = await Promise.all([...params].map(peekGrad).filter((g) => g !== null).map((g) => dev.sumSquares(g.f32())));
  return Math.sqrt(sums.reduce((a, s) => a + s, 0));
}

/** The factor torch.nn.utils.clip_grad_norm_ scales gradients by: min(1, maxNorm / (norm + 1e-6)); 1 when maxNorm is 0 (off). */
export function clipCoefficient(norm: number, maxNorm: number): number {
  return maxNorm > 0 ? Math.min(1, maxNorm / (norm + 1e-6)) : 1;
}

/**
 * Global-norm gradient clipping (torch.nn.utils.clip_grad_norm_): scales every gradient by
 * min(1, maxNorm / (norm + 1e-6)) and returns the norm before clipping.
 */
export function clipGradNorm(params: Tensor[], maxNorm: number): number {
  const norm = gradNorm(params);
  const coef = maxNorm / (norm + 1e-6);
  if (coef < 1) {
    // Out of place: a leaf's gradient buffer may be shared with another leaf's (x + y passes one gradient to both).
    for (const p of params) {
      const g = peekGrad(p);
      if (g) setPrivateGrad(p, g.scale(coef));
    }
  }
  return norm;
}
