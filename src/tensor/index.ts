/** Public tensor API: `import { tensor, randn, noGrad } from 'open-autoglm/tensor'`. */
export { Tensor, fromStorage } from './tensor.js';
export type { TensorLike } from './tensor.js';
export { tensor, full, zeros, ones, zerosLike, onesLike, arange, randn, rand, randint, copyInto } from './creation.js';
export { noGrad, noGradAsync, isGradEnabled } from './autograd.js';
export { autocast, autocastDType, setAutocast, type ComputeDType } from './precision.js';
export { markModified, storageVersion, checkCastCache, castCacheCounts } from './versions.js';
export { gradcheck, type GradcheckOptions, type GradcheckResult } from './gradcheck.js';
export { add, sub, mul, div, pow, maximum, minimum, where, cast, unary, affine, toTensor } from './ops/elementwise.js';
export { sum, mean, max, min, variance, argmax, sumTo } from './ops/reduce.js';
export { reshape, permute, transpose, slice, split, concat, stack, expand, unsqueeze, squeeze, contiguous } from './ops/movement.js';
export { matmul, linear, addLinear, linearInt8, linearNf4 } from './ops/linalg.js';
export { linearCrossEntropy, type LinearCrossEntropyOptions } from './ops/linear-ce.js';
export {
  softmax, logSoftmax, layerNorm, rmsNorm, embedding, dropout, crossEntropy, maskedFill, causalMask,
  scaledDotProductAttention, composedAttention, fusedQKVAttention, fusedQKVReadsBf16, rope, maskedMean, type CrossEntropyOptions, type AttentionOptions, type PackedMask,
} from './ops/nn.js';
