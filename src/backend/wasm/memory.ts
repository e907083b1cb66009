/**
 * The kernels' view of the WebAssembly module: its exports, and the placement of operands in its linear memory.
 *
 * Tensors are ordinary typed arrays (JavaScript-owned ArrayBuffers, garbage-collected like any other), so a kernel
 * call copies its inputs into the module's memory, runs, and copies its outputs back: one bump allocation per
 * operand above a fixed mark, reset by the next call. The copies run at memcpy speed and cost O(size) where a
 * product costs O(size * K); measured on the block workload: 3.3% of a step, 96 MiB placed per step (see
 * docs/PERFORMANCE.md). Keeping tensors inside wasm memory instead would make every tensor a view that a
 * memory.grow detaches (non-shared memory), cap all tensors together at 4 GiB, and need a finalizer-driven
 * allocator: not worth it for 3%. The cost of this design: the module's memory stays at the largest single call's
 * operands (wasm memory cannot shrink).
 */

export interface WasmExports {
  ag_alloc(bytes: number): number;
  ag_reset(): void;
  ag_alloc_permanent(bytes: number): number;
  ag_set_threads(n: number): void;
  ag_threads(): number;
  ag_ready_workers(): number;
  ag_set_main_may_wait(v: number): void;
  ag_gemm_init(threads: number): void;
  ag_attention(shape: number, scale: number, q: number, k: number, v: number, keyMask: number, firstKey: number, out: number, stats: number): number;
  ag_attention_backward(shape: number, scale: number, q: number, k: number, v: number, keyMask: number, firstKey: number, stats: number,
    dout: number, dos: number, dq: number, dk: number, dv: number): number;
  ag_unary(op: number, x: number, out: number, n: number): number;
  ag_unary_backward(op: number, x: number, dy: number, dx: number, n: number): number;
  ag_softmax(x: number, rows: number, cols: number, out: number, log: number): void;
  ag_softmax_backward(y: number, dy: number, rows: number, cols: number, dx: number, log: number): void;
  ag_layer_norm(x: number, g: number, b: number, rows: number, cols: number, eps: number, out: number, mean: number, rstd: number): void;
  ag_layer_norm_backward(dy: number, x: number, g: number, mean: number, rstd: number, rows: number, cols: number, dx: number,
    dg: number, db: number): void;
  ag_layer_norm_backward_y(dy: number, y: number, g: number, b: number, rstd: number, rows: number, cols: number, dx: number,
    dg: number, db: number): void;
  ag_cross_entropy(logits: number, t: number, rows: number, cols: number, ignore: number, ls: number, loss: number, logp: number): void;
  ag_cross_entropy_backward(logp: number, t: number, rows: number, cols: number, ignore: number, ls: number, dloss: number,
    dl: number): void;
  ag_adamw(p: number, g: number, m: number, v: number, n: number, lr: number, b1: number, b2: number, eps: number, wd: number,
    bc1: number, bc2: number, gs: number): void;
  ag_sgd(p: number, g: number, buf: number, n: number, lr: number, mom: number, damp: number, nesterov: number, wd: number,
    first: number, gs: number): void;
  ag_reduce_sum(x: number, outer: number, n: number, inner: number, out: number): void;
  ag_matmul(a: number, b: number, out: number, aBf16: number, bKind: number, scales: number, batch: number, M: number,
    N: number, K: number, ta: number, tb: number, strideA: number, strideB: number, alpha: number, beta: number, bias: number): void;
  [name: string]: unknown;
}

type Typed = Float32Array | Uint16Array | Int32Array | Int8Array | Uint32Array | Uint8Array;

export class WasmMemory {
  constructor(readonly x: WasmExports, readonly memory: WebAssembly.Memory) {}

  /** Frees every operand placed by the previous call. */
  reset(): void {
    this.x.ag_reset();
  }

  /** Room for `bytes` bytes (16-aligned); its address. */
  reserve(bytes: number): number {
    const p = this.x.ag_alloc(bytes);
    if (p === 0 && bytes > 0) {
      throw new RangeError(`wasm backend: out of WebAssembly memory placing ${bytes} bytes (the module's memory is limited to 4 GiB)`);
    }
    return p >>> 0;
  }

  /** Copies `src` into fresh room; its address. */
  put(src: Typed): number {
    const p = this.reserve(src.byteLength);
    new Uint8Array(this.memory.buffer, p, src.byteLength).set(new Uint8Array(src.buffer, src.byteOffset, src.byteLength));
    return p;
  }

  /** put(src) when it is given, else 0 (a null pointer for optional operands). */
  putOpt(src: Typed | null): number {
    return src ? this.put(src) : 0;
  }

  /** Copies `n` elements back from address `p` into `dst` (all of it by default). */
  get(p: number, dst: Typed, n = dst.length): void {
    const bytes = n * dst.BYTES_PER_ELEMENT;
    new Uint8Array(dst.buffer, dst.byteOffset, bytes).set(new Uint8Array(this.memory.buffer, p, bytes));
  }

  /**
   * put() for several operands at once. Views of one ArrayBuffer (q, k and v read from one fused projection; dq, dk,
   * dv written into one gradient, at offsets into it) are placed once, as the span of bytes they cover together, so
   * that the kernel sees them overlap as they do; `getShared` copies such a span back once.
   */
  putShared(arrays: (Typed | null)[]): number[] {
    const spans = new Map<ArrayBufferLike, { lo: number; hi: number; p: number }>();
    for (const a of arrays) {
      if (!a) continue;
      const s = spans.get(a.buffer);
      if (!s) spans.set(a.buffer, { lo: a.byteOffset, hi: a.byteOffset + a.byteLength, p: 0 });
      else { s.lo = Math.min(s.lo, a.byteOffset); s.hi = Math.max(s.hi, a.byteOffset + a.byteLength); }
    }
    for (const [buf, s] of spans) s.p = this.put(new Uint8Array(buf, s.lo, s.hi - s.lo));
    this.spans = spans;
    return arrays.map((a) => {
      if (!a) return 0;
      const s = spans.get(a.buffer)!;
      return s.p + a.byteOffset - s.lo;
    });
  }
  private spans = new Map<ArrayBufferLike, { lo: number; hi: number; p: number }>();

  /** Copies back the spans of the last putShared that hold any of `arrays`, each once. */
  getShared(arrays: Typed[]): void {
    const done = new Set<ArrayBufferLike>();
    for (const a of arrays) {
      if (done.has(a.buffer)) continue;
      done.add(a.buffer);
      const s = this.spans.get(a.buffer);
      if (!s) throw new Error('wasm backend: getShared of an array that putShared did not place');
      new Uint8Array(a.buffer, s.lo, s.hi - s.lo).set(new Uint8Array(this.memory.buffer, s.p, s.hi - s.lo));
    }
  }

  /** Ints placed for a kernel's small integer arguments (shapes, strides). */
  putInts(xs: number[]): number {
    return this.put(Int32Array.from(xs));
  }

  f32(p: number, n: number): Float32Array {
    return new Float32Array(this.memory.buffer, p, n);
  }
}
