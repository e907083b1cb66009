/**
 * Tasks from the config and the dataset: a task is a label set, named as the dataset names it (the primary
 * label set by its own name, e.g. clinc150 'intent'; the others by their keys in `Example.extra`, e.g.
 * 'domain'). Checks the task keys against the dataset and names the allowed task names when they do not fit.
 */
import { ConfigError, DatasetError } from '../errors.js';
import { getNamedDataset } from '../data/registry.js';
import type { DatasetSplits, Example } from '../data/types.js';
import type { TaskSpec } from './heads.js';

/** The task keys of the trainer config (see src/train/config.ts). */
export interface TaskConfig {
  tasks?: string[];
  taskWeighting: string;
  taskWeights?: number[] | Record<string, number>;
  taskSampling: string;
  task: string;
}

/** Checks that need no dataset: run when the trainer is built. */
export function checkTaskConfig(c: TaskConfig): void {
  if (!c.tasks) {
    for (const k of ['taskWeights'] as const) if (c[k] !== undefined) throw new ConfigError(`config key '${k}' is set but 'tasks' is not; set 'tasks' (label-set names) to train several heads`);
    return;
  }
  if (c.task === 'causal-lm') throw new ConfigError(`config key 'tasks' with task 'causal-lm': a causal-LM head in a multi-task run is not supported yet; multi-task training takes task 'classification'`);
  const dup = c.tasks.find((t, i) => c.tasks!.indexOf(t) !== i);
  if (dup !== undefined) throw new ConfigError(`config key 'tasks' names '${dup}' twice; expected distinct label-set names`);
  if (c.taskWeights !== undefined && c.taskWeighting !== 'static') {
    throw new ConfigError(`config key 'taskWeights' is set with taskWeighting '${c.taskWeighting}'; fixed weights apply to taskWeighting 'static'`);
  }
  if (Array.isArray(c.taskWeights) && c.taskWeights.length !== c.tasks.length) {
    throw new ConfigError(`config key 'taskWeights' has ${c.taskWeights.length} weight(s) for ${c.tasks.length} task(s); expected one per task, in the order of 'tasks' (${c.tasks.join(', ')})`);
  }
}

/** The name of the primary label set: the spec's labelSet, else the named dataset's default, else the label field, else 'label'. */
export function primaryLabelSet(splits: DatasetSplits, spec: { labelSet?: string; labelField?: string } = {}): string {
  return spec.labelSet ?? getNamedDataset(splits.name)?.labelSets[0] ?? spec.labelField ?? 'label';
}

/** Task specs for `names` on `splits`, or a ConfigError naming the key and the allowed task names. */
export function resolveTasks(names: readonly string[], splits: DatasetSplits, primary: string): TaskSpec[] {
  const allowed = [primary, ...Object.keys(splits.extraLabels).filter((k) => k !== primary)];
  return names.map((name) => {
    if (!allowed.includes(name)) {
      throw new ConfigError(`config key 'tasks' names '${name}', which is not a label set of dataset '${splits.name}'; allowed task names: ${allowed.map((a) => `'${a}'`).join(', ')}`);
    }
    const labels = (name === primary ? splits.labels : splits.extraLabels[name]!).filter((l) => l !== '');
    return { name, labels };
  });
}

/** Static weights in task order from `taskWeights` (an array in task order, or task -> weight). */
export function staticTaskWeights(w: TaskConfig['taskWeights'], tasks: readonly string[]): number[] | undefined {
  if (w === undefined || Array.isArray(w)) return w;
  const extra = Object.keys(w).filter((k) => !tasks.includes(k));
  if (extra.length) throw new ConfigError(`config key 'taskWeights' names ${extra.map((k) => `'${k}'`).join(', ')}, not among the tasks; allowed task names: ${tasks.map((t) => `'${t}'`).join(', ')}`);
  return tasks.map((t) => w[t] ?? 1);
}

/** The label of `task` on an example (undefined when the example has none). */
export function taskLabel(ex: Example, task: string, primary: string): string | undefined {
  const v = task === primary ? ex.label : ex.extra?.[task];
  return v === '' ? undefined : v;
}

/** Class ids (N,) of one task; -1 where an example has no label for it. Unknown labels are a DatasetError. */
export function taskTargets(examples: readonly Example[], task: TaskSpec, primary: string): Int32Array {
  const index = new Map(task.labels.map((l, i) => [l, i]));
  return Int32Array.from(examples, (ex, i) => {
    const v = taskLabel(ex, task.name, primary);
    if (v === undefined) return -1;
    const c = index.get(v);
    if (c === undefined) throw new DatasetError(`example ${i} has '${task.name}' label '${v}', which the '${task.name}' head was not trained on`);
    return c;
  });
}
