/**
 * Shape checks made before any weight is allocated or read: the parameters a config.json declares must fit in
 * memory (a typed array), and must match the checkpoint's header. A config that says `vocab_size: 1000000000`
 * is refused naming that key, not by a RangeError from deep inside an allocation.
 */
import { constants } from 'node:buffer';
import { CheckpointError, ConfigError, fmtShape } from '../../errors.js';
import { Tensor } from '../../tensor/tensor.js';
import { numel, sameShape } from '../../tensor/shape.js';
import type { HFFamily, HFModel } from './family.js';

/** The most elements one f32 parameter may have: the largest typed array this Node.js allocates. */
export const MAX_PARAM_ELEMENTS = Math.floor(Math.min(constants.MAX_LENGTH, 2 ** 53) / 4);

/** The config.json keys (top level and one level down) whose value is the integer `v`. */
export function configKeysWithValue(raw: Record<string, unknown>, v: number): string[] {
  const out: string[] = [];
  for (const [k, x] of Object.entries(raw)) {
    if (x === v) out.push(k);
    else if (x && typeof x === 'object' && !Array.isArray(x)) {
      for (const [k2, y] of Object.entries(x as Record<string, unknown>)) if (y === v) out.push(`${k}.${k2}`);
    }
  }
  return out;
}

/** "dimension 0 is 1000000000 (config.json key 'vocab_size')" for each dimension in which `have` and `want` differ. */
function blame(raw: Record<string, unknown>, want: readonly number[], have?: readonly number[]): string {
  const parts: string[] = [];
  want.forEach((d, i) => {
    if (have && have[i] === d) return;
    const keys = configKeysWithValue(raw, d);
    parts.push(`dimension ${i} is ${d}${keys.length ? ` (config key${keys.length > 1 ? 's' : ''} ${keys.map((k) => `'${k}'`).join(', ')})` : ''}`);
  });
  return parts.join('; ');
}

/** Every parameter of a skeleton model fits in one typed array; a ConfigError naming the config key otherwise. */
export function checkParameterSizes(model: HFModel, raw: Record<string, unknown>, configFile: string): void {
  for (const [name, p] of model.namedParameters()) {
    const n = numel(p.shape);
    if (!Number.isSafeInteger(n) || n > MAX_PARAM_ELEMENTS) {
      const big = p.shape.map((d) => (d > 1 ? d : 0));
      const worst = p.shape.indexOf(Math.max(...big));
      const keys = configKeysWithValue(raw, p.shape[worst]!);
      throw new ConfigError(`'${configFile}' declares parameter '${name}' of shape ${fmtShape(p.shape)} (${n} elements), more than ` +
        `the ${MAX_PARAM_ELEMENTS} one tensor can hold${keys.length ? `; check key${keys.length > 1 ? 's' : ''} ${keys.map((k) => `'${k}' = ${p.shape[worst]}`).join(', ')}` : ''}`);
    }
  }
}

/**
 * The shape a model parameter has in the checkpoint (a family's `toCheckpoint` may permute dimensions, as GPT-2's
 * Conv1D transpose): found on a tiny probe tensor with distinct sizes, so nothing of the real size is allocated.
 */
export function checkpointShape(family: HFFamily<unknown>, key: string, shape: readonly number[]): number[] {
  if (!family.toCheckpoint) return [...shape];
  const sizes = shape.map((_, i) => i + 2);
  const probe = family.toCheckpoint(key, new Tensor(new Float32Array(numel(sizes)), 'f32', sizes));
  if (probe.ndim !== shape.length || !probe.shape.every((s) => sizes.includes(s))) return [...shape];
  return probe.shape.map((s) => shape[s - 2]!);
}

/**
 * A checkpoint tensor's header shape against the parameter it fills, before its data is read: a CheckpointError
 * naming the tensor, both shapes and the config key that sets each differing dimension.
 */
export function checkHeaderShape(o: {
  family: HFFamily<unknown>; key: string; ckptKey: string; shape: readonly number[]; expected: readonly number[];
  raw: Record<string, unknown>; file: string; configFile: string;
}): void {
  const want = checkpointShape(o.family, o.key, o.expected);
  if (sameShape(o.shape, want)) return;
  throw new CheckpointError(`'${o.file}': tensor '${o.ckptKey}' has shape ${fmtShape(o.shape)}; the ${o.family.name} model that ` +
    `'${o.configFile}' describes expects ${fmtShape(want)}: ${blame(o.raw, want, o.shape.length === want.length ? o.shape : undefined)}`);
}
