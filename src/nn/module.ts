/**
 * `Module`: a layer with named parameters and child modules, train/eval mode and a state dict whose keys
 * follow the attribute path (`blocks.0.attn.qkv.weight`), so that checkpoint keys map one to one.
 */
import { CheckpointError, fmtShape } from '../errors.js';
import { Tensor, releaseGrad } from '../tensor/tensor.js';
import { collectRefused } from '../tensor/alloc.js';
import { copyInto } from '../tensor/creation.js';
import { markCacheable } from '../tensor/versions.js';

export abstract class Module {
  training = true;
  private readonly _params = new Map<string, Tensor>();
  private readonly _children = new Map<string, Module>();

  /** Registers a trainable parameter (made a leaf that requires grad) and returns it. */
  protected param(name: string, t: Tensor, trainable = true): Tensor {
    if (this._params.has(name)) throw new Error(`parameter '${name}' is registered twice`);
    t.name = name;
    t.requiresGrad = trainable && t.dtype === 'f32';
    // products under autocast keep its bf16 copy until its storage is next written (tensor/versions.ts)
    markCacheable(t);
    this._params.set(name, t);
    return t;
  }

  /**
   * Replaces a registered parameter (e.g. a frozen base weight moved to bf16 storage); every own property
   * that held the old tensor now holds the new one.
   */
  replaceParam(name: string, t: Tensor): Tensor {
    const old = this._params.get(name);
    if (!old) throw new Error(`no parameter '${name}' to replace`);
    t.name = name;
    markCacheable(t);
    this._params.set(name, t);
    const self = this as unknown as Record<string, unknown>;
    for (const k of Object.keys(self)) if (self[k] === old) self[k] = t;
    return t;
  }

  /** The parameter registered as `name` on this module (not its children). */
  getParam(name: string): Tensor | undefined {
    return this._params.get(name);
  }

  protected module<M extends Module>(name: string, m: M): M {
    if (this._children.has(name)) throw new Error(`module '${name}' is registered twice`);
    this._children.set(name, m);
    return m;
  }

  /** Replaces a child module (LoRA injection wraps a Linear in place). */
  setChild(name: string, m: Module): void {
    const old = this._children.get(name);
    if (!old) throw new Error(`no child module '${name}'`);
    this._children.set(name, m);
    // Every own property that held the old child now holds the new one, whatever its JS name.
    const self = this as unknown as Record<string, unknown>;
    for (const k of Object.keys(self)) if (self[k] === old) self[k] = m;
  }

  /** The child registered as `name`, if any. */
  getChild(name: string): Module | undefined {
    return this._children.get(name);
  }

  /** Removes a parameter or child (adapter deletion). */
  protected unregister(name: string): void {
    this._params.delete(name);
    this._children.delete(name);
  }

  *namedChildren(): Generator<[string, Module]> {
    yield* this._children.entries();
  }

  /** Every module below this one (itself first) with its dotted path. */
  *namedModules(prefix = ''): Generator<[string, Module]> {
    yield [prefix, this];
    for (const [n, c] of this._children) yield* c.namedModules(prefix ? `${prefix}.${n}` : n);
  }

  *namedParameters(prefix = ''): Generator<[string, Tensor]> {
    for (const [n, p] of this._params) yield [prefix ? `${prefix}.${n}` : n, p];
    for (const [n, c] of this._children) yield* c.namedParameters(prefix ? `${prefix}.${n}` : n);
  }

  parameters(): Tensor[] {
    return [...this.namedParameters()].map(([, p]) => p);
  }

  trainableParameters(): Tensor[] {
    return this.parameters().filter((p) => p.requiresGrad);
  }

  /**
   * Counts of trainable and total parameters (as PEFT's print_trainable_parameters): the weights' logical sizes, so a
   * quantised layer counts its weight's elements, not its packed bytes or its scales (`parameterElements`).
   */
  parameterCounts(): { trainable: number; total: number } {
    let trainable = 0, total = 0;
    for (const [, m] of this.namedModules()) {
      for (const [name, p] of m._params) {
        const n = m.parameterElements(name, p);
        total += n;
        if (p.requiresGrad) trainable += n;
      }
    }
    return { trainable, total };
  }

  /** How many model parameters this module's tensor `name` stands for (its size; quantised layers say otherwise). */
  protected parameterElements(_name: string, t: Tensor): number {
    return t.size;
  }

  train(flag = true): this {
    for (const [, m] of this.namedModules()) m.training = flag;
    return this;
  }
  eval(): this {
    return this.train(false);
  }

  /** Clears gradients of every parameter (as Optimizer.zeroGrad: a gradient only the library held goes back to the pool). */
  zeroGrad(): void {
    for (const p of this.parameters()) releaseGrad(p);
    collectRefused();
  }

  stateDict(): Map<string, Tensor> {
    return new Map(this.namedParameters());
  }

  /**
   * Copies values from `state` into the parameters (converting dtype). With `strict`, missing and unexpected
   * keys are errors naming them; shapes must match exactly.
   */
  loadStateDict(state: Map<string, Tensor>, strict = true): { missing: string[]; unexpected: string[] } {
    const own = this.stateDict();
    const missing = [...own.keys()].filter((k) => !state.has(k));
    const unexpected = [...state.keys()].filter((k) => !own.has(k));
    if (strict && (missing.length || unexpected.length)) {
      throw new CheckpointError(`state dict does not match the model: missing keys [${missing.join(', ')}], unexpected keys [${unexpected.join(', ')}]`);
    }
    for (const [k, p] of own) {
      const v = state.get(k);
      if (!v) continue;
      if (v.shape.length !== p.shape.length || v.shape.some((d, i) => d !== p.shape[i])) {
        throw new CheckpointError(`state dict key '${k}' has shape ${fmtShape(v.shape)}; the model expects ${fmtShape(p.shape)}`);
      }
      copyInto(p, v);
    }
    return { missing, unexpected };
  }
}

/** An ordered list of modules registered as '0', '1', ... */
export class ModuleList<M extends Module = Module> extends Module {
  readonly items: M[];
  constructor(items: M[]) {
    super();
    this.items = items;
    items.forEach((m, i) => this.module(String(i), m));
  }
  get length(): number {
    return this.items.length;
  }
  at(i: number): M {
    return this.items[i];
  }
  [Symbol.iterator](): Iterator<M> {
    return this.items[Symbol.iterator]();
  }
  override setChild(name: string, m: Module): void {
    super.setChild(name, m);
    this.items[Number(name)] = m as M;
  }
}

/** Modules by string key (adapters by name), registered under those keys. */
export class ModuleDict<M extends Module = Module> extends Module {
  private readonly items = new Map<string, M>();
  set(key: string, m: M): void {
    if (this.items.has(key)) throw new Error(`ModuleDict already holds '${key}'`);
    this.items.set(key, m);
    this.module(key, m);
  }
  get(key: string): M | undefined {
    return this.items.get(key);
  }
  has(key: string): boolean {
    return this.items.has(key);
  }
  delete(key: string): void {
    this.items.delete(key);
    this.unregister(key);
  }
  keys(): string[] {
    return [...this.items.keys()];
  }
}
