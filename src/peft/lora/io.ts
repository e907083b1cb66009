/**
 * PEFT's adapter files: `adapter_config.json` + `adapter_model.safetensors` with PEFT's key names
 * (`base_model.model.<module path>.lora_A.weight`, `.lora_B.weight`, `.lora_magnitude_vector`,
 * `.lora_embedding_A`, modules-to-save as `base_model.model.<module path>.<param>`), the adapter name removed as
 * PEFT does. Writes are atomic; reads check every key and shape against the model and name what is wrong.
 */
import { mkdirSync, readFileSync, writeFileSync, renameSync, existsSync, openSync, fsyncSync, closeSync } from 'node:fs';
import path from 'node:path';
import { CheckpointError, ConfigError, DeviceError, fmtShape } from '../../errors.js';
import { backend } from '../../backend/index.js';
import { onCpu, placeOnCurrent } from '../../backend/placement.js';
import { Tensor } from '../../tensor/tensor.js';
import { copyInto } from '../../tensor/creation.js';
import { loadSafetensors, saveSafetensors, saveSafetensorsAsync } from '../../models/safetensors.js';
import { type LoraConfig, fromPeftJson, toPeftJson } from './config.js';
import type { LoraModel } from './model.js';
import { adapterStateDict, peftKey } from './state.js';

export { adapterStateDict } from './state.js';

function writeAtomic(file: string, text: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  const fd = openSync(tmp, 'r');
  fsyncSync(fd);
  closeSync(fd);
  renameSync(tmp, file);
}

/** Saves adapter `name` (default: the first active one) to `dir` in PEFT's layout. */
export function saveAdapter(m: LoraModel, dir: string, name = m.activeAdapters[0]): { config: string; weights: string } {
  const c = m.requireAdapter(name);
  mkdirSync(dir, { recursive: true });
  const weights = path.join(dir, 'adapter_model.safetensors');
  const config = path.join(dir, 'adapter_config.json');
  saveSafetensors(weights, adapterStateDict(m, name), { format: 'pt' });
  writeAtomic(config, `${JSON.stringify(toPeftJson(c), null, 2)}\n`);
  return { config, weights };
}

/** `saveAdapter` for a model that may live on a device (WebGPU, no `moveToCPU` needed): its tensors are read back first. */
export async function saveAdapterAsync(m: LoraModel, dir: string, name = m.activeAdapters[0]): Promise<{ config: string; weights: string }> {
  const c = m.requireAdapter(name);
  mkdirSync(dir, { recursive: true });
  const weights = path.join(dir, 'adapter_model.safetensors');
  const config = path.join(dir, 'adapter_config.json');
  await saveSafetensorsAsync(weights, adapterStateDict(m, name), { format: 'pt' });
  writeAtomic(config, `${JSON.stringify(toPeftJson(c), null, 2)}\n`);
  return { config, weights };
}

/** Reads adapter_config.json from `dir`. */
export function readAdapterConfig(dir: string): LoraConfig {
  const file = path.join(dir, 'adapter_config.json');
  if (!existsSync(file)) throw new CheckpointError(`no adapter_config.json in '${dir}'`);
  let j: unknown;
  try {
    j = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new CheckpointError(`${file} is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
  if (typeof j !== 'object' || j === null) throw new CheckpointError(`${file} does not hold a JSON object`);
  return fromPeftJson(j as Record<string, unknown>, file);
}

/**
 * Loads an adapter saved in PEFT's layout into `m` as adapter `name` (added with the file's config), checking
 * that every key the model expects is there with the right shape and that the file holds no unknown key.
 *
 * Where a device backend (WebGPU) is current, the adapter is added and filled on the CPU and then the model's
 * parameters (the adapter's with them) are uploaded (src/backend/placement.ts). A LoRA model is managed on the CPU
 * (adapters added, heads swapped): one whose parameters are already on the device is a DeviceError.
 */
export function loadAdapter(m: LoraModel, dir: string, name = 'default', opts: { activate?: boolean } = {}): LoraConfig {
  const onDevice = m.model.parameters().find((p) => p.onDevice);
  if (onDevice) {
    throw new DeviceError(`'loadAdapter': the model's parameters are on the device (${backend().name}); load adapters into a model on the CPU ` +
      `(build it and its LoraModel inside onCpu, or 'await moveToCPU(model.parameters())'), then 'moveToDevice(model.parameters())'`);
  }
  const config = onCpu(() => fillAdapter(m, dir, name, opts));
  placeOnCurrent(m.model.parameters());
  return config;
}

function fillAdapter(m: LoraModel, dir: string, name: string, opts: { activate?: boolean }): LoraConfig {
  const config = readAdapterConfig(dir);
  const file = path.join(dir, 'adapter_model.safetensors');
  if (!existsSync(file)) throw new CheckpointError(`no adapter_model.safetensors in '${dir}'`);
  const { tensors } = loadSafetensors(file);
  if (m.configs.has(name)) throw new ConfigError(`adapter '${name}' already exists; load under another name`);
  const previous = m.activeAdapters;
  m.addAdapter(name, config);
  try {
    const want = adapterStateDict(m, name);
    // accept both PEFT spellings of the DoRA magnitude (`.lora_magnitude_vector` and `...vector.weight`)
    const got = new Map<string, Tensor>();
    for (const [k, t] of tensors) got.set(k.endsWith('.lora_magnitude_vector.weight') ? k.slice(0, -'.weight'.length) : k, t);
    const missing = [...want.keys()].filter((k) => !got.has(k));
    const unexpected = [...got.keys()].filter((k) => !want.has(k));
    if (missing.length) throw new CheckpointError(`${file}: missing key '${missing[0]}'${missing.length > 1 ? ` (and ${missing.length - 1} more)` : ''} for adapter '${name}' on this model`);
    if (unexpected.length) throw new CheckpointError(`${file}: unexpected key '${unexpected[0]}'${unexpected.length > 1 ? ` (and ${unexpected.length - 1} more)` : ''}: the adapter does not fit this model`);
    for (const [k, t] of want) {
      const src = got.get(k) as Tensor;
      if (src.shape.length !== t.shape.length || src.shape.some((d, i) => d !== t.shape[i])) {
        throw new CheckpointError(`${file}: key '${k}' has shape ${fmtShape(src.shape)}; the model expects ${fmtShape(t.shape)} (wrong base model?)`);
      }
    }
    // All checks passed: only now copy values in (a failed load leaves the model as it was). The adapter is
    // activated first so that its task head, not the current adapter's, receives the saved head weights.
    m.setAdapter(name);
    const internal = new Map(m.model.namedParameters());
    for (const [p, t] of internal) {
      const k = peftKey(p, name, config.modulesToSave, config.bias);
      if (k && got.has(k) && t.dtype === 'f32') copyInto(t, got.get(k) as Tensor);
    }
  } catch (e) {
    m.deleteAdapter(name);
    if (previous.length) m.setAdapter(previous);
    throw e;
  }
  if (opts.activate === false && previous.length) m.setAdapter(previous);
  return config;
}
