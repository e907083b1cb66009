/**
 * Low-precision frozen base weights (QLoRA): frozen Linear weights kept in bf16, as int8 weight-only with one
 * absmax scale per output channel, or as QLoRA's 4-bit NormalFloat (NF4, bitsandbytes' format, optionally with
 * double-quantised absmaxes), while LoRA adapters train in f32 on top. Products against any of them widen the
 * weight a block of rows at a time inside the kernel (forward and backward), so no f32 copy of a frozen weight is
 * ever made and the resident base is 2, 1 or about 0.52 bytes per weight.
 */
import { Module } from '../nn/module.js';
import { Embedding, Linear } from '../nn/layers.js';
import { Tensor } from '../tensor/tensor.js';
import { markModified } from '../tensor/versions.js';
import { backend } from '../backend/index.js';
import { linear, linearInt8, linearNf4 } from '../tensor/ops/linalg.js';
import { ConfigError, DTypeError, IndexError, ShapeError } from '../errors.js';
import { WIDEN_CHUNK, widenScratch, dequantizeAbsmax, dequantizeNf4, quantizeAbsmax, quantizeNf4, quantizeNf4Stored } from './nf4.js';

export type BaseQuantization = 'bf16' | 'int8' | 'nf4';

/**
 * Per-row absmax int8 quantisation of a (out, in) float weight (f32, or bf16/f16 storage widened a few rows at a
 * time: no f32 copy of a 16-bit weight is made). A non-finite element is a DTypeError naming `what` and the element
 * (it would make its row's scale meaningless).
 */
export function quantizeInt8(w: Tensor, what = 'weight'): { q: Tensor; scales: Tensor } {
  const [out, inF] = w.shape;
  const stored = storedFloats(w, what);
  const q = new Int8Array(out * inF), scales = new Float32Array(out);
  const rowsAt = w.dtype === 'f32' ? out : Math.max(1, Math.floor(WIDEN_CHUNK / inF));
  for (let r0 = 0; r0 < out; r0 += rowsAt) {
    const rows = Math.min(rowsAt, out - r0);
    let d: Float32Array;
    if (w.dtype !== 'f32') {
      d = widenScratch(rows * inF);
      backend().cast(stored.subarray(r0 * inF, (r0 + rows) * inF), w.dtype, d, 'f32');
    } else {
      d = (stored as Float32Array).subarray(r0 * inF, (r0 + rows) * inF);
    }
    for (let r = 0; r < rows; r++) {
      const o = r0 + r;
      let mx = 0;
      for (let i = 0; i < inF; i++) mx = Math.max(mx, Math.abs(d[r * inF + i]));
      if (!Number.isFinite(mx)) {
        const i = d.subarray(r * inF, (r + 1) * inF).findIndex((v) => !Number.isFinite(v));
        throw new DTypeError(`cannot quantise ${what} to int8: element ${o * inF + i} is ${d[r * inF + i]}`);
      }
      const sc = mx > 0 ? mx / 127 : 1;
      scales[o] = sc;
      for (let i = 0; i < inF; i++) q[o * inF + i] = Math.max(-127, Math.min(127, Math.round(d[r * inF + i] / sc)));
    }
  }
  return { q: new Tensor(q, 'i8', [out, inF]), scales: new Tensor(scales, 'f32', [out]) };
}

/** f32 (out, in) from int8 values and row scales (two backend kernels: cast, row-broadcast multiply). */
export function dequantizeInt8(q: Tensor, scales: Tensor): Tensor {
  const [out, inF] = q.shape;
  const f = new Float32Array(out * inF);
  backend().cast(q.dense(), 'i8', f, 'f32');
  backend().binary('mul', f, [inF, 1], scales.f32(), [1, 0], [out, inF], f);
  return new Tensor(f, 'f32', [out, inF]);
}

/** max |a[i] - b[i]|: the error a re-quantisation introduced (what merging into a quantised layer reports). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let err = 0;
  for (let i = 0; i < b.length; i++) err = Math.max(err, Math.abs(a[i]! - b[i]!));
  return err;
}

/** A float weight as stored (f32, or 16-bit storage that the quantisers widen a chunk at a time). */
type StoredWeight = Float32Array | Tensor;

/** An NF4 layer's stored state of weight `w`: codes and absmaxes, these 8-bit with their nested state when double-quantised. */
function nf4State(w: StoredWeight, doubleQuant: boolean, what = 'weight'): { codes: Int8Array; absmax: Int8Array | Float32Array; nested: { absmax: Float32Array; offset: number } | null } {
  const { codes, absmax } = w instanceof Float32Array ? quantizeNf4(w, what) : quantizeNf4Stored(storedFloats(w, what), w.dtype as 'f32' | 'bf16' | 'f16', what);
  if (!doubleQuant) return { codes, absmax, nested: null };
  const q = quantizeAbsmax(absmax);
  return { codes, absmax: q.codes, nested: { absmax: q.absmax, offset: q.offset } };
}

/** The dense storage of a float tensor (f32, bf16, f16), or a DTypeError naming `what`. */
function storedFloats(t: Tensor, what: string): Float32Array | Uint16Array {
  if (t.dtype !== 'f32' && t.dtype !== 'bf16' && t.dtype !== 'f16') throw new DTypeError(`cannot quantise ${what}: its dtype is ${t.dtype}, not a float`);
  return t.dense() as Float32Array | Uint16Array;
}

/** A frozen Linear with int8 weights (per-output-channel scales) and an f32 bias. */
export class Int8Linear extends Module {
  weight: Tensor;
  scales: Tensor;
  bias: Tensor | null;
  readonly inFeatures: number;
  readonly outFeatures: number;

  constructor(q: Tensor, scales: Tensor, bias: Tensor | null) {
    super();
    [this.outFeatures, this.inFeatures] = q.shape;
    this.weight = this.param('weight', q, false);
    this.scales = this.param('scales', scales, false);
    this.bias = bias ? this.param('bias', bias, false) : null;
  }

  static fromLinear(l: Linear, what?: string): Int8Linear {
    const { q, scales } = quantizeInt8(l.weight, what);
    return new Int8Linear(q, scales, l.bias);
  }

  denseWeight(): Tensor {
    return dequantizeInt8(this.weight, this.scales);
  }

  /** The scales are quantisation state, not parameters (parameterCounts). */
  protected override parameterElements(name: string, t: Tensor): number {
    return name === 'scales' ? 0 : t.size;
  }

  /** Re-quantises an f32 weight into this layer; returns the max abs error introduced. */
  storeWeight(w: Tensor): number {
    const { q, scales } = quantizeInt8(w, 'the merged weight');
    (this.weight.storage as Int8Array).set(q.storage as Int8Array);
    (this.scales.storage as Float32Array).set(scales.storage as Float32Array);
    markModified(this.weight);
    markModified(this.scales);
    return maxAbsDiff(this.denseWeight().f32(), w.f32());
  }

  /** y = x W^T + b with the int8 weight widened block by block inside the product (forward and backward). */
  forward(x: Tensor): Tensor {
    return linearInt8(x, this.weight, this.scales, this.bias);
  }
}

/**
 * A frozen Linear in QLoRA's NF4 (bitsandbytes' `Linear4bit` with quant_type 'nf4', blocksize 64): `weight` holds
 * the packed 4-bit codes (an i8 tensor of ceil(out * in / 2) bytes), `absmax` one f32 per 64 elements, or with
 * double quantisation (`bnb_4bit_use_double_quant`) 8-bit codes of them (`absmax`, i8) with `nested_absmax` (one f32
 * per 256) and `nested_offset`; the bias stays f32. Its products widen the codes block by block inside the CPU
 * kernels; a double-quantised absmax is expanded for each product and dropped after it.
 */
export class Nf4Linear extends Module {
  weight: Tensor;
  absmax: Tensor;
  nestedAbsmax: Tensor | null;
  nestedOffset: Tensor | null;
  bias: Tensor | null;
  readonly inFeatures: number;
  readonly outFeatures: number;

  /** `w`: the out x in weights, an f32 array or a float tensor in its storage (16-bit widened a chunk at a time). */
  constructor(outFeatures: number, inFeatures: number, w: Float32Array | Tensor, bias: Tensor | null, doubleQuant: boolean, what = 'weight') {
    super();
    const n = w instanceof Float32Array ? w.length : w.size;
    if (!(Number.isInteger(outFeatures) && Number.isInteger(inFeatures) && outFeatures > 0 && inFeatures > 0) || n !== outFeatures * inFeatures) {
      throw new ShapeError(`'Nf4Linear' needs ${outFeatures} x ${inFeatures} weights for ${what}; got ${n}`);
    }
    this.outFeatures = outFeatures;
    this.inFeatures = inFeatures;
    const q = nf4State(w, doubleQuant, what);
    this.weight = this.param('weight', new Tensor(q.codes, 'i8', [q.codes.length]), false);
    this.absmax = this.param('absmax', new Tensor(q.absmax, q.absmax instanceof Int8Array ? 'i8' : 'f32', [q.absmax.length]), false);
    this.nestedAbsmax = q.nested ? this.param('nested_absmax', new Tensor(q.nested.absmax, 'f32', [q.nested.absmax.length]), false) : null;
    this.nestedOffset = q.nested ? this.param('nested_offset', new Tensor(Float32Array.of(q.nested.offset), 'f32', [1]), false) : null;
    this.bias = bias ? this.param('bias', bias, false) : null;
  }

  static fromLinear(l: Linear, doubleQuant: boolean, what?: string): Nf4Linear {
    return new Nf4Linear(l.outFeatures, l.inFeatures, l.weight, l.bias, doubleQuant, what);
  }

  get doubleQuant(): boolean {
    return this.nestedAbsmax !== null;
  }

  /** The packed codes stand for out x in weights; the absmaxes are quantisation state (parameterCounts). */
  protected override parameterElements(name: string, t: Tensor): number {
    return name === 'weight' ? this.outFeatures * this.inFeatures : name === 'bias' ? t.size : 0;
  }

  /** The f32 absmax of every 64 elements (the stored one, or a fresh expansion of the double-quantised state). */
  blockAbsmax(): Tensor {
    if (!this.nestedAbsmax) return this.absmax;
    const out = dequantizeAbsmax({ codes: this.absmax.storage as Int8Array, absmax: this.nestedAbsmax.f32(), offset: this.nestedOffset!.f32()[0] });
    return new Tensor(out, 'f32', [out.length]);
  }

  denseWeight(): Tensor {
    const w = dequantizeNf4(this.weight.storage as Int8Array, this.blockAbsmax().f32(), this.outFeatures * this.inFeatures);
    return new Tensor(w, 'f32', [this.outFeatures, this.inFeatures]);
  }

  /** Re-quantises an f32 weight into this layer (same double quantisation); returns the max abs error introduced. */
  storeWeight(w: Tensor): number {
    const q = nf4State(w, this.doubleQuant);
    const stores: [Tensor | null, Int8Array | Float32Array | null][] = [[this.weight, q.codes], [this.absmax, q.absmax],
      [this.nestedAbsmax, q.nested?.absmax ?? null], [this.nestedOffset, q.nested ? Float32Array.of(q.nested.offset) : null]];
    for (const [t, v] of stores) {
      if (!t || !v) continue;
      (t.storage as Int8Array | Float32Array).set(v);
      markModified(t);
    }
    return maxAbsDiff(this.denseWeight().f32(), w.f32());
  }

  /** y = x W^T + b with the NF4 weight widened block by block inside the product (forward and backward). */
  forward(x: Tensor): Tensor {
    return linearNf4(x, this.weight, this.nestedAbsmax ? () => this.blockAbsmax() : this.absmax, [this.outFeatures, this.inFeatures], this.bias);
  }
}

/**
 * A frozen embedding table in int8 with one absmax scale per row: a lookup widens only the rows it reads
 * (scale x value). Tied heads read it through `linearInt8(h, weight, scales)` (see `tiedHeadLinear`).
 */
export class Int8Embedding extends Module {
  weight: Tensor;
  scales: Tensor;
  readonly numEmbeddings: number;
  readonly dim: number;

  constructor(q: Tensor, scales: Tensor) {
    super();
    [this.numEmbeddings, this.dim] = q.shape;
    this.weight = this.param('weight', q, false);
    this.scales = this.param('scales', scales, false);
  }

  static fromEmbedding(e: Embedding, what?: string): Int8Embedding {
    const { q, scales } = quantizeInt8(e.weight, what);
    return new Int8Embedding(q, scales);
  }

  denseWeight(): Tensor {
    return dequantizeInt8(this.weight, this.scales);
  }

  /** The scales are quantisation state, not parameters (parameterCounts). */
  protected override parameterElements(name: string, t: Tensor): number {
    return name === 'scales' ? 0 : t.size;
  }

  /** ids: i32 tensor of any shape -> (...ids.shape, dim) f32 (no gradient: the table is frozen). */
  forward(ids: Tensor): Tensor {
    const V = this.numEmbeddings, D = this.dim;
    const idx = ids.i32('embedding');
    const q = this.weight.storage as Int8Array, sc = this.scales.f32();
    const out = new Float32Array(idx.length * D);
    for (let i = 0; i < idx.length; i++) {
      const r = idx[i];
      if (!(r >= 0 && r < V)) throw new IndexError(`Argument 'ids' passed to 'embedding' holds ${r} at position ${i}; expected values in [0, ${V})`);
      const s = sc[r], o = i * D, src = r * D;
      for (let j = 0; j < D; j++) out[o + j] = s * q[src + j];
    }
    return new Tensor(out, 'f32', [...ids.shape, D]);
  }
}

/** The weights of a plain output layer, as the fused loss (`linearCrossEntropy`) reads them. */
export interface HeadWeights {
  weight: Tensor;
  bias: Tensor | null;
  /** Per-row scales when `weight` is int8. */
  scales: Tensor | null;
}

/**
 * The head weights of a Linear, an Int8Linear, or an embedding table used as a tied head (f32, 16-bit or
 * Int8Embedding); null for anything else (a LoRA-adapted head computes its logits through its own forward).
 */
export function plainHeadWeights(layer: Module | null | undefined): HeadWeights | null {
  if (layer instanceof Linear) return { weight: layer.weight, bias: layer.bias, scales: null };
  if (layer instanceof Int8Linear) return { weight: layer.weight, bias: layer.bias, scales: layer.scales };
  if (layer instanceof Embedding) return { weight: layer.weight, bias: null, scales: null };
  if (layer instanceof Int8Embedding) return { weight: layer.weight, bias: null, scales: layer.scales };
  return null;
}

/** h @ E^T for a head tied to an embedding table, whether the table is f32, 16-bit or an Int8Embedding's. */
export function tiedHeadLinear(h: Tensor, table: Module & { weight: Tensor }): Tensor {
  if (table instanceof Int8Embedding) return linearInt8(h, table.weight, table.scales, null);
  return linear(h, table.weight, null);
}

/** Bytes a module's own tensors take. */
const moduleBytes = (m: Module): number => [...m.namedParameters()].reduce((n, [, t]) => n + t.nbytes, 0);

/** What a base quantisation did: layers and tables converted, their bytes before and after. */
export interface QuantizeReport {
  layers: number;
  embeddings: number;
  bytesBefore: number;
  bytesAfter: number;
}

/** Options of `quantizeBase` (and of loading with `quantize`): modules kept as they are, NF4's double quantisation. */
export interface BaseQuantizeOptions {
  /** Module names kept in their precision (a task head, `lm_head`): a path equal to, ending in or inside one. */
  skip?: string[];
  /** NF4 only: double-quantise the absmaxes (default true, QLoRA's setting). */
  doubleQuant?: boolean;
}

function checkQuantization(mode: BaseQuantization, doubleQuant: boolean | undefined): void {
  if (mode !== 'bf16' && mode !== 'int8' && mode !== 'nf4') throw new ConfigError(`base quantization must be 'bf16', 'int8' or 'nf4'; got '${mode as string}'`);
  if (doubleQuant !== undefined && mode !== 'nf4') throw new ConfigError(`doubleQuant applies to base quantization 'nf4', not '${mode}'`);
}

const isSkipped = (path: string, skip: string[]): boolean =>
  skip.some((s) => path === s || path.endsWith(`.${s}`) || path.startsWith(`${s}.`) || path.includes(`.${s}.`));

type HeadOwner = Module & { headWeights(): HeadWeights | null };

/** The modules of a tree that report an output layer (`headWeights()`: the language models). */
function headOwners(modules: Iterable<Module>): HeadOwner[] {
  return [...modules].filter((m): m is HeadOwner => typeof (m as Module & { headWeights?: unknown }).headWeights === 'function');
}

/** Whether a Linear goes to bf16 in `mode`: every one in 'bf16'; an output layer (`head`, `lm_head`) in 'nf4'. */
const staysBf16 = (mode: BaseQuantization, path: string, head: boolean): boolean =>
  mode === 'bf16' || (mode === 'nf4' && (head || /(^|\.)lm_head$/.test(path)));

/**
 * The frozen Linear `m` at `path` (a child of `parent`) converted in place: to bf16, int8, or NF4 (an output layer,
 * `head`, stays bf16 under NF4, as transformers' 4-bit loading keeps it). Adds what it did to `r`.
 */
function quantizeLinearAt(parent: Module, path: string, m: Linear, mode: BaseQuantization, doubleQuant: boolean, head: boolean, r: QuantizeReport): void {
  r.bytesBefore += m.weight.nbytes;
  const name = path.slice(path.lastIndexOf('.') + 1);
  if (staysBf16(mode, path, head)) {
    if (m.weight.dtype !== 'bf16') m.replaceParam('weight', m.weight.to('bf16'));
    r.bytesAfter += m.weight.nbytes;
  } else if (mode === 'int8') {
    const q = Int8Linear.fromLinear(m, `the weight of '${path}'`);
    parent.setChild(name, q);
    r.bytesAfter += q.weight.nbytes + q.scales.nbytes;
  } else {
    const q = Nf4Linear.fromLinear(m, doubleQuant, `the weight of '${path}'`);
    parent.setChild(name, q);
    r.bytesAfter += moduleBytes(q) - (q.bias ? q.bias.nbytes : 0);
  }
  r.layers++;
}

const parentPath = (path: string): string => path.slice(0, Math.max(0, path.lastIndexOf('.')));

/**
 * Moves the frozen Linear weights of `model` to bf16 storage, int8 (weight-only) or NF4 (QLoRA). Layers under LoRA
 * are converted in their `base_layer`; modules named in `skip` (a task head) and trainable weights stay f32. Frozen
 * embedding tables go to bf16 (int8 with a scale per row in mode 'int8'). In mode 'nf4', as transformers'
 * 4-bit loading does, a frozen output layer (`lm_head`) is kept in bf16 rather than 4 bits; `doubleQuant` (default
 * true, QLoRA's setting) double-quantises the NF4 absmaxes.
 */
export function quantizeBase(model: Module, mode: BaseQuantization, opts: BaseQuantizeOptions = {}): QuantizeReport {
  return convertBase(model, mode, opts, false);
}

/**
 * The Linear layers of a base that is about to be frozen under LoRA, converted before the adapters are injected
 * (as PEFT wraps a model that bitsandbytes loaded quantised): every Linear outside `skip`, whatever its
 * `requiresGrad`, so that LoRA wraps the quantised layer and DoRA's magnitude starts at the norms of the weight the
 * forward pass uses. Embedding tables are left for `quantizeBase` after the injection (a table LoRA targets must
 * stay a table). Layers already quantised (while loading) are left as they are.
 */
export function quantizeLinears(model: Module, mode: BaseQuantization, opts: BaseQuantizeOptions = {}): QuantizeReport {
  return convertBase(model, mode, opts, true);
}

function convertBase(model: Module, mode: BaseQuantization, opts: BaseQuantizeOptions, linearsOfFrozenBase: boolean): QuantizeReport {
  checkQuantization(mode, opts.doubleQuant);
  const skip = opts.skip ?? [];
  const modules = new Map(model.namedModules());
  const heads = new Set(headOwners(modules.values()).map((o) => o.headWeights()?.weight));
  const r: QuantizeReport = { layers: 0, embeddings: 0, bytesBefore: 0, bytesAfter: 0 };
  for (const [path, m] of modules) {
    if (isSkipped(path, skip)) continue;
    if (!linearsOfFrozenBase && m instanceof Embedding && !m.weight.requiresGrad && m.weight.dtype === 'f32' && !path.includes('lora_')) {
      // Frozen embedding tables follow the mode: bf16, or int8 with a scale per row (a lookup widens only the
      // rows it reads). A table under a LoRA adapter (its base_layer) stays bf16: the adapter reads it as a table.
      r.bytesBefore += m.weight.nbytes;
      if (mode === 'int8' && !path.endsWith('.base_layer')) {
        const q = Int8Embedding.fromEmbedding(m, `the weight of '${path}'`);
        (modules.get(parentPath(path)) as Module).setChild(path.slice(path.lastIndexOf('.') + 1), q);
        r.bytesAfter += q.weight.nbytes + q.scales.nbytes;
      } else {
        m.replaceParam('weight', m.weight.to('bf16'));
        r.bytesAfter += m.weight.nbytes;
      }
      r.embeddings++;
      continue;
    }
    if (!(m instanceof Linear) || path.includes('lora_')) continue;
    if (!linearsOfFrozenBase && m.weight.requiresGrad) continue; // trainable (full fine-tune or a head): keep f32 master weights
    const head = heads.has(m.weight);
    if (linearsOfFrozenBase && m.weight.dtype === 'bf16' && staysBf16(mode, path, head)) continue; // already what it would become
    quantizeLinearAt(modules.get(parentPath(path)) as Module, path, m, mode, opts.doubleQuant ?? true, head, r);
  }
  return r;
}

/** Quantisation while a checkpoint loads (loadHFModel's `quantize`): the mode and `quantizeBase`'s options. */
export interface LoadQuantization extends BaseQuantizeOptions {
  mode: BaseQuantization;
}

/**
 * Quantisation as a checkpoint's tensors arrive (QLoRA's low-memory load, as transformers quantises while it
 * loads): a Linear layer is converted as soon as its weight and bias are in, so the base is never whole in the
 * checkpoint's precision, and the peak is the quantised base plus one tensor. The caller promises the base is
 * frozen (a LoRA run): layers are converted whatever their `requiresGrad`. Only Linear layers: embedding tables
 * and layers the checkpoint does not fill are left to `quantizeBase` after the adapters are in (a table LoRA
 * targets must stay a table). The same bits as `quantizeBase` after loading (a test).
 */
export class LoadQuantizer {
  readonly report: QuantizeReport = { layers: 0, embeddings: 0, bytesBefore: 0, bytesAfter: 0 };
  private readonly modules: Map<string, Module>;
  private readonly owners: HeadOwner[];
  private readonly loaded = new Set<string>();

  constructor(model: Module, private readonly opts: LoadQuantization) {
    checkQuantization(opts.mode, opts.doubleQuant);
    this.modules = new Map(model.namedModules());
    this.owners = headOwners(this.modules.values());
  }

  /** The Linear at `path` when this quantiser converts it (not skipped, not an adapter's), else null. */
  private target(path: string): Linear | null {
    const m = this.modules.get(path);
    return m instanceof Linear && path !== '' && !path.includes('lora_') && !isSkipped(path, this.opts.skip ?? []) ? m : null;
  }

  private isHead(m: Linear): boolean {
    return this.owners.some((o) => o.headWeights()?.weight === m.weight);
  }

  /**
   * Whether the tensor of parameter `key`, arriving as `dtype`, completes a Linear that is converted into new storage,
   * so that nothing keeps it once `filled(key)` returns: the loader may then read it into a reused buffer.
   */
  consumes(key: string, dtype: string): boolean {
    const path = parentPath(key);
    const m = this.target(path);
    if (!m || key !== `${path}.weight` || (m.bias && !this.loaded.has(`${path}.bias`))) return false;
    return !(dtype === 'bf16' && staysBf16(this.opts.mode, path, this.isHead(m)));
  }

  /** Parameter `key` of the model now holds its checkpoint tensor: its Linear is converted once it is whole. */
  filled(key: string): void {
    this.loaded.add(key);
    const path = parentPath(key);
    const m = this.target(path);
    if (!m || !this.loaded.has(`${path}.weight`) || (m.bias && !this.loaded.has(`${path}.bias`))) return;
    quantizeLinearAt(this.modules.get(parentPath(path)) as Module, path, m, this.opts.mode, this.opts.doubleQuant ?? true, this.isHead(m), this.report);
    this.modules.delete(path);
  }
}
