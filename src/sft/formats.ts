/**
 * Record shapes of SFT datasets, each read into an `SftExample` (see types.ts):
 *
 * - chat `messages`: `[{role, content}]` (OpenAI / TRL conversational); `content` may also be a list of
 *   `{type: 'text', text}` parts, joined;
 * - ShareGPT `conversations`: `[{from, value}]` with from = human | user | gpt | assistant | system |
 *   observation | tool | function_call (LLaMA-Factory's names), mapped to user / assistant / system / tool;
 *   `[{role, content}]` under `conversations` is read too, and an optional top-level `system` is prepended;
 * - Alpaca: `instruction`, optional `input` (appended to the instruction after a newline, as LLaMA-Factory and
 *   Stanford Alpaca's data do), `output`, optional `system` and `history` (`[[user, assistant], ...]`), read as a
 *   conversation so that the model's chat template applies;
 * - `prompt` / `completion`: plain strings (trained on the completion), or lists of messages (TRL's
 *   conversational prompt-completion: one conversation, trained on the completion's assistant turns);
 * - `text`: plain language modelling.
 *
 * A field that is wrong throws `RecordError` naming the field path (`messages[2].role`); the reader adds the file
 * and line or row.
 */
import type { ChatMessage, SftExample, SftFormat } from './types.js';

/** A record that does not fit its shape: `field` is the path of the bad field. */
export class RecordError extends Error {
  constructor(readonly field: string, readonly reason: string) {
    super(`field '${field}' ${reason}`);
  }
}

type Obj = Record<string, unknown>;

export const describe = (v: unknown): string => {
  if (v === undefined) return 'is missing';
  if (v === null) return 'is null';
  const s = JSON.stringify(v);
  return `is ${Array.isArray(v) ? 'an array' : typeof v}${s ? ` (${s.length > 40 ? `${s.slice(0, 40)}...` : s})` : ''}`;
};

export function str(v: unknown, field: string, allowEmpty = true): string {
  if (typeof v !== 'string') throw new RecordError(field, `${describe(v)}; expected a string`);
  if (!allowEmpty && v.length === 0) throw new RecordError(field, 'is an empty string; expected text');
  return v;
}

/** A list field that CSV (or a JSON string column in Parquet) holds as a JSON string. */
export function list(v: unknown, field: string): unknown[] {
  if (typeof v === 'string' && /^\s*\[/.test(v)) {
    try {
      v = JSON.parse(v);
    } catch (e) {
      throw new RecordError(field, `holds a string that is not valid JSON (${(e as Error).message}); expected a list`);
    }
  }
  if (!Array.isArray(v)) throw new RecordError(field, `${describe(v)}; expected a list`);
  return v;
}

/** `content` as a string: a string, or a list of `{type: 'text', text}` parts joined. */
function content(v: unknown, field: string): string {
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) {
    return v.map((p, i) => {
      const part = p as Obj | null;
      if (!part || typeof part !== 'object' || part.type !== 'text') throw new RecordError(`${field}[${i}]`, `${describe(p)}; expected {type: 'text', text} (only text content is supported)`);
      return str(part.text, `${field}[${i}].text`);
    }).join('');
  }
  throw new RecordError(field, `${describe(v)}; expected a string or a list of {type: 'text', text} parts`);
}

const ROLES = new Set(['system', 'user', 'assistant', 'tool']);

export function messages(v: unknown, field: string): ChatMessage[] {
  const out = list(v, field).map((m, i) => {
    const f = `${field}[${i}]`;
    if (!m || typeof m !== 'object' || Array.isArray(m)) throw new RecordError(f, `${describe(m)}; expected {role, content}`);
    const o = m as Obj;
    const role = str(o.role, `${f}.role`);
    if (!ROLES.has(role)) throw new RecordError(`${f}.role`, `is '${role}'; expected one of system, user, assistant, tool`);
    return { role, content: content(o.content, `${f}.content`) };
  });
  if (out.length === 0) throw new RecordError(field, 'is an empty list; expected at least one message');
  return out;
}

const SHAREGPT_ROLES: Record<string, string> = {
  human: 'user', user: 'user', gpt: 'assistant', assistant: 'assistant', chatgpt: 'assistant', bing: 'assistant', bard: 'assistant',
  system: 'system', observation: 'tool', tool: 'tool', function_call: 'assistant',
};

function sharegpt(rec: Obj): ChatMessage[] {
  const turns = list(rec.conversations, 'conversations');
  const out: ChatMessage[] = [];
  if (rec.system !== undefined && rec.system !== null && rec.system !== '') out.push({ role: 'system', content: str(rec.system, 'system') });
  turns.forEach((t, i) => {
    const f = `conversations[${i}]`;
    if (!t || typeof t !== 'object' || Array.isArray(t)) throw new RecordError(f, `${describe(t)}; expected {from, value}`);
    const o = t as Obj;
    if (o.from === undefined && o.role !== undefined) {
      const role = str(o.role, `${f}.role`);
      if (!ROLES.has(role)) throw new RecordError(`${f}.role`, `is '${role}'; expected one of system, user, assistant, tool`);
      out.push({ role, content: content(o.content, `${f}.content`) });
      return;
    }
    const from = str(o.from, `${f}.from`);
    const role = SHAREGPT_ROLES[from];
    if (!role) throw new RecordError(`${f}.from`, `is '${from}'; expected one of ${Object.keys(SHAREGPT_ROLES).join(', ')}`);
    out.push({ role, content: str(o.value, `${f}.value`) });
  });
  if (turns.length === 0) throw new RecordError('conversations', 'is an empty list; expected at least one turn');
  return out;
}

function alpaca(rec: Obj): ChatMessage[] {
  const out: ChatMessage[] = [];
  if (rec.system !== undefined && rec.system !== null && rec.system !== '') out.push({ role: 'system', content: str(rec.system, 'system') });
  if (rec.history !== undefined && rec.history !== null) {
    list(rec.history, 'history').forEach((pair, i) => {
      if (!Array.isArray(pair) || pair.length !== 2) throw new RecordError(`history[${i}]`, `${describe(pair)}; expected [user, assistant]`);
      out.push({ role: 'user', content: str(pair[0], `history[${i}][0]`) }, { role: 'assistant', content: str(pair[1], `history[${i}][1]`) });
    });
  }
  const instruction = str(rec.instruction, 'instruction');
  const input = rec.input === undefined || rec.input === null ? '' : str(rec.input, 'input');
  out.push({ role: 'user', content: input ? `${instruction}\n${input}` : instruction });
  out.push({ role: 'assistant', content: str(rec.output, 'output') });
  return out;
}

function promptCompletion(rec: Obj): SftExample {
  const { prompt, completion } = rec;
  const isList = (v: unknown) => Array.isArray(v) || (typeof v === 'string' && /^\s*\[\s*\{/.test(v));
  if (isList(prompt) || isList(completion)) {
    const p = messages(prompt, 'prompt'), c = messages(completion, 'completion');
    if (!c.some((m) => m.role === 'assistant')) throw new RecordError('completion', 'has no assistant message; expected the turn to train on');
    return { kind: 'conversation', messages: [...p, ...c] };
  }
  return { kind: 'prompt-completion', prompt: str(prompt, 'prompt'), completion: str(completion, 'completion', false) };
}

/** The shape of a record from its keys (for `format: 'auto'`), or null when none fits. */
export function detectFormat(rec: Obj): Exclude<SftFormat, 'auto'> | null {
  if ('messages' in rec) return 'messages';
  if ('conversations' in rec) return 'sharegpt';
  if ('instruction' in rec && 'output' in rec) return 'alpaca';
  if ('prompt' in rec && 'completion' in rec) return 'prompt-completion';
  if ('text' in rec) return 'text';
  return null;
}

/** Reads one record (a JSON object, a CSV row, a Parquet row) in `format`; throws RecordError. */
export function toExample(value: unknown, format: SftFormat = 'auto', textField = 'text'): SftExample {
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new RecordError('(record)', `${describe(value)}; expected an object`);
  const rec = value as Obj;
  const f = format === 'auto' ? detectFormat(rec) ?? (textField in rec ? 'text' : null) : format;
  if (f === null) {
    throw new RecordError('(record)', `has keys ${JSON.stringify(Object.keys(rec).slice(0, 8))}, which fit no SFT shape; expected 'messages', 'conversations', 'instruction' + 'output', 'prompt' + 'completion' or '${textField}'`);
  }
  switch (f) {
    case 'messages': {
      const m = messages(rec.messages, 'messages');
      return { kind: 'conversation', messages: m };
    }
    case 'sharegpt': return { kind: 'conversation', messages: sharegpt(rec) };
    case 'alpaca': return { kind: 'conversation', messages: alpaca(rec) };
    case 'prompt-completion': return promptCompletion(rec);
    case 'text': return { kind: 'text', text: str(rec[textField], textField, false) };
  }
}
