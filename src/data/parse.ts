/**
 * Dataset records from decoded text: JSONL (one object per line) and CSV (a header row); each unusable line goes to
 * the bad-line sink with its number. readers.ts reads files with these; a page parses a dropped file's text. No file system.
 */
import { parse as parseCsvText } from 'csv-parse/sync';
import { DatasetError } from '../errors.js';
import type { BadLineSink } from './bad-lines.js';

export interface RawRecord {
  file: string;
  line: number;
  value: unknown;
}

export const UTF8_REASON = (n: number) => `invalid UTF-8: ${n} byte sequence${n > 1 ? 's' : ''} that are not UTF-8`;

/** One JSON object per line; blank lines are ignored. `file` names the source in reports. */
export function parseJsonl(text: string, damagedLines: Map<number, number>, file: string, sink: BadLineSink): RawRecord[] {
  const lines = text.split('\n');
  const out: RawRecord[] = [];
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!.trim();
    if (raw === '') continue;
    const line = i + 1;
    const damage = damagedLines.get(line);
    if (damage) { sink.report(file, line, UTF8_REASON(damage)); continue; }
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (e) {
      sink.report(file, line, `invalid JSON: ${(e as Error).message}`);
      continue;
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      sink.report(file, line, `not a JSON object: ${raw.slice(0, 60)}`);
      continue;
    }
    out.push({ file, line, value });
  }
  return out;
}

/** CSV with a header row; `file` names the source in reports. */
export function parseCsv(text: string, damagedLines: Map<number, number>, file: string, sink: BadLineSink): RawRecord[] {
  let rows: { record: Record<string, string>; info: { lines: number }; raw: string }[];
  try {
    rows = parseCsvText(text, { columns: true, bom: true, skip_empty_lines: true, relax_column_count: true, info: true, raw: true }) as typeof rows;
  } catch (e) {
    const err = e as Error & { lines?: number };
    throw new DatasetError(`${file}${err.lines ? `:${err.lines}` : ''}: invalid CSV: ${err.message}`, { cause: e });
  }
  const out: RawRecord[] = [];
  for (const { record, info, raw } of rows) {
    // info.lines is the record's last line; a quoted field may span several
    const first = info.lines - (raw.trim().match(/\n/g)?.length ?? 0);
    let damage = 0;
    let at = first;
    for (let l = first; l <= info.lines; l++) if (damagedLines.has(l)) { damage += damagedLines.get(l)!; at = l; }
    if (damage) { sink.report(file, at, UTF8_REASON(damage)); continue; }
    out.push({ file, line: first, value: record });
  }
  return out;
}
