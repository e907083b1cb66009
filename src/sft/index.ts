/**
 * Supervised fine-tuning pieces (task 'sft' in src/train/sft.ts puts them on the training loop): record shapes and
 * files, chat templates, tokenization with completion-only labels, padded and packed batches, chat generation,
 * adapter merging into a Hugging Face folder, and the tiny chat model / synthetic tasks for end-to-end checks.
 */
export { type ChatMessage, type SftExample, type SftFormat, type RecordSource, SFT_FORMATS } from './types.js';
export { toExample, detectFormat, RecordError } from './formats.js';
export { loadSftSplits, readSftFile, type SftDataSpec, type SftSplits } from './dataset.js';
export { ChatTemplate, CHATML_TEMPLATE, chatTemplateOf, specialTokens, stopTokenIds, type RenderOptions, type ChatTemplateChoice } from './template.js';
export { tokenizeExample, tokenizeAll, conversationSegments, scoredTokens, IGNORE_INDEX, type TokenizedExample, type TokenizeOptions, type Segment } from './tokenize.js';
export { padBatch, packRows, packedBatch, type SftBatch } from './batch.js';
export { encodeChatPrompt, generateChat, type ChatReply } from './chat.js';
export { mergeAdapterToHF, adapterDirOf, type MergeOptions, type MergeResult } from './merge.js';
export { makeTinyChatModel, tinyChatTokenizerFiles, type TinyChatModelOptions } from './tiny-chat-model.js';
export { syntheticSplits, syntheticPair, SYNTHETIC_TASKS, type SyntheticTask, type SyntheticOptions } from './synthetic.js';
