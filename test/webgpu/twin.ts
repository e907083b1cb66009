/**
 * Runs one kernel call on the portable backend and on the WebGPU backend with the same (random) inputs, and
 * records the outputs to compare. Browser-only module (bundled by test/webgpu.test.ts).
 */
import type { DType } from '../../src/backend/backend.js';
import { Rng } from '../../src/backend/rng.js';
import type { GpuArray, WebGpuBackend } from '../../src/backend/webgpu/index.js';

export type Arr = Float32Array | Int32Array | Uint16Array | Int8Array;

export interface Pair<T extends Arr = Float32Array> {
  c: T;
  g: GpuArray;
  dtype: DType;
}

export interface Result {
  name: string;
  ok: boolean;
  detail: string;
}

function make(dtype: DType, n: number): Arr {
  return dtype === 'f32' ? new Float32Array(n) : dtype === 'i32' ? new Int32Array(n) : dtype === 'i8' ? new Int8Array(n) : new Uint16Array(n);
}

export class Twin {
  private checks: { label: string; pair: Pair<Arr>; rtol: number; atol: number }[] = [];
  private rng: Rng;
  constructor(readonly gpu: WebGpuBackend, seed: number) {
    this.rng = new Rng(seed);
  }

  /** Uniform values in [lo, hi). */
  rand(n: number, lo = -2, hi = 2): Float32Array {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * this.rng.uniform();
    return a;
  }
  int(n: number, hi: number): Int32Array {
    const a = new Int32Array(n);
    for (let i = 0; i < n; i++) a[i] = this.rng.int(hi);
    return a;
  }
  /** An input pair holding `data` on both sides. */
  in<T extends Arr>(data: T, dtype: DType = 'f32'): Pair<T> {
    return { c: data.slice() as T, g: this.gpu.upload(data, dtype), dtype };
  }
  f32(n: number, lo = -2, hi = 2): Pair {
    return this.in(this.rand(n, lo, hi));
  }
  /** An output pair: zeros, or `init` (for kernels that accumulate). */
  out<T extends Arr = Float32Array>(n: number, dtype: DType = 'f32', init?: T): Pair<T> {
    const c = (init ? init.slice() : make(dtype, n)) as T;
    return { c, g: init ? this.gpu.upload(init, dtype) : this.gpu.alloc(dtype, n), dtype };
  }
  /** Compares `pair` after both sides ran: |gpu - cpu| <= atol + rtol * |cpu| (bit-exact for 16-bit/8-bit/i32 with tol 0). */
  check(label: string, pair: Pair<Arr>, rtol = 1e-5, atol = 1e-6): void {
    this.checks.push({ label, pair, rtol, atol });
  }

  private reported: Result[] = [];
  /** Adds a result computed by the case itself (its detail extended by `note`). */
  report(r: Result, note = ''): void {
    this.reported.push(note ? { ...r, detail: `${r.detail}; ${note}` } : r);
  }

  async results(name: string): Promise<Result[]> {
    const out: Result[] = this.reported.map((r) => ({ ...r, name: `${name}: ${r.name}` }));
    this.reported = [];
    for (const { label, pair, rtol, atol } of this.checks) {
      const got = await this.gpu.read(pair.g);
      out.push(compare(`${name}: ${label}`, got, pair.c, pair.dtype, rtol, atol));
    }
    this.checks = [];
    return out;
  }
}

export function compare(name: string, got: Arr, want: Arr, dtype: DType, rtol: number, atol: number): Result {
  if (got.length !== want.length) return { name, ok: false, detail: `length ${got.length} != ${want.length}` };
  let worst = 0, at = -1;
  for (let i = 0; i < want.length; i++) {
    const g = got[i], w = want[i];
    if (dtype !== 'f32' || rtol === 0) {
      if (g !== w && !(Number.isNaN(g) && Number.isNaN(w))) return { name, ok: false, detail: `element ${i}: got ${g}, want ${w}` };
      continue;
    }
    if (Number.isNaN(w) || Number.isNaN(g)) {
      if (Number.isNaN(w) !== Number.isNaN(g)) return { name, ok: false, detail: `element ${i}: got ${g}, want ${w}` };
      continue;
    }
    if (g === w) continue;
    const err = Math.abs(g - w) / (atol + rtol * Math.abs(w));
    if (!(err <= worst)) { worst = err; at = i; }
  }
  const ok = worst <= 1;
  const detail = at < 0 ? 'exact' : `worst at ${at}: got ${got[at]}, want ${want[at]} (${worst.toFixed(3)} of the tolerance)`;
  return { name, ok, detail };
}
