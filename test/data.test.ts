/**
 * The data layer: file formats with custom fields, bad lines under both policies, seeded splits, encoding and
 * dynamic padding, samplers (coverage, determinism, exact resume), the named public datasets (skipped where the
 * data folder is absent) and the embedded custom_intent_v2 (including byte-for-byte regeneration).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, DatasetError, IndexError } from '../src/errors.js';
import {
  BucketSampler, collate, encodeDataset, listNamedDatasets, loadDataset, RandomSampler, resolveDataDir, SequentialSampler,
  summarizeSkipped, type DatasetSplits, type Example, type Sampler,
} from '../src/data/index.js';
import { findInvalidUtf8 } from '../src/data/text.js';
import { readJson } from '../src/data/readers.js';
import { BadLineSink } from '../src/data/bad-lines.js';
import { arrayElementLines } from '../src/data/json-lines.js';
import { packageRoot } from '../src/data/paths.js';
import { bowBaseline, bowTokens } from '../src/eval/index.js';

const dir = mkdtempSync(join(tmpdir(), 'autoglm-data-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
let fileNo = 0;
/** Writes a fixture file (string or bytes) and returns its path. */
function fixture(ext: string, content: string | Uint8Array): string {
  const p = join(dir, `f${fileNo++}.${ext}`);
  writeFileSync(p, content);
  return p;
}
const jsonl = (rows: unknown[]) => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';
/** n examples over `labels` labels, in the custom fields utterance / intent. */
const rows = (n: number, labels = 4) => Array.from({ length: n }, (_, i) => ({ utterance: `example number ${i}`, intent: `label_${i % labels}` }));
const texts = (xs: Example[]) => xs.map((x) => x.text);
/** Bytes of `before`, an invalid UTF-8 sequence (a lone continuation byte and a CESU surrogate), then `after`. */
const damaged = (before: string, after: string) => Buffer.concat([Buffer.from(before), Buffer.from([0x80, 0xed, 0xa0, 0xbd]), Buffer.from(after)]);

// ---------------------------------------------------------------- formats

test('JSONL, CSV and JSON files with custom text and label fields', () => {
  const fields = { textField: 'utterance', labelField: 'intent' };
  const train = fixture('jsonl', jsonl(rows(20)));
  const evalFile = fixture('csv', 'id,utterance,intent\n1,"hello, world",label_0\n2,"two\nlines",label_1\n\n3,plain,label_2\n');
  const testFile = fixture('json', JSON.stringify([{ utterance: 'a', intent: 'label_3' }, { utterance: 'b', intent: 'label_0' }], null, 2));
  const d = loadDataset({ dataset: train, evalDataset: evalFile, testDataset: testFile, ...fields });
  assert.equal(d.train.length, 20);
  assert.deepEqual(d.labels, ['label_0', 'label_1', 'label_2', 'label_3']);
  assert.deepEqual(d.validation, [{ text: 'hello, world', label: 'label_0' }, { text: 'two\nlines', label: 'label_1' }, { text: 'plain', label: 'label_2' }]);
  assert.deepEqual(texts(d.test), ['a', 'b']);
  assert.equal(d.skipped.length, 0);
  // a JSON object of splits, numeric labels, a CSV train file
  const obj = fixture('json', JSON.stringify({ data: [{ t: 'x', y: 1 }, { t: 'y', y: 0 }, { t: 'z', y: 1 }] }));
  const d2 = loadDataset({ dataset: obj, textField: 't', labelField: 'y', validationFraction: 0.01, testFraction: 0.01 });
  assert.deepEqual(d2.labels, ['0', '1']);
  const csvTrain = fixture('csv', 'sentence,tag\ngood,pos\nbad,neg\nok,pos\n');
  const d3 = loadDataset({ dataset: csvTrain, evalDataset: csvTrain, textField: 'sentence', labelField: 'tag' });
  assert.deepEqual(d3.labels, ['neg', 'pos']);
  assert.deepEqual(d3.test, []); // an eval file and no test file: nothing carved unless testFraction is set
});

test('labelFields: several label sets from a user file (multi-task); a label may be missing, not all of them', () => {
  const recs = [
    { text: 'a', intent: 'x', domain: 'd1' }, { text: 'b', intent: 'y' }, { text: 'c', domain: 'd2', intent: null }, { text: 'd', intent: 'x', domain: '' },
    { text: 'e' }, { text: 'f', intent: { nested: 1 } }, { text: 'g', intent: 'y', domain: 'd1' },
  ];
  const f = fixture('jsonl', jsonl(recs));
  const d = loadDataset({ dataset: f, labelFields: ['intent', 'domain'], onBadLine: 'skip', validationFraction: 0.01, testFraction: 0.01 });
  assert.deepEqual(d.train.map((x) => [x.text, x.label, x.extra?.domain]), [['a', 'x', 'd1'], ['b', 'y', ''], ['c', '', 'd2'], ['d', 'x', ''], ['g', 'y', 'd1']]);
  assert.deepEqual(d.labels, ['', 'x', 'y']);
  assert.deepEqual(d.extraLabels, { domain: ['', 'd1', 'd2'] });
  assert.deepEqual(d.skipped.map((b) => [b.line, b.reason.split(':')[0]]), [[5, 'no label'], [6, 'bad field']]);
  // labelField picks the primary set among them
  const e = loadDataset({ dataset: f, labelFields: ['intent', 'domain'], labelField: 'domain', onBadLine: 'skip', validationFraction: 0.01, testFraction: 0.01 });
  assert.deepEqual(Object.keys(e.extraLabels), ['intent']);
  assert.deepEqual(e.labels, ['', 'd1', 'd2']);
  assert.throws(() => loadDataset({ dataset: f, labelFields: [] }), (x: unknown) => x instanceof ConfigError && /labelFields/.test(x.message));
  assert.throws(() => loadDataset({ dataset: 'clinc150', labelFields: ['intent'] }), (x: unknown) => x instanceof ConfigError && /named dataset/.test(x.message));
});

test('labelMap renames and merges labels; maxTrain / maxEval cap with a seeded subset', () => {
  const train = fixture('jsonl', jsonl(rows(40)));
  const d = loadDataset({ dataset: train, textField: 'utterance', labelField: 'intent', labelMap: { label_0: 'zero', label_1: 'zero' }, maxTrain: 10, maxEval: 2 });
  assert.deepEqual(d.labels, ['label_2', 'label_3', 'zero']);
  assert.equal(d.train.length, 10);
  assert.ok(d.validation.length <= 2 && d.test.length <= 2);
});

test('spec errors: unknown file, extension, fractions, labelSet', () => {
  assert.throws(() => loadDataset({ dataset: join(dir, 'nope.jsonl') }), (e: unknown) => e instanceof DatasetError && /does not exist/.test(e.message));
  assert.throws(() => loadDataset({ dataset: fixture('txt', 'x') }), (e: unknown) => e instanceof DatasetError && /\.txt/.test(e.message));
  const f = fixture('jsonl', jsonl(rows(10)));
  assert.throws(() => loadDataset({ dataset: f, validationFraction: 1.5 }), ConfigError);
  assert.throws(() => loadDataset({ dataset: f, validationFraction: 0.6, testFraction: 0.5 }), ConfigError);
  assert.throws(() => loadDataset({ dataset: 'slurp', labelSet: 'colour' }), (e: unknown) => e instanceof ConfigError && /labelSet 'colour'/.test(e.message));
  assert.deepEqual(listNamedDatasets(), ['clinc150', 'custom_intent_v2', 'massive-en', 'slurp', 'snips']);
});

// ---------------------------------------------------------------- bad lines

test('bad lines: invalid JSON, missing field, unknown eval label, invalid UTF-8, under both policies', () => {
  const train = fixture('jsonl', Buffer.concat([
    Buffer.from(jsonl([{ text: 'one', label: 'a' }, { text: 'two', label: 'b' }])), // lines 1, 2
    Buffer.from('{"text": "three", "label": \n'), // line 3: invalid JSON
    Buffer.from(jsonl([{ text: 'four' }])), // line 4: no label
    damaged('{"text": "five', '", "label": "a"}\n'), // line 5: invalid UTF-8
    Buffer.from('\n' + jsonl([{ text: 'seven', label: 'b' }, [1, 2]])), // line 6 blank, 7 ok, 8 not an object
  ]));
  const evalFile = fixture('jsonl', jsonl([{ text: 'x', label: 'a' }, { text: 'y', label: 'zzz' }]));
  const d = loadDataset({ dataset: train, evalDataset: evalFile, testDataset: evalFile, onBadLine: 'skip' });
  assert.deepEqual(texts(d.train), ['one', 'two', 'seven']);
  assert.deepEqual(texts(d.validation), ['x']);
  const at = d.skipped.map((b) => `${b.file === train ? 'train' : 'eval'}:${b.line}:${b.reason.split(':')[0]}`);
  assert.deepEqual(at, [
    'train:3:invalid JSON', 'train:4:missing field', 'train:5:invalid UTF-8', 'train:8:not a JSON object',
    'eval:2:unknown label', 'eval:2:unknown label', // once as validation, once as test
  ]);
  assert.deepEqual(summarizeSkipped(d.skipped), { 'invalid JSON': 1, 'missing field': 1, 'invalid UTF-8': 1, 'not a JSON object': 1, 'unknown label': 2 });
  // 'error' (the default for user files) stops at the first, naming file:line and what is wrong
  assert.throws(() => loadDataset({ dataset: train, evalDataset: evalFile }), (e: unknown) => e instanceof DatasetError && e.message.startsWith(`${train}:3: invalid JSON`));
  const cleanTrain = fixture('jsonl', jsonl([{ text: 'one', label: 'a' }]));
  assert.throws(() => loadDataset({ dataset: cleanTrain, evalDataset: evalFile }), (e: unknown) => e instanceof DatasetError && e.message.startsWith(`${evalFile}:2: unknown label: 'zzz'`));
  const utf = fixture('jsonl', Buffer.concat([Buffer.from(jsonl([{ text: 'ok', label: 'a' }])), damaged('{"text": "bad', '", "label": "a"}\n')]));
  assert.throws(() => loadDataset({ dataset: utf }), (e: unknown) => e instanceof DatasetError && e.message.startsWith(`${utf}:2: invalid UTF-8`));
});

test('bad lines in CSV and JSON documents are located by line', () => {
  const csv = fixture('csv', Buffer.concat([Buffer.from('text,label\ngood,a\n"multi\nline",b\nno label\n'), damaged('bad', ',a\n'), Buffer.from('fine,b\n')]));
  const noSplit = { validationFraction: 0.01, testFraction: 0.01 }; // rounds to no example carved per label
  const d = loadDataset({ dataset: csv, onBadLine: 'skip', ...noSplit });
  assert.deepEqual(texts(d.train), ['good', 'multi\nline', 'fine']);
  assert.deepEqual(d.skipped.map((b) => [b.line, b.reason.split(':')[0]]), [[5, 'missing field'], [6, 'invalid UTF-8']]);
  const json = fixture('json', Buffer.concat([
    Buffer.from('[\n  {"text": "a", "label": "x"},\n  {"text": "b"},\n  {"text": "c",\n   "label": "y"},\n  {"text": "'),
    damaged('d', '", "label": "y"}\n]\n'),
  ]));
  const j = loadDataset({ dataset: json, onBadLine: 'skip', ...noSplit });
  assert.deepEqual(texts(j.train), ['a', 'c']);
  assert.deepEqual(j.skipped.map((b) => [b.line, b.reason.split(':')[0]]), [[3, 'missing field'], [6, 'invalid UTF-8']]);
  assert.throws(() => loadDataset({ dataset: fixture('json', '[\n{"text": "a",\n "label": }\n]') }), (e: unknown) => e instanceof DatasetError && /:3: invalid JSON document/.test(e.message));
});

test('readJson: 60 000 records with every other line damaged are read in one pass (was quadratic: minutes)', { timeout: 30_000 }, () => {
  const parts: Buffer[] = [Buffer.from('[\n')];
  const n = 60_000;
  for (let i = 0; i < n; i++) {
    const sep = i < n - 1 ? ',\n' : '\n';
    parts.push(i % 2 ? damaged(`{"text": "r${i}`, `", "label": "a"}${sep}`) : Buffer.from(`{"text": "r${i}", "label": "a"}${sep}`));
  }
  parts.push(Buffer.from(']\n'));
  const sink = new BadLineSink('skip');
  const { records } = readJson(fixture('json', Buffer.concat(parts)), sink);
  assert.equal(records.length, n / 2);
  assert.equal(sink.skipped.length, n / 2);
  assert.deepEqual(sink.skipped.slice(0, 3).map((b) => b.line), [3, 5, 7]); // record i starts on line i + 2
  assert.deepEqual(records.slice(0, 2).map((r) => r.line), [2, 4]);
});

test('findInvalidUtf8 and arrayElementLines', () => {
  const ok = Buffer.from('héllo wörld 🎉\n');
  assert.equal(findInvalidUtf8(ok).size, 0);
  const bad = Buffer.concat([Buffer.from('a\nb'), Buffer.from([0xc0, 0xaf]), Buffer.from('\n\n'), Buffer.from([0xf4, 0x90, 0x80, 0x80, 0xe2, 0x82])]);
  assert.deepEqual([...findInvalidUtf8(bad)], [[2, 2], [4, 5]]);
  const lines = arrayElementLines('{"a": [1,\n 2, "x\\"]"],\n "b": {"c": [5]}, "d": [\n{"e": [1,\n2]}, [3]]}');
  assert.deepEqual([...lines], [['a', [1, 2, 2]], ['d', [4, 5]]]);
});

// ---------------------------------------------------------------- splits

test('seeded splits are deterministic, disjoint, stratified and cover the file', () => {
  const f = fixture('jsonl', jsonl(rows(200, 5)));
  const spec = { dataset: f, textField: 'utterance', labelField: 'intent', validationFraction: 0.15, testFraction: 0.2, seed: 7 };
  const a = loadDataset(spec);
  const b = loadDataset(spec);
  assert.deepEqual(a, b);
  assert.deepEqual([a.train.length, a.validation.length, a.test.length], [130, 30, 40]);
  const all = [...texts(a.train), ...texts(a.validation), ...texts(a.test)];
  assert.equal(new Set(all).size, 200);
  for (const split of [a.validation, a.test]) assert.equal(new Set(split.map((x) => x.label)).size, 5);
  const c = loadDataset({ ...spec, seed: 8 });
  assert.notDeepEqual(texts(c.test), texts(a.test));
  // a label with a single example stays in train
  const g = loadDataset({ dataset: fixture('jsonl', jsonl([...rows(20, 2), { utterance: 'lonely', intent: 'rare' }])), textField: 'utterance', labelField: 'intent' });
  assert.ok(g.train.some((x) => x.label === 'rare'));
});

// ---------------------------------------------------------------- encoding and padding

test('encodeDataset maps labels and truncates; collate pads to the longest in the batch', () => {
  const examples: Example[] = [
    { text: 'a b c', label: 'y', extra: { dom: 'd1' } },
    { text: 'a', label: 'x', extra: { dom: 'd0' } },
    { text: 'a b c d e f', label: 'y', extra: { dom: 'd1' } },
  ];
  const encode = (t: string) => t.split(' ').map((w) => w.charCodeAt(0) - 96);
  const ds = encodeDataset(examples, encode, ['x', 'y'], { maxLength: 4, extraLabels: { dom: ['d0', 'd1'] } });
  assert.deepEqual(ds.ids, [[1, 2, 3], [1], [1, 2, 3, 4]]);
  assert.deepEqual([...ds.labels], [1, 0, 1]);
  assert.deepEqual([...ds.extraLabels['dom']!], [1, 0, 1]);
  const b = collate(ds, [1, 0], 9);
  assert.equal(b.batchSize, 2);
  assert.equal(b.seqLen, 3);
  assert.deepEqual([...b.ids], [1, 9, 9, 1, 2, 3]);
  assert.deepEqual([...b.mask], [1, 0, 0, 1, 1, 1]);
  assert.deepEqual([...b.labels], [0, 1]);
  assert.deepEqual([...b.extraLabels!['dom']!], [0, 1]);
  assert.deepEqual(b.indices, [1, 0]);
  assert.equal(collate(ds, [2]).seqLen, 4);
  assert.throws(() => collate(ds, [3]), IndexError);
  assert.throws(() => collate(ds, []), ConfigError);
  assert.throws(() => encodeDataset([...examples, { text: 'q', label: 'nope' }], encode, ['x', 'y']), (e: unknown) => e instanceof DatasetError && /example 3 has label "nope"/.test(e.message));
  const skipped = encodeDataset([...examples, { text: 'q', label: 'nope' }], encode, ['x', 'y'], { onBadLine: 'skip' });
  assert.equal(skipped.ids.length, 3);
  assert.deepEqual(skipped.skipped, [3]);
});

// ---------------------------------------------------------------- samplers

/** All batches of one epoch (until next() returns null). */
function epochOf(s: Sampler): number[][] {
  const out: number[][] = [];
  for (let b = s.next(); b !== null; b = s.next()) out.push(b);
  return out;
}
const lengths = Array.from({ length: 103 }, (_, i) => 1 + ((i * 37) % 29));
const samplers: [string, () => Sampler][] = [
  ['RandomSampler', () => new RandomSampler(103, 8, 5)],
  ['SequentialSampler', () => new SequentialSampler(103, 8)],
  ['BucketSampler', () => new BucketSampler(lengths, 8, 5, { bucketSize: 4 })],
];

for (const [name, make] of samplers) {
  test(`${name}: every index once per epoch, deterministic, exact resume from state()`, () => {
    const s = make();
    const e0 = epochOf(s);
    assert.equal(e0.length, s.batchesPerEpoch);
    assert.deepEqual(e0.flat().sort((a, b) => a - b), Array.from({ length: 103 }, (_, i) => i));
    assert.equal(s.epoch, 1);
    const e1 = epochOf(s);
    assert.deepEqual(e1.flat().sort((a, b) => a - b), Array.from({ length: 103 }, (_, i) => i));
    if (name !== 'SequentialSampler') assert.notDeepEqual(e1, e0); // reshuffled each epoch
    const t = make();
    assert.deepEqual(epochOf(t), e0); // same seed, same batches
    // resume mid-epoch 2 through JSON
    const u = make();
    epochOf(u); epochOf(u);
    for (let i = 0; i < 5; i++) u.next();
    const saved = JSON.parse(JSON.stringify(u.state()));
    const rest = [...epochOf(u), ...epochOf(u)];
    const v = make();
    v.load(saved);
    assert.equal(v.epoch, 2);
    assert.deepEqual([...epochOf(v), ...epochOf(v)], rest);
    assert.throws(() => v.load({ ...saved, n: 7 }), ConfigError);
  });
}

test('RandomSampler dropLast; BucketSampler batches hold similar lengths', () => {
  const r = new RandomSampler(10, 4, 1, { dropLast: true });
  const e = epochOf(r);
  assert.equal(r.batchesPerEpoch, 2);
  assert.deepEqual(e.map((b) => b.length), [4, 4]);
  const pad = (batches: number[][]) => batches.reduce((s, b) => s + b.length * Math.max(...b.map((i) => lengths[i]!)) - b.reduce((t, i) => t + lengths[i]!, 0), 0);
  const bucketPad = pad(epochOf(new BucketSampler(lengths, 8, 3, { bucketSize: 100 })));
  const randomPad = pad(epochOf(new RandomSampler(103, 8, 3)));
  assert.ok(bucketPad < randomPad / 4, `bucket padding ${bucketPad} vs random ${randomPad}`);
  assert.throws(() => new RandomSampler(10, 0, 1), ConfigError);
});

test('BucketSampler: rows of equal length meet different neighbours each epoch', () => {
  // One bucket of 40 equal lengths: ties used to be broken by index, so every epoch held the same four batches
  // ({0..3}, {4..7}, ...) in another order.
  const s = new BucketSampler(new Array<number>(40).fill(5), 4, 11, { bucketSize: 100 });
  const sets = (batches: number[][]) => batches.map((b) => [...b].sort((x, y) => x - y).join(',')).sort();
  const e0 = sets(epochOf(s));
  const e1 = sets(epochOf(s));
  assert.notDeepEqual(e1, e0);
});

// ---------------------------------------------------------------- named public datasets

const DATA = resolveDataDir();
function needs(t: { skip(msg: string): void }, folder: string): boolean {
  if (existsSync(join(DATA, folder))) return true;
  t.skip(`public dataset folder '${join(DATA, folder)}' is absent (no ../shared/data next to the package, or AUTOGLM_DATA_DIR points elsewhere): public-data test skipped`);
  return false;
}
const sizes = (d: DatasetSplits) => [d.train.length, d.validation.length, d.test.length];

test('resolveDataDir: argument, then AUTOGLM_DATA_DIR, then ../shared/data or ./data', () => {
  const saved = process.env['AUTOGLM_DATA_DIR'];
  try {
    process.env['AUTOGLM_DATA_DIR'] = '/tmp/somewhere';
    assert.equal(resolveDataDir('/x/y'), '/x/y');
    assert.equal(resolveDataDir(), '/tmp/somewhere');
    delete process.env['AUTOGLM_DATA_DIR'];
    const shared = join(packageRoot(), '..', 'shared', 'data');
    assert.equal(resolveDataDir(), existsSync(shared) ? shared : join(process.cwd(), 'data'));
    assert.throws(() => loadDataset({ dataset: 'clinc150', dataDir: dir }), (e: unknown) => e instanceof DatasetError && /dataset 'clinc150' not found/.test(e.message));
  } finally {
    if (saved === undefined) delete process.env['AUTOGLM_DATA_DIR'];
    else process.env['AUTOGLM_DATA_DIR'] = saved;
  }
});

test('clinc150: 15000 / 3000 / 4500, 150 intents, 10 domains; oos optional', (t) => {
  if (!needs(t, 'clinc150')) return;
  const d = loadDataset({ dataset: 'clinc150' });
  assert.deepEqual(sizes(d), [15000, 3000, 4500]);
  assert.equal(d.labels.length, 150);
  assert.equal(d.extraLabels['domain']!.length, 10);
  assert.equal(d.train[0]!.extra?.['domain'] !== undefined, true);
  assert.equal(d.skipped.length, 0);
  const dom = loadDataset({ dataset: 'clinc150', labelSet: 'domain' });
  assert.equal(dom.labels.length, 10);
  assert.equal(dom.extraLabels['intent']!.length, 150);
  const oos = loadDataset({ dataset: 'clinc150', includeOos: true });
  assert.deepEqual(sizes(oos), [15100, 3100, 5500]);
  assert.ok(oos.labels.includes('oos'));
});

test('snips: 7 intents, validate_* as test, validation carved from train, UTF-8 damage skipped with file:line', (t) => {
  if (!needs(t, 'snips')) return;
  const d = loadDataset({ dataset: 'snips' });
  assert.equal(d.labels.length, 7);
  assert.equal(d.test.length, 700);
  assert.equal(d.train.length + d.validation.length, 13784 - d.skipped.length);
  for (const b of d.skipped) assert.match(b.reason, /^invalid UTF-8/);
  assert.ok(d.skipped.every((b) => /train_PlayMusic_full\.json$/.test(b.file) && b.line > 0));
  assert.ok(!d.train.some((x) => x.text.includes('\uFFFD')));
  assert.throws(() => loadDataset({ dataset: 'snips', onBadLine: 'error' }), (e: unknown) => e instanceof DatasetError && /train_PlayMusic_full\.json:\d+: invalid UTF-8/.test(e.message));
});

test('massive-en: 60 intents, 11514 / 2033 / 2974', (t) => {
  if (!needs(t, 'massive-en')) return;
  const d = loadDataset({ dataset: 'massive-en' });
  assert.deepEqual(sizes(d), [11514, 2033, 2974]);
  assert.equal(d.labels.length, 60);
});

test('slurp: intent / scenario / action label sets; train + validation from devel', (t) => {
  if (!needs(t, 'slurp')) return;
  const d = loadDataset({ dataset: 'slurp' });
  assert.equal(d.train.length + d.validation.length, 2033);
  assert.deepEqual(Object.keys(d.extraLabels), ['scenario', 'action']);
  assert.equal(d.extraLabels['scenario']!.length, 18);
  assert.ok(d.test.length + d.skipped.length === 2974 && d.skipped.every((b) => b.reason.startsWith('unknown label')));
  for (const [set, n] of [['scenario', 18], ['action', 45]] as const) {
    const s = loadDataset({ dataset: 'slurp', labelSet: set });
    assert.equal(s.labels.length, n);
    assert.ok('intent' in s.extraLabels);
  }
});

// ---------------------------------------------------------------- custom_intent_v2

test('custom_intent_v2: >= 20 intents, >= 150 utterances each, no text in two splits', () => {
  const d = loadDataset({ dataset: 'custom_intent_v2' });
  assert.ok(d.labels.length >= 20, `${d.labels.length} intents`);
  const per = new Map<string, number>();
  for (const x of [...d.train, ...d.validation, ...d.test]) per.set(x.label, (per.get(x.label) ?? 0) + 1);
  for (const [label, n] of per) assert.ok(n >= 150, `${label}: ${n}`);
  const seen = new Map<string, string>();
  for (const [name, split] of [['train', d.train], ['validation', d.validation], ['test', d.test]] as const) {
    for (const x of split) {
      assert.ok(!seen.has(x.text) || seen.get(x.text) === name, `'${x.text}' in ${seen.get(x.text)} and ${name}`);
      seen.set(x.text, name);
    }
  }
  assert.equal(d.skipped.length, 0);
});

test('custom_intent_v2: the generator reproduces the committed files byte for byte', () => {
  const out = join(dir, 'regen');
  const r = spawnSync(process.execPath, [join(packageRoot(), 'scripts', 'gen-custom-intent.mjs'), '--out', out], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  for (const split of ['train', 'validation', 'test']) {
    const committed = readFileSync(join(packageRoot(), 'datasets', 'custom_intent_v2', `${split}.jsonl`));
    assert.ok(committed.equals(readFileSync(join(out, `${split}.jsonl`))), `${split}.jsonl differs from the generator's output`);
  }
});

test('custom_intent_v2 is not keyword-separable: the bag-of-words baseline stays well below the fine-tuned model', () => {
  // The main job's fine-tuned model scores 93.5% on this test split and this baseline 83.6% (README); the baseline
  // must stay clearly below, or the main job's headline shows nothing that fine-tuning adds.
  const r = bowBaseline(loadDataset({ dataset: 'custom_intent_v2' }));
  assert.ok(r.accuracy < 0.86, `bag-of-words test accuracy ${r.accuracy}`);
  assert.ok(r.accuracy > 0.6, `bag-of-words test accuracy ${r.accuracy}: the intents should still be learnable from words`);
});

test('custom_intent_v2: most test utterances hold a word that training never shows (held-out phrasings and slot values)', () => {
  const d = loadDataset({ dataset: 'custom_intent_v2' });
  const seen = new Set(d.train.flatMap((e) => bowTokens(e.text)));
  const novel = d.test.filter((e) => bowTokens(e.text).some((w) => !seen.has(w))).length / d.test.length;
  assert.ok(novel > 0.5, `${(100 * novel).toFixed(1)}% of test utterances have an unseen word`); // 72.4% today (15.7% before)
});
