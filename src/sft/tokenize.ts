/**
 * SFT examples to token ids and labels (labels = the ids, -100 where no loss is taken; the loss shifts them).
 *
 * Loss masking follows TRL's SFTTrainer: by default (`completionOnlyLoss: true`) only the completion of a
 * prompt/completion pair and the assistant turns of a conversation are scored (TRL's `completion_only_loss` and
 * `assistant_only_loss`); with `false` every token is. Plain text is scored everywhere. An eos token ends plain
 * texts and completions (as TRL appends it); a chat template writes its own end-of-turn tokens.
 *
 * Assistant spans are found by rendering the conversation prefix by prefix, as the template renders it: for the
 * assistant turn i, render(messages[0..i), add_generation_prompt) ends where the answer starts and
 * render(messages[0..i]) ends where it (with its end-of-turn text) stops; both must be prefixes of the whole
 * rendering. The text is cut at those offsets and each piece tokenized on its own, so a prompt is tokenized
 * exactly as it is at generation time (TRL tokenizes prompt and completion apart for the same reason).
 */
import { ConfigError, DatasetError } from '../errors.js';
import type { HFTokenizer } from '../models/hf/tokenizer.js';
import type { ChatTemplate } from './template.js';
import type { ChatMessage, SftExample } from './types.js';

export const IGNORE_INDEX = -100;

export interface TokenizeOptions {
  /** Sequences are cut to this many tokens (the start kept, as TRL's default truncation). */
  maxLength: number;
  /** Loss on assistant turns / completions only (default true); false: on every token. */
  completionOnlyLoss?: boolean;
}

export interface TokenizedExample {
  ids: number[];
  /** Same length as ids: the id where the token is scored, IGNORE_INDEX where it is not. */
  labels: number[];
}

/** A piece of rendered text and whether its tokens are scored under completion-only loss. */
export interface Segment {
  text: string;
  trainable: boolean;
}

/** The rendered conversation cut into prompt pieces and assistant pieces (see the file comment). */
export function conversationSegments(template: ChatTemplate, messages: readonly ChatMessage[]): Segment[] {
  const full = template.render(messages);
  const out: Segment[] = [];
  let pos = 0;
  messages.forEach((m, i) => {
    if (m.role !== 'assistant') return;
    const prompt = template.render(messages.slice(0, i), { addGenerationPrompt: true });
    const upTo = template.render(messages.slice(0, i + 1));
    const start = prompt.length, end = upTo.length;
    const prefixOk = full.startsWith(prompt) && full.startsWith(upTo);
    if (!prefixOk || start < pos || end < start) {
      throw new ConfigError(`the chat template from ${template.origin} renders earlier turns differently once later turns follow (assistant turn ${i}), so the assistant tokens cannot be found; use completionOnlyLoss false or another template`);
    }
    if (start > pos) out.push({ text: full.slice(pos, start), trainable: false });
    if (end > start) out.push({ text: full.slice(start, end), trainable: true });
    pos = end;
  });
  if (pos < full.length) out.push({ text: full.slice(pos), trainable: false });
  return out;
}

function where(ex: SftExample): string {
  return ex.source ? `${ex.source.file}:${ex.source.line}` : 'an example';
}

/** The text pieces of an example and whether the tokenizer's own special tokens (bos) are added to the first. */
export function segmentsOf(ex: SftExample, template: ChatTemplate | null, eos: string | null): { segments: Segment[]; addSpecial: boolean } {
  switch (ex.kind) {
    case 'conversation': {
      if (!template) throw new ConfigError(`${where(ex)} is a conversation; tokenizing it needs a chat template`);
      try {
        return { segments: conversationSegments(template, ex.messages), addSpecial: false };
      } catch (e) {
        throw new DatasetError(`${where(ex)}: ${(e as Error).message}`, { cause: e });
      }
    }
    case 'prompt-completion':
      return { segments: [{ text: ex.prompt, trainable: false }, { text: ex.completion + (eos ?? ''), trainable: true }], addSpecial: true };
    case 'text':
      return { segments: [{ text: ex.text + (eos ?? ''), trainable: true }], addSpecial: true };
  }
}

export function eosText(tok: HFTokenizer): string | null {
  const v = tok.config.eos_token;
  const s = typeof v === 'string' ? v : v && typeof v === 'object' ? (v as { content?: unknown }).content : null;
  return typeof s === 'string' && tok.tokenToId(s) !== null ? s : null;
}

/** Ids and labels of one example. */
export function tokenizeExample(ex: SftExample, tok: HFTokenizer, template: ChatTemplate | null, opts: TokenizeOptions): TokenizedExample {
  const completionOnly = opts.completionOnlyLoss ?? true;
  const { segments, addSpecial } = segmentsOf(ex, template, eosText(tok));
  const ids: number[] = [], labels: number[] = [];
  segments.forEach((s, i) => {
    if (s.text.length === 0) return;
    const piece = tok.encode(s.text, { addSpecialTokens: addSpecial && i === 0 });
    const scored = s.trainable || !completionOnly;
    for (const id of piece) {
      ids.push(id);
      labels.push(scored ? id : IGNORE_INDEX);
    }
  });
  if (ids.length > opts.maxLength) {
    ids.length = opts.maxLength;
    labels.length = opts.maxLength;
  }
  return { ids, labels };
}

/** Number of scored next-token predictions of an example (its labels after the first position). */
export function scoredTokens(e: TokenizedExample): number {
  let n = 0;
  for (let t = 1; t < e.labels.length; t++) if (e.labels[t] !== IGNORE_INDEX) n++;
  return n;
}

export interface TokenizedSet {
  examples: TokenizedExample[];
  /** Examples dropped because nothing in them is scored (a prompt longer than maxLength, an empty answer). */
  dropped: number;
}

/** Tokenizes examples, dropping those with no scored token (they would add nothing but a 0/0 to the loss). */
export function tokenizeAll(examples: readonly SftExample[], tok: HFTokenizer, template: ChatTemplate | null, opts: TokenizeOptions): TokenizedSet {
  const out: TokenizedExample[] = [];
  let dropped = 0;
  for (const ex of examples) {
    const t = tokenizeExample(ex, tok, template, opts);
    if (scoredTokens(t) === 0) dropped++;
    else out.push(t);
  }
  return { examples: out, dropped };
}
