/**
 * Parquet (the format the Hugging Face Hub serves datasets in) to raw records, through hyparquet: one record
 * per row, nested columns (a `messages` list of structs) as JS arrays and objects, 64-bit integers as numbers
 * where they fit. Snappy, gzip, brotli and uncompressed files read as they are; zstd and lz4 need the
 * `hyparquet-compressors` package (a DatasetError says so). `line` is the 1-based row number.
 */
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import { existsSync } from 'node:fs';
import { DatasetError } from '../errors.js';
import type { RawRecord } from './readers.js';

function plain(v: unknown): unknown {
  if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === 'object' && !(v instanceof Date) && !(v instanceof Uint8Array)) {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) o[k] = plain(x);
    return o;
  }
  return v;
}

/** Every row of a Parquet file as { file, line: row number (1-based), value: the row object }. */
export async function readParquetRecords(file: string): Promise<RawRecord[]> {
  if (!existsSync(file)) throw new DatasetError(`dataset file '${file}' does not exist`);
  let rows: Record<string, unknown>[];
  try {
    const buf = await asyncBufferFromFile(file);
    const metadata = await parquetMetadataAsync(buf);
    rows = await parquetReadObjects({ file: buf, metadata });
  } catch (e) {
    const msg = (e as Error).message;
    const codec = /(ZSTD|LZ4|LZO|BROTLI)/i.exec(msg);
    throw new DatasetError(`${file}: cannot read as Parquet: ${msg}${codec ? ` (the ${codec[1]} codec needs the 'hyparquet-compressors' package)` : ''}`, { cause: e });
  }
  return rows.map((r, i) => ({ file, line: i + 1, value: plain(r) }));
}
