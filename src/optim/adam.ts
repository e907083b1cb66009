import { backend } from '../backend/index.js';
import { uninitF32, zerosF32 } from '../tensor/alloc.js';
import { ConfigError } from '../errors.js';
import type { Tensor } from '../tensor/tensor.js';
import { Optimizer, type OptimizerState, type ParamGroup, type ParamsInput } from './optimizer.js';

export interface AdamOptions { lr: number; betas?: [number, number]; eps?: number; weightDecay?: number }

/** AdamW (decoupled weight decay, PyTorch semantics). */
export class AdamW extends Optimizer {
  constructor(params: ParamsInput, opts: AdamOptions) {
    const { lr, betas = [0.9, 0.999], eps = 1e-8, weightDecay = 0.01 } = opts;
    for (const b of betas) if (!(b >= 0 && b < 1)) throw new ConfigError(`AdamW betas must be in [0, 1); got [${betas.join(', ')}]`);
    if (!(eps > 0)) throw new ConfigError(`AdamW eps must be > 0; got ${eps}`);
    super(params, { lr, beta1: betas[0], beta2: betas[1], eps, weightDecay });
  }
  protected update(p: Tensor, grad: Float32Array, g: ParamGroup, st: OptimizerState, gradScale: number,
    gate?: Float32Array): Uint16Array | null {
    if (st.m === undefined) {
      st.m = zerosF32(p.size);
      st.v = zerosF32(p.size);
      st.step = 0;
    }
    st.step = (st.step as number) + 1;
    const out16 = this.bf16CopyBuffer(p, gate);
    backend().adamw({
      param: p.storage as Float32Array, grad, m: st.m as Float32Array, v: st.v as Float32Array, lr: g.lr,
      beta1: g.beta1 as number, beta2: g.beta2 as number, eps: g.eps as number, weightDecay: g.weightDecay,
      step: st.step as number, gradScale, ...(gate ? { gate } : {}), ...(out16 ? { out16 } : {}),
    });
    return out16;
  }
}

/**
 * Adam (PyTorch semantics): weight decay is an L2 penalty added to the gradient before the moments (default 0),
 * not AdamW's decoupled shrink of the weights. A group's `weightDecay` (the trainer sets one per group) is read
 * the same way.
 */
export class Adam extends AdamW {
  constructor(params: ParamsInput, opts: AdamOptions) {
    super(params, { ...opts, weightDecay: opts.weightDecay ?? 0 });
  }
  protected override update(p: Tensor, grad: Float32Array, g: ParamGroup, st: OptimizerState, gradScale: number,
    gate?: Float32Array): Uint16Array | null {
    if (!(g.weightDecay > 0)) return super.update(p, grad, g, st, gradScale, gate);
    // g' = gradScale * grad + wd * p, then Adam without decoupled decay
    let scaled = grad;
    if (gate) {
      // the gate's multiplier applies to the gradient, not to the decay: multiply first, then the gate without it
      scaled = uninitF32(p.size);
      backend().binary('mul', grad, [1], gate, [0], [p.size], scaled);
    }
    const l2 = uninitF32(p.size); // scratch, not state: nothing of it belongs in a checkpoint
    backend().axpby(gradScale, scaled, g.weightDecay, p.storage as Float32Array, l2);
    return super.update(p, l2, { ...g, weightDecay: 0 }, st, 1, gate && gate.subarray(3));
  }
}
