/**
 * The bytes of a safetensors file (8-byte little-endian header length, JSON header padded to 8 bytes, data), with
 * keys in sorted order: what saveSafetensors writes in Node and what a page offers as a download. No file system.
 */
import { Tensor } from '../tensor/tensor.js';
import type { DType } from '../backend/backend.js';
import { backend } from '../backend/index.js';
import { isDeviceStorage } from '../tensor/alloc.js';
import { DeviceError } from '../errors.js';

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
    if (isDeviceStorage(d)) {
      throw new DeviceError(`tensor '${name}' to save lives on the ${backend().name} device: save with the asynchronous forms ` +
        '(saveAdapterAsync, adapterFilesAsync, saveCheckpointAsync, saveSafetensorsAsync, or readBack first), which read it back');
    }
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

/**
 * CPU copies of the device tensors of `tensors` (the others are passed through): every read is queued before the
 * first is awaited. Same keys, shapes and dtypes (16-bit storage read back as is, bit for bit).
 */
export async function readBack(tensors: Map<string, Tensor>): Promise<Map<string, Tensor>> {
  const dev = backend().device;
  const out = await Promise.all([...tensors].map(async ([k, t]): Promise<[string, Tensor]> => {
    const d = t.dense();
    if (!isDeviceStorage(d)) return [k, t];
    if (!dev) throw new DeviceError(`tensor '${k}' lives on a device, but the current backend (${backend().name}) is not a device backend`);
    return [k, new Tensor(await dev.read(d), t.dtype, [...t.shape])];
  }));
  return new Map(out);
}
