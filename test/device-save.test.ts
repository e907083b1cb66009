/**
 * Saving from the device (#22 item 4) to files in Node: `saveAdapterAsync` and `saveCheckpointAsync` read device
 * tensors back themselves (no `moveToCPU`), and write what the synchronous savers write for the same values on the
 * CPU; the synchronous ones refuse device tensors with a DeviceError. Device part through Dawn (the optional `webgpu`
 * package) where it finds an adapter, skipped otherwise (the page's download, `adapterFilesAsync`, is checked in
 * headless Chromium by test/webgpu.test.ts); the CPU part always runs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { backend, setBackend } from '../src/backend/index.js';
import { Module } from '../src/nn/module.js';
import { Linear } from '../src/nn/layers.js';
import { manualSeed } from '../src/nn/init.js';
import { Tensor } from '../src/tensor/tensor.js';
import { LoraModel } from '../src/peft/lora/model.js';
import { saveAdapter, saveAdapterAsync } from '../src/peft/lora/io.js';
import { saveCheckpoint, saveCheckpointAsync, loadCheckpoint } from '../src/train/checkpoint.js';
import { DeviceError } from '../src/errors.js';

class Toy extends Module {
  readonly proj = this.module('proj', new Linear(12, 8));
  readonly classifier = this.module('classifier', new Linear(8, 3));
}

function lora(): LoraModel {
  manualSeed(4);
  return new LoraModel(new Toy(), { targetModules: ['proj'], r: 2, modulesToSave: ['classifier'], initLoraWeights: 'gaussian' });
}

const dirs: string[] = [];
const tmp = (): string => {
  const d = mkdtempSync(path.join(tmpdir(), 'autoglm-devsave-'));
  dirs.push(d);
  return d;
};
test.after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

function checkpointData(m: LoraModel): { weights: Map<string, Tensor>; optimizer: Map<string, Tensor>; state: Record<string, unknown> } {
  const weights = new Map([...m.model.namedParameters()].filter(([, p]) => p.requiresGrad));
  const optimizer = new Map<string, Tensor>([['0.m', new Tensor(Float32Array.from({ length: 5 }, (_, i) => i / 7), 'f32', [5])],
    ['0.b', new Tensor(Uint16Array.from({ length: 4 }, (_, i) => 0x3f80 + i), 'bf16', [2, 2])]]);
  return { weights, optimizer, state: { step: 3 } };
}

test('on a CPU backend the async savers write what the sync ones do', async () => {
  const m = lora();
  const [a, b] = [tmp(), tmp()];
  saveAdapter(m, a);
  await saveAdapterAsync(m, b);
  for (const f of ['adapter_model.safetensors', 'adapter_config.json']) assert.deepEqual(readFileSync(path.join(b, f)), readFileSync(path.join(a, f)), f);
  const ca = saveCheckpoint(a, 3, checkpointData(m), 2), cb = await saveCheckpointAsync(b, 3, checkpointData(m), 2);
  for (const f of ['weights.safetensors', 'optimizer.safetensors', 'trainer_state.json']) {
    assert.deepEqual(readFileSync(path.join(cb, f)), readFileSync(path.join(ca, f)), f);
  }
});

const { loadWebGpuNode, useWebGpu, moveToDevice } = await import('../src/backend/webgpu/node.js');
const gpu = await loadWebGpuNode({ notice: false });

test('a model on the WebGPU device saves without moveToCPU (adapter and checkpoint), equal to the CPU files', { skip: gpu ? false : 'no WebGPU adapter in Node here (Dawn)' }, async () => {
  if (!gpu) return;
  const cpu = backend();
  const ref = tmp();
  const mc = lora();
  saveAdapter(mc, ref);
  const refCkpt = saveCheckpoint(ref, 3, checkpointData(mc), 2);
  useWebGpu(gpu);
  try {
    const m = lora();
    const data = checkpointData(m);
    moveToDevice([...m.model.parameters(), ...data.optimizer.values()]);
    assert.ok(m.model.parameters().every((p) => p.onDevice));
    assert.throws(() => saveAdapter(m, tmp()), (e: unknown) => e instanceof DeviceError && /saveAdapterAsync/.test((e as Error).message));
    const out = tmp();
    await saveAdapterAsync(m, out);
    for (const f of ['adapter_model.safetensors', 'adapter_config.json']) assert.deepEqual(readFileSync(path.join(out, f)), readFileSync(path.join(ref, f)), f);
    const ck = await saveCheckpointAsync(out, 3, data, 2);
    for (const f of ['weights.safetensors', 'optimizer.safetensors', 'trainer_state.json']) {
      assert.deepEqual(readFileSync(path.join(ck, f)), readFileSync(path.join(refCkpt, f)), f);
    }
    setBackend(cpu); // loading (safetensors' dtype conversion) runs on the CPU backends
    const [got, want] = [loadCheckpoint(ck), loadCheckpoint(refCkpt)];
    for (const k of ['0.m', '0.b']) assert.deepEqual(got.optimizer.get(k)?.toArray(), want.optimizer.get(k)?.toArray(), k);
  } finally {
    setBackend(cpu);
  }
});
