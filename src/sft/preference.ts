/**
 * Preference data for task 'dpo', in the shapes TRL's DPOTrainer reads:
 *
 * - standard, explicit prompt: `{prompt, chosen, rejected}`, three strings (the eos token ends each answer);
 * - conversational, explicit prompt: `prompt` a list of messages, `chosen` and `rejected` lists of messages (the
 *   answers, usually one assistant turn each), rendered with the model's chat template;
 * - implicit prompt: no `prompt`, `chosen` and `rejected` the whole texts or conversations; the prompt is their
 *   common start (TRL's `extract_prompt`): the common messages of two conversations, or the common prefix of two
 *   strings cut back to a whitespace (Anthropic HH-RLHF's "\n\nHuman: ... \n\nAssistant:" records).
 *
 * A pair is tokenized as TRL does: the prompt on its own (through the template with its generation prompt, or as
 * plain text with the tokenizer's special tokens), each answer as the rest of the rendering (plain answers with eos
 * appended). Both rows of a pair share the prompt's tokens; only the answers' tokens are scored. Pairs longer than
 * maxLength keep the start of the answers and the end of the prompt (TRL's keep_end for prompts), the prompt at
 * least half of maxLength when it is that long.
 *
 * KTO (dpoLossType 'kto', TRL's KTOTrainer) reads unpaired records, `{prompt, completion, label}` (label true: the
 * completion is desirable), plain or conversational; or pairs, each unpaired into its chosen answer (desirable) and its
 * rejected one (undesirable), as TRL's `unpair_preference_dataset`.
 */
import { DatasetError } from '../errors.js';
import type { HFTokenizer } from '../models/hf/tokenizer.js';
import { RecordError, describe, messages, str } from './formats.js';
import type { ChatTemplate } from './template.js';
import { IGNORE_INDEX, eosText, type TokenizedExample } from './tokenize.js';
import type { ChatMessage, RecordSource } from './types.js';

/** One preference pair: a prompt, the preferred answer and the dispreferred one. */
export type PreferenceExample =
  | { kind: 'conversation'; prompt: ChatMessage[]; chosen: ChatMessage[]; rejected: ChatMessage[]; source?: RecordSource }
  | { kind: 'text'; prompt: string; chosen: string; rejected: string; source?: RecordSource };

const isMessageList = (v: unknown) => Array.isArray(v) || (typeof v === 'string' && /^\s*\[\s*(\{|\])/.test(v));

/** Reads one record (JSON object, CSV row, Parquet row) as a preference pair; throws RecordError naming the field. */
export function toPreference(value: unknown): PreferenceExample {
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new RecordError('(record)', `${describe(value)}; expected an object`);
  const rec = value as Record<string, unknown>;
  if (!('chosen' in rec) && 'completion' in rec && 'label' in rec) {
    throw new RecordError('chosen', "is missing: this is an unpaired record ('prompt', 'completion', 'label'), which dpoLossType 'kto' trains on; the other losses compare pairs ('chosen' and 'rejected')");
  }
  for (const k of ['chosen', 'rejected']) {
    if (!(k in rec)) throw new RecordError(k, `is missing; a preference record has 'chosen' and 'rejected' (and 'prompt', or a prompt they share), keys ${JSON.stringify(Object.keys(rec).slice(0, 8))}`);
  }
  const conversational = isMessageList(rec.chosen) || isMessageList(rec.rejected);
  if (conversational) {
    let chosen = messages(rec.chosen, 'chosen'), rejected = messages(rec.rejected, 'rejected');
    let prompt: ChatMessage[];
    if (rec.prompt !== undefined && rec.prompt !== null) {
      if (!isMessageList(rec.prompt)) throw new RecordError('prompt', `${describe(rec.prompt)}; expected a list of messages, as 'chosen' and 'rejected' are`);
      prompt = messages(rec.prompt, 'prompt');
    } else {
      let k = 0;
      while (k < chosen.length && k < rejected.length && chosen[k].role === rejected[k].role && chosen[k].content === rejected[k].content) k++;
      if (k === 0) throw new RecordError('chosen', "and 'rejected' share no first message and there is no 'prompt'; expected the prompt's messages at the start of both, or a 'prompt' field");
      prompt = chosen.slice(0, k);
      chosen = chosen.slice(k);
      rejected = rejected.slice(k);
    }
    for (const [name, side] of [['chosen', chosen], ['rejected', rejected]] as const) {
      if (!side.some((m) => m.role === 'assistant')) throw new RecordError(name, 'has no assistant message after the prompt; expected the answer to compare');
    }
    return { kind: 'conversation', prompt, chosen, rejected };
  }
  const chosen = str(rec.chosen, 'chosen', false), rejected = str(rec.rejected, 'rejected', false);
  if (rec.prompt !== undefined && rec.prompt !== null) {
    if (isMessageList(rec.prompt)) throw new RecordError('prompt', "is a list of messages but 'chosen' and 'rejected' are strings; expected all three of one kind");
    return { kind: 'text', prompt: str(rec.prompt, 'prompt', false), chosen, rejected };
  }
  // implicit prompt: the common prefix, cut back to a whitespace so that no word is split between prompt and answer
  let k = 0;
  while (k < chosen.length && k < rejected.length && chosen[k] === rejected[k]) k++;
  if (k < chosen.length && k < rejected.length) while (k > 0 && !/\s/.test(chosen[k - 1]!)) k--;
  if (k === 0) throw new RecordError('chosen', "and 'rejected' have no common start and there is no 'prompt'; expected a 'prompt' field");
  if (k === chosen.length || k === rejected.length) throw new RecordError(k === chosen.length ? 'chosen' : 'rejected', "is all prompt (one answer starts the other); expected a 'prompt' field");
  return { kind: 'text', prompt: chosen.slice(0, k), chosen: chosen.slice(k), rejected: rejected.slice(k) };
}

/** A pair's tokens: the prompt's and each answer's (the rows are prompt + answer). */
export interface TokenizedPair {
  prompt: number[];
  chosen: number[];
  rejected: number[];
}

function where(ex: PreferenceExample): string {
  return ex.source ? `${ex.source.file}:${ex.source.line}` : 'a preference pair';
}

/** The pair's token ids, cut to maxLength (see the file comment); null when nothing of an answer fits. */
export function tokenizePair(ex: PreferenceExample, tok: HFTokenizer, template: ChatTemplate | null, maxLength: number): TokenizedPair | null {
  let prompt: number[], chosen: number[], rejected: number[];
  const plain = { addSpecialTokens: false };
  if (ex.kind === 'conversation') {
    if (!template) throw new DatasetError(`${where(ex)} is a conversation; tokenizing it needs a chat template`);
    const promptText = template.render(ex.prompt, { addGenerationPrompt: true });
    const answer = (side: ChatMessage[], name: string) => {
      const full = template.render([...ex.prompt, ...side]);
      if (!full.startsWith(promptText)) {
        throw new DatasetError(`${where(ex)}: the chat template from ${template.origin} renders the prompt differently once the '${name}' answer follows, so the answer's tokens cannot be found; use another template (config chatTemplate)`);
      }
      return tok.encode(full.slice(promptText.length), plain);
    };
    prompt = tok.encode(promptText, plain);
    chosen = answer(ex.chosen, 'chosen');
    rejected = answer(ex.rejected, 'rejected');
  } else {
    const eos = eosText(tok) ?? '';
    prompt = tok.encode(ex.prompt);
    chosen = tok.encode(ex.chosen + eos, plain);
    rejected = tok.encode(ex.rejected + eos, plain);
  }
  const longest = Math.max(chosen.length, rejected.length);
  if (prompt.length + longest > maxLength) {
    const keep = Math.min(prompt.length, Math.max(maxLength - longest, Math.floor(maxLength / 2)));
    prompt = prompt.slice(prompt.length - keep);
    chosen = chosen.slice(0, maxLength - keep);
    rejected = rejected.slice(0, maxLength - keep);
  }
  if (prompt.length === 0 || chosen.length === 0 || rejected.length === 0) return null;
  return { prompt, chosen, rejected };
}

/** The training row of one side of a pair: prompt + answer, labels on the answer only. */
export function pairRow(p: TokenizedPair, side: 'chosen' | 'rejected'): TokenizedExample {
  const answer = p[side];
  return { ids: [...p.prompt, ...answer], labels: [...new Array<number>(p.prompt.length).fill(IGNORE_INDEX), ...answer] };
}

/** The messages or plain prompt of a pair and its preferred answer's text (sample generations). */
export function pairPrompt(ex: PreferenceExample): { chat: boolean; messages?: ChatMessage[]; prompt?: string; reference: string } {
  if (ex.kind === 'text') return { chat: false, prompt: ex.prompt, reference: ex.chosen };
  return { chat: true, messages: ex.prompt, reference: ex.chosen.filter((m) => m.role === 'assistant').map((m) => m.content).join('\n') };
}

/** One unpaired example (KTO): a prompt, a completion, and whether the completion is desirable. */
export interface UnpairedExample {
  /** The prompt and completion, as a pair whose both sides are the completion (tokenized by tokenizePair). */
  pair: PreferenceExample;
  label: boolean;
}

/** The unpaired examples of one record, with the record's place in its file. */
export interface UnpairedRecord {
  examples: UnpairedExample[];
  source?: RecordSource;
}

function labelOf(v: unknown): boolean {
  if (typeof v === 'boolean') return v;
  if (v === 1 || v === 0) return v === 1;
  if (typeof v === 'string' && /^\s*(true|false|1|0)\s*$/i.test(v)) return /^\s*(true|1)\s*$/i.test(v);
  throw new RecordError('label', `${describe(v)}; expected true (the completion is desirable) or false`);
}

/**
 * Reads one record as KTO's unpaired examples: `{prompt, completion, label}` (one example), or a preference pair
 * (two: its chosen answer desirable, its rejected one not). Throws RecordError naming the field.
 */
export function toUnpaired(value: unknown): UnpairedRecord {
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new RecordError('(record)', `${describe(value)}; expected an object`);
  const rec = value as Record<string, unknown>;
  if ('chosen' in rec || 'rejected' in rec) {
    const p = toPreference(rec);
    const side = (answer: 'chosen' | 'rejected'): PreferenceExample => (p.kind === 'text'
      ? { kind: 'text', prompt: p.prompt, chosen: p[answer], rejected: p[answer] }
      : { kind: 'conversation', prompt: p.prompt, chosen: p[answer], rejected: p[answer] });
    return { examples: [{ pair: side('chosen'), label: true }, { pair: side('rejected'), label: false }] };
  }
  for (const k of ['prompt', 'completion', 'label']) {
    if (!(k in rec) || rec[k] === null) throw new RecordError(k, `is missing; an unpaired record has 'prompt', 'completion' and 'label' (or a pair: 'chosen' and 'rejected'), keys ${JSON.stringify(Object.keys(rec).slice(0, 8))}`);
  }
  const label = labelOf(rec.label);
  if (isMessageList(rec.completion)) {
    if (!isMessageList(rec.prompt)) throw new RecordError('prompt', `${describe(rec.prompt)}; expected a list of messages, as 'completion' is`);
    const prompt = messages(rec.prompt, 'prompt'), completion = messages(rec.completion, 'completion');
    if (!completion.some((m) => m.role === 'assistant')) throw new RecordError('completion', 'has no assistant message; expected the answer to judge');
    return { examples: [{ pair: { kind: 'conversation', prompt, chosen: completion, rejected: completion }, label }] };
  }
  if (isMessageList(rec.prompt)) throw new RecordError('prompt', "is a list of messages but 'completion' is a string; expected both of one kind");
  const prompt = str(rec.prompt, 'prompt', false), completion = str(rec.completion, 'completion', false);
  return { examples: [{ pair: { kind: 'text', prompt, chosen: completion, rejected: completion }, label }] };
}
