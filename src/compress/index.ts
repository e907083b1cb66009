/** Gradient compression for data-parallel training: compressors, error-feedback memories, the step codec. */
export type { CompressContext, Compressor, Memory, CompressionSpec, CompressionMethod } from './types.js';
export { COMPRESSION_METHODS } from './types.js';
export {
  makeCompressor, makeMemory, resolveSpec, compressionSpecSchema, compressionSpecObjectSchema, registerCompressor, registerMemory, compressorNames, COMPRESSION_DEFAULTS,
  type ResolvedSpec, type CompressorFactory, type MemoryFactory,
} from './registry.js';
export { GradientCompression, firstNonFinite, FRAME_SKIPPED, type GradientCompressionOptions } from './gradient-compression.js';
export { sparsityWarmup } from './schedule.js';
export { BaseCompressor } from './compressors/base.js';
export { NoneCompressor } from './compressors/none.js';
export { HalfCompressor } from './compressors/half.js';
export { TopKCompressor } from './compressors/topk.js';
export { RandomKCompressor } from './compressors/randomk.js';
export { ThresholdCompressor } from './compressors/threshold.js';
export { StdMaskCompressor } from './compressors/std-mask.js';
export { QSGDCompressor } from './compressors/qsgd.js';
export { TernGradCompressor } from './compressors/terngrad.js';
export { OneBitCompressor } from './compressors/onebit.js';
export { PowerSGDCompressor } from './compressors/powersgd.js';
export { NoMemory } from './memory/none.js';
export { ResidualMemory } from './memory/residual.js';
export { DGCMemory, type DGCOptions } from './memory/dgc.js';
