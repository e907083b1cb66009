/**
 * LoRA layers (PEFT's `tuners/lora/layer.py`, in small): `LoraLinear` wraps a frozen Linear and adds, for each
 * active adapter, `B(A(dropout(x))) * scaling`; DoRA is a strategy on top (a learned magnitude per output row
 * rescales the weight-decomposed update). Several adapters live side by side, selected by name; `merge` folds the
 * active ones into the base weight and `unmerge` takes them out again. Parameter paths follow PEFT's
 * (`base_layer.weight`, `lora_A.<adapter>.weight`, `lora_B.<adapter>.weight`, `lora_magnitude_vector.<adapter>`).
 */
import { Tensor } from '../../tensor/tensor.js';
import { addLinear, linear, type LinearOptions } from '../../tensor/ops/linalg.js';
import { loraLinear } from '../../tensor/ops/lora-linear.js';
import { autocastDType } from '../../tensor/precision.js';
import { embedding } from '../../tensor/ops/nn.js';
import { noGrad } from '../../tensor/autograd.js';
import { copyInto } from '../../tensor/creation.js';
import { Rng } from '../../backend/rng.js';
import { Module, ModuleDict } from '../../nn/module.js';
import { Linear, Embedding, Dropout } from '../../nn/layers.js';
import { uniform, normal } from '../../nn/init.js';
import { AutoGLMError } from '../../errors.js';
import { maxAbsDiff } from '../quant.js';

export interface AdapterSpec {
  r: number;
  alpha: number;
  dropout: number;
  useRslora: boolean;
  useDora: boolean;
  init: boolean | 'gaussian';
  seed: number;
}

export function scalingOf(s: AdapterSpec): number {
  return s.useRslora ? s.alpha / Math.sqrt(s.r) : s.alpha / s.r;
}

/** Holds one tensor per adapter name as a parameter of that name. */
export class ParamDict extends Module {
  set(key: string, t: Tensor): Tensor {
    return this.param(key, t);
  }
  get(key: string): Tensor | undefined {
    return this.getParam(key);
  }
  delete(key: string): void {
    this.unregister(key);
  }
}

/** The f32 weight of a base layer, whatever its storage (f32, bf16, f16, int8 with scales). */
export interface WeightSource {
  weight: Tensor;
  /** The dense f32 weight (dequantised / cast copy, or the tensor itself). */
  denseWeight(): Tensor;
  /** Stores an f32 weight back in the layer's own format; returns the max abs error this introduced. */
  storeWeight(w: Tensor): number;
}

function defaultDense(l: LinearLike): Tensor {
  return l.weight.dtype === 'f32' ? l.weight : l.weight.to('f32');
}

function defaultStore(l: LinearLike, w: Tensor): number {
  if (l.weight.dtype === 'f32') {
    copyInto(l.weight, w);
    return 0;
  }
  const stored = w.to(l.weight.dtype);
  copyInto(l.weight, stored);
  return maxAbsDiff(stored.to('f32').f32(), w.f32());
}

/** Row L2 norms of a (out, in) weight, as (out). */
function rowNorms(w: Tensor): Tensor {
  return noGrad(() => w.square().sum(1).sqrt());
}

/** What LoRA needs of a base layer: a Linear, or a quantised stand-in (Int8Linear). */
export type LinearLike = Module & {
  readonly inFeatures: number;
  readonly outFeatures: number;
  weight: Tensor;
  bias: Tensor | null;
  /** opts: see LinearOptions (a layer may ignore them: the same results, or an f32 output for bf16Output). */
  forward(x: Tensor, opts?: LinearOptions): Tensor;
};

export class LoraLinear extends Module {
  readonly base_layer: LinearLike;
  readonly lora_A = new ModuleDict<Linear>();
  readonly lora_B = new ModuleDict<Linear>();
  readonly lora_dropout = new ModuleDict<Dropout>();
  readonly lora_magnitude_vector = new ParamDict();
  readonly specs = new Map<string, AdapterSpec>();
  active: string[] = [];
  disabled = false;
  /** Adapters currently folded into the base weight, with what unmerge needs. */
  private readonly mergedState = new Map<string, { norm?: Tensor }>();

  constructor(base: LinearLike) {
    super();
    this.base_layer = this.module('base_layer', base);
    this.module('lora_A', this.lora_A);
    this.module('lora_B', this.lora_B);
    this.module('lora_dropout', this.lora_dropout);
    this.module('lora_magnitude_vector', this.lora_magnitude_vector);
  }

  /** The base weight (code that reads a layer's `.weight` directly, such as tied heads, keeps working). */
  get weight(): Tensor { return this.base_layer.weight; }
  get bias(): Tensor | null { return this.base_layer.bias; }
  get inFeatures(): number { return this.base_layer.inFeatures; }
  get outFeatures(): number { return this.base_layer.outFeatures; }

  private source(): WeightSource {
    const b = this.base_layer as LinearLike & Partial<WeightSource>;
    return {
      weight: b.weight,
      denseWeight: () => (b.denseWeight ? b.denseWeight() : defaultDense(b)),
      storeWeight: (w) => (b.storeWeight ? b.storeWeight(w) : defaultStore(b, w)),
    };
  }

  addAdapter(name: string, spec: AdapterSpec): void {
    if (this.specs.has(name)) throw new AutoGLMError(`adapter '${name}' already exists on this layer`);
    const rng = new Rng(spec.seed);
    const A = new Linear(this.inFeatures, spec.r, { bias: false });
    const B = new Linear(spec.r, this.outFeatures, { bias: false });
    copyInto(A.weight, spec.init === 'gaussian' ? normal([spec.r, this.inFeatures], 1 / spec.r, rng) : uniform([spec.r, this.inFeatures], 1 / Math.sqrt(this.inFeatures), rng));
    copyInto(B.weight, new Tensor(new Float32Array(spec.r * this.outFeatures), 'f32', [this.outFeatures, spec.r]));
    if (spec.init === false) copyInto(B.weight, normal([this.outFeatures, spec.r], 0.02, rng)); // a non-identity start, for tests
    this.lora_A.set(name, A);
    this.lora_B.set(name, B);
    this.lora_dropout.set(name, new Dropout(spec.dropout));
    if (spec.useDora) {
      // magnitude starts at the row norms of W + scaling * B A (= ||W|| while B = 0)
      const m = rowNorms(this.combined(name, spec));
      this.lora_magnitude_vector.set(name, new Tensor(m.f32().slice(), 'f32', [this.outFeatures]));
    }
    this.specs.set(name, spec);
    if (this.active.length === 0) this.active = [name];
  }

  deleteAdapter(name: string): void {
    if (!this.specs.has(name)) return;
    if (this.mergedState.has(name)) this.unmerge([name]);
    this.lora_A.delete(name);
    this.lora_B.delete(name);
    this.lora_dropout.delete(name);
    if (this.lora_magnitude_vector.get(name)) this.lora_magnitude_vector.delete(name);
    this.specs.delete(name);
    this.active = this.active.filter((a) => a !== name);
  }

  /** scaling * B A, (out, in). */
  deltaWeight(name: string): Tensor {
    const spec = this.specs.get(name);
    if (!spec) throw new AutoGLMError(`no adapter '${name}' on this layer`);
    const A = (this.lora_A.get(name) as Linear).weight, B = (this.lora_B.get(name) as Linear).weight;
    return noGrad(() => B.matmul(A).scale(scalingOf(spec)));
  }

  private combined(name: string, spec: AdapterSpec): Tensor {
    return noGrad(() => {
      const A = (this.lora_A.get(name) as Linear).weight, B = (this.lora_B.get(name) as Linear).weight;
      return this.source().denseWeight().add(B.matmul(A).scale(scalingOf(spec)));
    });
  }

  /**
   * Under autocast, the first unmerged plain adapter on a plain Linear runs with the base product as one op
   * (`loraLinear`: x and the output gradient cast once instead of two and three times); same products otherwise.
   */
  private fusedAdapter(): string | null {
    if (autocastDType() === 'f32' || Object.getPrototypeOf(this.base_layer) !== Linear.prototype) return null;
    if (this.base_layer.weight.dtype !== 'f32' && this.base_layer.weight.dtype !== 'bf16') return null;
    const first = this.active.find((n) => !this.mergedState.has(n));
    return first !== undefined && !(this.specs.get(first) as AdapterSpec).useDora ? first : null;
  }

  /**
   * `opts` (LinearOptions: the caller reads x no more; its readers take a bf16 output): passed on where one product
   * alone reads x (the base layer of a disabled or fully merged adapter, or the fused adapter when it is the only one
   * left unmerged, without dropout); elsewhere the output is f32.
   */
  forward(x: Tensor, opts: LinearOptions = {}): Tensor {
    if (this.disabled) return this.base_layer.forward(x, opts);
    const fused = this.fusedAdapter();
    const unmerged = this.active.filter((n) => !this.mergedState.has(n));
    if (unmerged.length === 0) return this.base_layer.forward(x, opts);
    const alone = unmerged.length === 1 && unmerged[0] === fused;
    let y = fused === null ? this.base_layer.forward(x) : null;
    for (const name of this.active) {
      if (this.mergedState.has(name)) continue;
      const spec = this.specs.get(name) as AdapterSpec;
      const h = (this.lora_dropout.get(name) as Dropout).forward(x);
      if (name === fused) {
        const A = (this.lora_A.get(name) as Linear).weight, B = (this.lora_B.get(name) as Linear).weight;
        y = loraLinear(x, this.base_layer.weight, this.base_layer.bias, A, B, scalingOf(spec), h, alone && h === x ? opts : {});
        continue;
      }
      y ??= this.base_layer.forward(x);
      const ha = (this.lora_A.get(name) as Linear).forward(h);
      if (!spec.useDora) {
        // y + scaling * (h A^T) B^T in one GEMM
        y = addLinear(y, ha, (this.lora_B.get(name) as Linear).weight, scalingOf(spec), { inPlace: true }); // y is this layer's own output
        continue;
      }
      const lora = (this.lora_B.get(name) as Linear).forward(ha).scale(scalingOf(spec));
      // DoRA: (m / ||W + sBA|| - 1) * (h W^T) + (m / ||W + sBA||) * s B A h; the norm is detached (DoRA paper 4.3).
      const m = this.lora_magnitude_vector.get(name) as Tensor;
      const normScale = m.div(rowNorms(this.combined(name, spec)));
      const baseNoBias = linear(h, this.source().denseWeight(), null);
      y = y.add(baseNoBias.mul(normScale.sub(1))).add(lora.mul(normScale));
    }
    return y ?? this.base_layer.forward(x);
  }

  /** Folds adapters (default: the active ones) into the base weight. */
  merge(names: string[] = this.active): { maxError: number } {
    let maxError = 0;
    noGrad(() => {
      for (const name of names) {
        if (this.mergedState.has(name)) continue;
        const spec = this.specs.get(name);
        if (!spec) throw new AutoGLMError(`no adapter '${name}' to merge`);
        const W = this.source().denseWeight();
        let merged: Tensor;
        const state: { norm?: Tensor } = {};
        if (spec.useDora) {
          const c = this.combined(name, spec);
          const norm = rowNorms(c);
          state.norm = norm;
          merged = c.mul(this.lora_magnitude_vector.get(name)?.div(norm).reshape([this.outFeatures, 1]) as Tensor);
        } else {
          merged = W.add(this.deltaWeight(name));
        }
        maxError = Math.max(maxError, this.source().storeWeight(merged));
        this.mergedState.set(name, state);
      }
    });
    return { maxError };
  }

  unmerge(names: string[] = [...this.mergedState.keys()]): void {
    noGrad(() => {
      for (const name of [...names].reverse()) {
        const state = this.mergedState.get(name);
        if (!state) continue;
        const spec = this.specs.get(name) as AdapterSpec;
        const W = this.source().denseWeight();
        const orig = spec.useDora
          ? W.div((this.lora_magnitude_vector.get(name) as Tensor).div(state.norm as Tensor).reshape([this.outFeatures, 1])).sub(this.deltaWeight(name))
          : W.sub(this.deltaWeight(name));
        this.source().storeWeight(orig);
        this.mergedState.delete(name);
      }
    });
  }

  get mergedAdapters(): string[] {
    return [...this.mergedState.keys()];
  }
}

/**
 * LoRA on an Embedding (PEFT's layout): lora_embedding_A (r, V), lora_embedding_B (D, r); the update is
 * embedding(ids, A^T) B^T * scaling.
 */
export class LoraEmbedding extends Module {
  readonly base_layer: Embedding;
  readonly lora_embedding_A = new ParamDict();
  readonly lora_embedding_B = new ParamDict();
  readonly specs = new Map<string, AdapterSpec>();
  active: string[] = [];
  disabled = false;
  private readonly merged = new Set<string>();

  /** The base table (tied LM heads read `.weight`). */
  get weight(): Tensor { return this.base_layer.weight; }
  get numEmbeddings(): number { return this.base_layer.numEmbeddings; }
  get dim(): number { return this.base_layer.dim; }

  constructor(base: Embedding) {
    super();
    this.base_layer = this.module('base_layer', base);
    this.module('lora_embedding_A', this.lora_embedding_A);
    this.module('lora_embedding_B', this.lora_embedding_B);
  }

  addAdapter(name: string, spec: AdapterSpec): void {
    if (this.specs.has(name)) throw new AutoGLMError(`adapter '${name}' already exists on this layer`);
    const { numEmbeddings: V, dim: D } = this.base_layer;
    const rng = new Rng(spec.seed);
    // PEFT initialises embedding adapters with A = 0 and B ~ N(0, 1) so that the update starts at 0
    this.lora_embedding_A.set(name, new Tensor(new Float32Array(spec.r * V), 'f32', [spec.r, V]));
    this.lora_embedding_B.set(name, normal([D, spec.r], 1, rng));
    this.specs.set(name, spec);
    if (this.active.length === 0) this.active = [name];
  }

  deleteAdapter(name: string): void {
    if (!this.specs.has(name)) return;
    this.lora_embedding_A.delete(name);
    this.lora_embedding_B.delete(name);
    this.specs.delete(name);
    this.active = this.active.filter((a) => a !== name);
  }

  deltaWeight(name: string): Tensor {
    const spec = this.specs.get(name) as AdapterSpec;
    return noGrad(() => (this.lora_embedding_B.get(name) as Tensor).matmul(this.lora_embedding_A.get(name) as Tensor).transpose(0, 1).contiguous().scale(scalingOf(spec))); // (V, D)
  }

  forward(ids: Tensor): Tensor {
    let y = this.base_layer.forward(ids);
    if (this.disabled) return y;
    for (const name of this.active) {
      if (this.merged.has(name)) continue;
      const spec = this.specs.get(name) as AdapterSpec;
      const A = this.lora_embedding_A.get(name) as Tensor, B = this.lora_embedding_B.get(name) as Tensor;
      const afterA = embedding(ids, A.transpose(0, 1).contiguous()); // (..., r)
      y = y.add(afterA.matmul(B.transpose(0, 1)).scale(scalingOf(spec)));
    }
    return y;
  }

  merge(names: string[] = this.active): { maxError: number } {
    noGrad(() => {
      for (const n of names) {
        if (this.merged.has(n)) continue;
        copyInto(this.base_layer.weight, this.base_layer.weight.add(this.deltaWeight(n)));
        this.merged.add(n);
      }
    });
    return { maxError: 0 };
  }

  unmerge(names: string[] = [...this.merged]): void {
    noGrad(() => {
      for (const n of names) {
        if (!this.merged.has(n)) continue;
        copyInto(this.base_layer.weight, this.base_layer.weight.sub(this.deltaWeight(n)));
        this.merged.delete(n);
      }
    });
  }

  get mergedAdapters(): string[] {
    return [...this.merged];
  }
}

export type LoraLayer = LoraLinear | LoraEmbedding;
