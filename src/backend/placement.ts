/**
 * Where tensors live when a device backend (WebGPU) is current. Models are built and loaded on the CPU (seeded
 * initialisation, safetensors, TF.js weights, PEFT adapters: code that writes typed arrays, and ops such as GPT-2's
 * Conv1D transposes) and their tensors are then uploaded once, so that a model built or loaded while WebGPU is
 * current has every parameter on the device, as one built on the CPU has every parameter in CPU memory.
 *
 *   onCpu(fn)             runs fn with the CPU backend current (cpuBackend(): the one backend() would choose)
 *   placeOnCurrent(ts)    uploads ts where the current backend is a device backend; a no-op on the CPU backends
 *   moveToDevice(ts)      uploads ts (in place: the Tensor objects keep their identity); throws on a CPU backend
 *   await moveToCPU(ts)   reads device tensors back into CPU memory, in place
 *
 * Only the device's own DeviceMemory is used (upload, read), so this file knows no device backend by name.
 */
import type { Backend, Storage } from './backend.js';
import { backend, cpuBackend, setBackend } from './index.js';
import { DeviceError } from '../errors.js';
import { peekGrad, type Tensor } from '../tensor/tensor.js';

type Movable = { storage: Storage; grad: Tensor | null };

function deviceOrThrow(op: string): NonNullable<Backend['device']> {
  const dev = backend().device;
  if (!dev) throw new DeviceError(`'${op}': the current backend (${backend().name}) keeps tensors in CPU memory; make a device backend current first (initBackend({ prefer: 'webgpu' }), useWebGpu)`);
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
    const g = peekGrad(t);
    if (g) move(g);
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
    const g = peekGrad(t);
    if (g) all.push(move(g));
  }
  await Promise.all(all);
}

/** Uploads `tensors` where the current backend keeps tensors on a device; on a CPU backend, nothing. */
export function placeOnCurrent(tensors: Iterable<Tensor>): void {
  if (backend().device) moveToDevice(tensors);
}

/**
 * Runs `fn` with the CPU backend current and restores the backend that was current (also when `fn` throws or
 * rejects). For a promise, the CPU backend stays current until it settles: model building and loading, which the
 * caller awaits before it computes anything.
 */
export function onCpu<T>(fn: () => T): T {
  const was = backend();
  if (!was.device) return fn();
  setBackend(cpuBackend());
  let r: T;
  try {
    r = fn();
  } catch (e) {
    setBackend(was);
    throw e;
  }
  if (r instanceof Promise) return r.finally(() => setBackend(was)) as T;
  setBackend(was);
  return r;
}
