/**
 * Residual error feedback (Seide et al. 2014; Karimireddy et al. 2019, EF-SGD): what compression dropped is
 * added to the next step's gradient.
 *   compensated = grad + residual_prev
 *   residual    = compensated - decompress(compress(compensated))
 */
import type { Memory } from '../types.js';

export class ResidualMemory implements Memory {
  readonly name = 'residual';
  readonly needsSent = true;
  private residuals = new Map<string, Float32Array>();
  private buffers = new Map<string, Float32Array>();

  compensate(name: string, grad: Float32Array): Float32Array {
    const res = this.residuals.get(name);
    if (!res || res.length !== grad.length) return grad;
    let buf = this.buffers.get(name);
    if (!buf || buf.length !== grad.length) this.buffers.set(name, (buf = new Float32Array(grad.length)));
    for (let i = 0; i < grad.length; i++) buf[i] = grad[i] + res[i];
    return buf;
  }

  update(name: string, compensated: Float32Array, sent: Float32Array): void {
    let res = this.residuals.get(name);
    if (!res || res.length !== compensated.length) this.residuals.set(name, (res = new Float32Array(compensated.length)));
    for (let i = 0; i < res.length; i++) res[i] = compensated[i] - sent[i];
  }

  /** The residual of a tensor (undefined before its first update). */
  residual(name: string): Float32Array | undefined {
    return this.residuals.get(name);
  }

  state(): Record<string, Float32Array> {
    return Object.fromEntries([...this.residuals].map(([k, v]) => [k, v.slice()]));
  }
  load(state: Record<string, Float32Array>): void {
    this.residuals = new Map(Object.entries(state).map(([k, v]) => [k, Float32Array.from(v)]));
  }
}
