/**
 * Node only: hands V8's full collection to the allocator (tensor/alloc.ts). It always runs at a few fixed points
 * (the end of a backward pass whose step made 512 MB of fresh buffers, around the fused LM loss's logits chunk);
 * with AUTOGLM_GC_MB set, also after every that many megabytes of fresh large buffers, each collection followed by
 * returning the heap's free pages to the OS (default 0 = between the fixed points, leave it to V8, which collects
 * every few hundred ms under external-memory pressure). Measured on gpt2-lora with 32, before the collection
 * after backward existed: peak RSS at its floor (int8 base 617-621 MB, f32 base 1072-1075, against about 650 /
 * 1110 by default), but cls-full's steps 20% slower (a forced collection is ~15-20 ms here), so it stays opt-in.
 * `gc` is reached through `--expose-gc` set at run time, the documented V8 flag, without asking users for a node
 * option.
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

/** What returns the heap's free pages (the backend's trimHeap; the backend module passes it when it installs this). */
let heapTrim: () => void = () => {};

export function installCollector(trimHeap: () => void = heapTrim): void {
  heapTrim = trimHeap;
  const raw = process.env['AUTOGLM_GC_MB'];
  const mb = raw === undefined || raw === '' ? DEFAULT_MB : Number(raw);
  if (!Number.isFinite(mb) || mb < 0) throw new ConfigError(`environment variable AUTOGLM_GC_MB is '${raw}'; expected a number of megabytes >= 0 (0 = off)`);
  let gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) {
    v8.setFlagsFromString('--expose-gc');
    gc = vm.runInNewContext('gc') as () => void;
  }
  fullGc = gc;
  setCollector({ full: gc, trim: trimHeap, everyBytes: mb * 2 ** 20 });
}
