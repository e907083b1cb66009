/**
 * Chat templates as transformers applies them: the Jinja template of the model's tokenizer files
 * (`chat_template` in tokenizer_config.json, a string or PEFT/transformers' list of named templates, or a
 * `chat_template.jinja` file next to it), rendered by @huggingface/jinja (the renderer transformers.js uses) with
 * `messages`, `add_generation_prompt`, the special tokens (`bos_token`, `eos_token`, ...) and `raise_exception`.
 *
 * A model without a template gets the documented default, ChatML (the format of TRL's `setup_chat_format`):
 *
 *   <|im_start|>{role}\n{content}<|im_end|>\n ... and, for generation, <|im_start|>assistant\n
 *
 * When the tokenizer has no `<|im_start|>` / `<|im_end|>` tokens the markers are tokenized as ordinary text (it
 * works, at a few more tokens a turn); scripts/make-tiny-chat-model.ts shows a tokenizer that has them.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Template } from '@huggingface/jinja';
import { ConfigError } from '../errors.js';
import type { HFTokenizer } from '../models/hf/tokenizer.js';
import type { ChatMessage } from './types.js';

export const CHATML_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

export interface RenderOptions {
  /** Append the header of an assistant turn (generation). */
  addGenerationPrompt?: boolean;
  /** More variables for the template (tools, documents, enable_thinking...). */
  extra?: Record<string, unknown>;
}

const SPECIALS = ['bos_token', 'eos_token', 'pad_token', 'unk_token', 'sep_token', 'cls_token'] as const;

export class ChatTemplate {
  private readonly tpl: Template;
  private eot: string | null | undefined;
  /**
   * @param source the Jinja text
   * @param origin where it came from, for messages ('tokenizer_config.json', 'default (ChatML)', ...)
   * @param specials the special tokens' text, passed to the template as bos_token, eos_token, ...
   */
  constructor(readonly source: string, readonly origin: string, readonly specials: Record<string, string> = {}) {
    try {
      this.tpl = new Template(source);
    } catch (e) {
      throw new ConfigError(`the chat template from ${origin} does not parse: ${(e as Error).message}`, { cause: e });
    }
  }

  get isDefault(): boolean {
    return this.origin.startsWith('default');
  }

  /** The conversation as text, as `tokenizer.apply_chat_template(messages, tokenize=False)` gives it. */
  render(messages: readonly ChatMessage[], opts: RenderOptions = {}): string {
    try {
      return this.tpl.render({ ...this.specials, ...opts.extra, messages, add_generation_prompt: opts.addGenerationPrompt ?? false });
    } catch (e) {
      throw new ConfigError(`the chat template from ${this.origin} failed on this conversation: ${(e as Error).message}`, { cause: e });
    }
  }

  /**
   * The text that closes an assistant turn ('<|im_end|>', '<|eot_id|>', '</s>', '<end_of_turn>'), found by
   * rendering a probe conversation: generation stops there. Null when the template writes nothing after it.
   */
  endOfTurn(): string | null {
    if (this.eot !== undefined) return this.eot;
    const marker = 'qzxqzxq';
    let text: string;
    try {
      text = this.render([{ role: 'user', content: 'hello' }, { role: 'assistant', content: marker }]);
    } catch {
      this.eot = null;
      return null;
    }
    const at = text.lastIndexOf(marker);
    const m = at < 0 ? null : /^\s*(\S+)/.exec(text.slice(at + marker.length));
    this.eot = m ? m[1] : null;
    return this.eot;
  }
}

function tokenText(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return null;
}

/** The special tokens of a tokenizer_config.json as the template variables transformers passes. */
export function specialTokens(config: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of SPECIALS) {
    const t = tokenText(config[k]);
    if (t !== null) out[k] = t;
  }
  return out;
}

/** The template text of a tokenizer_config.json's `chat_template` (a string, or [{name, template}] / {name: template}). */
function configTemplate(raw: unknown, file: string, name: string): string | null {
  if (raw === undefined || raw === null) return null;
  if (typeof raw === 'string') return raw;
  const entries: [string, unknown][] = Array.isArray(raw)
    ? raw.map((e) => [String((e as { name?: unknown })?.name), (e as { template?: unknown })?.template])
    : typeof raw === 'object' ? Object.entries(raw) : [];
  const hit = entries.find(([n]) => n === name);
  if (!hit || typeof hit[1] !== 'string') {
    throw new ConfigError(`${file}: 'chat_template' has no template named '${name}' (it has ${entries.map(([n]) => `'${n}'`).join(', ') || 'none'})`);
  }
  return hit[1];
}

export interface ChatTemplateChoice {
  /** Jinja text that replaces the model's template. */
  template?: string;
  /** Which of several named templates (default 'default'). */
  name?: string;
}

/**
 * The chat template of a model: `choice.template`, else `chat_template.jinja` in `dir`, else tokenizer_config's
 * `chat_template`, else ChatML (documented above).
 */
export function chatTemplateOf(tok: HFTokenizer, dir: string | null = null, choice: ChatTemplateChoice = {}): ChatTemplate {
  const specials = specialTokens(tok.config);
  if (choice.template) return new ChatTemplate(choice.template, 'the given template', specials);
  const jinjaFile = dir ? path.join(dir, 'chat_template.jinja') : null;
  if (jinjaFile && existsSync(jinjaFile)) return new ChatTemplate(readFileSync(jinjaFile, 'utf8'), jinjaFile, specials);
  const fromConfig = configTemplate(tok.config.chat_template, 'tokenizer_config.json', choice.name ?? 'default');
  if (fromConfig) return new ChatTemplate(fromConfig, 'tokenizer_config.json', specials);
  return new ChatTemplate(CHATML_TEMPLATE, 'default (ChatML)', specials);
}

/** The token ids that end generation with this template: the end-of-turn token when it is one token, and eos. */
export function stopTokenIds(tok: HFTokenizer, template: ChatTemplate | null, configEos: number[] = []): number[] {
  const ids = new Set<number>(configEos);
  if (tok.eosTokenId !== null) ids.add(tok.eosTokenId);
  const eot = template?.endOfTurn();
  if (eot) {
    const id = tok.tokenToId(eot);
    if (id !== null) ids.add(id);
  }
  return [...ids];
}
