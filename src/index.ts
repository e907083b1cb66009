/** open-autoglm: the public API. Subpaths: open-autoglm/tensor, open-autoglm/nn, open-autoglm/backend. */
export * from './errors.js';
export * from './tensor/index.js';
export * from './nn/index.js';
export * from './optim/index.js';
export * from './peft/index.js';
export * from './train/index.js';
export * as sft from './sft/index.js';
export { backend, setBackend, getBackend, nativeAvailable } from './backend/index.js';
export { initBackend, type InitBackendOptions, type BackendPreference } from './backend/init.js';
export { resolvePrecision, DynamicLossScaler, type MixedPrecision, type PrecisionPolicy } from './precision/index.js';
export { loadModel, registerModel, listModels } from './models/registry.js';
export { SequenceClassifier, textEncoderOf, type TextEncoder } from './models/classifier.js';
export { loadSafetensors, saveSafetensors, saveSafetensorsAsync, inspectSafetensors } from './models/safetensors.js';
export { loadDataset, listNamedDatasets, type DatasetSpec, type DatasetSplits, type Example } from './data/index.js';
export { bowBaseline, BowLogisticRegression, MultinomialNaiveBayes, BOW_C_GRID, type BowBaselineResult, type BowLogisticRegressionOptions } from './eval/index.js';
