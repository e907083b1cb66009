/**
 * The SFT data model: every supported record shape (chat `messages`, ShareGPT `conversations`, Alpaca,
 * prompt/completion, plain text) is read into one of three kinds, the ones TRL's SFTTrainer distinguishes:
 * a conversation (rendered with the model's chat template), a plain-text prompt/completion pair (loss on the
 * completion) and a plain text (language modelling).
 */

import type { GenerateOptions } from '../models/hf/generate.js';

/** One chat turn. `role` is 'system' | 'user' | 'assistant' | 'tool' (ShareGPT's names are mapped to these). */
export interface ChatMessage {
  role: string;
  content: string;
}

/** Where a record came from: the file and its 1-based line (JSONL, JSON, CSV) or row (Parquet). */
export interface RecordSource {
  file: string;
  line: number;
}

export type SftExample =
  /** Rendered with the chat template; trained on the assistant turns. */
  | { kind: 'conversation'; messages: ChatMessage[]; source?: RecordSource }
  /** Plain text: prompt + completion, trained on the completion. */
  | { kind: 'prompt-completion'; prompt: string; completion: string; source?: RecordSource }
  /** Plain text: every token trained. */
  | { kind: 'text'; text: string; source?: RecordSource };

/** The record shapes a dataset file may hold ('auto' = decided from each record's keys). */
export const SFT_FORMATS = ['auto', 'messages', 'sharegpt', 'alpaca', 'prompt-completion', 'text'] as const;
export type SftFormat = (typeof SFT_FORMATS)[number];

/** A reply of `AutoGLMTrainer.predict` on an SFT run: each text answered as a user message through the chat template. */
export interface ChatPrediction {
  prompt: string;
  completion: string;
}

/**
 * Generation settings of `predict` and of exact-match evaluation on an SFT run (greedy by default), as `generate`
 * takes them; maxNewTokens defaults to 128 for predict and, for exact match, twice the reference's length + 8.
 */
export type ChatGenerationOptions = Pick<GenerateOptions, 'maxNewTokens' | 'doSample' | 'temperature' | 'topK' | 'topP' | 'seed'>;

/** What `AutoGLMTrainer.evaluate` (and `autoglm eval`) reports for an SFT run. */
export interface SftEvalResult {
  /** Mean next-token loss over the scored tokens (the answers under completion-only loss). */
  loss: number;
  perplexity: number;
  /** Scored tokens. */
  tokens: number;
  /** Examples with a token to score within maxLength. */
  n: number;
  /** With `exactMatch`: the share of prompts whose greedy answer equals the reference (whitespace trimmed). */
  exact_match?: number;
  /** With `exactMatch`: how many examples had a prompt and a reference answer. */
  answered?: number;
  /** With `exactMatch`: the first few answers beside their references. */
  samples?: Array<{ prompt: string; reference: string; generated: string }>;
}

/** Options of an SFT run's evaluation. */
export interface SftEvalOptions extends ChatGenerationOptions {
  /** Also answer each prompt greedily and compare with the reference answer (the last assistant turn or the completion). */
  exactMatch?: boolean;
  /** Use at most this many examples. */
  maxEval?: number;
}
