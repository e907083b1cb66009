/**
 * The kernels' view of the WebAssembly module: its exports, and the placement of operands in its linear memory.
 *
 * Tensors are ordinary typed arrays (JavaScript-owned ArrayBuffers, garbage-collected like any other), so a kernel
 * call copies its inputs into the module's memory, runs, and copies its outputs back: one bump allocation per
 * operand above a fixed mark, reset by the next call. The copies are memcpy-speed (~10 GB/s) and cost O(size) where a
 * product costs O(size * K); measured on the block workload they are ~3% of a step (see PERFORMANCE.md). Keeping
 * tensors inside wasm memory instead would make every tensor a view that a memory.grow detaches (non-shared memory),
 * cap all tensors together at 4 GiB, and need a finalizer-driven allocator: not worth it for ~3%.
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
  ag_matmul(a: number, b: number, out: number, aBf16: number, bKind: number, scales: number, batch: number, M: number,
    N: number, K: number, ta: number, tb: number, strideA: number, strideB: number, alpha: number, beta: number): void;
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

  f32(p: number, n: number): Float32Array {
    return new Float32Array(this.memory.buffer, p, n);
  }
}
