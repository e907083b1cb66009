/**
 * The bytes of a safetensors file (8-byte little-endian header length, JSON header padded to 8 bytes, data), with
 * keys in sorted order: what saveSafetensors writes in Node and what a page offers as a download. No file system.
 */
import type { Tensor } from '../tensor/tensor.js';
import type { DType } from '../backend/backend.js';

const OUR_TO_ST: Record<DType, string> = { f32: 'F32', f16: 'F16', bf16: 'BF16', i32: 'I32', i8: 'I8' };

/** The file's parts in order: the length, the header, then each tensor's data (views, not copies). */
export function safetensorsParts(tensors: Map<string, Tensor>, metadata?: Record<string, string>): Uint8Array[] {
  const names = [...tensors.keys()].sort();
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) header.__metadata__ = metadata;
  let off = 0;
  const parts: Uint8Array[] = [];
  for (const name of names) {
    const t = tensors.get(name) as Tensor;
    const d = t.dense();
    const bytes = new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
    header[name] = { dtype: OUR_TO_ST[t.dtype], shape: t.shape, data_offsets: [off, off + bytes.byteLength] };
    parts.push(bytes);
    off += bytes.byteLength;
  }
  const enc = new TextEncoder();
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (enc.encode(json).length % 8)) % 8);
  const hb = enc.encode(json);
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(hb.length), true);
  return [len, hb, ...parts];
}

/** The whole file as one buffer. */
export function encodeSafetensors(tensors: Map<string, Tensor>, metadata?: Record<string, string>): Uint8Array {
  const parts = safetensorsParts(tensors, metadata);
  const out = new Uint8Array(parts.reduce((s, p) => s + p.byteLength, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.byteLength; }
  return out;
}
