/**
 * File readers: JSONL, JSON and CSV to raw records with their file and line. Lines that cannot be read (invalid
 * JSON, invalid UTF-8, not an object) go to the bad-line sink; nothing here crashes on bad input.
 */
import { extname } from 'node:path';
import { DatasetError } from '../errors.js';
import type { BadLineSink } from './bad-lines.js';
import { arrayElementLines, lineOfOffset } from './json-lines.js';
import { readTextFile } from './text.js';

import { parseCsv, parseJsonl, UTF8_REASON, type RawRecord } from './parse.js';

export type { RawRecord } from './parse.js';

export type FileFormat = 'jsonl' | 'json' | 'csv';

export function formatOf(file: string): FileFormat {
  const ext = extname(file).toLowerCase();
  if (ext === '.jsonl' || ext === '.ndjson') return 'jsonl';
  if (ext === '.json') return 'json';
  if (ext === '.csv') return 'csv';
  throw new DatasetError(`'loadDataset' cannot read '${file}': extension '${ext}'; expected .jsonl, .json or .csv`);
}

export function readRecords(file: string, sink: BadLineSink): RawRecord[] {
  const format = formatOf(file);
  if (format === 'jsonl') return readJsonl(file, sink);
  if (format === 'csv') return readCsv(file, sink);
  const { records } = readJson(file, sink);
  return records;
}


/** One JSON object per line; blank lines are ignored. */
export function readJsonl(file: string, sink: BadLineSink): RawRecord[] {
  const { text, damagedLines } = readTextFile(file);
  return parseJsonl(text, damagedLines, file, sink);
}

/**
 * A JSON document: a top-level array of records, or an object whose array-valued keys hold records (all of them,
 * or only `keys`). Records on damaged lines are reported; an unparseable document is a DatasetError (no line to skip).
 * Returns the records with their key (the top-level key, '' for a top-level array).
 */
export function readJson(file: string, sink: BadLineSink, keys?: readonly string[]): { records: (RawRecord & { key: string })[]; doc: unknown } {
  const { text, damagedLines } = readTextFile(file);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    const msg = (e as Error).message;
    const line = jsonErrorLine(text, msg);
    throw new DatasetError(`${file}${line ? `:${line}` : ''}: invalid JSON document: ${msg}`, { cause: e });
  }
  const lines = arrayElementLines(text);
  const arrays: [string, unknown[]][] = [];
  if (Array.isArray(doc)) arrays.push(['', doc]);
  else if (doc !== null && typeof doc === 'object') {
    for (const [k, v] of Object.entries(doc)) if (Array.isArray(v) && (!keys || keys.includes(k))) arrays.push([k, v]);
  }
  if (arrays.length === 0) {
    throw new DatasetError(`${file}: JSON dataset holds no array of records; expected [ {...}, ... ] or { "<split>": [ ... ] }`);
  }
  // every record spans the lines from its start to the next record's start (over all arrays, in document order);
  // both lists sorted once and searched by bisection, so a file with many damaged lines stays O(n log n)
  const starts = Float64Array.from([...lines.values()].flat()).sort();
  const damaged = Float64Array.from(damagedLines.keys()).sort();
  const firstAbove = (sorted: Float64Array, x: number, orEqual: boolean): number => {
    let lo = 0, hi = sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (sorted[mid]! > x || (orEqual && sorted[mid] === x)) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  };
  const damageIn = (line: number): number | undefined => {
    const n = firstAbove(starts, line, false);
    const end = n < starts.length ? starts[n]! - 1 : Infinity;
    const d = firstAbove(damaged, line, true);
    return d < damaged.length && damaged[d]! <= end ? damaged[d] : undefined;
  };
  const records: (RawRecord & { key: string })[] = [];
  for (const [key, arr] of arrays) {
    const keyStarts = lines.get(key) ?? [];
    for (let i = 0; i < arr.length; i++) {
      const line = keyStarts[i] ?? 0;
      const hit = damaged.length > 0 ? damageIn(line) : undefined;
      if (hit !== undefined) { sink.report(file, hit, UTF8_REASON(damagedLines.get(hit)!)); continue; }
      records.push({ file, line, value: arr[i], key });
    }
  }
  return { records, doc };
}

/** The line of a JSON.parse error, from V8's message: 'line L', 'position N', the quoted context, or end of input. */
function jsonErrorLine(text: string, msg: string): number | undefined {
  const line = /\(line (\d+) column \d+\)/.exec(msg);
  if (line) return Number(line[1]);
  const pos = /at position (\d+)/.exec(msg);
  if (pos) return lineOfOffset(text, Number(pos[1]));
  if (/end of JSON input/.test(msg)) return lineOfOffset(text, text.trimEnd().length);
  // "Unexpected token 'X', "...context..." is not valid JSON": V8 quotes up to 10 characters either side
  const ctx = /^Unexpected token '([\s\S])', (\.\.\.)?"([\s\S]*)"(\.\.\.)? is not valid JSON$/.exec(msg);
  if (ctx) {
    const [, token, before, snippet, after] = ctx as unknown as [string, string, string | undefined, string, string | undefined];
    const at = text.indexOf(snippet);
    const offset = before ? 10 : after ? snippet.length - 10 : Math.max(0, snippet.indexOf(token));
    if (at >= 0) return lineOfOffset(text, at + offset);
  }
  return undefined;
}

/** CSV with a header row; fields by column name. */
export function readCsv(file: string, sink: BadLineSink): RawRecord[] {
  const { text, damagedLines } = readTextFile(file);
  return parseCsv(text, damagedLines, file, sink);
}
