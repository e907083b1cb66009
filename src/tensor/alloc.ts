/**
 * Output buffers. A kernel output that the kernel overwrites completely need not be zero-filled first:
 * `uninitF32` takes uninitialised memory in Node for buffers of 64 KiB and more (Buffer.allocUnsafeSlow, its
 * own ArrayBuffer, so aligned and garbage-collected like any other), saving a memset and the first-touch page
 * faults of fresh zeroed pages on every op. Elsewhere (browsers, small sizes) it is an ordinary Float32Array.
 * Use it only where every element is written before it is read.
 */
const NodeBuffer: { allocUnsafeSlow(n: number): Uint8Array } | undefined =
  (globalThis as unknown as { Buffer?: { allocUnsafeSlow(n: number): Uint8Array } }).Buffer;

const MIN_BYTES = 1 << 16;

export function uninitF32(n: number): Float32Array {
  if (NodeBuffer && n * 4 >= MIN_BYTES) {
    const b = NodeBuffer.allocUnsafeSlow(n * 4);
    return new Float32Array(b.buffer, b.byteOffset, n);
  }
  return new Float32Array(n);
}
