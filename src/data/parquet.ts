/**
 * Parquet (the format the Hugging Face Hub serves datasets in) to raw records, through hyparquet: one record
 * per row, nested columns (a `messages` list of structs) as JS arrays and objects, 64-bit integers as numbers
 * where they fit. Snappy, gzip, brotli and uncompressed files read as they are; zstd and lz4 need the
 * `hyparquet-compressors` package (a DatasetError says so). `line` is the 1-based row number.
 *
 * The file is decoded in a worker thread with a time limit and a heap limit: a damaged file can send hyparquet
 * into a loop that never returns (found by the fault suite's Parquet fuzzer: a mutated page header), and a
 * hostile one can announce sizes that allocate without bound. Either ends as a DatasetError naming the file; the
 * worker is terminated, the process goes on. The clock starts once the worker has loaded hyparquet:
 * 2 s + 2 s per MB of file (AUTOGLM_PARQUET_TIMEOUT_MS sets it); the heap limit is 1 GiB + 16x the file.
 */
import { existsSync, statSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { ConfigError, DatasetError } from '../errors.js';
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
  const rows = await decodeInWorker(file);
  return rows.map((r, i) => ({ file, line: i + 1, value: plain(r) }));
}

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
(async () => {
  try {
    const hp = await import(workerData.hyparquet);
    parentPort.postMessage({ type: 'started' });
    const file = await hp.asyncBufferFromFile(workerData.file);
    const metadata = await hp.parquetMetadataAsync(file);
    parentPort.postMessage({ type: 'rows', rows: await hp.parquetReadObjects({ file, metadata }) });
  } catch (e) {
    parentPort.postMessage({ type: 'error', message: String((e && e.message) || e) });
  }
})();
`;

function timeLimitMs(bytes: number): number {
  const env = process.env.AUTOGLM_PARQUET_TIMEOUT_MS;
  if (env !== undefined) {
    const v = Number(env);
    if (!(Number.isFinite(v) && v > 0)) throw new ConfigError(`AUTOGLM_PARQUET_TIMEOUT_MS must be a positive number of milliseconds; got '${env}'`);
    return v;
  }
  return 2000 + 2000 * (bytes / 2 ** 20);
}

function decodeInWorker(file: string): Promise<Record<string, unknown>[]> {
  const bytes = statSync(file).size;
  const limit = timeLimitMs(bytes);
  const worker = new Worker(WORKER_SOURCE, {
    eval: true, execArgv: [], env: {},
    workerData: { file, hyparquet: import.meta.resolve('hyparquet') },
    resourceLimits: { maxOldGenerationSizeMb: 1024 + Math.ceil((16 * bytes) / 2 ** 20) },
  });
  return new Promise((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const fail = (msg: string, cause?: unknown): void => {
      finish();
      const codec = /(ZSTD|LZ4|LZO|BROTLI)/i.exec(msg);
      reject(new DatasetError(`${file}: cannot read as Parquet: ${msg}${codec ? ` (the ${codec[1]} codec needs the 'hyparquet-compressors' package)` : ''}`, cause === undefined ? undefined : { cause }));
    };
    const finish = (): void => {
      clearTimeout(timer);
      worker.removeAllListeners();
      worker.on('error', () => {});
      void worker.terminate();
    };
    worker.on('message', (m: { type: string; rows?: Record<string, unknown>[]; message?: string }) => {
      if (m.type === 'started') {
        timer = setTimeout(() => fail(`decoding took over ${Math.round(limit)} ms (a damaged file can make the Parquet decoder loop; AUTOGLM_PARQUET_TIMEOUT_MS raises the limit)`), limit);
      } else if (m.type === 'rows') {
        finish();
        resolve(m.rows!);
      } else fail(m.message ?? 'unknown error');
    });
    worker.on('error', (e: Error & { code?: string }) => fail(e.code === 'ERR_WORKER_OUT_OF_MEMORY' ? `decoding needs more memory than the file can justify (${e.message})` : e.message, e));
    worker.on('exit', (code) => fail(`the decoding thread exited with code ${code}`));
  });
}
