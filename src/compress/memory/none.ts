/** No error feedback: the gradient is compressed as it is, and what was not sent is lost. */
import type { Memory } from '../types.js';

export class NoMemory implements Memory {
  readonly name = 'none';
  readonly needsSent = false;
  compensate(_name: string, grad: Float32Array): Float32Array {
    return grad;
  }
  update(): void {}
  state(): Record<string, Float32Array> {
    return {};
  }
  load(): void {}
}
