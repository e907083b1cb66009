/**
 * SFT data: every record shape (chat messages, ShareGPT, Alpaca, prompt/completion, text) from JSONL, JSON, CSV
 * and Parquet (a nested list<struct> column, as the Hugging Face Hub's files hold, written at test time by
 * hyparquet-writer); bad records name the file, the line or row and the field.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parquetWriteFile } from 'hyparquet-writer';
import { writeChatParquet } from './helpers/parquet.js';
import { loadSftSplits, readSftFile } from '../src/sft/dataset.js';
import { toExample, RecordError } from '../src/sft/formats.js';
import { BadLineSink } from '../src/data/bad-lines.js';
import { ConfigError, DatasetError } from '../src/errors.js';

const dir = mkdtempSync(path.join(tmpdir(), 'autoglm-sft-data-'));
const file = (name: string, text: string) => {
  const f = path.join(dir, name);
  writeFileSync(f, text);
  return f;
};
const conv = (q: string, a: string) => [{ role: 'user', content: q }, { role: 'assistant', content: a }];

test('each record shape is read into a conversation, a prompt/completion pair or a text', () => {
  assert.deepEqual(toExample({ messages: conv('hi', 'yo') }), { kind: 'conversation', messages: conv('hi', 'yo') });
  assert.deepEqual(toExample({ messages: [{ role: 'user', content: [{ type: 'text', text: 'a' }, { type: 'text', text: 'b' }] }, { role: 'assistant', content: 'c' }] }),
    { kind: 'conversation', messages: conv('ab', 'c') });
  assert.deepEqual(toExample({ system: 'be brief', conversations: [{ from: 'human', value: 'hi' }, { from: 'gpt', value: 'yo' }] }),
    { kind: 'conversation', messages: [{ role: 'system', content: 'be brief' }, ...conv('hi', 'yo')] });
  assert.deepEqual(toExample({ instruction: 'add', input: '2 3', output: '5' }), { kind: 'conversation', messages: conv('add\n2 3', '5') });
  assert.deepEqual(toExample({ instruction: 'add 2 3', input: '', output: '5', history: [['q0', 'a0']] }),
    { kind: 'conversation', messages: [...conv('q0', 'a0'), ...conv('add 2 3', '5')] });
  assert.deepEqual(toExample({ prompt: 'The sky is', completion: ' blue.' }), { kind: 'prompt-completion', prompt: 'The sky is', completion: ' blue.' });
  assert.deepEqual(toExample({ prompt: [{ role: 'user', content: 'hi' }], completion: [{ role: 'assistant', content: 'yo' }] }),
    { kind: 'conversation', messages: conv('hi', 'yo') });
  assert.deepEqual(toExample({ text: 'plain' }), { kind: 'text', text: 'plain' });
  assert.deepEqual(toExample({ body: 'plain' }, 'auto', 'body'), { kind: 'text', text: 'plain' });
});

test('a bad field is named by its path', () => {
  const field = (v: unknown, format?: 'auto' | 'alpaca') => {
    try {
      toExample(v, format);
    } catch (e) {
      assert.ok(e instanceof RecordError, String(e));
      return e.field;
    }
    return null;
  };
  assert.equal(field({ messages: [{ role: 'user', content: 'a' }, { role: 'robot', content: 'b' }] }), 'messages[1].role');
  assert.equal(field({ messages: [{ role: 'user', content: 3 }] }), 'messages[0].content');
  assert.equal(field({ messages: [] }), 'messages');
  assert.equal(field({ conversations: [{ from: 'alien', value: 'x' }] }), 'conversations[0].from');
  assert.equal(field({ instruction: 'x' }, 'alpaca'), 'output');
  assert.equal(field({ prompt: 'x', completion: '' }), 'completion');
  assert.equal(field({ question: 'x' }), '(record)');
});

test('JSONL, JSON, CSV and Parquet files give the same examples', async () => {
  const recs = [{ messages: conv('hi', 'yo') }, { messages: conv('2+2?', '4') }];
  const jsonl = file('a.jsonl', recs.map((r) => JSON.stringify(r)).join('\n') + '\n');
  const json = file('a.json', JSON.stringify(recs, null, 1));
  const csv = file('a.csv', 'messages\n' + recs.map((r) => `"${JSON.stringify(r.messages).replace(/"/g, '""')}"`).join('\n') + '\n');
  const pq = path.join(dir, 'a.parquet');
  writeChatParquet(pq, recs.map((r) => r.messages));
  const strip = (xs: Awaited<ReturnType<typeof readSftFile>>) => xs.map(({ source: _s, ...x }) => x);
  const want = recs.map((r) => ({ kind: 'conversation', messages: r.messages }));
  for (const f of [jsonl, json, csv, pq]) {
    const got = await readSftFile(f, new BadLineSink('error'));
    assert.deepEqual(strip(got), want, f);
  }
  const fromPq = await readSftFile(pq, new BadLineSink('error'));
  assert.deepEqual(fromPq[1].source, { file: pq, line: 2 });
});

test('a bad record is a DatasetError naming the file, the line (or Parquet row) and the field; skip counts it', async () => {
  const f = file('bad.jsonl', [JSON.stringify({ messages: conv('a', 'b') }), JSON.stringify({ messages: [{ role: 'user', content: null }] })].join('\n'));
  await assert.rejects(readSftFile(f, new BadLineSink('error')), (e: Error) => e instanceof DatasetError && e.message.includes(`${f}:2`) && e.message.includes("'messages[0].content'"));
  const sink = new BadLineSink('skip');
  assert.equal((await readSftFile(f, sink)).length, 1);
  assert.equal(sink.skipped.length, 1);
  const pq = path.join(dir, 'bad.parquet');
  parquetWriteFile({ filename: pq, columnData: [{ name: 'prompt', data: ['a', 'b'], type: 'STRING' }, { name: 'completion', data: ['x', ''], type: 'STRING' }] });
  await assert.rejects(readSftFile(pq, new BadLineSink('error')), (e: Error) => e instanceof DatasetError && e.message.includes('Parquet row 2') && e.message.includes("'completion'"));
  const notPq = file('junk.parquet', 'not parquet at all');
  await assert.rejects(readSftFile(notPq, new BadLineSink('error')), (e: Error) => e instanceof DatasetError && e.message.includes(notPq));
  await assert.rejects(loadSftSplits({ dataset: path.join(dir, 'missing.jsonl') }), DatasetError);
});

test('splits: validation carved from train with a seed, disjoint, file order kept', async () => {
  const f = file('many.jsonl', Array.from({ length: 50 }, (_, i) => JSON.stringify({ text: `t${i}` })).join('\n'));
  const a = await loadSftSplits({ dataset: f, seed: 3 });
  const b = await loadSftSplits({ dataset: f, seed: 3 });
  assert.equal(a.validation.length, 5);
  assert.equal(a.train.length, 45);
  assert.deepEqual(a.validation, b.validation);
  const texts = (xs: typeof a.train) => xs.map((x) => (x.kind === 'text' ? x.text : ''));
  assert.ok(texts(a.validation).every((t) => !texts(a.train).includes(t)));
  const idx = texts(a.train).map((t) => Number(t.slice(1)));
  assert.deepEqual(idx, [...idx].sort((x, y) => x - y));
});

test('synthetic chat tasks: seeded, held-out questions disjoint from train, answers correct', async () => {
  const { syntheticSplits } = await import('../src/sft/synthetic.js');
  const a = syntheticSplits({ task: 'addition', train: 300, test: 50, seed: 4, digits: 2 });
  assert.deepEqual(a, syntheticSplits({ task: 'addition', train: 300, test: 50, seed: 4, digits: 2 }));
  const q = (x: typeof a.train) => new Set(x.map((e) => e.messages[0].content));
  const train = q(a.train);
  assert.ok([...q(a.test)].every((t) => !train.has(t)));
  for (const e of [...a.train, ...a.test]) {
    const m = /^what is (\d{2})\+(\d{2})\?$/.exec(e.messages[0].content)!;
    assert.equal(e.messages[1].content, String(Number(m[1]) + Number(m[2])).padStart(3, '0'));
  }
  for (const e of syntheticSplits({ task: 'reverse', train: 20, test: 5, seed: 1 }).train) assert.equal([...e.messages[0].content.slice(8)].reverse().join(''), e.messages[1].content);
  for (const e of syntheticSplits({ task: 'lookup', train: 20, test: 5, seed: 1 }).train) {
    const [, pairs, key] = /^(.*)\. what is (\w)\?$/.exec(e.messages[0].content)!;
    assert.equal(Object.fromEntries(pairs.split(' ').map((p) => p.split('=')))[key], e.messages[1].content);
  }
  assert.throws(() => syntheticSplits({ task: 'addition', train: 200, test: 0, digits: 1 }), ConfigError);
});

test('a damaged Parquet file that sends the decoder into a loop is a DatasetError after the time limit, not a hang', async () => {
  // test/fixtures/parquet-decoder-loop.parquet: a prompt/completion file of our own with bytes mutated by the fault
  // suite's fuzzer; hyparquet's parquetReadObjects never returns on it.
  const f = path.join(dir, 'loop.parquet');
  writeFileSync(f, readFileSync(new URL('./fixtures/parquet-decoder-loop.parquet', import.meta.url)));
  const t0 = performance.now();
  await assert.rejects(readSftFile(f, new BadLineSink('skip')), (e: Error) => e instanceof DatasetError && e.message.includes(f) && /decoding took over/.test(e.message));
  assert.ok(performance.now() - t0 < 15_000, `refused after ${(performance.now() - t0).toFixed(0)} ms`);
  const old = process.env.AUTOGLM_PARQUET_TIMEOUT_MS;
  process.env.AUTOGLM_PARQUET_TIMEOUT_MS = 'soon';
  try {
    await assert.rejects(readSftFile(f, new BadLineSink('skip')), (e: Error) => e instanceof ConfigError && e.message.includes('AUTOGLM_PARQUET_TIMEOUT_MS'));
  } finally {
    if (old === undefined) delete process.env.AUTOGLM_PARQUET_TIMEOUT_MS; else process.env.AUTOGLM_PARQUET_TIMEOUT_MS = old;
  }
});
