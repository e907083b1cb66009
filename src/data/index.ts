/** The data layer: datasets (files and named), splits, encoding, dynamic padding and samplers. */
export type { Example, BadLine, BadLinePolicy, DatasetSplits, DatasetSpec } from './types.js';
export { loadDataset, DATA_DEFAULTS } from './load.js';
export { listNamedDatasets, registerNamedDataset, getNamedDataset } from './registry.js';
export type { NamedDataset, NamedContext, RawSplits } from './registry.js';
export { resolveDataDir } from './paths.js';
export { summarizeSkipped } from './bad-lines.js';
export { encodeDataset, collate, padIds } from './encode.js';
export type { Batch, EncodedDataset, EncodeOptions } from './encode.js';
export type { Sampler, SamplerState } from './samplers/sampler.js';
export { RandomSampler } from './samplers/random.js';
export { SequentialSampler } from './samplers/sequential.js';
export { BucketSampler } from './samplers/bucket.js';
