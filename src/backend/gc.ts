/**
 * Node only: hands V8's full collection to the allocator (tensor/alloc.ts) so dead activations are freed every
 * AUTOGLM_GC_MB megabytes of fresh large buffers (default 0 = leave it to V8: on GPT-2 small it did not lower
 * the step's peak, measured with 128 and 256; the option stays for workloads where it does). `gc` is reached through
 * `--expose-gc` set at run time, the documented V8 flag, without asking users for a node option.
 */
import v8 from 'node:v8';
import vm from 'node:vm';
import { ConfigError } from '../errors.js';
import { setCollector } from '../tensor/alloc.js';

const DEFAULT_MB = 0;
let fullGc: (() => void) | null = null;

/** A full collection now (benchmarks, before measuring a phase's peak); installs the collector if need be. */
export function collectNow(): void {
  if (!fullGc) installCollector();
  fullGc?.();
}

export function installCollector(): void {
  const raw = process.env['AUTOGLM_GC_MB'];
  const mb = raw === undefined || raw === '' ? DEFAULT_MB : Number(raw);
  if (!Number.isFinite(mb) || mb < 0) throw new ConfigError(`environment variable AUTOGLM_GC_MB is '${raw}'; expected a number of megabytes >= 0 (0 = off)`);
  let gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) {
    v8.setFlagsFromString('--expose-gc');
    gc = vm.runInNewContext('gc') as () => void;
  }
  fullGc = gc;
  setCollector(mb === 0 ? null : gc, mb * 2 ** 20, gc);
}
