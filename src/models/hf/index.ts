/** Hugging Face models: load (local folder or Hub id), build, save, tokenize, generate. */
export { HFConfig, taskOfArchitecture, HF_TASKS, type HFTask } from './config.js';
export {
  HFModel, isCausalLM, registerFamily, familyOf, familyByName, supportedModelTypes,
  type Backbone, type CausalLM, type ForwardOptions, type HFFamily, type HFInfo, type Pooling, type BuildOptions,
} from './family.js';
export { KVCache, Rotary, withDeferredInit } from './layers.js';
export {
  loadHFModel, loadHFModelFromDir, buildHFModel, loadWeights, weightFiles, resolveHubModel, hubCacheDir,
  type LoadHFOptions, type HubOptions, type LoadReport,
} from './loader.js';
export { saveHFModel, checkpointState, type SaveHFOptions } from './save.js';
export { HFTokenizer, type Batch, type BatchOptions } from './tokenizer.js';
export { causalLMLoss, lmLabels, pool, sentenceEmbeddings, sequenceClassificationLoss, SequenceClassifier, IGNORE_INDEX } from './heads.js';
export { generate, sampleToken, type GenerateOptions } from './generate.js';
