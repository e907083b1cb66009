/**
 * The tensor layer on WebGPU (README.md, "The tensor layer on the device"): `useWebGpu` makes the WebGPU kernels the
 * current backend, `moveToDevice` / `moveToCPU` move existing tensors' storage (parameters, fixed inputs) in place,
 * so that modules and optimizers, which hold the Tensor objects, follow without being rebuilt (both in
 * src/backend/placement.ts, which knows no device backend by name).
 */
import { setBackend } from '../index.js';
import type { WebGpuBackend } from './backend.js';
import { WebGpuTensorBackend } from './tensor-backend.js';

/** Makes `gpu`'s kernels the process-wide (page-wide) backend for tensors; returns that backend. */
export function useWebGpu(gpu: WebGpuBackend): WebGpuTensorBackend {
  const b = new WebGpuTensorBackend(gpu);
  setBackend(b);
  return b;
}

export { moveToDevice, moveToCPU } from '../placement.js';
