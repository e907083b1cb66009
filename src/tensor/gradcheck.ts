/**
 * Gradient check by central finite differences. The scalar probed is L = sum(w * f(x)) with fixed random
 * weights w, accumulated in float64 on the host; each input element is perturbed by ±eps and
 * dL/dx_i ≈ (L(x+eps) - L(x-eps)) / 2eps is compared with the analytical gradient from `backward()`.
 * Ops run in float32 (the engine's compute type), so eps is chosen large enough (default 1e-2 relative to
 * the input scale) that float32 rounding stays well below the tolerance.
 */
import { Rng } from '../backend/rng.js';
import { AutoGLMError } from '../errors.js';
import { Tensor } from './tensor.js';
import { noGrad } from './autograd.js';
import { markModified } from './versions.js';

export interface GradcheckOptions {
  eps?: number;
  /** Pass when |analytic - numeric| <= atol + rtol * max(|numeric|) for every element. */
  atol?: number;
  rtol?: number;
  seed?: number;
}

export interface GradcheckResult {
  ok: boolean;
  maxAbsError: number;
  /** Per input: the worst element and its two values. */
  details: Array<{ input: number; index: number; analytic: number; numeric: number }>;
}

function weightedSum(y: Tensor, w: Float64Array): number {
  const v = y.f32();
  let s = 0;
  for (let i = 0; i < v.length; i++) s += w[i] * v[i];
  return s;
}

export function gradcheck(fn: (...xs: Tensor[]) => Tensor, inputs: Tensor[], opts: GradcheckOptions = {}): GradcheckResult {
  const { eps = 1e-2, atol = 1e-3, rtol = 1e-2, seed = 1234 } = opts;
  for (const x of inputs) x.grad = null;
  const y = fn(...inputs);
  const rng = new Rng(seed);
  const w = new Float64Array(y.size);
  for (let i = 0; i < w.length; i++) w[i] = rng.uniform() * 2 - 1;
  if (!y.requiresGrad) throw new AutoGLMError(`'gradcheck': the function's output does not depend on any input that requires grad`);
  y.backward({ gradient: new Tensor(Float32Array.from(w), 'f32', [...y.shape]) });
  const details: GradcheckResult['details'] = [];
  let maxAbsError = 0;
  let ok = true;
  inputs.forEach((x, xi) => {
    if (!x.requiresGrad) return;
    if (!x.isContiguous || x.dtype !== 'f32') throw new AutoGLMError(`'gradcheck' input ${xi} must be a dense f32 leaf`);
    const data = x.storage as Float32Array;
    const analytic = x.grad ? x.grad.f32() : new Float32Array(x.size);
    const numeric = new Float64Array(x.size);
    let scale = 0;
    noGrad(() => {
      for (let i = 0; i < x.size; i++) {
        const j = x.offset + i;
        const orig = data[j];
        data[j] = orig + eps;
        markModified(x);
        const lp = weightedSum(fn(...inputs), w);
        data[j] = orig - eps;
        markModified(x);
        const lm = weightedSum(fn(...inputs), w);
        data[j] = orig;
        markModified(x);
        // the perturbation actually applied is the float32-rounded one
        const h = Math.fround(orig + eps) - Math.fround(orig - eps);
        numeric[i] = (lp - lm) / h;
        scale = Math.max(scale, Math.abs(numeric[i]));
      }
    });
    let worst = { input: xi, index: -1, analytic: 0, numeric: 0, err: -1 };
    for (let i = 0; i < x.size; i++) {
      const err = Math.abs(analytic[i] - numeric[i]);
      if (err > worst.err) worst = { input: xi, index: i, analytic: analytic[i], numeric: numeric[i], err };
      if (!(err <= atol + rtol * scale)) ok = false;
    }
    maxAbsError = Math.max(maxAbsError, worst.err);
    details.push({ input: worst.input, index: worst.index, analytic: worst.analytic, numeric: worst.numeric });
  });
  return { ok, maxAbsError, details };
}
