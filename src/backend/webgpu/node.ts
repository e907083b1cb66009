/**
 * The WebGPU backend in Node, through the optional `webgpu` package (Dawn's Node binding): a backend where the
 * machine has a Vulkan (Linux), Metal (macOS) or D3D12 (Windows) driver with an adapter, else null and one line on
 * stderr saying why. Without a GPU, Chromium's SwiftShader Vulkan driver gives Dawn an adapter:
 * `VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json` (slow; for tests). Debian 12's lavapipe (Mesa 22.3) is
 * refused by Dawn ("Vulkan shaderUniform*ArrayDynamicIndexing required").
 */
/// <reference types="@webgpu/types" />
import { createWebGpuBackend } from './index.js';
export { useWebGpu, moveToDevice, moveToCPU } from './tensors.js';
import type { WebGpuBackend } from './backend.js';

let notified = false;
function notice(why: string): null {
  if (!notified) process.stderr.write(`open-autoglm: no WebGPU in Node (${why}); the CPU backends are used\n`);
  notified = true;
  return null;
}

let loading: Promise<WebGpuBackend | null> | null = null;
/**
 * The `GPU` object of the binding (Dawn's instance), held for the life of the process: the adapter and device do not
 * keep it alive, and once it is collected Dawn's instance is destroyed while the binding still polls it for events,
 * which crashes the process (SIGSEGV in `InstanceBase::ProcessEvents`, webgpu 0.6.2).
 */
let instance: GPU | null = null;

/** A WebGPU backend through the `webgpu` package, or null (with a one-line notice) where there is none; one per process. */
export function loadWebGpuNode(): Promise<WebGpuBackend | null> {
  return (loading ??= load());
}

async function load(): Promise<WebGpuBackend | null> {
  let mod: { create(opts: string[]): GPU; globals: Record<string, unknown> };
  try {
    const name = 'webgpu'; // optional dependency: resolved at run time, so a missing binding is a notice, not a crash
    mod = (await import(name)) as typeof mod;
  } catch (e) {
    return notice(`the optional 'webgpu' package did not load: ${(e as Error).message.split('\n')[0]}`);
  }
  for (const [k, v] of Object.entries(mod.globals)) {
    if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
  }
  try {
    instance = mod.create([]);
    const b = await createWebGpuBackend(instance);
    return b ?? notice('Dawn found no adapter: no GPU driver (Vulkan/Metal/D3D12) with WebGPU support');
  } catch (e) {
    return notice(`Dawn failed: ${(e as Error).message.split('\n')[0]}`);
  }
}
