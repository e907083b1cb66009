/** Raw records to examples: field lookup, label maps, and the reports for missing or malformed fields. */
import type { BadLineSink } from './bad-lines.js';
import type { RawRecord } from './parse.js';
import type { Example } from './types.js';

/** An example with the file and line it came from (for reports after the split). */
export interface Located {
  ex: Example;
  file: string;
  line: number;
}

export interface Fields {
  text: string;
  /** The primary label's field. */
  label: string;
  /** Other label sets: set name -> field. */
  extra?: Record<string, string>;
  /**
   * Several label sets from a user file (DatasetSpec.labelFields): a label may be absent, null or empty (''
   * : no label of that set), but a record needs one of them.
   */
  optional?: boolean;
}

/** A label value as a string: strings as they are, finite numbers and booleans printed; anything else undefined. */
function labelValue(v: unknown): string | undefined {
  if (typeof v === 'string') return v.trim() === '' ? undefined : v.trim();
  if ((typeof v === 'number' && Number.isFinite(v)) || typeof v === 'boolean') return String(v);
  return undefined;
}

/** Picks text and labels from each record; a record without them is reported to the sink and left out. */
export function toExamples(records: readonly RawRecord[], fields: Fields, sink: BadLineSink, labelMap?: Record<string, string>): Located[] {
  const out: Located[] = [];
  const map = (l: string) => (labelMap && Object.hasOwn(labelMap, l) ? labelMap[l]! : l);
  for (const rec of records) {
    const obj = rec.value as Record<string, unknown>;
    if (obj === null || typeof obj !== 'object') { sink.report(rec.file, rec.line, 'not an object: expected a record with named fields'); continue; }
    const text = obj[fields.text];
    if (!Object.hasOwn(obj, fields.text)) { sink.report(rec.file, rec.line, `missing field: '${fields.text}' (text field)`); continue; }
    if (typeof text !== 'string' || text.trim() === '') {
      sink.report(rec.file, rec.line, `bad field: '${fields.text}' (text field) is ${typeof text === 'string' ? 'empty' : typeof text}; expected a non-empty string`);
      continue;
    }
    const label = (field: string, what: string): string | { bad: string } => {
      if (fields.optional && (obj[field] === undefined || obj[field] === null || obj[field] === '')) return '';
      const bad = missingLabel(obj, field, what);
      return bad ? { bad } : labelValue(obj[field])!;
    };
    const primary = label(fields.label, 'label field');
    if (typeof primary !== 'string') { sink.report(rec.file, rec.line, primary.bad); continue; }
    let extra: Record<string, string> | undefined;
    let extraBad: string | undefined;
    for (const [set, field] of Object.entries(fields.extra ?? {})) {
      const v = label(field, `label set '${set}'`);
      if (typeof v !== 'string') { extraBad = v.bad; break; }
      (extra ??= {})[set] = v;
    }
    if (extraBad) { sink.report(rec.file, rec.line, extraBad); continue; }
    if (fields.optional && primary === '' && Object.values(extra ?? {}).every((v) => v === '')) {
      sink.report(rec.file, rec.line, `no label: none of the label fields ${[fields.label, ...Object.values(fields.extra ?? {})].map((f) => `'${f}'`).join(', ')} has a value`);
      continue;
    }
    const ex: Example = { text: text.trim(), label: primary === '' ? '' : map(primary) };
    if (extra) ex.extra = extra;
    out.push({ ex, file: rec.file, line: rec.line });
  }
  return out;
}

function missingLabel(obj: Record<string, unknown>, field: string, what: string): string | undefined {
  if (!Object.hasOwn(obj, field)) return `missing field: '${field}' (${what})`;
  if (labelValue(obj[field]) === undefined) return `bad field: '${field}' (${what}) is ${JSON.stringify(obj[field])}; expected a non-empty string or a number`;
  return undefined;
}
