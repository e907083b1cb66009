/**
 * The task registry: every kind of training the trainer runs, one line each (task.ts says how to write one), and
 * the check that every config key means something for the chosen task: a key a task refuses, set to anything
 * but its default, is a ConfigError naming the key and the task; so is an early-stopping monitor the task does
 * not report, and a key whose meaning needs another key's value (a LoRA key with method 'full', SGD's momentum
 * with AdamW, a cosine period with a linear schedule, ...).
 */
import { ConfigError } from '../errors.js';
import { isDefaultValue, type TrainerConfig } from './config.js';
import type { TaskDefinition } from './task.js';
import { classificationTask } from './classification.js';
import { multiTaskTask } from './multitask.js';
import { causalLMTask } from './causal-lm.js';
import { sftTask } from './sft.js';
import { dpoTask } from './dpo.js';

const TASKS = new Map<string, TaskDefinition>();

/** Adds a task; a duplicate name throws. */
export function registerTask(def: TaskDefinition): void {
  if (TASKS.has(def.name)) throw new ConfigError(`task '${def.name}' is already registered`);
  TASKS.set(def.name, def);
}

export function taskNames(): string[] {
  return [...TASKS.keys()];
}

export function taskDefinitions(): TaskDefinition[] {
  return [...TASKS.values()];
}

registerTask(classificationTask);
registerTask(multiTaskTask);
registerTask(causalLMTask);
registerTask(sftTask);
registerTask(dpoTask);

/** The task a config selects: `task`, where 'classification' with `tasks` set is 'multi-task'. */
export function taskOf(c: TrainerConfig): TaskDefinition {
  const name = c.tasks !== undefined && c.task === 'classification' ? 'multi-task' : c.task;
  const def = TASKS.get(name);
  if (!def) throw new ConfigError(`config key 'task' is '${c.task}'; expected one of ${taskNames().map((n) => `'${n}'`).join(', ')}`);
  if (name === 'multi-task' && c.tasks === undefined) throw new ConfigError(`config key 'task' is 'multi-task' but 'tasks' is not set; set 'tasks' to the label sets to train (e.g. intent,domain)`);
  return def;
}

/**
 * Keys whose meaning depends on another key, for every task: the condition under which each one is used, said in
 * the error when it is set without it.
 */
const DEPENDS: Array<[keyof TrainerConfig, (c: TrainerConfig) => boolean, string]> = [
  ...(['loraRank', 'loraAlpha', 'loraDropout', 'loraTargets', 'useRslora', 'useDora', 'loraPlusRatio'] as const)
    .map((k): [keyof TrainerConfig, (c: TrainerConfig) => boolean, string] => [k, (c) => c.method === 'lora', "LoRA keys apply to method 'lora'"]),
  ['momentum', (c) => c.optimizer === 'sgd' || c.optimizer === 'rmsprop', "it belongs to optimizers 'sgd' and 'rmsprop'"],
  ['nesterov', (c) => c.optimizer === 'sgd', "it is SGD's Nesterov momentum (optimizer 'sgd')"],
  ['betas', (c) => c.optimizer === 'adam' || c.optimizer === 'adamw', "it belongs to optimizers 'adam' and 'adamw'"],
  ['eps', (c) => c.optimizer !== 'sgd', "it belongs to optimizers 'adam', 'adamw' and 'rmsprop'"],
  ['minLr', (c) => c.scheduler === 'cosine' || c.scheduler === 'plateau', "it is the floor of schedulers 'cosine' and 'plateau'"],
  ['tMax', (c) => c.scheduler === 'cosine', "it is the period of scheduler 'cosine'"],
  ['plateauPatience', (c) => c.scheduler === 'plateau', "it belongs to scheduler 'plateau'"],
  ['plateauFactor', (c) => c.scheduler === 'plateau', "it belongs to scheduler 'plateau'"],
  ['keepLast', (c) => c.saveEvery > 0 || c.resume !== false, "it prunes the checkpoints of saveEvery (or of a resumed run)"],
];

/** Refuses every key the task (or the method) cannot give a meaning to; returns the task. */
export function checkTaskKeys(c: TrainerConfig): TaskDefinition {
  const def = taskOf(c);
  for (const [key, why] of Object.entries(def.refuses) as Array<[keyof TrainerConfig, string]>) {
    if (!isDefaultValue(key, c[key])) throw new ConfigError(`config key '${key}' is set (${JSON.stringify(c[key])}), but task '${def.name}' has no use for it: ${why}`);
  }
  if (c.earlyStopping && !def.monitors.includes(c.earlyStopping.monitor)) {
    throw new ConfigError(`config key 'earlyStopping.monitor' is '${c.earlyStopping.monitor}', but task '${def.name}' reports ${def.monitors.map((m) => `'${m}'`).join(', ')}`);
  }
  for (const [key, used, why] of DEPENDS) {
    if (!used(c) && !isDefaultValue(key, c[key])) throw new ConfigError(`config key '${key}' is set (${JSON.stringify(c[key])}) but has no effect in this run (task '${def.name}'): ${why}`);
  }
  def.check?.(c);
  return def;
}
