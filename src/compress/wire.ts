/**
 * The wire format shared by every compressor. All numbers are little-endian.
 *
 * Payload of one tensor:
 *   byte 0      magic 0xAC
 *   byte 1      method id (the compressor's `methodId`)
 *   byte 2      format version (1)
 *   byte 3      flags (method specific; sparse methods: bit 0 = varint delta-coded indices, bit 1 = f16
 *               values with an f32 scale instead of f32 values, see compressors/values.ts; random-k: bit 1)
 *   bytes 4..7  u32 element count
 *   then the method's body. Bodies put their 4-byte fields first, so f32 sections start 4-byte aligned.
 *
 * A step frame (`GradientCompression.encode`) concatenates payloads:
 *   bytes 0..3  0xAC, FRAME_ID, version, flags (bit 0: the sender's gradients were not finite; no tensors
 *               follow, see gradient-compression.ts);  bytes 4..7 u32 tensor count
 *   per tensor: u32 hash of the name, u32 payload length, the payload, zero padding to a multiple of 4.
 */
import { CommunicationError } from '../errors.js';

export const MAGIC = 0xac;
export const VERSION = 1;
export const HEADER_BYTES = 8;
export const FRAME_ID = 0xf0;
export const FLAG_VARINT = 1;
/** Sparse methods: the kept values are scaled f16, not f32. */
export const FLAG_F16 = 2;

export function fail(who: string, field: string, got: string | number, expected: string): never {
  throw new CommunicationError(`'${who}' payload: field '${field}' is ${got}; expected ${expected}`);
}

/** A new payload of `bytes` with its header written. */
export function newPayload(bytes: number, methodId: number, numel: number, flags = 0): Uint8Array {
  const out = new Uint8Array(bytes);
  out[0] = MAGIC;
  out[1] = methodId;
  out[2] = VERSION;
  out[3] = flags;
  setU32(out, 4, numel);
  return out;
}

/** Validates the header of `p` against what the receiver expects; returns the flags byte. */
export function readHeader(p: Uint8Array, who: string, methodId: number, numel: number): number {
  if (!(p instanceof Uint8Array)) fail(who, 'payload', typeof p, 'a Uint8Array');
  if (p.length < HEADER_BYTES) fail(who, 'length', p.length, `at least ${HEADER_BYTES} bytes (the header)`);
  if (p[0] !== MAGIC) fail(who, 'magic', `0x${p[0].toString(16)}`, `0x${MAGIC.toString(16)}`);
  if (p[1] !== methodId) fail(who, 'method', p[1], `${methodId} (${who})`);
  if (p[2] !== VERSION) fail(who, 'version', p[2], `${VERSION}`);
  const n = getU32(p, 4);
  if (n !== numel) fail(who, 'numel', n, `${numel} (the receiver's tensor size)`);
  return p[3];
}

/** Throws unless the payload is exactly `bytes` long. */
export function checkLength(p: Uint8Array, who: string, bytes: number, what = ''): void {
  if (p.length !== bytes) fail(who, 'length', `${p.length} bytes`, `${bytes}${what ? ` (${what})` : ''}`);
}

export function getU32(p: Uint8Array, off: number): number {
  return (p[off] | (p[off + 1] << 8) | (p[off + 2] << 16) | (p[off + 3] << 24)) >>> 0;
}
export function setU32(p: Uint8Array, off: number, v: number): void {
  p[off] = v & 0xff;
  p[off + 1] = (v >>> 8) & 0xff;
  p[off + 2] = (v >>> 16) & 0xff;
  p[off + 3] = (v >>> 24) & 0xff;
}
const f32Scratch = new Float32Array(1);
const f32ScratchBytes = new Uint8Array(f32Scratch.buffer);
export function getF32(p: Uint8Array, off: number): number {
  for (let i = 0; i < 4; i++) f32ScratchBytes[i] = p[off + i];
  return f32Scratch[0];
}
export function setF32(p: Uint8Array, off: number, v: number): void {
  f32Scratch[0] = v;
  p.set(f32ScratchBytes, off);
}

/**
 * Typed views of a section: zero-copy when the absolute offset is aligned (payloads built here always are),
 * a copy otherwise (bytes from a socket at an odd offset).
 */
export function f32View(p: Uint8Array, off: number, n: number): Float32Array {
  const abs = p.byteOffset + off;
  if ((abs & 3) === 0) return new Float32Array(p.buffer, abs, n);
  return new Float32Array(p.slice(off, off + 4 * n).buffer);
}
export function u32View(p: Uint8Array, off: number, n: number): Uint32Array {
  const abs = p.byteOffset + off;
  if ((abs & 3) === 0) return new Uint32Array(p.buffer, abs, n);
  return new Uint32Array(p.slice(off, off + 4 * n).buffer);
}
export function u16View(p: Uint8Array, off: number, n: number): Uint16Array {
  const abs = p.byteOffset + off;
  if ((abs & 1) === 0) return new Uint16Array(p.buffer, abs, n);
  return new Uint16Array(p.slice(off, off + 2 * n).buffer);
}

/** Bytes of the LEB128 varint of `v` (0 <= v < 2^32). */
export function varintBytes(v: number): number {
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5;
}

/** Bytes of the delta-coded varint indices (gap = idx[i] - idx[i-1] - 1, idx[-1] = -1). */
export function deltaVarintBytes(idx: Uint32Array, k: number): number {
  let bytes = 0, prev = -1;
  for (let i = 0; i < k; i++) {
    const v = idx[i];
    bytes += varintBytes(v - prev - 1);
    prev = v;
  }
  return bytes;
}

/** Writes the delta-coded varints of idx[0..k) at `off`; returns the end offset. */
export function writeDeltaVarints(p: Uint8Array, off: number, idx: Uint32Array, k: number): number {
  let prev = -1;
  for (let i = 0; i < k; i++) {
    const cur = idx[i];
    let v = cur - prev - 1;
    prev = cur;
    while (v >= 0x80) {
      p[off++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    p[off++] = v;
  }
  return off;
}

/**
 * Reads k delta-coded indices from p[off, end) into `out`, checking each is < numel and that the section is
 * used exactly.
 */
export function readDeltaVarints(p: Uint8Array, off: number, end: number, k: number, numel: number, out: Uint32Array, who: string): void {
  let prev = -1;
  for (let i = 0; i < k; i++) {
    let v = 0, shift = 0, b: number;
    do {
      if (off >= end) fail(who, 'indices', `truncated at index ${i}`, `${k} varint indices`);
      if (shift > 28) fail(who, 'indices', `a varint longer than 5 bytes at index ${i}`, 'at most 5 bytes');
      b = p[off++];
      v += (b & 0x7f) * 2 ** shift;
      shift += 7;
    } while (b & 0x80);
    const cur = prev + 1 + v;
    if (cur >= numel) fail(who, 'indices', `index ${cur} at position ${i}`, `indices < numel ${numel}`);
    out[i] = cur;
    prev = cur;
  }
  if (off !== end) fail(who, 'indices', `${end - off} unused bytes`, 'the index section used exactly');
}

/** A 32-bit FNV-1a hash of a tensor name (the frame checks that ranks list the same tensors). */
export function nameHash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}
