#!/usr/bin/env node
// Generates custom_intent_v2, the project's embedded default dataset: utterances of 25 personal-assistant intents
// that share their vocabulary (set / cancel / list / snooze an alarm; play / pause / skip music; add / remove / read
// the shopping list; the weather now / later / rain; ...), from our own templates and word lists
// (custom-intent/intents.mjs, custom-intent/slots.mjs), with typos (character swaps, drops, doubles, near keys),
// casing and punctuation variation. Deterministic: a fixed seed and integer-only random numbers, so the output is
// byte-for-byte the same on every run and machine.
//
//   node scripts/gen-custom-intent.mjs [--out DIR]    (default DIR: datasets/custom_intent_v2)
//
// What makes it a test of generalisation rather than of keyword matching: phrasings and slot values marked '~' in
// the word lists are held out of training. Each intent gets TRAIN_PER_INTENT training utterances made only of the
// rest, and EVAL_PER_INTENT utterances split evenly into validation and test, where a held-out template is drawn
// with probability P_HELD.template, a held-out alternative at a choice with P_HELD.phrase and a held-out slot value
// with P_HELD.slot. So the test split asks for the same intents in words and with names, cities, times and items that
// training never showed (a bag-of-words model can only ignore them; a pretrained encoder may know what they mean).
// Utterances are unique over the whole dataset after normalisation (case, punctuation); lines are
// {"text": ..., "label": ...}.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { INTENTS } from './custom-intent/intents.mjs';
import { SLOTS } from './custom-intent/slots.mjs';

const SEED = 20261201;
const TRAIN_PER_INTENT = 140;
const EVAL_PER_INTENT = 60; // half validation, half test
const P_HELD = { template: 0.25, phrase: 0.5, slot: 1 };
const TYPO_RATE = 0.3;

// ---- seeded random numbers (mulberry32: 32-bit integer state, Math.imul only) ----
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = rng(SEED);
const pick = (xs) => xs[Math.floor(rand() * xs.length)];
const chance = (p) => rand() < p;
function shuffle(xs) {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [xs[i], xs[j]] = [xs[j], xs[i]];
  }
  return xs;
}

// ---- expansion ----
const HELD = '~';
const isHeld = (x) => x.startsWith(HELD);
const unheld = (x) => (isHeld(x) ? x.slice(1) : x);

/**
 * Picks from `options` (some '~held'): in training only unheld ones; otherwise a held one with probability `pHeld`
 * when there is one. Returns the option without its mark.
 */
function choose(options, held, pHeld, where) {
  const seen = options.filter((o) => !isHeld(o)), out = options.filter(isHeld);
  if (!held) {
    if (seen.length === 0) throw new Error(`only held-out options in ${where}`);
    return pick(seen);
  }
  return unheld(out.length > 0 && (seen.length === 0 || chance(pHeld)) ? pick(out) : pick(seen));
}

/** Expands (a|b), [x] and {slot} in `t` with the seeded generator; `held`: held-out options may be drawn. */
function expand(t, held) {
  let out = '';
  for (let i = 0; i < t.length; i++) {
    const c = t[i];
    if (c === '(' || c === '[') {
      const close = c === '(' ? ')' : ']';
      let depth = 0;
      let j = i;
      for (; j < t.length; j++) {
        if (t[j] === '(' || t[j] === '[') depth++;
        else if (t[j] === ')' || t[j] === ']') depth--;
        if (depth === 0) break;
      }
      if (t[j] !== close) throw new Error(`unbalanced template: ${t}`);
      const options = splitTop(t.slice(i + 1, j));
      if (c === '(' || chance(0.5)) out += expand(choose(options, held, P_HELD.phrase, t), held);
      i = j;
    } else if (c === '{') {
      const j = t.indexOf('}', i);
      const name = t.slice(i + 1, j);
      if (!SLOTS[name]) throw new Error(`unknown slot {${name}} in ${t}`);
      out += choose(SLOTS[name], held, P_HELD.slot, `{${name}}`);
      i = j;
    } else out += c;
  }
  return out;
}
/** Splits `a|b(c|d)|e` at top-level bars. */
function splitTop(s) {
  const parts = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '(' || s[i] === '[') depth++;
    else if (s[i] === ')' || s[i] === ']') depth--;
    else if (s[i] === '|' && depth === 0) {
      parts.push(s.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(s.slice(start));
  return parts;
}

// ---- surface noise ----
const PREFIXES = ['hey assistant ', 'hey, ', 'ok ', 'assistant, ', 'um ', 'so ', 'quick one: ', 'excuse me, '];
const SUFFIXES = [' please', ' thanks', ' now', ' asap', ' for me', ' thank you'];
const NEAR = { a: 'sq', e: 'wr', i: 'uo', o: 'ip', u: 'yi', n: 'bm', m: 'n', r: 'et', t: 'ry', s: 'ad', l: 'k', h: 'gj', c: 'xv', d: 'sf' };

function typo(s) {
  const letters = [];
  for (let i = 0; i < s.length; i++) if (/[a-z]/.test(s[i])) letters.push(i);
  if (letters.length < 4) return s;
  const i = pick(letters);
  const kind = Math.floor(rand() * 4);
  if (kind === 0 && /[a-z]/.test(s[i + 1] ?? '')) return s.slice(0, i) + s[i + 1] + s[i] + s.slice(i + 2); // swap
  if (kind === 1) return s.slice(0, i) + s.slice(i + 1); // drop
  if (kind === 2) return s.slice(0, i) + s[i] + s.slice(i); // double
  const near = NEAR[s[i]];
  return near ? s.slice(0, i) + pick([...near]) + s.slice(i + 1) : s.slice(0, i) + s.slice(i + 1);
}

function surface(s) {
  s = s.replace(/\s+/g, ' ').replace(/ ,/g, ',').replace(/ :/g, ':').trim();
  if (chance(0.12)) s = pick(PREFIXES) + s;
  if (chance(0.06)) s += pick(SUFFIXES);
  if (chance(TYPO_RATE)) s = typo(s);
  if (chance(0.08)) s = typo(s);
  const question = /^(what|how|is|are|do(?! not)|does|did|has|have|will|when|where|which|who|should|am|any|can|could)\b/.test(s.replace(/^(hey assistant |hey, |ok |assistant, |um |so |quick one: |excuse me, )/, ''));
  const r = rand();
  if (question) s += r < 0.45 ? '?' : r < 0.5 ? '.' : '';
  else s += r < 0.15 ? '.' : r < 0.2 ? '!' : '';
  const c = rand();
  if (c < 0.22) s = s[0].toUpperCase() + s.slice(1);
  else if (c < 0.23) s = s.toUpperCase();
  else if (c < 0.26) s = s.replace(/\b[a-z]/g, (m) => m.toUpperCase());
  return s;
}

const norm = (s) => s.toLowerCase().replace(/[^a-z0-9 ]+/g, '').replace(/\s+/g, ' ').trim();

// ---- generate ----
/** `n` utterances of `label` unique over `seen` (normalised): training ones (`held` false) or held-out ones. */
function utterances(label, templates, n, held, seen) {
  const out = [];
  for (let tries = 0; out.length < n; tries++) {
    if (tries > n * 500) throw new Error(`intent '${label}': only ${out.length} unique ${held ? 'held-out' : 'training'} utterances`);
    const template = choose(templates, held, P_HELD.template, label);
    const text = surface(expand(template, held));
    const key = norm(text);
    if (key === '' || seen.has(key)) continue;
    seen.add(key);
    out.push(text);
  }
  return out;
}

function generate() {
  const seen = new Set();
  const splits = { train: [], validation: [], test: [] };
  for (const [label, templates] of Object.entries(INTENTS)) {
    const train = utterances(label, templates, TRAIN_PER_INTENT, false, seen);
    const held = shuffle(utterances(label, templates, EVAL_PER_INTENT, true, seen));
    splits.train.push(...train.map((text) => ({ text, label })));
    splits.validation.push(...held.slice(0, EVAL_PER_INTENT / 2).map((text) => ({ text, label })));
    splits.test.push(...held.slice(EVAL_PER_INTENT / 2).map((text) => ({ text, label })));
  }
  for (const k of Object.keys(splits)) shuffle(splits[k]);
  return splits;
}

function main() {
  const args = process.argv.slice(2);
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  const at = args.indexOf('--out');
  const out = at >= 0 ? path.resolve(args[at + 1] ?? '') : path.join(root, 'datasets', 'custom_intent_v2');
  const splits = generate();
  mkdirSync(out, { recursive: true });
  for (const [name, rows] of Object.entries(splits)) {
    writeFileSync(path.join(out, `${name}.jsonl`), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  }
  const counts = Object.entries(splits).map(([k, v]) => `${k} ${v.length}`).join(', ');
  console.log(`custom_intent_v2: ${Object.keys(INTENTS).length} intents, ${counts} -> ${out}`);
}

main();
