import { backend } from '../backend/index.js';
import { ConfigError } from '../errors.js';
import type { Tensor } from '../tensor/tensor.js';
import { zerosF32 } from '../tensor/alloc.js';
import { Optimizer, type OptimizerState, type ParamGroup, type ParamsInput } from './optimizer.js';

export interface SGDOptions { lr: number; momentum?: number; dampening?: number; nesterov?: boolean; weightDecay?: number }

/** SGD with momentum (PyTorch semantics: the buffer starts at the first gradient; L2 weight decay). */
export class SGD extends Optimizer {
  constructor(params: ParamsInput, opts: SGDOptions) {
    const { lr, momentum = 0, dampening = 0, nesterov = false, weightDecay = 0 } = opts;
    if (nesterov && (momentum <= 0 || dampening !== 0)) throw new ConfigError(`SGD nesterov needs momentum > 0 and dampening 0; got momentum ${momentum}, dampening ${dampening}`);
    super(params, { lr, momentum, dampening, nesterov, weightDecay });
  }
  protected update(p: Tensor, grad: Float32Array, g: ParamGroup, st: OptimizerState, gradScale: number,
    gate?: Float32Array): Uint16Array | null {
    const momentum = g.momentum as number;
    const first = st.buf === undefined;
    if (first) st.buf = momentum > 0 ? zerosF32(p.size) : new Float32Array(0);
    const out16 = this.bf16CopyBuffer(p, gate);
    backend().sgd({
      param: p.storage as Float32Array, grad, buf: st.buf as Float32Array, lr: g.lr, momentum, dampening: g.dampening as number,
      nesterov: g.nesterov as boolean, weightDecay: g.weightDecay, firstStep: first, gradScale, ...(gate ? { gate } : {}),
      ...(out16 ? { out16 } : {}),
    });
    return out16;
  }
}
