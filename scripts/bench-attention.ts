/**
 * The native fused attention kernels alone, forward and backward, on the workloads' shapes, long causal rows and packed
 * rows (causal, each query's first key its document's start), each checkout in its own process, alternated.
 *
 *   node --import tsx scripts/bench-attention.ts [--other <dir>] [--repeat 3] [--calls 10] [--threads 2] [--bf16] [--only <text>]
 *
 * Prints per shape the median over alternations of each process's median call time (ms), and with --other the ratio
 * ours / other (paired: the median of the ratios within each alternation). --other <dir>: another checkout (built:
 * build/ and node_modules), before / after a kernel change on a loaded machine. --bf16: the bf16 kernel
 * (attentionBf16: on AMX its tiles, and its batched products with the tiles off; elsewhere the batched products,
 * oneDNN's where the CPU has bf16, widened otherwise) beside the f32 one in each process, for where autocast should
 * switch from one to the other (src/tensor/ops/attention-bf16.ts). --only: the shapes whose name holds the text. Each process also reports its peak RSS (MB): the kernels' per-thread scratch, kept
 * between calls, grows to the largest case run (use --only for one case's).
 */
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import type { AttentionShape } from '../src/backend/backend.js';
import { Rng } from '../src/backend/rng.js';
import { median } from '../src/bench/measure.js';

const HERE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

interface Case { name: string; B: number; H: number; T: number; D: number; causal: boolean; doc?: number; pad?: number }
const CASES: Case[] = [
  { name: 'cls (B64 H4 T32 D64)', B: 64, H: 4, T: 32, D: 64, causal: false },
  { name: 'block (B8 H4 T128 D64 causal)', B: 8, H: 4, T: 128, D: 64, causal: true },
  { name: 'gpt2 (B8 H12 T128 D64 causal)', B: 8, H: 12, T: 128, D: 64, causal: true },
  { name: 'padded (B32 H4 T160 D32 causal, a key mask on the last 20%)', B: 32, H: 4, T: 160, D: 32, causal: true, pad: 0.2 },
  // where autocast switches kernels: BF16_ATTENTION_MIN_T (64 tokens) and BF16_ATTENTION_MIN_SHARE (the share of the
  // scores visible: causal just over half; a row of L-token documents leaves (L + 1) / 2T of them: 12.9% at L = 32, 25.4% at L = 64)
  { name: 'short (B64 H4 T64 D64 causal)', B: 64, H: 4, T: 64, D: 64, causal: true },
  { name: 'full (B16 H4 T64 D64)', B: 16, H: 4, T: 64, D: 64, causal: false },
  { name: 'full (B8 H12 T128 D64)', B: 8, H: 12, T: 128, D: 64, causal: false },
  { name: 'full (B4 H12 T256 D64)', B: 4, H: 12, T: 256, D: 64, causal: false },
  { name: 'sft-packed (B8 H12 T128 D64, 32-token docs)', B: 8, H: 12, T: 128, D: 64, causal: true, doc: 32 },
  { name: 'sft-packed (B8 H12 T128 D64, 64-token docs)', B: 8, H: 12, T: 128, D: 64, causal: true, doc: 64 },
  { name: 'long (B1 H12 T1024 D64 causal)', B: 1, H: 12, T: 1024, D: 64, causal: true },
  { name: 'long (B1 H12 T1024 D64)', B: 1, H: 12, T: 1024, D: 64, causal: false },
  { name: 'packed (B3 H4 T1024 D32, 48-token docs)', B: 3, H: 4, T: 1024, D: 32, causal: true, doc: 48 },
  { name: 'packed (B1 H12 T2048 D64, 300-token docs)', B: 1, H: 12, T: 2048, D: 64, causal: true, doc: 300 },
];

type Times = Record<string, number>; // "<case> f32|bf16[ tiles|batched] fwd|bwd" -> median ms

async function child(root: string, calls: number, bf16: boolean, only: string): Promise<Times> {
  // the checkout's backend, and its switch of the bf16 kernel's AMX tiles where it has one (an older --other may not)
  const { loadNativeBackend, attentionBf16Tiles: tilesSwitch } = (await import(path.join(root, 'src/backend/native.ts'))) as
    Pick<typeof import('../src/backend/native.js'), 'loadNativeBackend'> & { attentionBf16Tiles?: (on?: boolean) => boolean };
  const be = loadNativeBackend();
  const tiles = tilesSwitch?.() ?? false; // asked once: the cases below switch them off and on
  const rng = new Rng(1);
  const rand = (n: number) => Float32Array.from({ length: n }, () => 2 * rng.uniform() - 1);
  const out: Times = {};
  for (const c of CASES.filter((x) => x.name.includes(only))) {
    const { B, H, T, D } = c, C = 3 * H * D;
    const qkv = rand(B * T * C), dqkv = new Float32Array(B * T * C), dout = rand(B * T * H * D);
    const [q, k, v] = [0, 1, 2].map((i) => qkv.subarray(i * H * D));
    const [dq, dk, dv] = [0, 1, 2].map((i) => dqkv.subarray(i * H * D));
    const st: [number, number, number] = [T * C, D, C], os_: [number, number, number] = [T * H * D, D, H * D];
    const s: AttentionShape = { B, H, Hkv: H, Tq: T, Tk: T, D, Dv: D, qStrides: st, kStrides: st, vStrides: st, outStrides: os_, scale: 1 / Math.sqrt(D), causal: c.causal };
    const fk = c.doc ? Int32Array.from({ length: B * T }, (_, i) => Math.floor((i % T) / c.doc!) * c.doc!) : null;
    const km = c.pad ? Float32Array.from({ length: B * T }, (_, i) => (i % T >= T * (1 - c.pad!) ? 1 : 0)) : null;
    const o = new Float32Array(B * T * H * D), stats = new Float32Array(B * H * T * 2);
    const kernels: [string, () => void, () => void][] = [['f32',
      () => be.attention(s, q, k, v, km, fk, o, stats),
      () => be.attentionBackward(s, q, k, v, km, fk, stats, dout, os_, dq, dk, dv)]];
    if (bf16 && be.attentionBf16 && be.attentionBf16Backward) {
      const [ql, kl, vl] = [0, 1, 2].map(() => new Uint16Array(B * H * T * D));
      // with AMX: the tiles (the kernel's default there), and the batched products beside them (tiles off)
      for (const [name, on] of (tiles ? [['bf16 tiles', true], ['bf16 batched', false]] : [['bf16', false]]) as [string, boolean][]) {
        const set = () => tilesSwitch?.(on);
        kernels.push([name,
          () => { set(); be.attentionBf16!(s, q, k, v, km, fk, o, stats, ql, kl, vl); },
          () => { set(); be.attentionBf16Backward!(s, ql, kl, vl, km, fk, stats, dout, os_, dq, dk, dv); }]); // dq, dk, dv at q's, k's, v's strides
      }
    }
    for (const [dt, fwd, bwd] of kernels) {
      const tf: number[] = [], tb: number[] = [];
      for (let r = 0; r < calls + 2; r++) {
        let t0 = performance.now();
        fwd();
        const f = performance.now() - t0;
        t0 = performance.now();
        bwd();
        if (r >= 2) { tf.push(f); tb.push(performance.now() - t0); }
      }
      out[`${c.name} ${dt} fwd`] = median(tf);
      out[`${c.name} ${dt} bwd`] = median(tb);
    }
  }
  tilesSwitch?.(tiles); // as found
  out['peak RSS (MB)'] = process.resourceUsage().maxRSS / 1024; // the kernels' scratch, kept per thread, is most of it
  return out;
}

const { values: a } = parseArgs({ options: {
  other: { type: 'string' }, repeat: { type: 'string', default: '3' }, calls: { type: 'string', default: '10' },
  threads: { type: 'string', default: String(Math.min(2, os.availableParallelism())) }, bf16: { type: 'boolean', default: false },
  child: { type: 'string' }, only: { type: 'string', default: '' },
} });
if (a.child) {
  console.log(JSON.stringify(await child(a.child, Number(a.calls), a.bf16!, a.only!)));
} else {
  const trees: [string, string][] = [['ours', HERE]];
  if (a.other) trees.unshift(['other', path.resolve(a.other)]);
  const runs = new Map<string, Times[]>(trees.map(([n]) => [n, []]));
  for (let r = 0; r < Number(a.repeat); r++) {
    for (const [name, root] of trees) {
      const p = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', root, '--calls', a.calls!, '--only', a.only!, ...(a.bf16 ? ['--bf16'] : [])],
        { cwd: root, encoding: 'utf8', env: { ...process.env, AUTOGLM_NUM_THREADS: a.threads } });
      if (p.status !== 0) throw new Error(`${name} (${root}) failed: ${p.stderr}`);
      runs.get(name)!.push(JSON.parse(p.stdout.trim().split('\n').pop()!) as Times);
    }
  }

  const keys = Object.keys(runs.get('ours')![0]);
  console.log(`native attention alone, ${a.threads} threads, ${a.repeat} alternations of ${trees.map(([n]) => n).join(', ')}; median ms of ${a.calls} calls each`);
  for (const key of keys) {
    const ours = runs.get('ours')!.map((t) => t[key]);
    let line = `${key}: ours ${median(ours).toFixed(2)}`;
    const other = runs.get('other')?.map((t) => t[key]);
    if (other && other.every((x) => x !== undefined)) {
      line += `, other ${median(other).toFixed(2)}, ours/other x${(median(ours) / median(other)).toFixed(2)} (paired x${median(ours.map((x, i) => x / other[i])).toFixed(2)})`;
    }
    console.log(line);
  }
}
