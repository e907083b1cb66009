/**
 * Typed errors. Each names the function, the argument, the value and what was expected
 * (`Argument 'b' passed to 'matmul' has shape [2,3]; expected [.., 3, N]`).
 */
export class AutoGLMError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}
/** A configuration key with a bad value, an unknown key, or a bad environment variable. */
export class ConfigError extends AutoGLMError {}
/** Tensor shapes that do not fit an op. */
export class ShapeError extends AutoGLMError {}
/** A tensor of the wrong dtype for an op. */
export class DTypeError extends AutoGLMError {}
/** An index out of range (embedding ids, class targets, gather indices). */
export class IndexError extends AutoGLMError {}
/** A dataset file or line that cannot be read. */
export class DatasetError extends AutoGLMError {}
/** A checkpoint, weights or adapter file that is missing, corrupt or does not match. */
export class CheckpointError extends AutoGLMError {}
/** A lost peer, a timeout or a malformed payload in distributed training. */
export class CommunicationError extends AutoGLMError {}
/** A benchmark process (ours or a reference) that failed, or broke an interleaved run's protocol. */
export class BenchmarkError extends AutoGLMError {}

/**
 * A synchronous CPU read of device-resident storage (a WebGPU tensor: `item()`, `toArray()`, an op that reads values
 * in JavaScript), or an op with no device kernel: names the op; `await t.data()` is the read that works everywhere.
 */
export class DeviceError extends AutoGLMError {}

/** `[2,3]` for messages. */
export function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}
