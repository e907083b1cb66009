/** Parameter initialisation (PyTorch's defaults) and the process-wide seeded generator. */
import { Rng } from '../backend/rng.js';
import { Tensor } from '../tensor/tensor.js';
import { numel } from '../tensor/shape.js';

let globalRng = new Rng(0);

/** Seeds initialisation and dropout for the process (like torch.manual_seed). */
export function manualSeed(seed: number): void {
  globalRng = new Rng(seed);
}
export function getRng(): Rng {
  return globalRng;
}
export function setRng(rng: Rng): void {
  globalRng = rng;
}

export function uniform(shape: number[], bound: number, rng: Rng = globalRng): Tensor {
  const d = new Float32Array(numel(shape));
  for (let i = 0; i < d.length; i++) d[i] = (rng.uniform() * 2 - 1) * bound;
  return new Tensor(d, 'f32', shape);
}

export function normal(shape: number[], std: number, rng: Rng = globalRng): Tensor {
  const d = new Float32Array(numel(shape));
  for (let i = 0; i < d.length; i++) d[i] = rng.normal() * std;
  return new Tensor(d, 'f32', shape);
}

/** kaiming_uniform_(a=sqrt(5)) on a (out, in) weight: U(-1/sqrt(in), 1/sqrt(in)), PyTorch's Linear default. */
export function kaimingUniform(shape: number[], fanIn: number, rng: Rng = globalRng): Tensor {
  return uniform(shape, 1 / Math.sqrt(fanIn), rng);
}
