/**
 * The task registry: every kind of training the trainer runs, one line each (task.ts says how to write one), and
 * the check that every config key means something for the chosen task: a key a task refuses, set to anything
 * but its default, is a ConfigError naming the key and the task; so is an early-stopping monitor the task does
 * not report, and a LoRA key with a method other than 'lora'.
 */
import { ConfigError } from '../errors.js';
import { isDefaultValue, type TrainerConfig } from './config.js';
import type { TaskDefinition } from './task.js';
import { classificationTask } from './classification.js';
import { multiTaskTask } from './multitask.js';
import { causalLMTask } from './causal-lm.js';
import { sftTask } from './sft.js';

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

/** The task a config selects: `task`, where 'classification' with `tasks` set is 'multi-task'. */
export function taskOf(c: TrainerConfig): TaskDefinition {
  const name = c.tasks !== undefined && c.task === 'classification' ? 'multi-task' : c.task;
  const def = TASKS.get(name);
  if (!def) throw new ConfigError(`config key 'task' is '${c.task}'; expected one of ${taskNames().map((n) => `'${n}'`).join(', ')}`);
  if (name === 'multi-task' && c.tasks === undefined) throw new ConfigError(`config key 'task' is 'multi-task' but 'tasks' is not set; set 'tasks' to the label sets to train (e.g. intent,domain)`);
  return def;
}

/** Keys that configure LoRA adapters: meaningless with method 'full' or 'head'. */
const LORA_KEYS = ['loraRank', 'loraAlpha', 'loraDropout', 'loraTargets', 'useRslora', 'useDora', 'loraPlusRatio'] as const;

/** Refuses every key the task (or the method) cannot give a meaning to; returns the task. */
export function checkTaskKeys(c: TrainerConfig): TaskDefinition {
  const def = taskOf(c);
  for (const [key, why] of Object.entries(def.refuses) as Array<[keyof TrainerConfig, string]>) {
    if (!isDefaultValue(key, c[key])) throw new ConfigError(`config key '${key}' is set (${JSON.stringify(c[key])}), but task '${def.name}' has no use for it: ${why}`);
  }
  if (c.earlyStopping && !def.monitors.includes(c.earlyStopping.monitor)) {
    throw new ConfigError(`config key 'earlyStopping.monitor' is '${c.earlyStopping.monitor}', but task '${def.name}' reports ${def.monitors.map((m) => `'${m}'`).join(', ')}`);
  }
  if (c.method !== 'lora') {
    const key = LORA_KEYS.find((k) => !isDefaultValue(k, c[k]));
    if (key) throw new ConfigError(`config key '${key}' is set (${JSON.stringify(c[key])}), but method is '${c.method}' (task '${def.name}'): LoRA keys apply to method 'lora'`);
  }
  def.check?.(c);
  return def;
}
