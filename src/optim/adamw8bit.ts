/**
 * AdamW with 8-bit states (bitsandbytes' `AdamW8bit`, Dettmers et al. 2022, "8-bit Optimizers via Block-wise
 * Quantization"; HF Trainer's `optim="adamw_bnb_8bit"`): both moments are stored as 8-bit codes in blocks of 256 with
 * one f32 absmax a block, the first moment in bitsandbytes' signed dynamic map, the second in its unsigned one, so
 * the state is 2.03 bytes a parameter instead of 8. Each step widens a block, runs AdamW on it in f32 (decoupled
 * weight decay, bias corrections, bitsandbytes' order of operations) and stores each moment again at the nearest code
 * of its new absmax: in the native addon's kernel (blocks in parallel), else in TypeScript (the reference, same bits).
 * Parameters under 4096 elements (bitsandbytes' `min_8bit_size`: norms, biases) keep f32 moments and are updated
 * exactly as AdamW. CPU backends; a device backend's gated step is refused.
 */
import { ConfigError } from '../errors.js';
import type { Tensor } from '../tensor/tensor.js';
import { nearestCode, signedDynamicMap, unsignedDynamicMap } from '../peft/nf4.js';
import { AdamW, type AdamOptions } from './adam.js';
import type { OptimizerState, ParamGroup, ParamsInput } from './optimizer.js';
import { backend } from '../backend/index.js';
import type { AdamW8bitArgs } from '../backend/backend.js';

/** Elements a block of 8-bit state covers (one absmax each), as bitsandbytes' blockwise optimizers. */
export const STATE_BLOCK = 256;
/** Parameters with fewer elements keep f32 moments (bitsandbytes' `min_8bit_size`). */
export const MIN_8BIT_SIZE = 4096;

export interface AdamW8bitOptions extends AdamOptions {
  /** Parameters below this many elements keep f32 moments (default 4096, bitsandbytes'). */
  min8bitSize?: number;
}

/**
 * One AdamW8bit update in TypeScript: the reference of the backends' kernel (native/optim.cc `adamw8bit`): float
 * arithmetic (each operation rounded to f32), the kernel's operations in its order, so the same bits.
 */
export function adamw8bitReference(a: AdamW8bitArgs): void {
  const { param, grad, state1: c1, state2: c2, absmax1: a1, absmax2: a2, map1, map2 } = a;
  const f = Math.fround;
  const n = param.length, blocks = Math.ceil(n / STATE_BLOCK);
  const beta1 = f(a.beta1), beta2 = f(a.beta2), oneB1 = f(1 - a.beta1), oneB2 = f(1 - a.beta2);
  const stepSize = f(-a.lr / a.correction1), decay = f(1 - a.lr * a.weightDecay), c2f = f(a.correction2), eps = f(a.eps), gs = f(a.gradScale);
  const decays = a.weightDecay > 0;
  const m = new Float32Array(STATE_BLOCK), v = new Float32Array(STATE_BLOCK);
  for (let b = 0; b < blocks; b++) {
    const s = b * STATE_BLOCK, len = Math.min(STATE_BLOCK, n - s);
    const s1 = a1[b], s2 = a2[b];
    let mx1 = 0, mx2 = 0;
    for (let j = 0; j < len; j++) {
      const i = s + j;
      const gi = f(grad[i] * gs);
      const mi = f(f(beta1 * f(map1[c1[i]] * s1)) + f(oneB1 * gi));
      const vi = f(f(beta2 * f(map2[c2[i]] * s2)) + f(oneB2 * f(gi * gi)));
      const denom = f(f(f(Math.sqrt(vi)) / c2f) + eps);
      const pi = decays ? f(param[i] * decay) : param[i];
      param[i] = f(pi + f(stepSize * f(mi / denom)));
      m[j] = mi;
      v[j] = vi;
      mx1 = Math.max(mx1, Math.abs(mi));
      mx2 = Math.max(mx2, vi);
    }
    a1[b] = mx1;
    a2[b] = mx2;
    const inv1 = mx1 > 0 ? f(1 / mx1) : 0, inv2 = mx2 > 0 ? f(1 / mx2) : 0;
    for (let j = 0; j < len; j++) {
      c1[s + j] = nearestCode(map1, f(m[j] * inv1));
      c2[s + j] = nearestCode(map2, f(v[j] * inv2));
    }
  }
}

export class AdamW8bit extends AdamW {
  readonly min8bitSize: number;

  constructor(params: ParamsInput, opts: AdamW8bitOptions) {
    super(params, opts);
    const min = opts.min8bitSize ?? MIN_8BIT_SIZE;
    if (!(Number.isInteger(min) && min >= 0)) throw new ConfigError(`AdamW8bit min8bitSize must be a non-negative integer; got ${min}`);
    this.min8bitSize = min;
  }

  /** Whether `p`'s moments are 8-bit (else f32, as AdamW's). */
  quantizes(p: Tensor): boolean {
    return p.size >= this.min8bitSize;
  }

  protected override stateLength(name: string, p: Tensor): number {
    return name === 'absmax1' || name === 'absmax2' ? Math.ceil(p.size / STATE_BLOCK) : p.size;
  }

  protected override update(p: Tensor, grad: Float32Array, g: ParamGroup, st: OptimizerState, gradScale: number, gate?: Float32Array): Uint16Array | null {
    if (gate) throw new ConfigError("optimizer 'adamw8bit' runs on the CPU backends: a device backend's gated step is not supported");
    if (!this.quantizes(p)) return super.update(p, grad, g, st, gradScale);
    const n = p.size, blocks = Math.ceil(n / STATE_BLOCK);
    if (st.state1 === undefined) {
      // zero moments: any code with a zero absmax (bitsandbytes starts from zeroed codes and absmaxes too)
      st.state1 = new Uint8Array(n);
      st.state2 = new Uint8Array(n);
      st.absmax1 = new Float32Array(blocks);
      st.absmax2 = new Float32Array(blocks);
      st.step = 0;
    }
    const step = (st.step as number) + 1;
    st.step = step;
    const beta1 = g.beta1 as number, beta2 = g.beta2 as number;
    const args: AdamW8bitArgs = {
      param: p.storage as Float32Array, grad, state1: st.state1 as Uint8Array, state2: st.state2 as Uint8Array,
      absmax1: st.absmax1 as Float32Array, absmax2: st.absmax2 as Float32Array, map1: signedDynamicMap(), map2: unsignedDynamicMap(),
      lr: g.lr, beta1, beta2, eps: g.eps as number, weightDecay: g.weightDecay,
      correction1: 1 - beta1 ** step, correction2: Math.sqrt(1 - beta2 ** step), gradScale,
    };
    const be = backend();
    if (be.adamw8bit && !be.device) be.adamw8bit(args);
    else adamw8bitReference(args);
    return null;
  }
}
