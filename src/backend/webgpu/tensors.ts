/**
 * The tensor layer on WebGPU (README.md, "The tensor layer on the device"): `useWebGpu` makes the WebGPU kernels the
 * current backend, `moveToDevice` / `moveToCPU` move existing tensors' storage (parameters, fixed inputs) in place,
 * so that modules and optimizers, which hold the Tensor objects, follow without being rebuilt.
 */
import type { Storage } from '../backend.js';
import { backend, setBackend } from '../index.js';
import { DeviceError } from '../../errors.js';
import type { Tensor } from '../../tensor/tensor.js';
import type { WebGpuBackend } from './backend.js';
import { WebGpuTensorBackend } from './tensor-backend.js';

/** Makes `gpu`'s kernels the process-wide (page-wide) backend for tensors; returns that backend. */
export function useWebGpu(gpu: WebGpuBackend): WebGpuTensorBackend {
  const b = new WebGpuTensorBackend(gpu);
  setBackend(b);
  return b;
}

type Movable = { storage: Storage; grad: Tensor | null };

function deviceOrThrow(op: string): NonNullable<ReturnType<typeof backend>['device']> {
  const dev = backend().device;
  if (!dev) throw new DeviceError(`'${op}': the current backend (${backend().name}) keeps tensors in CPU memory; call useWebGpu first`);
  return dev;
}

/**
 * Uploads the storage of every tensor (and of its gradient, if any) that is in CPU memory, in place: offsets and
 * strides stay, tensors that shared storage still share it. Index tensors (token ids, targets) should stay on the CPU:
 * ops check them there and upload them per call.
 */
export function moveToDevice(tensors: Iterable<Tensor>): void {
  const dev = deviceOrThrow('moveToDevice');
  const moved = new Map<Storage, Storage>();
  const move = (t: Tensor): void => {
    if (dev.holds(t.storage)) return;
    let s = moved.get(t.storage);
    if (!s) moved.set(t.storage, (s = dev.upload(t.storage, t.dtype)));
    (t as unknown as Movable).storage = s;
  };
  for (const t of tensors) {
    move(t);
    if (t.grad) move(t.grad);
  }
}

/** Reads the storage of every device tensor (and gradient) back into CPU memory, in place (for saving, evaluation on the CPU). */
export async function moveToCPU(tensors: Iterable<Tensor>): Promise<void> {
  const dev = deviceOrThrow('moveToCPU');
  const moved = new Map<Storage, Promise<Storage>>();
  const move = async (t: Tensor): Promise<void> => {
    if (!dev.holds(t.storage)) return;
    let s = moved.get(t.storage);
    if (!s) moved.set(t.storage, (s = dev.read(t.storage)));
    (t as unknown as Movable).storage = await s;
  };
  const all: Promise<void>[] = [];
  for (const t of tensors) {
    all.push(move(t));
    if (t.grad) all.push(move(t.grad));
  }
  await Promise.all(all);
}
