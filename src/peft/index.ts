/** Parameter-efficient fine-tuning: LoRA and its variants (rsLoRA, DoRA, LoRA+), PEFT-compatible files. */
export { loraConfig, loraConfigSchema, toPeftJson, fromPeftJson, type LoraConfig, type LoraConfigInput } from './lora/config.js';
export { LoraLinear, LoraEmbedding, scalingOf, type AdapterSpec, type LoraLayer } from './lora/layer.js';
export { LoraModel, layerIndex } from './lora/model.js';
export { saveAdapter, saveAdapterAsync, loadAdapter, readAdapterConfig, adapterStateDict } from './lora/io.js';
export { quantizeBase, quantizeLinears, LoadQuantizer, Int8Linear, Nf4Linear, Int8Embedding, tiedHeadLinear, plainHeadWeights, type HeadWeights, type BaseQuantization, type BaseQuantizeOptions, type LoadQuantization, type QuantizeReport } from './quant.js';
