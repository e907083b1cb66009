import { ConfigError, DeviceError } from '../errors.js';
import { isDeviceStorage, zerosF32 } from '../tensor/alloc.js';
import { backend } from '../backend/index.js';
import type { Tensor } from '../tensor/tensor.js';
import { Optimizer, type OptimizerState, type ParamGroup, type ParamsInput } from './optimizer.js';

export interface RMSpropOptions { lr: number; alpha?: number; eps?: number; momentum?: number; weightDecay?: number }

/**
 * RMSprop (PyTorch semantics, centered = false): v = alpha v + (1 - alpha) g^2; with momentum
 * buf = momentum buf + g / (sqrt(v) + eps), p -= lr buf; else p -= lr g / (sqrt(v) + eps). L2 weight decay.
 * Per-element update in TypeScript on the CPU backends (RMSprop is not on any hot path the benchmarks measure); the
 * device backends' fused kernel (`Backend.rmsprop`) on WebGPU.
 */
export class RMSprop extends Optimizer {
  constructor(params: ParamsInput, opts: RMSpropOptions) {
    const { lr, alpha = 0.99, eps = 1e-8, momentum = 0, weightDecay = 0 } = opts;
    if (!(alpha >= 0 && alpha < 1)) throw new ConfigError(`RMSprop alpha must be in [0, 1); got ${alpha}`);
    super(params, { lr, alpha, eps, momentum, weightDecay });
  }
  protected update(p: Tensor, grad: Float32Array, g: ParamGroup, st: OptimizerState, gradScale: number,
    gate?: Float32Array): void {
    const { lr, weightDecay: wd } = g;
    const alpha = g.alpha as number, eps = g.eps as number, mom = g.momentum as number;
    const fused = backend().rmsprop;
    if (st.v === undefined) {
      st.v = zerosF32(p.size);
      st.buf = fused && !(mom > 0) ? new Float32Array(0) : zerosF32(p.size);
    }
    const w = p.storage as Float32Array, v = st.v as Float32Array, buf = st.buf as Float32Array;
    if (fused) {
      // a device backend: its fused kernel
      fused.call(backend(), { param: w, grad, v, buf, lr, alpha, eps, momentum: mom, weightDecay: wd, gradScale, ...(gate ? { gate } : {}) });
      return;
    }
    if (isDeviceStorage(w)) throw new DeviceError(`'RMSprop' on device parameters (${p.name ?? 'unnamed'}) needs the backend's fused kernel, which the current backend (${backend().name}) lacks`);
    if (gate) throw new DeviceError("'RMSprop': a step gate is a device array; the CPU loop cannot read it");
    for (let i = 0; i < w.length; i++) {
      const gi = grad[i] * gradScale + wd * w[i];
      v[i] = alpha * v[i] + (1 - alpha) * gi * gi;
      const upd = gi / (Math.sqrt(v[i]) + eps);
      if (mom > 0) {
        buf[i] = mom * buf[i] + upd;
        w[i] -= lr * buf[i];
      } else {
        w[i] -= lr * upd;
      }
    }
  }
}
