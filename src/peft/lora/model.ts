/**
 * `LoraModel`: injects LoRA adapters into a model's Linear (and Embedding) layers by name, freezes the base,
 * and manages several named adapters on one base (add, set active, disable, delete, merge, unmerge,
 * mergeAndUnload). Modules listed in `modulesToSave` (a task head) are trained fully and kept per adapter, so
 * switching adapters switches tasks. `parameterGroups` gives LoRA+ groups (B's learning rate = ratio x A's).
 */
import { Module } from '../../nn/module.js';
import { Linear, Embedding } from '../../nn/layers.js';
import { Tensor } from '../../tensor/tensor.js';
import { copyInto } from '../../tensor/creation.js';
import { AutoGLMError, ConfigError } from '../../errors.js';
import { type LoraConfig, type LoraConfigInput, loraConfig, patternValue } from './config.js';
import { LoraEmbedding, LoraLinear, type AdapterSpec, type LoraLayer } from './layer.js';
import { Int8Linear, Nf4Linear } from '../quant.js';
import type { ParamsInput } from '../../optim/optimizer.js';

/** Names never targeted by 'all-linear' (output heads), as PEFT excludes the output layer. */
const OUTPUT_HEADS = ['lm_head', 'head', 'classifier', 'score', 'cls'];

/**
 * The default targets of a config that names none: PEFT's per-architecture defaults
 * (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING), found by the layer names each architecture uses. The first
 * set the model has a Linear for: this library's blocks (qkv), GPT-2 (c_attn), Llama / Qwen2 / Mistral / GLM
 * (q_proj, v_proj), BERT (query, value), ChatGLM-style fused attention (query_key_value).
 */
const DEFAULT_TARGETS = [['qkv'], ['c_attn'], ['q_proj', 'v_proj'], ['query', 'value'], ['query_key_value']];

function defaultTargets(model: Module): string[] {
  const linears = [...model.namedModules()].filter(([, m]) => m instanceof Linear || m instanceof Int8Linear || m instanceof Nf4Linear).map(([p]) => p);
  return DEFAULT_TARGETS.find((set) => linears.some((p) => matchesTarget(p, set, []))) ?? DEFAULT_TARGETS[0];
}

function matchesTarget(path: string, targets: string | string[], modulesToSave: string[]): boolean {
  const last = path.split('.').pop() as string;
  if (targets === 'all-linear') return !OUTPUT_HEADS.includes(last) && !modulesToSave.some((m) => path === m || path.endsWith(`.${m}`));
  if (typeof targets === 'string') {
    try {
      return new RegExp(`^(?:${targets})$`).test(path);
    } catch (e) {
      throw new ConfigError(`LoRA config key 'targetModules' is not a valid regular expression: ${targets}`, { cause: e });
    }
  }
  return targets.some((t) => path === t || path.endsWith(`.${t}`));
}

/** The layer index in a module path (`blocks.3.attn.qkv` -> 3), as PEFT's layers_to_transform reads it. */
export function layerIndex(path: string): number | null {
  const m = /(?:^|\.)(?:layers|layer|h|blocks|block|encoder_layers)\.(\d+)(?:\.|$)/.exec(path);
  return m ? Number(m[1]) : null;
}

function specFor(c: LoraConfig, path: string): AdapterSpec {
  return {
    r: patternValue(c.rankPattern, path) ?? c.r,
    alpha: patternValue(c.alphaPattern, path) ?? c.alpha,
    dropout: c.dropout, useRslora: c.useRslora, useDora: c.useDora, init: c.initLoraWeights, seed: c.seed,
  };
}

/** GPT-2's layers that its checkpoints store as Conv1D, (in, out). */
const CONV1D_LAYERS = /(^|\.)(c_attn|c_proj|c_fc)$/;

/**
 * PEFT's `fan_in_fan_out` for the adapted layers: true when they are GPT-2's Conv1D layers (PEFT sets it so, and
 * warns, when the user did not); false when none is (PEFT resets a true flag on torch Linear layers, with a warning).
 */
function fanInFanOut(model: Module, adapted: string[], requested: boolean): boolean {
  const gpt2 = (model as { hf?: { family?: string } | null }).hf?.family === 'gpt2';
  const conv = gpt2 && adapted.some((p) => CONV1D_LAYERS.test(p));
  if (requested && !conv) console.warn('LoRA: fanInFanOut (fan_in_fan_out) is true but the adapted layers are not Conv1D layers; setting it to false, as PEFT does');
  return conv;
}

export class LoraModel {
  readonly configs = new Map<string, LoraConfig>();
  private activeNames: string[] = [];
  /** Per adapter, the values of its modules-to-save parameters while another adapter is active. */
  private readonly savedHeads = new Map<string, Map<string, Float32Array>>();
  /** The base model's values of every modules-to-save parameter, taken when an adapter first names it (before training). */
  private readonly originalHeads = new Map<string, Float32Array>();

  constructor(readonly model: Module, config: LoraConfigInput | LoraConfig = {}, adapterName = 'default') {
    this.addAdapter(adapterName, config);
  }

  /** Every LoRA layer with its module path. */
  loraLayers(): Array<[string, LoraLayer]> {
    const out: Array<[string, LoraLayer]> = [];
    for (const [p, m] of this.model.namedModules()) if (m instanceof LoraLinear || m instanceof LoraEmbedding) out.push([p, m]);
    return out;
  }

  get activeAdapters(): string[] {
    return [...this.activeNames];
  }
  get adapterNames(): string[] {
    return [...this.configs.keys()];
  }

  addAdapter(name: string, input: LoraConfigInput | LoraConfig = {}): void {
    if (this.configs.has(name)) throw new ConfigError(`adapter '${name}' already exists; choose another name or deleteAdapter('${name}') first`);
    if (!/^[A-Za-z0-9_-]+$/.test(name)) throw new ConfigError(`adapter name '${name}' must be letters, digits, '_' or '-'`);
    const named = (input as { targetModules?: unknown }).targetModules !== undefined;
    const c = loraConfig((named ? input : { ...input, targetModules: defaultTargets(this.model) }) as LoraConfigInput);
    const modules = new Map(this.model.namedModules());
    const adapted: string[] = [];
    let injected = 0;
    for (const [path, m] of modules) {
      if (path === '' || !(m instanceof Linear || m instanceof Int8Linear || m instanceof Nf4Linear || m instanceof Embedding || m instanceof LoraLinear || m instanceof LoraEmbedding)) continue;
      if (path.includes('.base_layer') || path.includes('lora_')) continue;
      if (!matchesTarget(path, c.targetModules, c.modulesToSave)) continue;
      // 'all-linear' means Linear layers only (PEFT's meaning); embeddings are adapted only when named
      if (c.targetModules === 'all-linear' && (m instanceof Embedding || m instanceof LoraEmbedding)) continue;
      if (c.layersToTransform) {
        const li = layerIndex(path);
        if (li === null || !c.layersToTransform.includes(li)) continue;
      }
      let layer: LoraLayer;
      if (m instanceof LoraLinear || m instanceof LoraEmbedding) layer = m;
      else {
        layer = m instanceof Embedding ? new LoraEmbedding(m) : new LoraLinear(m as Linear | Int8Linear | Nf4Linear);
        const dot = path.lastIndexOf('.');
        const parent = modules.get(dot < 0 ? '' : path.slice(0, dot)) as Module;
        parent.setChild(path.slice(dot + 1), layer);
      }
      layer.addAdapter(name, specFor(c, path));
      adapted.push(path);
      injected++;
    }
    if (injected === 0) {
      const linears = [...modules].filter(([, m]) => m instanceof Linear).map(([p]) => p).slice(0, 12);
      throw new ConfigError(`LoRA config key 'targetModules' (${JSON.stringify(c.targetModules)}) matched no Linear or Embedding layer; ` +
        `the model has e.g. ${linears.join(', ')}`);
    }
    for (const m of c.modulesToSave) {
      if (![...modules.keys()].some((p) => p === m || p.endsWith(`.${m}`))) {
        throw new ConfigError(`LoRA config key 'modulesToSave' names '${m}', which is not a module of the model`);
      }
    }
    c.fanInFanOut = fanInFanOut(this.model, adapted, c.fanInFanOut);
    this.configs.set(name, c);
    // snapshot at injection: a later adapter starts from the base model's head, not the first task's trained one
    for (const [k, t] of this.headParams()) if (!this.originalHeads.has(k)) this.originalHeads.set(k, t.f32().slice());
    if (this.activeNames.length === 0) this.setAdapter(name);
    else this.savedHeads.set(name, this.headSnapshot(true));
    this.applyTrainable();
  }

  /** The parameters of modules-to-save (of every adapter's config), by full path. */
  private headParams(): Map<string, Tensor> {
    const names = new Set<string>();
    for (const c of this.configs.values()) for (const m of c.modulesToSave) names.add(m);
    const out = new Map<string, Tensor>();
    for (const [p, t] of this.model.namedParameters()) {
      const mod = p.slice(0, p.lastIndexOf('.'));
      if ([...names].some((m) => mod === m || mod.endsWith(`.${m}`))) out.set(p, t);
    }
    return out;
  }

  /** Values of the head parameters now (or of the base model's original head). */
  private headSnapshot(original = false): Map<string, Float32Array> {
    if (original) return new Map([...this.originalHeads].map(([k, v]) => [k, v.slice()]));
    return new Map([...this.headParams()].map(([k, t]) => [k, t.f32().slice()]));
  }

  /** Activates one adapter (or several, summed); swaps in that adapter's task head. */
  setAdapter(names: string | string[]): void {
    const list = Array.isArray(names) ? names : [names];
    for (const n of list) if (!this.configs.has(n)) throw new ConfigError(`no adapter '${n}'; adapters: ${this.adapterNames.join(', ')}`);
    const heads = this.headParams();
    if (heads.size && this.activeNames.length === 1) this.savedHeads.set(this.activeNames[0], this.headSnapshot());
    if (heads.size && list.length === 1) {
      const saved = this.savedHeads.get(list[0]);
      if (saved) {
        // a head parameter this adapter never saw (named by a later adapter) goes back to the base model's value
        for (const [k, t] of heads) {
          const v = saved.get(k) ?? this.originalHeads.get(k);
          if (v) copyInto(t, new Tensor(v, 'f32', [...t.shape]));
        }
      }
    }
    this.activeNames = list;
    for (const [, l] of this.loraLayers()) l.active = list.filter((n) => l.specs.has(n));
    this.applyTrainable();
  }

  /** Runs `fn` on the base model alone (adapters bypassed). */
  withAdaptersDisabled<T>(fn: () => T): T {
    this.disableAdapters();
    try {
      return fn();
    } finally {
      this.enableAdapters();
    }
  }
  disableAdapters(): void {
    for (const [, l] of this.loraLayers()) l.disabled = true;
  }
  enableAdapters(): void {
    for (const [, l] of this.loraLayers()) l.disabled = false;
  }

  deleteAdapter(name: string): void {
    if (!this.configs.has(name)) throw new ConfigError(`no adapter '${name}' to delete`);
    for (const [, l] of this.loraLayers()) l.deleteAdapter(name);
    this.configs.delete(name);
    this.savedHeads.delete(name);
    this.activeNames = this.activeNames.filter((n) => n !== name);
    if (this.activeNames.length === 0 && this.configs.size) this.setAdapter(this.adapterNames[0]);
  }

  /** Freezes the base; trains the active adapters' A/B (and magnitudes), modules-to-save and biases per config. */
  private applyTrainable(): void {
    for (const p of this.model.parameters()) p.requiresGrad = false;
    const active = new Set(this.activeNames);
    for (const [path, t] of this.model.namedParameters()) {
      const parts = path.split('.');
      const adapter = parts.find((_, i) => i > 0 && /^lora_/.test(parts[i - 1]));
      if (adapter && active.has(adapter)) t.requiresGrad = t.dtype === 'f32';
    }
    for (const [, t] of this.headParams()) t.requiresGrad = true;
    for (const name of this.activeNames) {
      const c = this.configs.get(name) as LoraConfig;
      if (c.bias === 'none') continue;
      for (const [path, t] of this.model.namedParameters()) {
        if (!path.endsWith('.bias') || t.dtype !== 'f32') continue;
        if (c.bias === 'all' || path.endsWith('.base_layer.bias')) t.requiresGrad = true;
      }
    }
  }

  /** Folds the active adapters into the base weights (outputs unchanged); returns the max storage error. */
  merge(): { maxError: number } {
    let maxError = 0;
    for (const [, l] of this.loraLayers()) maxError = Math.max(maxError, l.merge(l.active).maxError);
    return { maxError };
  }
  unmerge(): void {
    for (const [, l] of this.loraLayers()) l.unmerge();
  }

  /** Merges the active adapters and replaces every LoRA layer by its base layer: a plain model. */
  mergeAndUnload(): { model: Module; maxError: number } {
    const { maxError } = this.merge();
    const modules = new Map(this.model.namedModules());
    for (const [path, l] of this.loraLayers()) {
      const dot = path.lastIndexOf('.');
      (modules.get(dot < 0 ? '' : path.slice(0, dot)) as Module).setChild(path.slice(dot + 1), l.base_layer);
    }
    for (const p of this.model.parameters()) p.requiresGrad = false;
    return { model: this.model, maxError };
  }

  /** Trainable and total parameter counts, and PEFT's one-line summary. */
  trainableSummary(): { trainable: number; total: number; line: string } {
    const { trainable, total } = this.model.parameterCounts();
    let base = 0;
    for (const [p, t] of this.model.namedParameters()) if (!/\.lora_/.test(p)) base += t.size;
    return { trainable, total, line: `trainable params: ${trainable.toLocaleString('en-US')} || all params: ${total.toLocaleString('en-US')} || trainable%: ${(100 * trainable / total).toFixed(4)} (base ${base.toLocaleString('en-US')})` };
  }

  /**
   * Optimizer parameter groups. With `loraPlusRatio`, B (and embedding B) matrices get lr * ratio (LoRA+);
   * biases and norm weights get no weight decay.
   */
  parameterGroups(opts: { lr: number; weightDecay?: number; loraPlusRatio?: number }): ParamsInput {
    const { lr, weightDecay = 0, loraPlusRatio = 1 } = opts;
    if (!(loraPlusRatio > 0)) throw new ConfigError(`loraPlusRatio must be > 0; got ${loraPlusRatio}`);
    const groups = { a: [] as Tensor[], b: [] as Tensor[], noDecay: [] as Tensor[] };
    for (const [path, t] of this.model.namedParameters()) {
      if (!t.requiresGrad) continue;
      if (/\.lora_B\.|\.lora_embedding_B\./.test(path)) groups.b.push(t);
      else if (t.ndim < 2) groups.noDecay.push(t);
      else groups.a.push(t);
    }
    return [
      { params: groups.a, lr, weightDecay, lrScale: 1 },
      { params: groups.b, lr: lr * loraPlusRatio, weightDecay, lrScale: loraPlusRatio },
      { params: groups.noDecay, lr, weightDecay: 0, lrScale: 1 },
    ].filter((g) => g.params.length > 0);
  }

  /** Throws unless the layer paths of this model carry adapter `name`. */
  requireAdapter(name: string): LoraConfig {
    const c = this.configs.get(name);
    if (!c) throw new AutoGLMError(`no adapter '${name}'; adapters: ${this.adapterNames.join(', ')}`);
    return c;
  }
}
