/**
 * The WebGPU device, its buffer pool, pipeline cache and command recording (see README.md). Kernels call `run`,
 * which records one compute dispatch; `read` is the one place that waits for the device.
 */
/// <reference types="@webgpu/types" />
import type { DType } from '../backend.js';
import { GpuArray, PER_WORD } from './array.js';

/** A kernel's buffer: read-only or written. */
export interface Bind {
  arr: GpuArray;
  write?: boolean;
}

/** 32-bit parameter words for a kernel (read in WGSL as `p[i]`, floats through bitcast). */
export class Params {
  private words: number[] = [];
  private f = new Float32Array(1);
  private u = new Uint32Array(this.f.buffer);
  u32(...v: number[]): this {
    for (const x of v) this.words.push(x >>> 0);
    return this;
  }
  i32(...v: number[]): this {
    for (const x of v) this.words.push(x | 0);
    return this;
  }
  f32(...v: number[]): this {
    for (const x of v) {
      this.f[0] = x;
      this.words.push(this.u[0]);
    }
    return this;
  }
  toArray(): Uint32Array {
    return Uint32Array.from(this.words.length ? this.words.map((w) => w >>> 0) : [0]);
  }
}

const MAX_DIM = 65535;
/** Free buffers the pool keeps, in bytes; beyond it a returned buffer is destroyed. */
const MAX_POOLED = 1 << 30;
/** Passes recorded before the pending commands are submitted without a read. */
const FLUSH_EVERY = 256;
/**
 * Parameter words of one dispatch occupy one 256-byte slot (the storage binding offset alignment) of a parameter
 * buffer that every batch of recorded commands reuses: the slots are filled by one queue write just before the
 * batch is submitted, which the queue orders after the previous batch has read them. No buffer per dispatch.
 */
const SLOT_BYTES = 256;
const PARAM_BYTES = FLUSH_EVERY * SLOT_BYTES;

export class GpuContext {
  readonly device: GPUDevice;
  readonly adapterInfo: string;
  readonly hasF16: boolean;
  /** A CPU emulation (SwiftShader, a fallback adapter): kernels pick variants without workgroup barriers where they have one. */
  readonly software: boolean;
  /** The matmul kernel: `tiled` (workgroup-memory tiles) or `direct` (no barriers; the default on software adapters). */
  matmulVariant: 'tiled' | 'direct';
  private pool = new Map<number, GPUBuffer[]>();
  private pipelines = new Map<string, { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout }>();
  private encoder: GPUCommandEncoder | null = null;
  private pending = 0;
  private paramBuf: GPUBuffer | null = null;
  private paramData = new Uint32Array(PARAM_BYTES / 4);
  private finalizer = new FinalizationRegistry<GPUBuffer>((buf) => this.recycle(buf));
  /** Dispatches recorded since creation (tests and benchmarks). */
  dispatches = 0;
  /** When an array: every dispatch recorded is also kept here (with the calling kernel's name) for `profile`. */
  trace: TracedDispatch[] | null = null;

  /** The first uncaptured WebGPU error (or device loss): thrown by the next `read`, the next asynchronous point. */
  private failure: string | null = null;
  private pooled = 0;

  constructor(device: GPUDevice, adapterInfo: string, hasF16: boolean, software = false) {
    this.device = device;
    this.adapterInfo = adapterInfo;
    this.hasF16 = hasF16;
    this.software = software;
    this.matmulVariant = software ? 'direct' : 'tiled';
    device.addEventListener('uncapturederror', (e) => {
      this.failure ??= `WebGPU error: ${(e as GPUUncapturedErrorEvent).error.message}`;
    });
    void device.lost.then((info) => {
      this.failure ??= `the WebGPU device was lost (${info.reason}): ${info.message}`;
    });
  }

  private raise(): void {
    if (this.failure) throw new Error(this.failure);
  }

  // ---- memory ---------------------------------------------------------------------------------------------------
  /** Powers of two from 256 bytes; above half the largest buffer, the size itself (rounded to 256). */
  private sizeClass(bytes: number): number {
    const max = this.device.limits.maxStorageBufferBindingSize;
    if (bytes > max) {
      throw new RangeError(`WebGPU: a buffer of ${bytes} bytes is over this device's storage binding limit of ${max} bytes`);
    }
    let c = 256;
    while (c < bytes) c *= 2;
    return c <= max ? c : Math.ceil(bytes / 256) * 256;
  }

  private take(bytes: number): GPUBuffer {
    const c = this.sizeClass(bytes);
    const list = this.pool.get(c);
    if (list && list.length) {
      this.pooled -= c;
      return list.pop() as GPUBuffer;
    }
    return this.device.createBuffer({ size: c, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
  }

  private recycle(buf: GPUBuffer): void {
    if (this.pooled + buf.size > MAX_POOLED) {
      this.flush(); // commands recorded so far may still use it
      buf.destroy();
      return;
    }
    this.pooled += buf.size;
    const list = this.pool.get(buf.size);
    if (list) list.push(buf);
    else this.pool.set(buf.size, [buf]);
  }

  /** A new zero-filled array of `size` elements (backed by a pooled buffer, returned to the pool when collected). */
  alloc(dtype: DType, size: number): GpuArray {
    const bytes = Math.max(4, Math.ceil(size / PER_WORD[dtype]) * 4);
    const buf = this.take(bytes);
    this.enc().clearBuffer(buf, 0, this.sizeClass(bytes));
    const arr = new GpuArray(buf, dtype, 0, size);
    this.finalizer.register(arr, buf, arr);
    return arr;
  }

  private dummies: (GpuArray | null)[] = [null, null];
  /** A small array to bind where an optional argument is null (one for reads, one for writes). */
  dummy(write = false): GpuArray {
    const k = write ? 1 : 0;
    return (this.dummies[k] ??= this.alloc('f32', 4));
  }

  /** Returns a root array's buffer to the pool now (the array must not be used again). */
  release(arr: GpuArray): void {
    if (arr.root) throw new Error('GpuContext.release: pass the root array, not a view');
    this.finalizer.unregister(arr);
    this.recycle(arr.buffer);
  }

  /** Bytes held by the pool (free buffers). */
  pooledBytes(): number {
    return this.pooled;
  }

  /** A device copy of `data` (f32, i32, bf16/f16 as Uint16Array, i8). */
  upload(data: Float32Array | Int32Array | Uint16Array | Int8Array, dtype: DType): GpuArray {
    const arr = this.alloc(dtype, data.length);
    this.write(arr, data);
    return arr;
  }

  /** Overwrites `dst` with `data` (same length); 16-bit and 8-bit views must start on a word boundary. */
  write(dst: GpuArray, data: Float32Array | Int32Array | Uint16Array | Int8Array): void {
    if (data.length !== dst.length) throw new RangeError(`write: ${data.length} values for an array of ${dst.length}`);
    const per = PER_WORD[dst.dtype];
    if (dst.offset % per !== 0) throw new RangeError(`write: a ${dst.dtype} view must start on a 4-byte boundary (offset ${dst.offset})`);
    this.flush(); // queue writes run before unsubmitted commands: submit those first
    const bytes = new Uint8Array(Math.ceil(data.byteLength / 4) * 4);
    bytes.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    if (data.byteLength % 4 !== 0 && dst.root) {
      // the padding of a view's last word belongs to its neighbour; a root array's padding belongs to nobody
      throw new RangeError(`write: a ${dst.dtype} view must end on a 4-byte boundary (length ${data.length})`);
    }
    if (bytes.length) this.device.queue.writeBuffer(dst.buffer, (dst.offset / per) * 4, bytes);
  }

  /** The values of `arr`, after every recorded kernel has run: the one asynchronous read back. */
  async read(arr: GpuArray): Promise<Float32Array | Int32Array | Uint16Array | Int8Array> {
    const per = PER_WORD[arr.dtype];
    const w0 = Math.floor(arr.offset / per);
    const w1 = Math.ceil((arr.offset + arr.length) / per);
    const bytes = Math.max(4, (w1 - w0) * 4);
    const staging = this.device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    this.enc().copyBufferToBuffer(arr.buffer, w0 * 4, staging, 0, bytes);
    this.flush();
    this.raise();
    await staging.mapAsync(GPUMapMode.READ).catch((e: Error) => {
      this.raise();
      throw e;
    });
    this.raise();
    const raw = staging.getMappedRange().slice(0);
    staging.unmap();
    staging.destroy();
    const skip = arr.offset - w0 * per;
    switch (arr.dtype) {
      case 'f32': return new Float32Array(raw, 0, arr.length);
      case 'i32': return new Int32Array(raw, 0, arr.length);
      case 'bf16': case 'f16': return new Uint16Array(raw, skip * 2, arr.length);
      case 'i8': return new Int8Array(raw, skip, arr.length);
    }
  }

  // ---- commands ---------------------------------------------------------------------------------------------------
  private enc(): GPUCommandEncoder {
    if (!this.encoder) this.encoder = this.device.createCommandEncoder();
    return this.encoder;
  }

  /** Submits the recorded commands. */
  flush(): void {
    if (!this.encoder) return;
    if (this.pending > 0 && this.paramBuf) {
      this.device.queue.writeBuffer(this.paramBuf, 0, this.paramData, 0, (this.pending * SLOT_BYTES) / 4);
    }
    this.device.queue.submit([this.encoder.finish()]);
    this.encoder = null;
    this.pending = 0;
  }

  /** Waits until the device has run everything submitted so far. */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
  }

  private pipeline(code: string, binds: Bind[]): { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout } {
    const key = code + binds.map((b) => (b.write ? 'w' : 'r')).join('');
    let p = this.pipelines.get(key);
    if (!p) {
      const entries: GPUBindGroupLayoutEntry[] = [{ binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'read-only-storage' } }];
      binds.forEach((b, i) => entries.push({ binding: i + 1, visibility: GPUShaderStage.COMPUTE, buffer: { type: b.write ? 'storage' : 'read-only-storage' } }));
      const layout = this.device.createBindGroupLayout({ entries });
      const module = this.device.createShaderModule({ code });
      const pipeline = this.device.createComputePipeline({
        layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }),
        compute: { module, entryPoint: 'main' },
      });
      p = { pipeline, layout };
      this.pipelines.set(key, p);
    }
    return p;
  }

  /**
   * Records one dispatch of `code` (entry point `main`; binding 0 = the parameter words, then `binds` in order) over
   * `groups` workgroups. `groups` above 65535 in x is folded into y (kernels index with `flatGroup`). A read
   * binding whose buffer is also written by the dispatch is first copied (WebGPU forbids the aliasing).
   */
  run(code: string, binds: Bind[], params: Params, groups: number | [number, number, number]): void {
    const written = new Set(binds.filter((b) => b.write).map((b) => b.arr.buffer));
    const temps: GPUBuffer[] = [];
    const actual = binds.map((b) => {
      if (b.write || !written.has(b.arr.buffer)) return b.arr.buffer;
      const t = this.take(b.arr.buffer.size);
      this.enc().copyBufferToBuffer(b.arr.buffer, 0, t, 0, b.arr.buffer.size);
      temps.push(t);
      return t;
    });
    const words = params.toArray();
    if (words.byteLength > SLOT_BYTES) throw new Error(`a kernel has ${words.length} parameter words; at most ${SLOT_BYTES / 4}`);
    this.paramBuf ??= this.device.createBuffer({ size: PARAM_BYTES, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
    const slot = this.pending; // this dispatch's slot; pending counts the dispatches of the batch being recorded
    this.paramData.set(words, (slot * SLOT_BYTES) / 4);
    const { pipeline, layout } = this.pipeline(code, binds);
    const bindGroup = this.device.createBindGroup({
      layout,
      entries: [
        { binding: 0, resource: { buffer: this.paramBuf, offset: slot * SLOT_BYTES, size: SLOT_BYTES } },
        ...actual.map((buffer, i) => ({ binding: i + 1, resource: { buffer } })),
      ],
    });
    let [x, y, z] = typeof groups === 'number' ? [groups, 1, 1] : groups;
    if (x > MAX_DIM) {
      if (y !== 1) throw new Error(`dispatch of ${x} x ${y} workgroups is too large`);
      y = Math.ceil(x / MAX_DIM);
      x = MAX_DIM;
    }
    if (y > MAX_DIM || z > MAX_DIM) {
      throw new RangeError(`WebGPU: a dispatch of ${x} x ${y} x ${z} workgroups is over the limit of ${MAX_DIM} per dimension (batch or rows too large for one call)`);
    }
    if (x === 0 || y === 0 || z === 0) return;
    const pass = this.enc().beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(x, y, z);
    pass.end();
    this.dispatches++;
    if (this.trace) this.trace.push({ kernel: caller(), pipeline, layout, buffers: actual, words: words.slice(), groups: [x, y, z] });
    this.pending++; // before recycling: a full pool flushes, and the flush must write this dispatch's slot
    for (const t of temps) this.recycle(t); // later uses are later in queue order
    if (this.pending >= FLUSH_EVERY) this.flush();
  }
}

/** One recorded dispatch (`GpuContext.trace`). */
export interface TracedDispatch {
  kernel: string;
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
  buffers: GPUBuffer[];
  /** The parameter words (their slot in the shared parameter buffer is rewritten by later batches). */
  words: Uint32Array;
  groups: [number, number, number];
}

/** The name of the kernel function that called `run` (profiling only: reads the stack). */
function caller(): string {
  const lines = (new Error().stack ?? '').split('\n').slice(1).map((l) => l.trim());
  const l = lines.find((x) => !/GpuContext|\bcaller\b|\brun\b/.test(x) && /^at /.test(x)) ?? lines[2] ?? '?';
  return /^at (?:\S+\.)?(\S+) /.exec(l)?.[1] ?? l;
}

/**
 * Times traced dispatches one at a time (each submitted alone and waited for; the contents of the buffers are
 * whatever they hold now, which changes no kernel's cost): milliseconds per kernel name, largest first, with the
 * number of dispatches and the sum of the per-dispatch submit-and-wait overhead measured on an empty encoder.
 */
export async function profileTrace(ctx: GpuContext, trace: TracedDispatch[]): Promise<{ kernel: string; dispatches: number; ms: number }[]> {
  const by = new Map<string, { dispatches: number; ms: number }>();
  const t0 = performance.now();
  ctx.device.queue.submit([ctx.device.createCommandEncoder().finish()]);
  await ctx.device.queue.onSubmittedWorkDone();
  const empty = performance.now() - t0;
  const params = ctx.device.createBuffer({ size: SLOT_BYTES, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
  for (const d of trace) {
    const words = new Uint32Array(SLOT_BYTES / 4);
    words.set(d.words);
    ctx.device.queue.writeBuffer(params, 0, words);
    const bindGroup = ctx.device.createBindGroup({ layout: d.layout, entries: [{ binding: 0, resource: { buffer: params } },
      ...d.buffers.map((buffer, i) => ({ binding: i + 1, resource: { buffer } }))] });
    const enc = ctx.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(d.pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(...d.groups);
    pass.end();
    const t = performance.now();
    ctx.device.queue.submit([enc.finish()]);
    await ctx.device.queue.onSubmittedWorkDone();
    const e = by.get(d.kernel) ?? { dispatches: 0, ms: 0 };
    e.dispatches++;
    e.ms += Math.max(0, performance.now() - t - empty);
    by.set(d.kernel, e);
  }
  params.destroy();
  return [...by].map(([kernel, v]) => ({ kernel, ...v })).sort((a, b) => b.ms - a.ms);
}

/** WebGPU's core defaults for the compute limits that the kernels rely on. */
const CORE_COMPUTE_LIMITS = {
  maxComputeInvocationsPerWorkgroup: 256, maxComputeWorkgroupSizeX: 256, maxComputeWorkgroupSizeY: 256, maxComputeWorkgroupSizeZ: 64,
  maxComputeWorkgroupStorageSize: 16384, maxComputeWorkgroupsPerDimension: 65535,
};

/** Asks `gpu` (navigator.gpu, or the Node binding's) for an adapter and a device; null when there is no adapter. */
export async function createContext(gpu: GPU): Promise<GpuContext | null> {
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) return null;
  const hasF16 = adapter.features.has('shader-f16');
  const lim = adapter.limits;
  // The kernels are written to WebGPU's core limits (256 invocations a workgroup). A compatibility-level adapter
  // (Chromium's OpenGL ES backend: src/web/llvmpipe.ts) defaults to less, so those are asked for up to core's values.
  const core: Record<string, number> = CORE_COMPUTE_LIMITS;
  const compute = Object.fromEntries(Object.entries(core).map(([k, v]) => [k, Math.min(v, (lim as unknown as Record<string, number>)[k] ?? v)]));
  const device = await adapter.requestDevice({
    requiredFeatures: hasF16 ? ['shader-f16'] : [],
    requiredLimits: {
      ...compute,
      maxStorageBufferBindingSize: lim.maxStorageBufferBindingSize,
      maxBufferSize: lim.maxBufferSize,
      maxStorageBuffersPerShaderStage: Math.min(10, lim.maxStorageBuffersPerShaderStage),
    },
  });
  const info = (adapter as GPUAdapter & { info?: GPUAdapterInfo }).info;
  const desc = info ? [info.vendor, info.architecture, info.description].filter(Boolean).join(' ') : 'unknown adapter';
  const fallback = (info as (GPUAdapterInfo & { isFallbackAdapter?: boolean }) | undefined)?.isFallbackAdapter
    ?? (adapter as GPUAdapter & { isFallbackAdapter?: boolean }).isFallbackAdapter ?? false;
  return new GpuContext(device, desc, hasF16, fallback || /swiftshader|llvmpipe|lavapipe/i.test(desc));
}
