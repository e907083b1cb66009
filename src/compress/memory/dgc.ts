/**
 * Deep Gradient Compression's memory (Lin et al. 2018), per tensor:
 *   g  <- g * min(1, clipNorm / ||g||)     local gradient clipping (when clipNorm > 0)
 *   u  <- m * u + g                        momentum correction
 *   v  <- v + u                            accumulation; v is what gets compressed
 *   after sending: u[i] = v[i] = 0 wherever element i was sent (momentum factor masking)
 * The sparsity warm-up is the sparsifier's `warmupSteps` (schedule.ts). Momentum lives here, so pair it with
 * plain SGD (no optimizer momentum).
 */
import type { Memory } from '../types.js';

export interface DGCOptions {
  momentum: number;
  clipNorm: number;
}

export class DGCMemory implements Memory {
  readonly name = 'dgc';
  readonly needsSent = true;
  private us = new Map<string, Float32Array>();
  private vs = new Map<string, Float32Array>();
  constructor(readonly opts: DGCOptions) {}

  compensate(name: string, grad: Float32Array): Float32Array {
    const n = grad.length;
    let u = this.us.get(name), v = this.vs.get(name);
    if (!u || u.length !== n || !v || v.length !== n) {
      this.us.set(name, (u = new Float32Array(n)));
      this.vs.set(name, (v = new Float32Array(n)));
    }
    let c = 1;
    if (this.opts.clipNorm > 0) {
      let ss = 0;
      for (let i = 0; i < n; i++) ss += grad[i] * grad[i];
      const norm = Math.sqrt(ss);
      if (norm > this.opts.clipNorm) c = this.opts.clipNorm / norm;
    }
    const m = this.opts.momentum;
    for (let i = 0; i < n; i++) {
      const ui = m * u[i] + c * grad[i];
      u[i] = ui;
      v[i] += ui;
    }
    return v;
  }

  update(name: string, _compensated: Float32Array, sent: Float32Array): void {
    const u = this.us.get(name), v = this.vs.get(name);
    if (!u || !v) return;
    for (let i = 0; i < sent.length; i++) {
      if (sent[i] !== 0) {
        u[i] = 0;
        v[i] = 0;
      }
    }
  }

  /** Momentum u and accumulation v of a tensor (for tests and inspection). */
  buffers(name: string): { u?: Float32Array; v?: Float32Array } {
    return { u: this.us.get(name), v: this.vs.get(name) };
  }

  state(): Record<string, Float32Array> {
    const s: Record<string, Float32Array> = {};
    for (const [k, u] of this.us) s[`u.${k}`] = u.slice();
    for (const [k, v] of this.vs) s[`v.${k}`] = v.slice();
    return s;
  }
  load(state: Record<string, Float32Array>): void {
    this.us.clear();
    this.vs.clear();
    for (const [k, x] of Object.entries(state)) (k.startsWith('u.') ? this.us : this.vs).set(k.slice(2), Float32Array.from(x));
  }
}
