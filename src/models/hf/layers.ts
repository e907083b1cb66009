/**
 * Pieces shared by the Hugging Face architectures: deferred initialisation (a model skeleton whose large
 * weights are placeholders until the checkpoint fills them, as accelerate's `init_empty_weights`), placing a
 * loaded tensor into a module by its dotted key, embedding lookup on 16-bit tables, rotary tables, the KV cache,
 * attention masks and grouped-query key/value repetition.
 */
import { Tensor } from '../../tensor/tensor.js';
import { backend } from '../../backend/index.js';
import { embedding } from '../../tensor/ops/nn.js';
import { rand } from '../../tensor/creation.js';
import { getRng } from '../../nn/init.js';
import { concat, expand, reshape, unsqueeze } from '../../tensor/ops/movement.js';
import type { Module } from '../../nn/module.js';
import { Embedding, Linear } from '../../nn/layers.js';
import { CheckpointError, ConfigError, IndexError, fmtShape } from '../../errors.js';

// ---- deferred initialisation ------------------------------------------------------------------------------

let deferInit = false;

/** Builds a model whose Linear and Embedding weights are shape-only placeholders (no memory, no RNG time). */
export function withDeferredInit<T>(fn: () => T): T {
  const prev = deferInit;
  deferInit = true;
  try {
    return fn();
  } finally {
    deferInit = prev;
  }
}

/** A shape-only tensor: no storage until the loader replaces it. */
export function placeholder(shape: number[]): Tensor {
  return new Tensor(new Float32Array(0), 'f32', shape);
}

export function isPlaceholder(t: Tensor): boolean {
  return t.storage.length < t.size;
}

type WithReplace = { replaceParam(name: string, t: Tensor): Tensor };

function swap(m: Module, name: string, t: Tensor): void {
  const owner = m as unknown as WithReplace & Record<string, unknown>;
  const old = owner[name];
  owner.replaceParam(name, t);
  if (old instanceof Object) owner[name] = t;
}

/** nn.Linear(in, out), with placeholder weights under `withDeferredInit`. */
export function makeLinear(inF: number, outF: number, bias: boolean): Linear {
  if (!deferInit) return new Linear(inF, outF, { bias });
  const l = new Linear(1, 1, { bias });
  Object.assign(l, { inFeatures: inF, outFeatures: outF });
  swap(l, 'weight', placeholder([outF, inF]));
  if (bias) swap(l, 'bias', placeholder([outF]));
  return l;
}

/** nn.Embedding(n, dim), with a placeholder table under `withDeferredInit`. */
export function makeEmbedding(n: number, dim: number): Embedding {
  if (!deferInit) return new Embedding(n, dim);
  const e = new Embedding(1, 1);
  Object.assign(e, { numEmbeddings: n, dim });
  swap(e, 'weight', placeholder([n, dim]));
  return e;
}

/** The module that owns the parameter at dotted `key`, and the parameter's own name. */
export function ownerOf(root: Module, key: string): { module: Module; name: string } | null {
  const parts = key.split('.');
  const name = parts.pop() as string;
  let m: Module = root;
  for (const p of parts) {
    let next: Module | undefined;
    for (const [n, c] of m.namedChildren()) if (n === p) { next = c; break; }
    if (!next) return null;
    m = next;
  }
  for (const [n] of m.namedParameters()) if (n === name) return { module: m, name };
  return null;
}

/**
 * Puts `t` in place of the parameter at `key` (the module's field follows). f32 tensors are trainable unless
 * `frozen`; 16-bit tensors are frozen storage (their master copy is the checkpoint).
 */
export function setParameter(root: Module, key: string, t: Tensor, frozen = false): void {
  const o = ownerOf(root, key);
  if (!o) throw new CheckpointError(`the model has no parameter '${key}'`);
  swap(o.module, o.name, t);
  t.requiresGrad = !frozen && t.dtype === 'f32';
}

// ---- embeddings ---------------------------------------------------------------------------------------------

/**
 * Embedding lookup that also serves 16-bit tables: the engine's `embedding` reads the table as f32 (a cast of
 * the whole table on every call), so for a frozen bf16/f16 table only the looked-up rows are cast.
 */
export function lookup(e: Embedding, ids: Tensor): Tensor {
  const w = e.weight;
  if (w.dtype === 'f32') return embedding(ids, w);
  if (w.dtype === 'i8') return e.forward(ids); // an Int8Embedding put in its place by quantizeBase
  const [V, D] = w.shape;
  const idx = ids.i32('embedding');
  const table = w.dense() as Uint16Array;
  const rows = new Uint16Array(idx.length * D);
  for (let i = 0; i < idx.length; i++) {
    const r = idx[i];
    if (r < 0 || r >= V) throw new IndexError(`Argument 'ids' passed to 'embedding' holds ${r} at position ${i}; expected values in [0, ${V})`);
    rows.set(table.subarray(r * D, (r + 1) * D), i * D);
  }
  const out = new Float32Array(rows.length);
  backend().cast(rows, w.dtype, out, 'f32');
  return new Tensor(out, 'f32', [...ids.shape, D]);
}

/**
 * The token embeddings of `ids` (lookup), with NEFTune's noise in training mode when `alpha` > 0 (HFModel.neftuneAlpha):
 * uniform in [-a, a], a = alpha / sqrt(T * D), drawn from the tensor layer's seeded generator (one draw a call, so a
 * resumed run draws the same noise). The noise is a constant of the step: gradients reach the table unchanged.
 */
export function tokenEmbeddings(e: Embedding, ids: Tensor, alpha: number, training: boolean): Tensor {
  const x = lookup(e, ids); // (B, T, D)
  if (alpha === 0 || !training) return x;
  const [T, D] = x.shape.slice(-2) as [number, number];
  const a = alpha / Math.sqrt(T * D);
  return x.add(rand([...x.shape], getRng().nextSeed(), -a, a));
}

// ---- rotary position embedding -------------------------------------------------------------------------------

export interface RopeScaling {
  type: 'default' | 'linear' | 'llama3';
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositions: number;
}

/** Reads `rope_scaling` (null, {rope_type|type: 'default' | 'linear' | 'llama3', ...}). */
export function parseRopeScaling(raw: Record<string, unknown> | null, file: string): RopeScaling {
  const none: RopeScaling = { type: 'default', factor: 1, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 };
  if (!raw) return none;
  const type = (raw.rope_type ?? raw.type ?? 'default') as string;
  const num = (k: string, d: number): number => {
    const v = raw[k] ?? d;
    if (typeof v !== 'number' || !(v > 0)) throw new ConfigError(`'${file}' key 'rope_scaling.${k}' is ${JSON.stringify(v)}; expected a positive number`);
    return v;
  };
  if (type === 'default') return none;
  if (type === 'linear') return { ...none, type, factor: num('factor', 1) };
  if (type === 'llama3') {
    return { type, factor: num('factor', 8), lowFreqFactor: num('low_freq_factor', 1), highFreqFactor: num('high_freq_factor', 4),
      originalMaxPositions: num('original_max_position_embeddings', 8192) };
  }
  throw new ConfigError(`'${file}' key 'rope_scaling' has type '${type}', which is not supported; expected 'default', 'linear' or 'llama3'`);
}

/**
 * cos/sin tables (T, rotDim/2) for positions [offset, offset + T), computed in float32 step by step as
 * transformers does (inv_freq = 1 / theta^(2i/rotDim), freqs = pos * inv_freq), grown on demand.
 */
export class Rotary {
  private readonly invFreq: Float32Array;
  private cos = new Float32Array(0);
  private sin = new Float32Array(0);
  private len = 0;
  constructor(readonly rotDim: number, theta: number, scaling: RopeScaling) {
    const half = rotDim / 2;
    const f = Math.fround;
    this.invFreq = new Float32Array(half);
    for (let i = 0; i < half; i++) {
      let inv = f(1 / f(Math.pow(theta, f(f(2 * i) / rotDim))));
      if (scaling.type === 'linear') inv = f(inv / scaling.factor);
      if (scaling.type === 'llama3') inv = llama3(inv, scaling);
      this.invFreq[i] = inv;
    }
  }
  private grow(n: number): void {
    const half = this.rotDim / 2;
    const len = Math.max(n, 2 * this.len, 64);
    const cos = new Float32Array(len * half), sin = new Float32Array(len * half);
    for (let p = 0; p < len; p++) {
      for (let i = 0; i < half; i++) {
        const a = Math.fround(p * this.invFreq[i]);
        cos[p * half + i] = Math.cos(a);
        sin[p * half + i] = Math.sin(a);
      }
    }
    this.cos = cos;
    this.sin = sin;
    this.len = len;
  }
  /** cos/sin tables (N, rotDim/2) for arbitrary positions (packed sequences, whose positions restart per document). */
  tablesAt(positions: Int32Array): { cos: Tensor; sin: Tensor } {
    let max = 0;
    for (const p of positions) {
      if (p < 0) throw new ConfigError(`'positionIds' holds ${p}; expected positions >= 0`);
      if (p > max) max = p;
    }
    if (max + 1 > this.len) this.grow(max + 1);
    const half = this.rotDim / 2, N = positions.length;
    const cos = new Float32Array(N * half), sin = new Float32Array(N * half);
    for (let i = 0; i < N; i++) {
      cos.set(this.cos.subarray(positions[i] * half, (positions[i] + 1) * half), i * half);
      sin.set(this.sin.subarray(positions[i] * half, (positions[i] + 1) * half), i * half);
    }
    return { cos: new Tensor(cos, 'f32', [N, half]), sin: new Tensor(sin, 'f32', [N, half]) };
  }
  tables(offset: number, T: number): { cos: Tensor; sin: Tensor } {
    if (offset + T > this.len) this.grow(offset + T);
    const half = this.rotDim / 2;
    const part = (a: Float32Array) => new Tensor(a.subarray(offset * half, (offset + T) * half), 'f32', [T, half]);
    return { cos: part(this.cos), sin: part(this.sin) };
  }
}

function llama3(inv: number, s: RopeScaling): number {
  const lowWavelen = s.originalMaxPositions / s.lowFreqFactor, highWavelen = s.originalMaxPositions / s.highFreqFactor;
  const wavelen = (2 * Math.PI) / inv;
  if (wavelen < highWavelen) return inv;
  if (wavelen > lowWavelen) return Math.fround(inv / s.factor);
  const smooth = (s.originalMaxPositions / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
  return Math.fround((1 - smooth) * (inv / s.factor) + smooth * inv);
}

// ---- KV cache ------------------------------------------------------------------------------------------------

/** Keys and values per layer, (B, kvHeads, T, hs), extended by each forward pass that is given the cache. */
export class KVCache {
  private readonly k: (Tensor | null)[];
  private readonly v: (Tensor | null)[];
  constructor(readonly numLayers: number) {
    this.k = new Array<Tensor | null>(numLayers).fill(null);
    this.v = new Array<Tensor | null>(numLayers).fill(null);
  }
  /** Positions already cached. */
  get length(): number {
    return this.k[0] ? this.k[0].shape[2] : 0;
  }
  /** Appends this step's k, v (B, kvH, T, hs) for `layer`; returns all of them (B, kvH, past + T, hs). */
  update(layer: number, k: Tensor, v: Tensor): [Tensor, Tensor] {
    const pk = this.k[layer], pv = this.v[layer];
    const K = pk ? concat([pk, k], 2) : k;
    const V = pv ? concat([pv, v], 2) : v;
    this.k[layer] = K.detach();
    this.v[layer] = V.detach();
    return [K, V];
  }
}

// ---- masks and heads -----------------------------------------------------------------------------------------

/** (B, 1, 1, Tk) with 1 at padded keys, from an attention mask (B, Tk) with 1 at tokens; null when none. */
export function keyPaddingMask(attentionMask: Tensor | null | undefined, Tk: number): Tensor | null {
  if (!attentionMask) return null;
  const [B, T] = attentionMask.shape;
  if (attentionMask.ndim !== 2 || T !== Tk) {
    throw new ConfigError(`'attentionMask' has shape ${fmtShape(attentionMask.shape)}; expected [B, ${Tk}] (past + new positions)`);
  }
  const m = attentionMask.toFlatArray();
  if (m.every((x) => x !== 0)) return null;
  const d = new Float32Array(B * T);
  for (let i = 0; i < d.length; i++) d[i] = m[i] === 0 ? 1 : 0;
  return new Tensor(d, 'f32', [B, 1, 1, T]);
}

/**
 * Packed sequences: (B, 1, T, T) mask with 1 where query i may not see key j: a later position (j > i) or another
 * document (documentIds[b, i] != documentIds[b, j]). Padding is a document of its own (any id), so no attention
 * row is empty; it needs no attentionMask. Null when documentIds is absent.
 */
export function documentMask(documentIds: Tensor | null | undefined, T: number, hasCache: boolean): Tensor | null {
  if (!documentIds) return null;
  checkDocumentIds(documentIds, T, hasCache);
  const B = documentIds.shape[0];
  const doc = documentIds.toFlatArray();
  const d = new Float32Array(B * T * T);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < T; i++) {
      const row = (b * T + i) * T, di = doc[b * T + i];
      for (let j = 0; j < T; j++) if (j > i || doc[b * T + j] !== di) d[row + j] = 1;
    }
  }
  return new Tensor(d, 'f32', [B, 1, T, T]);
}

function checkDocumentIds(documentIds: Tensor, T: number, hasCache: boolean): void {
  if (hasCache) throw new ConfigError(`'documentIds' (packed sequences) cannot be combined with a KV cache; generation runs one sequence per row`);
  if (documentIds.ndim !== 2 || documentIds.shape[1] !== T) throw new ConfigError(`'documentIds' has shape ${fmtShape(documentIds.shape)}; expected [B, ${T}]`);
}

/**
 * Packed sequences on the fused attention path: the first key each query may see, the start of its document
 * (B * T, row-major), for `PackedMask.firstKey`. With the causal bound this is exactly documentMask's mask when
 * every document is one contiguous run of its row, as packing makes them (padding included: one run at the end).
 * Null when documentIds is absent, or when a document id comes back after another one (then documentMask's dense
 * mask keeps the semantics).
 */
export function documentStarts(documentIds: Tensor | null | undefined, T: number, hasCache: boolean): Int32Array | null {
  if (!documentIds) return null;
  checkDocumentIds(documentIds, T, hasCache);
  const B = documentIds.shape[0];
  const doc = documentIds.toFlatArray();
  const starts = new Int32Array(B * T);
  for (let b = 0; b < B; b++) {
    const seen = new Set<number>();
    let start = 0;
    for (let i = 0; i < T; i++) {
      const d = doc[b * T + i];
      if (i > 0 && d !== doc[b * T + i - 1]) {
        if (seen.has(d)) return null; // not contiguous
        start = i;
      }
      seen.add(d);
      starts[b * T + i] = start;
    }
  }
  return starts;
}

/**
 * `mask` (broadcastable to (B, 1, Tq, Tk), 1 = not allowed) with every query allowed to see its own position
 * (key past + i): a padding query whose window or document holds only padding would otherwise have no key at all,
 * and its softmax row would be NaN (0/0), which reaches the gradients through 0 * NaN. Real tokens always see
 * themselves, so their outputs do not change.
 */
export function allowSelf(mask: Tensor, B: number, Tq: number, Tk: number): Tensor {
  const past = Tk - Tq;
  const full = mask.expand([B, 1, Tq, Tk]).contiguous().f32();
  const d = Float32Array.from(full);
  for (let b = 0; b < B; b++) for (let i = 0; i < Tq; i++) d[(b * Tq + i) * Tk + past + i] = 0;
  return new Tensor(d, 'f32', [B, 1, Tq, Tk]);
}

/** The (B, T) position ids as i32, checked against the ids' shape; null when absent. */
export function positionIdsOf(positionIds: Tensor | null | undefined, B: number, T: number, hasCache: boolean): Int32Array | null {
  if (!positionIds) return null;
  if (hasCache) throw new ConfigError(`'positionIds' cannot be combined with a KV cache (positions continue the cache)`);
  if (positionIds.ndim !== 2 || positionIds.shape[0] !== B || positionIds.shape[1] !== T) {
    throw new ConfigError(`'positionIds' has shape ${fmtShape(positionIds.shape)}; expected [${B}, ${T}] like the ids`);
  }
  return positionIds.dtype === 'i32' ? positionIds.i32('positionIds') : Int32Array.from(positionIds.toFlatArray());
}

/** (Tq, Tk) mask with 1 where a query at absolute position i may not see key j: j > i, or i - j >= window. */
export function slidingWindowMask(Tq: number, Tk: number, window: number): Tensor {
  const d = new Float32Array(Tq * Tk);
  const shift = Tk - Tq;
  for (let i = 0; i < Tq; i++) for (let j = 0; j < Tk; j++) if (j > i + shift || i + shift - j >= window) d[i * Tk + j] = 1;
  return new Tensor(d, 'f32', [Tq, Tk]);
}

/** Grouped-query attention: (B, kvH, T, hs) -> (B, kvH * rep, T, hs), each kv head repeated `rep` times. */
export function repeatKV(x: Tensor, rep: number): Tensor {
  if (rep === 1) return x;
  const [B, kvH, T, hs] = x.shape;
  const e = expand(unsqueeze(x, 2), [B, kvH, rep, T, hs]); // (B, kvH, rep, T, hs)
  return reshape(e, [B, kvH * rep, T, hs]); // (B, H, T, hs)
}

/** Checks a (B, T) i32 ids tensor. */
export function checkIds(ids: Tensor, op: string, maxT: number | null = null): [number, number] {
  if (ids.ndim !== 2 || ids.dtype !== 'i32' || (maxT !== null && ids.shape[1] > maxT)) {
    throw new ConfigError(`Argument 'ids' passed to '${op}' is ${ids.dtype} ${fmtShape(ids.shape)}; expected i32 [B, T]${maxT !== null ? ` with T <= ${maxT}` : ''}`);
  }
  return [ids.shape[0], ids.shape[1]];
}

