/**
 * The trainer on a device backend (WebGPU: `await initBackend({ prefer: 'webgpu' })`, or the CLI's `--backend webgpu`).
 * The loop (loop.ts) is the same: it uploads the task's parameters once the task has built its model on the CPU, reads
 * each micro-batch's loss with `await loss.value()` (the step's norm and skip are decided on the device by the step
 * gate, update.ts), evaluates on the device (classification: `evaluateClassifierAsync`; causal-LM: `perplexity`, its
 * batch losses read back together), and after the test split moves the model back to the CPU backend, which it makes
 * current, for the outputs, `evaluate` and `predict`.
 *
 * What that path cannot honour yet is refused here by name (ConfigError), when the trainer is built on a device
 * backend and again when a fine-tune starts on one; never ignored, never a silent fall back to the CPU.
 */
import { ConfigError } from '../errors.js';
import { isDefaultValue, type TrainerConfig } from './config.js';
import type { TaskDefinition } from './task.js';

/** Keys the device path refuses when set to anything but their default, with why. */
const DEVICE_REFUSES: Readonly<Partial<Record<keyof TrainerConfig, string>>> = {
  gradientCompression: 'data-parallel training (where gradients are compressed) runs on the CPU backends',
  saveEvery: 'checkpoints are written and resumed on the CPU backends (the loop saves them synchronously)',
  resume: 'checkpoints are written and resumed on the CPU backends',
  curriculum: 'curriculum samplers read per-sample losses and scores on the CPU',
  sampling: 'loss-weighted sampling reads per-sample losses on the CPU',
  baseQuantization: 'a quantised frozen base has not been run on the device',
  gradientCheckpointing: 'activation recomputation has not been run on the device',
  useDora: "DoRA's weight norms have not been run on the device",
  neftuneNoiseAlpha: "NEFTune's noise is drawn on the CPU and has not been run on the device",
};

/** The tasks that run on a device backend. */
const DEVICE_TASKS = ['classification', 'causal-lm'];

/** Refuses, by key, what the trainer cannot honour on the device backend `backendName`. */
export function checkDeviceConfig(c: TrainerConfig, def: TaskDefinition, backendName: string): void {
  const on = `on the ${backendName} backend`;
  if (!DEVICE_TASKS.includes(def.name)) {
    throw new ConfigError(`config key 'task' is '${def.name}': ${on} the trainer runs task ${DEVICE_TASKS.map((t) => `'${t}'`).join(' or ')}; use a CPU backend for '${def.name}'`);
  }
  for (const [k, why] of Object.entries(DEVICE_REFUSES) as Array<[keyof TrainerConfig, string]>) {
    if (!isDefaultValue(k, c[k])) throw new ConfigError(`config key '${k}' is set (${JSON.stringify(c[k])}), but the trainer ${on} cannot honour it: ${why}`);
  }
  if (c.optimizer === 'adamw8bit') throw new ConfigError(`config key 'optimizer' is 'adamw8bit': ${on} the trainer's optimizers are AdamW, Adam, SGD and RMSprop (the 8-bit states are updated on the CPU)`);
  if (c.method === 'head') throw new ConfigError(`config key 'method' is 'head': ${on} the trainer trains 'lora' or 'full' (method 'head' caches the encoder's embeddings on the CPU)`);
  if (c.mixedPrecision === 'bf16' || c.mixedPrecision === 'fp16') {
    throw new ConfigError(`config key 'mixedPrecision' is '${c.mixedPrecision}': ${on} the trainer computes in fp32 ('fp32' or 'auto'; bf16/fp16 autocast has not been run on the device)`);
  }
  if (c.earlyStopping && c.earlyStopping.restoreBest) {
    throw new ConfigError(`config key 'earlyStopping.restoreBest' is true: ${on} the best weights are not kept (set restoreBest false to stop early without restoring them)`);
  }
}

/** Data-parallel training (autoglm launch) on a device backend: refused. */
export function refuseDeviceDataParallel(worldSize: number, backendName: string): void {
  if (worldSize > 1) throw new ConfigError(`data-parallel training (autoglm launch, world size ${worldSize}) runs on the CPU backends; the trainer on the ${backendName} backend runs in one process`);
}
