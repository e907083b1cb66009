/**
 * One data-parallel step's compression, GRACE's `sendStep` split in two around the all-gather:
 *
 *   const payload = gc.encode(grads, step);            // memory.compensate -> compress -> memory.update
 *   const all = await comm.allGather(payload);         // variable-size payloads, one per rank
 *   gc.decodeSum(all, grads, true);                    // decompress each rank's tensors and average
 *
 * The frame holds every tensor of the step in the map's order (see wire.ts); every rank must pass the same
 * names in the same order, which decodeSum checks through a hash of each name.
 *
 * Non-finite gradients never reach the memory or the compressor: a NaN or Inf would poison the residual for good
 * (inf - inf = NaN) or a compressor's state (PowerSGD's Q). `firstNonFinite` says so before any state changes (the
 * data-parallel layer agrees on it across ranks and skips the step); `encode` of such gradients changes nothing
 * and returns a 'skipped' frame (flags bit 0), and `decodeSum` of a set holding one returns false with NaN sums.
 */
import { Rng } from '../backend/rng.js';
import { CommunicationError } from '../errors.js';
import { makeCompressor, makeMemory, resolveSpec } from './registry.js';
import type { CompressionSpec, Compressor, Memory } from './types.js';
import { FRAME_ID, HEADER_BYTES, MAGIC, VERSION, getU32, nameHash, setU32 } from './wire.js';

export interface GradientCompressionOptions {
  /** Seed of the random choices; mixed with the rank so ranks draw independent but reproducible streams. */
  seed?: number;
  rank?: number;
  /** Tensor shapes by name (PowerSGD's matrix view); 1-D when absent. */
  shapes?: ReadonlyMap<string, readonly number[]>;
}

const WHO = 'frame';
/** Frame flags (byte 3): the sender's gradients were not finite; the frame holds no tensors. */
export const FRAME_SKIPPED = 1;

/** The name of the first tensor holding a NaN or an infinity, or null when all are finite. */
export function firstNonFinite(grads: ReadonlyMap<string, Float32Array>): string | null {
  for (const [name, g] of grads) {
    let z = 0;
    for (let i = 0; i < g.length; i++) z += g[i] * 0; // NaN as soon as one element is NaN or infinite
    if (z !== 0) return name;
  }
  return null;
}

function frameFail(field: string, got: string | number, expected: string, rank: number): never {
  throw new CommunicationError(`'${WHO}' payload of rank ${rank}: field '${field}' is ${got}; expected ${expected}`);
}

export class GradientCompression {
  readonly compressor: Compressor;
  readonly memory: Memory;
  /** Bytes of the frames this rank encoded (what it puts on the wire). */
  bytes = 0;
  /** Bytes the same gradients take as dense f32. */
  denseBytes = 0;
  readonly rng: Rng;
  shapes: ReadonlyMap<string, readonly number[]>;
  private sent = new Map<string, Float32Array>();

  constructor(spec: CompressionSpec | boolean | string = true, opts: GradientCompressionOptions = {}) {
    const s = resolveSpec(spec);
    this.compressor = makeCompressor(s);
    this.memory = makeMemory(s);
    this.rng = new Rng(((opts.seed ?? 0) ^ Math.imul(opts.rank ?? 0, 0x9e3779b1)) >>> 0);
    this.shapes = opts.shapes ?? new Map();
  }

  /**
   * Compresses every tensor of this step into one frame (error feedback applied and updated). Gradients with a
   * NaN or an infinity change no state: the frame says 'skipped' (see the module comment).
   */
  encode(grads: ReadonlyMap<string, Float32Array>, step: number): Uint8Array {
    if (firstNonFinite(grads) !== null) {
      const frame = new Uint8Array(HEADER_BYTES);
      frame.set([MAGIC, FRAME_ID, VERSION, FRAME_SKIPPED]);
      setU32(frame, 4, grads.size);
      return frame;
    }
    const parts: Uint8Array[] = [];
    let total = HEADER_BYTES, dense = 0;
    for (const [name, g] of grads) {
      const comp = this.memory.compensate(name, g, step);
      const payload = this.compressor.compress(comp, { name, shape: this.shapes.get(name), step, rng: this.rng });
      if (this.memory.needsSent) {
        let sent = this.sent.get(name);
        if (!sent || sent.length !== g.length) this.sent.set(name, (sent = new Float32Array(g.length)));
        else sent.fill(0);
        this.compressor.decompressAdd(payload, sent, 1);
        this.memory.update(name, comp, sent);
      }
      parts.push(payload);
      total += 8 + ((payload.length + 3) & ~3);
      dense += 4 * g.length;
    }
    const frame = new Uint8Array(total);
    frame[0] = MAGIC;
    frame[1] = FRAME_ID;
    frame[2] = VERSION;
    setU32(frame, 4, parts.length);
    let off = HEADER_BYTES, i = 0;
    for (const name of grads.keys()) {
      const p = parts[i++];
      setU32(frame, off, nameHash(name));
      setU32(frame, off + 4, p.length);
      frame.set(p, off + 8);
      off += 8 + ((p.length + 3) & ~3);
    }
    this.bytes += total;
    this.denseBytes += dense;
    return frame;
  }

  /**
   * into[name] = sum (or mean) over ranks of each rank's decompressed tensor. `into` lists the tensors in the
   * order they were encoded, with arrays of their sizes (they are overwritten). Returns false, with every sum NaN,
   * when a rank's frame says its gradients were not finite.
   */
  decodeSum(payloads: readonly Uint8Array[], into: ReadonlyMap<string, Float32Array>, average: boolean): boolean {
    if (payloads.length === 0) throw new CommunicationError(`'decodeSum': argument 'payloads' is empty; expected one frame per rank`);
    const alpha = average ? 1 / payloads.length : 1;
    if (payloads.some((f) => f instanceof Uint8Array && f.length === HEADER_BYTES && f[0] === MAGIC && f[1] === FRAME_ID && f[3] === FRAME_SKIPPED)) {
      for (const out of into.values()) out.fill(NaN);
      return false;
    }
    for (const out of into.values()) out.fill(0);
    const names = [...into.keys()];
    const hashes = names.map(nameHash);
    payloads.forEach((f, rank) => {
      if (!(f instanceof Uint8Array)) frameFail('frame', typeof f, 'a Uint8Array', rank);
      if (f.length < HEADER_BYTES) frameFail('length', `${f.length} bytes`, `at least ${HEADER_BYTES}`, rank);
      if (f[0] !== MAGIC) frameFail('magic', `0x${f[0].toString(16)}`, `0x${MAGIC.toString(16)}`, rank);
      if (f[1] !== FRAME_ID) frameFail('method', f[1], `${FRAME_ID} (a step frame)`, rank);
      if (f[2] !== VERSION) frameFail('version', f[2], `${VERSION}`, rank);
      const count = getU32(f, 4);
      if (count !== names.length) frameFail('tensor count', count, `${names.length} (the receiver's tensors)`, rank);
      let off = HEADER_BYTES;
      for (let t = 0; t < count; t++) {
        if (off + 8 > f.length) frameFail('length', `${f.length} bytes`, `more: truncated before tensor ${t} ('${names[t]}')`, rank);
        const h = getU32(f, off), len = getU32(f, off + 4);
        if (h !== hashes[t]) frameFail('name hash', h, `${hashes[t]} (tensor ${t} is '${names[t]}' here)`, rank);
        if (off + 8 + len > f.length) frameFail('length', `${f.length} bytes`, `at least ${off + 8 + len} for tensor '${names[t]}'`, rank);
        const out = into.get(names[t]) as Float32Array;
        this.compressor.decompressAdd(f.subarray(off + 8, off + 8 + len), out, alpha);
        off += 8 + ((len + 3) & ~3);
      }
      if (off !== f.length) frameFail('length', `${f.length} bytes`, `${off} (the tensors' payloads)`, rank);
    });
    return true;
  }

  /** Memory and compressor state for a checkpoint. */
  state(): { memory: Record<string, Float32Array>; compressor?: Record<string, Float32Array>; rng: { seed: number; counter: number } } {
    const c = this.compressor as Partial<{ state(): Record<string, Float32Array> }>;
    return { memory: this.memory.state(), compressor: c.state?.(), rng: this.rng.state() };
  }
  load(s: ReturnType<GradientCompression['state']>): void {
    this.memory.load(s.memory);
    const c = this.compressor as Partial<{ load(x: Record<string, Float32Array>): void }>;
    if (s.compressor) c.load?.(s.compressor);
    this.rng.seed = s.rng.seed;
    this.rng.counter = s.rng.counter;
  }
}
