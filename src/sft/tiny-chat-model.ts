/**
 * A small random-initialised Llama-architecture model in a Hugging Face folder, with a chat template and special
 * tokens in its tokenizer files, for SFT runs where learning must be visible without pretrained weights (no LLM
 * checkpoint can be downloaded on the build machines). scripts/make-tiny-chat-model.ts is its command line.
 *
 * The tokenizer is character-level: a `tokenizer.json` in the Hugging Face format (a BPE model without merges,
 * one token per character of digits, lower-case letters, space, newline and a little punctuation, a Fuse decoder)
 * plus the ChatML special tokens `<|im_start|>`, `<|im_end|>` (eos, end of turn), `<|endoftext|>` and `<pad>`.
 * tokenizer_config.json holds the ChatML chat template, so the folder behaves as a chat model's does.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { manualSeed } from '../nn/init.js';
import { buildHFModel } from '../models/hf/loader.js';
import { saveHFModel } from '../models/hf/save.js';
import { HFTokenizer } from '../models/hf/tokenizer.js';
import { CHATML_TEMPLATE } from './template.js';

export const TINY_CHARS = '0123456789abcdefghijklmnopqrstuvwxyz +-*=?:.,!\'"()[]/\n';
export const TINY_SPECIALS = ['<|endoftext|>', '<|im_start|>', '<|im_end|>', '<pad>'] as const;

export interface TinyChatModelOptions {
  hiddenSize?: number;
  layers?: number;
  heads?: number;
  kvHeads?: number;
  intermediateSize?: number;
  seed?: number;
  /** The checkpoint's float dtype ('f32' default; 'bf16' or 'f16' as most Hub checkpoints are stored). */
  dtype?: 'f32' | 'bf16' | 'f16';
  /** Largest shard in bytes (saveHFModel's maxShardBytes; 5e9 default). */
  maxShardBytes?: number;
}

/** tokenizer.json and tokenizer_config.json of the character-level chat tokenizer. */
export function tinyChatTokenizerFiles(): { json: Record<string, unknown>; config: Record<string, unknown> } {
  const vocab: Record<string, number> = {};
  TINY_SPECIALS.forEach((s, i) => (vocab[s] = i));
  for (const c of TINY_CHARS) vocab[c] = Object.keys(vocab).length;
  const json = {
    version: '1.0', truncation: null, padding: null,
    added_tokens: TINY_SPECIALS.map((s, id) => ({ id, content: s, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: { type: 'Lowercase' }, pre_tokenizer: null, post_processor: null, decoder: { type: 'Fuse' },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: [] },
  };
  const config = {
    tokenizer_class: 'PreTrainedTokenizerFast', model_max_length: 512, clean_up_tokenization_spaces: false,
    bos_token: null, eos_token: '<|im_end|>', pad_token: '<pad>', unk_token: null,
    additional_special_tokens: ['<|im_start|>', '<|im_end|>'], chat_template: CHATML_TEMPLATE,
    added_tokens_decoder: Object.fromEntries(TINY_SPECIALS.map((s, id) => [String(id), { content: s, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true }])),
  };
  return { json, config };
}

/** Writes the model folder (config.json, model.safetensors, tokenizer files, generation_config.json) to `dir`. */
export function makeTinyChatModel(dir: string, o: TinyChatModelOptions = {}): { dir: string; parameters: number } {
  const { json, config: tokConfig } = tinyChatTokenizerFiles();
  const vocabSize = TINY_SPECIALS.length + TINY_CHARS.length;
  const hidden = o.hiddenSize ?? 128, heads = o.heads ?? 4;
  const config: Record<string, unknown> = {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: vocabSize, hidden_size: hidden,
    intermediate_size: o.intermediateSize ?? 4 * hidden, num_hidden_layers: o.layers ?? 2, num_attention_heads: heads,
    num_key_value_heads: o.kvHeads ?? heads, hidden_act: 'silu', max_position_embeddings: 512, rms_norm_eps: 1e-6,
    rope_theta: 10000, tie_word_embeddings: false, initializer_range: 0.02, torch_dtype: 'float32',
    bos_token_id: null, eos_token_id: 2, pad_token_id: 3,
  };
  manualSeed(o.seed ?? 0);
  const model = buildHFModel(config, { task: 'causal-lm' });
  const tokenizer = new HFTokenizer(json, tokConfig);
  model.hf = { ...(model.hf as NonNullable<typeof model.hf>), tokenizer, generationConfig: { eos_token_id: 2, pad_token_id: 3, do_sample: false, max_new_tokens: 32 } };
  mkdirSync(dir, { recursive: true });
  saveHFModel(model, dir, { dtype: o.dtype ?? 'f32', ...(o.maxShardBytes ? { maxShardBytes: o.maxShardBytes } : {}) });
  writeFileSync(path.join(dir, 'README.md'), `# tiny chat model (random init)\n\nMade by scripts/make-tiny-chat-model.ts: a ${config.num_hidden_layers}-layer Llama, hidden size ${hidden}, character-level tokenizer with ChatML special tokens and chat template. Not trained.\n`);
  let parameters = 0;
  for (const p of model.parameters()) parameters += p.size;
  return { dir, parameters };
}
