/**
 * Synthetic chat tasks with a checkable answer, for SFT runs whose learning is visible without pretrained
 * weights: each example is a user question and the one right assistant answer.
 *
 * - 'addition': "what is 482+037?" -> "0519" (operands of `digits` digits and the sum of digits + 1, zero-padded:
 *   every question has the same layout, so a small model learns the digit alignment quickly);
 * - 'reverse': "reverse kqzv" -> "vzqk" (3..8 letters);
 * - 'lookup': "a=4 c=9 f=1 k=7. what is c?" -> "9" (4 keys).
 *
 * Generation is seeded (a counter-based Rng), so a seed gives the same data everywhere; `splitDisjoint` keeps the
 * held-out prompts out of the training set.
 */
import { Rng } from '../backend/rng.js';
import { ConfigError } from '../errors.js';
import { shuffleInPlace } from '../data/split.js';
import type { ChatMessage } from './types.js';

export const SYNTHETIC_TASKS = ['addition', 'reverse', 'lookup'] as const;
export type SyntheticTask = (typeof SYNTHETIC_TASKS)[number];

export interface SyntheticExample {
  messages: ChatMessage[];
}

const LETTERS = 'abcdefghijklmnopqrstuvwxyz';

function int(rng: Rng, lo: number, hi: number): number {
  return lo + Math.floor(rng.uniform() * (hi - lo + 1));
}

/** One question and its answer. */
export function syntheticPair(task: SyntheticTask, rng: Rng, digits = 3): { question: string; answer: string } {
  switch (task) {
    case 'addition': {
      const max = 10 ** digits - 1;
      const a = int(rng, 0, max), b = int(rng, 0, max);
      const pad = (x: number, w: number) => String(x).padStart(w, '0');
      return { question: `what is ${pad(a, digits)}+${pad(b, digits)}?`, answer: pad(a + b, digits + 1) };
    }
    case 'reverse': {
      const n = int(rng, 3, 8);
      let w = '';
      for (let i = 0; i < n; i++) w += LETTERS[int(rng, 0, 25)];
      return { question: `reverse ${w}`, answer: [...w].reverse().join('') };
    }
    case 'lookup': {
      const keys = shuffleInPlace([...LETTERS], rng).slice(0, 4);
      const vals = keys.map(() => int(rng, 0, 9));
      const q = int(rng, 0, 3);
      return { question: `${keys.map((k, i) => `${k}=${vals[i]}`).join(' ')}. what is ${keys[q]}?`, answer: String(vals[q]) };
    }
  }
}

export interface SyntheticOptions {
  task: SyntheticTask;
  /** Training examples. */
  train: number;
  /** Held-out examples, none of whose questions appears in train. */
  test: number;
  seed?: number;
  /** Operand digits for 'addition' (default 3). */
  digits?: number;
}

/** Train and held-out conversations; a question is never in both. */
export function syntheticSplits(o: SyntheticOptions): { train: SyntheticExample[]; test: SyntheticExample[] } {
  if (!SYNTHETIC_TASKS.includes(o.task)) throw new ConfigError(`synthetic task '${o.task}'; expected one of ${SYNTHETIC_TASKS.join(', ')}`);
  const rng = new Rng(o.seed ?? 0);
  const seen = new Set<string>();
  const make = (n: number): SyntheticExample[] => {
    const out: SyntheticExample[] = [];
    let tries = 0;
    while (out.length < n) {
      if (++tries > 50 * (n + 10)) throw new ConfigError(`synthetic task '${o.task}' has too few distinct questions for ${o.train} + ${o.test} examples`);
      const { question, answer } = syntheticPair(o.task, rng, o.digits ?? 3);
      if (seen.has(question)) continue;
      seen.add(question);
      out.push({ messages: [{ role: 'user', content: question }, { role: 'assistant', content: answer }] });
    }
    return out;
  };
  const test = make(o.test);
  return { train: make(o.train), test };
}
