/**
 * An adapter's tensors under PEFT's key names, and the two files of PEFT's layout as bytes (adapter_config.json,
 * adapter_model.safetensors): what io.ts writes to a folder in Node and what a page offers as downloads. No file system.
 */
import type { Tensor } from '../../tensor/tensor.js';
import { encodeSafetensors, readBack } from '../../models/safetensors-encode.js';
import { type LoraConfig, toPeftJson } from './config.js';
import type { LoraModel } from './model.js';

const PREFIX = 'base_model.model.';

/** Internal parameter path -> PEFT key (adapter name removed), or null when the parameter is not saved. */
export function peftKey(internal: string, adapter: string, heads: string[], bias: LoraConfig['bias']): string | null {
  const parts = internal.split('.');
  const i = parts.findIndex((p, k) => k > 0 && /^lora_/.test(parts[k - 1]) && p === adapter);
  if (i > 0) {
    const kind = parts[i - 1];
    if (kind === 'lora_dropout') return null;
    const rest = [...parts.slice(0, i), ...parts.slice(i + 1)].join('.');
    return PREFIX + rest;
  }
  if (parts.some((p) => /^lora_/.test(p))) return null; // another adapter's weights
  const mod = parts.slice(0, -1).join('.');
  if (heads.some((h) => mod === h || mod.endsWith(`.${h}`))) return PREFIX + internal;
  if (bias !== 'none' && internal.endsWith('.bias') && (bias === 'all' || internal.endsWith('.base_layer.bias'))) return PREFIX + internal;
  return null;
}

/** The tensors of adapter `name` keyed as PEFT saves them. */
export function adapterStateDict(m: LoraModel, name: string): Map<string, Tensor> {
  const c = m.requireAdapter(name);
  const out = new Map<string, Tensor>();
  for (const [p, t] of m.model.namedParameters()) {
    const k = peftKey(p, name, c.modulesToSave, c.bias);
    if (k) out.set(k, t.dtype === 'f32' ? t : t.to('f32'));
  }
  return out;
}

/** Adapter `name` (default: the first active one) in PEFT's layout, as the bytes of its two files. */
export function adapterFiles(m: LoraModel, name = m.activeAdapters[0]): { 'adapter_config.json': string; 'adapter_model.safetensors': Uint8Array } {
  const c = m.requireAdapter(name);
  return {
    'adapter_config.json': `${JSON.stringify(toPeftJson(c), null, 2)}\n`,
    'adapter_model.safetensors': encodeSafetensors(adapterStateDict(m, name), { format: 'pt' }),
  };
}

/** `adapterFiles` for a model that may live on a device (WebGPU): its tensors are read back first. */
export async function adapterFilesAsync(m: LoraModel, name = m.activeAdapters[0]): Promise<{ 'adapter_config.json': string; 'adapter_model.safetensors': Uint8Array }> {
  const c = m.requireAdapter(name);
  const tensors = await readBack(adapterStateDict(m, name));
  return {
    'adapter_config.json': `${JSON.stringify(toPeftJson(c), null, 2)}\n`,
    'adapter_model.safetensors': encodeSafetensors(tensors, { format: 'pt' }),
  };
}
