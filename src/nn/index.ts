/** Public layers: `import { Linear, Block } from 'open-autoglm/nn'`. */
export { Module, ModuleList, ModuleDict } from './module.js';
export { Linear, Embedding, LayerNorm, RMSNorm, Dropout } from './layers.js';
export { SelfAttention, MLP, Block, type BlockConfig } from './transformer.js';
export { manualSeed, getRng, setRng, kaimingUniform, uniform, normal } from './init.js';
export { checkpoint, setGradientCheckpointing, maybeCheckpoint, runLayers, type Checkpointable } from './checkpoint.js';
