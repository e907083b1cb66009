/**
 * The SFT data model: every supported record shape (chat `messages`, ShareGPT `conversations`, Alpaca,
 * prompt/completion, plain text) is read into one of three kinds, the ones TRL's SFTTrainer distinguishes:
 * a conversation (rendered with the model's chat template), a plain-text prompt/completion pair (loss on the
 * completion) and a plain text (language modelling).
 */

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
