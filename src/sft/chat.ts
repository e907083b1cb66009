/**
 * Generation with the chat template, as at training time: the conversation rendered with
 * `add_generation_prompt`, tokenized without the tokenizer's own special tokens (the template writes them), and
 * decoding stopped at the template's end-of-turn token or eos. Used by `autoglm generate --chat`, by an SFT run's
 * sample generations and by `predict` on an SFT run.
 */
import { generate, type GenerateOptions } from '../models/hf/generate.js';
import type { CausalLM } from '../models/hf/family.js';
import type { HFTokenizer } from '../models/hf/tokenizer.js';
import { ConfigError } from '../errors.js';
import { stopTokenIds, type ChatTemplate } from './template.js';
import type { ChatMessage } from './types.js';

/** Token ids of a conversation's prompt for the next assistant turn. */
export function encodeChatPrompt(tok: HFTokenizer, template: ChatTemplate, messages: readonly ChatMessage[]): number[] {
  return tok.encode(template.render(messages, { addGenerationPrompt: true }), { addSpecialTokens: false });
}

/** The eos ids of a model's generation_config.json / config.json. */
export function configEos(model: CausalLM): number[] {
  const v = model.hf?.generationConfig?.eos_token_id ?? model.hf?.config.eos_token_id;
  return (Array.isArray(v) ? v : typeof v === 'number' ? [v] : []).filter((x): x is number => typeof x === 'number');
}

export interface ChatReply {
  /** The assistant's answer, special tokens and the end-of-turn text removed. */
  text: string;
  /** Prompt + generated ids. */
  ids: number[];
  promptLength: number;
}

/** The next assistant turn of a conversation (greedy by default). */
export function generateChat(model: CausalLM, tok: HFTokenizer, template: ChatTemplate, messages: readonly ChatMessage[], opts: Omit<GenerateOptions, 'eosTokenId'> = {}): ChatReply {
  if (messages.length === 0) throw new ConfigError(`'generateChat' needs at least one message`);
  const prompt = encodeChatPrompt(tok, template, messages);
  const ids = generate(model, prompt, { ...opts, eosTokenId: stopTokenIds(tok, template, configEos(model)) });
  let text = tok.decode(ids.slice(prompt.length), { skipSpecialTokens: true });
  const eot = template.endOfTurn();
  if (eot && text.includes(eot)) text = text.slice(0, text.indexOf(eot)); // an end-of-turn that is not one token
  return { text, ids, promptLength: prompt.length };
}
