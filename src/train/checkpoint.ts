/**
 * Checkpoints: a folder `checkpoint-<step>` holding the trainable weights (`weights.safetensors`), the
 * optimizer state (`optimizer.safetensors`) and everything else the loop needs to continue exactly
 * (`trainer_state.json`: step, epoch, sampler position, RNG states, scheduler, loss scaler, early stopping,
 * history). Written to a temporary folder, each file fsynced, then renamed into place, so a crash never leaves a
 * half-written checkpoint under its final name; the oldest beyond `keepLast` are deleted afterwards.
 */
import { mkdirSync, readdirSync, renameSync, rmSync, existsSync, readFileSync, writeFileSync, openSync, fsyncSync, closeSync } from 'node:fs';
import path from 'node:path';
import { CheckpointError } from '../errors.js';
import type { Tensor } from '../tensor/tensor.js';
import { loadSafetensors, saveSafetensors } from '../models/safetensors.js';

export interface CheckpointData {
  weights: Map<string, Tensor>;
  optimizer: Map<string, Tensor>;
  state: Record<string, unknown>;
}

function fsyncPath(p: string): void {
  const fd = openSync(p, 'r');
  try { fsyncSync(fd); } finally { closeSync(fd); }
}

export function checkpointName(step: number): string {
  return `checkpoint-${String(step).padStart(7, '0')}`;
}

export function saveCheckpoint(outDir: string, step: number, data: CheckpointData, keepLast: number): string {
  mkdirSync(outDir, { recursive: true });
  const final = path.join(outDir, checkpointName(step));
  const tmp = `${final}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  saveSafetensors(path.join(tmp, 'weights.safetensors'), data.weights);
  saveSafetensors(path.join(tmp, 'optimizer.safetensors'), data.optimizer);
  const sf = path.join(tmp, 'trainer_state.json');
  writeFileSync(sf, JSON.stringify(data.state));
  fsyncPath(sf);
  fsyncPath(tmp);
  rmSync(final, { recursive: true, force: true });
  renameSync(tmp, final);
  fsyncPath(outDir);
  const all = listCheckpoints(outDir);
  for (const old of all.slice(0, Math.max(0, all.length - keepLast))) rmSync(old, { recursive: true, force: true });
  return final;
}

/** Complete checkpoints in outDir, oldest first (temporary folders are ignored). */
export function listCheckpoints(outDir: string): string[] {
  if (!existsSync(outDir)) return [];
  return readdirSync(outDir).filter((f) => /^checkpoint-\d+$/.test(f)).sort().map((f) => path.join(outDir, f));
}

export function loadCheckpoint(dir: string): CheckpointData {
  for (const f of ['weights.safetensors', 'optimizer.safetensors', 'trainer_state.json']) {
    if (!existsSync(path.join(dir, f))) throw new CheckpointError(`checkpoint '${dir}' is incomplete: ${f} is missing`);
  }
  let state: Record<string, unknown>;
  try {
    state = JSON.parse(readFileSync(path.join(dir, 'trainer_state.json'), 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new CheckpointError(`checkpoint '${dir}': trainer_state.json is not valid JSON (${(e as Error).message})`, { cause: e });
  }
  return {
    weights: loadSafetensors(path.join(dir, 'weights.safetensors')).tensors,
    optimizer: loadSafetensors(path.join(dir, 'optimizer.safetensors')).tensors,
    state,
  };
}
