/** Bad-line policy: collect the report of each unusable line, or stop at the first with a DatasetError. */
import { DatasetError } from '../errors.js';
import type { BadLine, BadLinePolicy } from './types.js';

export class BadLineSink {
  readonly skipped: BadLine[] = [];
  constructor(readonly policy: BadLinePolicy) {}

  /** Reports `file:line` as bad: throws under 'error', records it under 'skip'. */
  report(file: string, line: number, reason: string): void {
    if (this.policy === 'error') {
      throw new DatasetError(`${file}:${line}: ${reason} (onBadLine 'error'; use onBadLine 'skip' to skip such lines with a count)`);
    }
    this.skipped.push({ file, line, reason });
  }
}

/** Counts of skipped lines by reason (the reason up to its first ':'), for summaries. */
export function summarizeSkipped(skipped: readonly BadLine[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const b of skipped) {
    const key = b.reason.split(':')[0]!;
    out[key] = (out[key] ?? 0) + 1;
  }
  return out;
}
