/**
 * A shared backbone with one classification head per task: encoder -> pooled embedding (B, D) -> dropout ->
 * `heads.<task>` Linear (B, C_task). Parameter names (`heads.intent.weight`) are the module paths, so LoRA's
 * `modulesToSave` can name each head and the saved files keep one tensor pair per task.
 */
import { Tensor } from '../tensor/tensor.js';
import { Module, ModuleDict } from '../nn/module.js';
import { Linear, Dropout } from '../nn/layers.js';
import { ConfigError } from '../errors.js';
import type { TextEncoder } from '../models/classifier.js';

/** A task: the name of a label set and its sorted label names (index = class id). */
export interface TaskSpec {
  name: string;
  labels: string[];
}

export class MultiTaskClassifier extends Module {
  readonly encoder: Module;
  readonly dropout: Dropout;
  readonly heads: ModuleDict<Linear>;

  constructor(readonly backbone: TextEncoder, readonly tasks: readonly TaskSpec[], headDropout = 0.1) {
    super();
    if (tasks.length === 0) throw new ConfigError(`'MultiTaskClassifier': argument 'tasks' is empty; expected at least one task`);
    this.encoder = this.module('encoder', backbone.module);
    this.dropout = this.module('dropout', new Dropout(headDropout));
    this.heads = this.module('heads', new ModuleDict<Linear>());
    for (const t of tasks) {
      if (!/^[A-Za-z0-9_-]+$/.test(t.name)) throw new ConfigError(`'MultiTaskClassifier': task name '${t.name}' must be letters, digits, '_' or '-'`);
      if (t.labels.length < 2) throw new ConfigError(`'MultiTaskClassifier': task '${t.name}' has ${t.labels.length} label(s); a head needs at least 2`);
      this.heads.set(t.name, new Linear(backbone.embedDim, t.labels.length));
    }
  }

  /** Module paths of the heads (LoRA's modulesToSave). */
  get headPaths(): string[] {
    return this.tasks.map((t) => `heads.${t.name}`);
  }

  /** Pooled embeddings (B, D) after dropout: the input of every head. */
  features(ids: Tensor, mask: Tensor): Tensor {
    return this.dropout.forward(this.backbone.embed(ids, mask));
  }

  /** Logits (B, C_task) of one head on features (B, D). */
  head(task: string, features: Tensor): Tensor {
    const h = this.heads.get(task);
    if (!h) throw new ConfigError(`'MultiTaskClassifier.head': no task '${task}'; tasks: ${this.tasks.map((t) => t.name).join(', ')}`);
    return h.forward(features);
  }
}
