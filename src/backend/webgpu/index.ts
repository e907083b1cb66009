/**
 * The WebGPU backend's entry (no `node:` imports: it runs in the browser). `createWebGpuBackend(gpu)` takes
 * `navigator.gpu` or a Node binding's `GPU` object and gives null when it offers no adapter; `webgpuInBrowser()`
 * asks `navigator.gpu`.
 */
/// <reference types="@webgpu/types" />
import { createContext } from './device.js';
import { WebGpuBackend } from './backend.js';

export { WebGpuBackend } from './backend.js';
export { GpuArray } from './array.js';
export type { DeviceKernels, OnDevice, DeviceArg } from './array.js';
export { GpuContext } from './device.js';

/** A WebGPU backend on `gpu`'s first adapter, or null when it offers none. */
export async function createWebGpuBackend(gpu: GPU): Promise<WebGpuBackend | null> {
  const ctx = await createContext(gpu);
  return ctx ? new WebGpuBackend(ctx) : null;
}

/** The backend on `navigator.gpu`, or null where the page has no WebGPU or no adapter. */
export async function webgpuInBrowser(): Promise<WebGpuBackend | null> {
  const gpu = (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
  return gpu ? createWebGpuBackend(gpu) : null;
}
export { WebGpuTensorBackend } from './tensor-backend.js';
