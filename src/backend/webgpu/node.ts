/**
 * The WebGPU backend in Node, through the optional `webgpu` package (Dawn's Node binding): a backend where the
 * machine has a Vulkan (Linux), Metal (macOS) or D3D12 (Windows) driver with an adapter, else null and one line on
 * stderr saying why. Without a GPU, Mesa's lavapipe (a Vulkan driver on the CPU) gives Dawn an adapter from Mesa 25
 * (Debian 12: `apt-get install -t bookworm-backports mesa-vulkan-drivers`; Debian 12's own Mesa 22.3 is refused:
 * "Vulkan shaderUniform*ArrayDynamicIndexing required"): every kernel passes there, at ~1 GFLOP/s for matmul on 2 cores.
 * Chromium's SwiftShader Vulkan driver (`VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json`) also gives an
 * adapter, but kernels with workgroup barriers never complete on it under Dawn in Node.
 */
/// <reference types="@webgpu/types" />
import { createWebGpuBackend } from './index.js';
export { useWebGpu, moveToDevice, moveToCPU } from './tensors.js';
import type { WebGpuBackend } from './backend.js';

let notified = false;
let unavailable: string | null = null;
function notice(why: string): null {
  unavailable = why;
  return null;
}

/** Why `loadWebGpuNode` gave null (null before it has finished, or where it found an adapter). */
export function webgpuNodeUnavailable(): string | null {
  return unavailable;
}

let loading: Promise<WebGpuBackend | null> | null = null;
/**
 * The `GPU` object of the binding (Dawn's instance), held for the life of the process: the adapter and device do not
 * keep it alive, and once it is collected Dawn's instance is destroyed while the binding still polls it for events,
 * which crashes the process (SIGSEGV in `InstanceBase::ProcessEvents`, webgpu 0.6.2).
 */
let instance: GPU | null = null;

/**
 * A WebGPU backend through the `webgpu` package, or null where there is none (with a one-line notice on stderr unless
 * `notice: false`: a caller that refuses instead, as `initBackend({ prefer: 'webgpu' })` does); one per process.
 */
export async function loadWebGpuNode(o: { notice?: boolean } = {}): Promise<WebGpuBackend | null> {
  const b = await (loading ??= load());
  if (!b && o.notice !== false && !notified) {
    notified = true;
    process.stderr.write(`open-autoglm: no WebGPU in Node (${unavailable}); the CPU backends are used\n`);
  }
  return b;
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
    if (b?.ctx.software) pollGently();
    return b ?? notice('Dawn found no adapter: no GPU driver (Vulkan/Metal/D3D12) with WebGPU support');
  } catch (e) {
    return notice(`Dawn failed: ${(e as Error).message.split('\n')[0]}`);
  }
}

/**
 * While a promise of Dawn's (mapAsync, onSubmittedWorkDone) is pending, the binding polls its instance by queueing a
 * native callback with the global `setImmediate`, again and again: a busy loop on the JavaScript thread. On a CPU
 * adapter (lavapipe) that loop takes a core from the threads running the kernels (a 3-step main job made 688k such
 * calls). On such adapters those native callbacks are queued with `setTimeout(..., 1)` instead: at most 1 ms later
 * per poll, 35x fewer polls. Only native functions (the binding's) are rerouted; JavaScript callbacks are untouched.
 */
function pollGently(): void {
  const g = globalThis as unknown as { setImmediate: (fn: (...a: unknown[]) => void, ...args: unknown[]) => unknown };
  const immediate = g.setImmediate;
  const toString = Function.prototype.toString;
  const gentle = (fn: (...a: unknown[]) => void, ...args: unknown[]): unknown =>
    typeof fn === 'function' && fn.name === '' && toString.call(fn).endsWith('{ [native code] }') ? setTimeout(fn, 1, ...args) : immediate(fn, ...args);
  Object.defineProperties(gentle, Object.getOwnPropertyDescriptors(immediate)); // util.promisify's custom form, name
  g.setImmediate = gentle;
}

