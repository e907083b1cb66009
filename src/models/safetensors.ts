/**
 * safetensors reading and writing (https://huggingface.co/docs/safetensors): an 8-byte little-endian header
 * length, a JSON header `{name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?}`, then the data.
 *
 * The reader is safe on hostile files: every header field is validated against the file size before any
 * allocation (header length past the end, offsets out of range or overlapping, unknown dtype, byte counts that
 * disagree with the shape, truncated data) and each failure is a CheckpointError naming the file and the tensor.
 * Tensors are read one at a time straight into their typed arrays; 16-bit floats can stay 16-bit.
 */
import { openSync, readSync, fstatSync, closeSync, writeSync, fsyncSync, renameSync, unlinkSync } from 'node:fs';
import { CheckpointError } from '../errors.js';
import { Tensor } from '../tensor/tensor.js';
import type { DType } from '../backend/backend.js';
import { backend } from '../backend/index.js';
import { onCpu, placeOnCurrent } from '../backend/placement.js';
import { constants } from 'node:buffer';
import { readBack, safetensorsParts } from './safetensors-encode.js';

/** safetensors dtype -> (bytes per element, how it loads). */
const ST_DTYPES: Record<string, { bytes: number; native?: DType }> = {
  F64: { bytes: 8 }, F32: { bytes: 4, native: 'f32' }, F16: { bytes: 2, native: 'f16' }, BF16: { bytes: 2, native: 'bf16' },
  I64: { bytes: 8 }, I32: { bytes: 4, native: 'i32' }, I16: { bytes: 2 }, I8: { bytes: 1, native: 'i8' }, U8: { bytes: 1 }, BOOL: { bytes: 1 },
};

/** Headers larger than this are refused (the format's own reader uses 100 MB). */
const MAX_HEADER = 100 * 1024 * 1024;

export interface TensorInfo {
  name: string;
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  file: string;
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
  /** Byte offset of the data area in the file. */
  dataStart: number;
}

function fail(file: string, what: string, tensor?: string): never {
  throw new CheckpointError(`safetensors file '${file}'${tensor !== undefined ? `, tensor '${tensor}'` : ''}: ${what}`);
}

function readExact(fd: number, buf: Uint8Array, position: number, file: string, tensor?: string): void {
  let done = 0;
  while (done < buf.length) {
    const n = readSync(fd, buf, done, buf.length - done, position + done);
    if (n === 0) fail(file, `file ends after ${position + done} bytes; expected ${buf.length - done} more (truncated)`, tensor);
    done += n;
  }
}

/**
 * No two tensors share a byte, and no zero-length tensor sits strictly inside another (the format's own reader
 * requires the ranges to tile the data area; a zero-length entry at a boundary is fine). One sweep in offset order
 * against the tensor that reaches furthest so far, so every pair is covered, not only neighbours.
 */
function checkNoOverlap(file: string, list: TensorInfo[]): void {
  const sorted = list.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let reach: TensorInfo | null = null;
  for (const t of sorted) {
    if (reach && t.begin < reach.end && (t.end > t.begin || t.begin > reach.begin)) {
      fail(file, `data_offsets [${t.begin}, ${t.end}] overlap tensor '${reach.name}' at [${reach.begin}, ${reach.end}]`, t.name);
    }
    if (!reach || t.end > reach.end) reach = t;
  }
}

/** Reads and validates the header of an open file. */
export function readHeader(fd: number, file: string): SafetensorsHeader {
  const size = fstatSync(fd).size;
  if (size < 8) fail(file, `file has ${size} bytes; a safetensors file starts with an 8-byte header length`);
  const lenBuf = new Uint8Array(8);
  readExact(fd, lenBuf, 0, file);
  const len = Number(new DataView(lenBuf.buffer).getBigUint64(0, true));
  if (len > size - 8) fail(file, `header length ${len} runs past the end of the ${size}-byte file`);
  if (len > MAX_HEADER) fail(file, `header length ${len} exceeds the ${MAX_HEADER}-byte limit`);
  const hb = new Uint8Array(len);
  readExact(fd, hb, 8, file);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(hb));
  } catch (e) {
    fail(file, `header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) fail(file, 'header is not a JSON object');
  const dataStart = 8 + len;
  const dataLen = size - dataStart;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, v] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof v !== 'object' || v === null) fail(file, '__metadata__ is not an object');
      metadata = Object.fromEntries(Object.entries(v as object).map(([k, x]) => [k, String(x)]));
      continue;
    }
    const e = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e !== 'object' || e === null) fail(file, 'entry is not an object', name);
    if (typeof e.dtype !== 'string' || !(e.dtype in ST_DTYPES)) fail(file, `unknown dtype ${JSON.stringify(e.dtype)}; expected one of ${Object.keys(ST_DTYPES).join(', ')}`, name);
    if (!Array.isArray(e.shape) || e.shape.some((d) => !Number.isSafeInteger(d) || d < 0)) fail(file, `shape ${JSON.stringify(e.shape)} is not a list of non-negative integers`, name);
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || off.some((o) => !Number.isSafeInteger(o) || o < 0)) fail(file, `data_offsets ${JSON.stringify(off)} are not two non-negative integers`, name);
    const [begin, end] = off as [number, number];
    if (end < begin) fail(file, `data_offsets [${begin}, ${end}] end before they begin`, name);
    if (end > dataLen) fail(file, `data_offsets [${begin}, ${end}] run past the ${dataLen}-byte data area (truncated file?)`, name);
    const shape = e.shape as number[];
    let n = 1;
    for (const d of shape) n *= d;
    if (!Number.isSafeInteger(n) || n * ST_DTYPES[e.dtype].bytes !== end - begin) {
      fail(file, `holds ${end - begin} bytes; shape [${shape.join(',')}] of ${e.dtype} needs ${n * ST_DTYPES[e.dtype].bytes}`, name);
    }
    tensors.set(name, { name, dtype: e.dtype, shape, begin, end });
  }
  checkNoOverlap(file, [...tensors.values()]);
  return { file, tensors, metadata, dataStart };
}

export interface LoadOptions {
  /** 'f32' converts every float tensor to f32 (the default); 'keep' keeps F16/BF16 as 16-bit storage. */
  floatDType?: 'f32' | 'keep';
  /** Only these tensor names (others are not read). */
  names?: Set<string>;
  /**
   * A buffer to read a tensor's bytes into instead of a new one (`readSafetensors`; null: a new one). The tensor is
   * then a view of it where its dtype allows, so the caller must be done with it before it reads the next tensor.
   */
  into?: (info: TensorInfo) => Uint8Array | null;
}

/** I64 -> i32, refusing (not wrapping) a value outside the i32 range. */
function i64ToI32(file: string, info: TensorInfo, v: BigInt64Array): Int32Array {
  const out = new Int32Array(v.length);
  for (let i = 0; i < v.length; i++) {
    const x = v[i];
    if (x > 2147483647n || x < -2147483648n) {
      fail(file, `I64 element ${i} is ${x}, outside the int32 range this library holds integer tensors in`, info.name);
    }
    out[i] = Number(x);
  }
  return out;
}

function toTensor(file: string, info: TensorInfo, bytes: Uint8Array, opts: LoadOptions): Tensor {
  const shape = info.shape;
  const n = bytes.byteLength / ST_DTYPES[info.dtype].bytes;
  const buf = bytes.buffer as ArrayBuffer;
  switch (info.dtype) {
    case 'F32': return new Tensor(new Float32Array(buf, bytes.byteOffset, n), 'f32', shape);
    case 'F16':
    case 'BF16': {
      const t = new Tensor(new Uint16Array(buf, bytes.byteOffset, n), info.dtype === 'F16' ? 'f16' : 'bf16', shape);
      if (opts.floatDType === 'keep') return t;
      const f = new Float32Array(n);
      backend().cast(t.storage, t.dtype, f, 'f32');
      return new Tensor(f, 'f32', shape);
    }
    case 'F64': return new Tensor(Float32Array.from(new Float64Array(buf, bytes.byteOffset, n)), 'f32', shape);
    case 'I32': return new Tensor(new Int32Array(buf, bytes.byteOffset, n), 'i32', shape);
    case 'I64': {
      return new Tensor(i64ToI32(file, info, new BigInt64Array(buf, bytes.byteOffset, n)), 'i32', shape);
    }
    case 'I16': return new Tensor(Int32Array.from(new Int16Array(buf, bytes.byteOffset, n)), 'i32', shape);
    case 'I8': return new Tensor(new Int8Array(buf, bytes.byteOffset, n), 'i8', shape);
    default: return new Tensor(Int32Array.from(new Uint8Array(buf, bytes.byteOffset, n)), 'i32', shape); // U8, BOOL
  }
}

/**
 * Loads tensors from a .safetensors file: decoded on the CPU, then, where a device backend (WebGPU) is current,
 * uploaded to it (src/backend/placement.ts).
 */
export function loadSafetensors(file: string, opts: LoadOptions = {}): { tensors: Map<string, Tensor>; metadata: Record<string, string> } {
  const r = onCpu(() => decodeSafetensors(file, opts));
  placeOnCurrent(r.tensors.values());
  return r;
}

function decodeSafetensors(file: string, opts: LoadOptions): { tensors: Map<string, Tensor>; metadata: Record<string, string> } {
  const out = new Map<string, Tensor>();
  const r = readSafetensors(file, opts);
  for (const [name, t] of r.tensors) out.set(name, t);
  return { tensors: out, metadata: r.metadata };
}

/**
 * The tensors of a .safetensors file one at a time, in the file's order, decoded on the CPU: each is read when the
 * iteration reaches it, so a caller that converts or drops a tensor before the next (quantisation while loading)
 * never holds the whole file. The file is closed when the iteration ends, also early (break or a throw).
 */
export function readSafetensors(file: string, opts: LoadOptions = {}): { metadata: Record<string, string>; tensors: Generator<[string, Tensor]> } {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    throw new CheckpointError(`cannot open safetensors file '${file}': ${(e as Error).message}`, { cause: e });
  }
  let h: SafetensorsHeader;
  try {
    h = readHeader(fd, file);
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  function* tensors(): Generator<[string, Tensor]> {
    try {
      for (const info of h.tensors.values()) {
        if (opts.names && !opts.names.has(info.name)) continue;
        const len = info.end - info.begin;
        if (len > constants.MAX_LENGTH) fail(file, `holds ${len} bytes, more than the ${constants.MAX_LENGTH} one array can hold`, info.name);
        // 8-byte aligned backing store so that any typed array view fits.
        const bytes = opts.into?.(info) ?? new Uint8Array(new ArrayBuffer(Math.ceil(len / 8) * 8), 0, len);
        if (bytes.byteLength !== len || bytes.byteOffset % 8 !== 0) throw new RangeError(`readSafetensors: 'into' gave ${bytes.byteLength} bytes at offset ${bytes.byteOffset} for '${info.name}' (${len} bytes, 8-aligned)`);
        readExact(fd, bytes, h.dataStart + info.begin, file, info.name);
        yield [info.name, toTensor(file, info, bytes, opts)];
      }
    } finally {
      closeSync(fd);
    }
  }
  return { metadata: h.metadata, tensors: tensors() };
}

/** Reads only the header (names, dtypes, shapes) of a file. */
export function inspectSafetensors(file: string): SafetensorsHeader {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    throw new CheckpointError(`cannot open safetensors file '${file}': ${(e as Error).message}`, { cause: e });
  }
  try {
    return readHeader(fd, file);
  } finally {
    closeSync(fd);
  }
}

/** `saveSafetensors` of tensors that may live on a device (WebGPU): read back first (`readBack`), then written. */
export async function saveSafetensorsAsync(file: string, tensors: Map<string, Tensor>, metadata?: Record<string, string>): Promise<void> {
  saveSafetensors(file, await readBack(tensors), metadata);
}

/**
 * Writes tensors to `file` atomically (a temp file, fsync, rename): a crash never leaves a half-written file
 * under the final name. Keys are written in sorted order, the header padded to 8 bytes as the format does.
 */
export function saveSafetensors(file: string, tensors: Map<string, Tensor>, metadata?: Record<string, string>): void {
  const [len, hb, ...parts] = safetensorsParts(tensors, metadata);
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, len);
    writeSync(fd, hb);
    for (const p of parts) {
      let done = 0;
      while (done < p.byteLength) done += writeSync(fd, p, done, p.byteLength - done);
    }
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    try { unlinkSync(tmp); } catch { /* already gone */ }
    throw new CheckpointError(`cannot write safetensors file '${file}': ${(e as Error).message}`, { cause: e });
  }
  closeSync(fd);
  renameSync(tmp, file);
}
