/**
 * Chat templates (the model's, named ones, chat_template.jinja, the ChatML default) rendered by
 * @huggingface/jinja, and SFT tokenization: labels on the assistant turns / the completion only, checked token by
 * token against hand-made spans on a character-level tokenizer (one token per character, so a span of text is a
 * span of tokens).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { HFTokenizer } from '../src/models/hf/tokenizer.js';
import { tinyChatTokenizerFiles } from '../src/sft/tiny-chat-model.js';
import { CHATML_TEMPLATE, ChatTemplate, chatTemplateOf, stopTokenIds } from '../src/sft/template.js';
import { IGNORE_INDEX, conversationSegments, tokenizeAll, tokenizeExample } from '../src/sft/tokenize.js';
import { ConfigError, DatasetError } from '../src/errors.js';
import type { SftExample } from '../src/sft/types.js';

const files = tinyChatTokenizerFiles();
const tokWith = (config: Record<string, unknown>) => new HFTokenizer(files.json, { ...files.config, ...config });
const tok = tokWith({});
const conv = (...turns: string[]) => turns.map((content, i) => ({ role: i % 2 === 0 ? 'user' : 'assistant', content }));
// [INST]-style template (as Llama 2 / Mistral format turns), with bos and eos written by the template
const INST = "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}{{ '[inst] ' + m['content'] + ' [/inst]' }}{% elif m['role'] == 'assistant' %}{{ m['content'] + eos_token }}{% else %}{{ raise_exception('only user and assistant roles') }}{% endif %}{% endfor %}";

test('ChatML default: the documented text, with and without the generation prompt', () => {
  const t = chatTemplateOf(tokWith({ chat_template: undefined }));
  assert.equal(t.origin, 'default (ChatML)');
  assert.equal(t.render(conv('hi', 'yo')), '<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n');
  assert.equal(t.render(conv('hi'), { addGenerationPrompt: true }), '<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n');
  assert.equal(t.endOfTurn(), '<|im_end|>');
  assert.deepEqual(stopTokenIds(tok, t), [2]);
});

test("the model's template wins: tokenizer_config's string, a named one, chat_template.jinja; special tokens are variables", () => {
  const inst = chatTemplateOf(tokWith({ chat_template: INST, bos_token: '<|endoftext|>', eos_token: '<|im_end|>' }));
  assert.equal(inst.origin, 'tokenizer_config.json');
  assert.equal(inst.render(conv('a', 'b')), '<|endoftext|>[inst] a [/inst]b<|im_end|>');
  assert.equal(inst.endOfTurn(), '<|im_end|>');
  assert.throws(() => inst.render([{ role: 'tool', content: 'x' }]), (e: Error) => e instanceof ConfigError && /only user and assistant roles/.test(e.message));
  const named = chatTemplateOf(tokWith({ chat_template: [{ name: 'default', template: 'D' }, { name: 'tool_use', template: 'T' }] }), null, { name: 'tool_use' });
  assert.equal(named.render(conv('a')), 'T');
  assert.throws(() => chatTemplateOf(tokWith({ chat_template: [{ name: 'tool_use', template: 'T' }] })), ConfigError);
  const dir = mkdtempSync(path.join(tmpdir(), 'autoglm-tpl-'));
  writeFileSync(path.join(dir, 'chat_template.jinja'), 'J{{ messages[0].content }}');
  assert.equal(chatTemplateOf(tok, dir).render(conv('x')), 'Jx');
  assert.equal(chatTemplateOf(tok, dir, { template: 'G' }).render(conv('x')), 'G');
  assert.throws(() => new ChatTemplate('{% for %}', 'test'), ConfigError);
});

/** The scored characters of an example, as a string (one token per character with this tokenizer). */
function scored(ex: SftExample, template: ChatTemplate | null, completionOnlyLoss = true): { text: string; scored: string } {
  const t = tokenizeExample(ex, tok, template, { maxLength: 512, completionOnlyLoss });
  assert.equal(t.ids.length, t.labels.length);
  t.labels.forEach((l, i) => assert.ok(l === IGNORE_INDEX || l === t.ids[i]));
  const pieces = t.ids.map((id) => tok.decode([id], { skipSpecialTokens: false }));
  return { text: pieces.join(''), scored: pieces.map((p, i) => (t.labels[i] === IGNORE_INDEX ? '.' : p)).join('') };
}

test('conversation labels: the assistant turns and their end-of-turn text only (hand-checked spans)', () => {
  const chatml = new ChatTemplate(CHATML_TEMPLATE, 'test');
  const one = scored({ kind: 'conversation', messages: conv('what is 1+2?', '3') }, chatml);
  assert.equal(one.text, '<|im_start|>user\nwhat is 1+2?<|im_end|>\n<|im_start|>assistant\n3<|im_end|>\n');
  // prompt: <|im_start|> u s e r \n w h a t _ i s _ 1 + 2 ? <|im_end|> \n <|im_start|> a s s i s t a n t \n  = 1+4+1+12+1+1+1+9+1 = 31 tokens
  assert.equal(one.scored, '.'.repeat(31) + '3<|im_end|>\n');
  const sys = [{ role: 'system', content: 'be terse' }, ...conv('hi', 'yo', 'and?', 'ok')];
  const two = scored({ kind: 'conversation', messages: sys }, chatml);
  const expect = two.text.replace(/<\|im_start\|>(system|user)\n[^<]*<\|im_end\|>\n|<\|im_start\|>assistant\n/g, (m) => '.'.repeat(m.match(/<\|im_(start|end)\|>|[^<]/g)!.length));
  assert.equal(two.scored, expect);
  assert.equal(two.scored.replace(/\./g, ''), 'yo<|im_end|>\nok<|im_end|>\n');
  const inst = chatTemplateOf(tokWith({ chat_template: INST, bos_token: '<|endoftext|>' }));
  assert.equal(scored({ kind: 'conversation', messages: conv('a', 'b', 'c', 'd') }, inst).scored.replace(/\./g, ''), 'b<|im_end|>d<|im_end|>');
  // completion-only loss off: every token scored
  const all = scored({ kind: 'conversation', messages: conv('what is 1+2?', '3') }, chatml, false);
  assert.equal(all.scored, all.text);
});

test('prompt/completion and text: loss on the completion plus eos; text everywhere', () => {
  const pc = scored({ kind: 'prompt-completion', prompt: 'the sky is', completion: ' blue.' }, null);
  assert.equal(pc.text, 'the sky is blue.<|im_end|>');
  assert.equal(pc.scored, '.'.repeat(10) + ' blue.<|im_end|>');
  const tx = scored({ kind: 'text', text: 'abc' }, null);
  assert.equal(tx.scored, 'abc<|im_end|>');
});

test('truncation keeps the start; examples with nothing scored are dropped and counted', () => {
  const chatml = new ChatTemplate(CHATML_TEMPLATE, 'test');
  const long: SftExample = { kind: 'conversation', messages: conv('x'.repeat(40), 'y') }; // 58 tokens: the answer is past 30
  const t = tokenizeExample(long, tok, chatml, { maxLength: 30 });
  assert.equal(t.ids.length, 30);
  const set = tokenizeAll([long, { kind: 'conversation', messages: conv('q', 'a') }], tok, chatml, { maxLength: 30 });
  assert.equal(set.examples.length, 1);
  assert.equal(set.dropped, 1);
});

test('a template that rewrites earlier turns is refused with the record named', () => {
  // renders only the last message: earlier turns change once later ones follow
  const bad = new ChatTemplate("{{ messages[-1]['content'] }}", 'test');
  assert.throws(() => conversationSegments(bad, conv('a', 'b', 'c', 'd')), ConfigError);
  assert.throws(() => tokenizeExample({ kind: 'conversation', messages: conv('a', 'b', 'c', 'd'), source: { file: 'f.jsonl', line: 7 } }, tok, bad, { maxLength: 64 }),
    (e: Error) => e instanceof DatasetError && e.message.startsWith('f.jsonl:7:'));
});
