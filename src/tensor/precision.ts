/**
 * Autocast: the dtype in which matrix products run. Inside `autocast('bf16', fn)` the operands of `matmul`
 * and `linear` are cast to bf16 (their outputs, and every other op, stay f32, with f32 master weights);
 * the same dtype is used in their backward pass. On a backend that multiplies bf16 in hardware (`nativeBf16`), the
 * fused attention kernel's products run in bf16 too (softmax in f32; see ops/attention-bf16.ts), as PyTorch's
 * autocast runs them. 'f16' storage is supported by casts, but the matrix kernels
 * take f32 or bf16 operands, so f16 autocast computes the products on f16-rounded values in f32.
 */
export type ComputeDType = 'f32' | 'bf16' | 'f16';

let current: ComputeDType = 'f32';

export function autocastDType(): ComputeDType {
  return current;
}

export function autocast<T>(dtype: ComputeDType, fn: () => T): T {
  const prev = current;
  current = dtype;
  try {
    return fn();
  } finally {
    current = prev;
  }
}

/** Sets the autocast dtype until changed (for training loops that run under one policy). */
export function setAutocast(dtype: ComputeDType): void {
  current = dtype;
}
