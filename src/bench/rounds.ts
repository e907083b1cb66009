/**
 * Interleaved comparison (`autoglm bench WORKLOAD --vs-torch --interleave`): our workload and the PyTorch reference
 * each in one long-lived process, warmed up once, then driven in alternating rounds of `steps` steps, so that each of
 * our rounds has a reference round beside it, a second apart. On a shared host whose speed changes in phases of
 * seconds to minutes (the same product 2-3x slower for a while, in both engines), the separate runs of `compare` put
 * one engine in a fast phase and the other in a slow one often enough that their medians move by 20-40% from one run
 * to the next; rounds a second apart mostly share a phase, and the median of the per-round ratios ("paired") is
 * stable. Each round starts after the other engine's has ended and its kernel threads have gone idle.
 *
 * Protocol (src/bench/measure.ts serveRounds, scripts/torch-rounds.py): each process writes `ROUNDS READY` after a
 * measurement's warm-up, answers each line `n` with the times (ms) of n steps as a JSON array, and ends the
 * measurement on `0`; after the last one it prints its JSON records (peak RSS etc.) and exits.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import readline from 'node:readline';
import { BenchmarkError } from '../errors.js';
import { median, r3, type BenchRecord } from './measure.js';
import { oursArgs, torchArgs, torchEnv, torchPython, type ComparedRow, type CompareOptions } from './compare.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The wrapper that runs a reference script with its timing loop serving rounds. */
export const TORCH_ROUNDS = path.join(ROOT, 'scripts', 'torch-rounds.py');

export interface InterleavedRow extends ComparedRow {
  /** The median over rounds of ours / the reference within each round. */
  paired_ratio: number;
  /** Each engine's round medians (ms), in order. */
  ours_rounds: number[];
  torch_rounds: number[];
}

/** A benchmark process driven line by line. */
class Engine {
  private readonly lines: string[] = [];
  private waiting: ((l: string | null) => void) | null = null;
  private ended = false;
  private stderr = '';
  private readonly child: ChildProcess;
  constructor(readonly name: string, cmd: string, args: string[], env: NodeJS.ProcessEnv) {
    this.child = spawn(cmd, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    readline.createInterface({ input: this.child.stdout! }).on('line', (l) => this.push(l));
    this.child.stderr!.on('data', (d: Buffer) => { this.stderr = (this.stderr + d.toString()).slice(-4000); });
    this.child.on('close', () => { this.ended = true; this.push(null); });
    this.child.on('error', (e) => { this.stderr += String(e); this.ended = true; this.push(null); });
  }
  private push(l: string | null): void {
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = null;
      w(l);
    } else if (l !== null) {
      this.lines.push(l);
    }
  }
  /** The next line it writes; null once it has exited. */
  next(): Promise<string | null> {
    const l = this.lines.shift();
    if (l !== undefined) return Promise.resolve(l);
    if (this.ended) return Promise.resolve(null);
    return new Promise((r) => { this.waiting = r; });
  }

  /** Records printed so far (a reference prints each measurement's as it ends, gemm's shape by shape). */
  private readonly recs: BenchRecord[] = [];
  /** The next line that `ok` takes, or END where the process exits and `orExit`; records on the way are kept. */
  async expect(what: string, ok: (l: string) => boolean, orExit = false): Promise<string> {
    for (;;) {
      const l = await this.next();
      if (l === null && orExit && this.child.exitCode === 0) return END;
      if (l === null) throw new BenchmarkError(`${this.name} exited while an interleaved run waited for ${what} (exit ${this.child.exitCode}): ${this.stderr.slice(-2000)}`);
      if (ok(l)) return l;
      if (l.startsWith('{')) this.recs.push(JSON.parse(l) as BenchRecord);
    }
  }
  send(line: string): void {
    this.child.stdin!.write(`${line}\n`);
  }
  /** Its JSON records once it has printed them and exited. */
  async records(): Promise<BenchRecord[]> {
    await this.expect('its exit', () => false, true);
    return this.recs;
  }
  kill(): void {
    if (!this.ended) this.child.kill();
  }
}

const settle = () => new Promise((r) => setTimeout(r, 20));
/** What Engine.expect returns for a process that has exited cleanly. */
const END = '\u0000end';

/** A process that serves rounds (tests give stand-ins for the two benchmarks). */
export interface EngineCommand {
  cmd: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
}

/**
 * Ours and the reference in alternating rounds: `o.repeat` rounds of `o.steps` steps per measurement (gemm has four),
 * the engine that goes first alternating from round to round. Per measurement: each engine's median over its round
 * medians, their ratio, and the median of the per-round ratios.
 */
export async function compareInterleaved(o: CompareOptions, commands: Partial<Record<'ours' | 'torch', EngineCommand>> = {}): Promise<InterleavedRow[]> {
  const oc = commands.ours ?? { cmd: process.execPath, args: oursArgs(o, o.backend, ['--serve-rounds']) };
  const tc = commands.torch ?? { cmd: torchPython(), args: [TORCH_ROUNDS, ...torchArgs(o)], env: torchEnv(o.torchConfig) };
  const ours = new Engine('our benchmark', oc.cmd, oc.args, oc.env ?? process.env);
  const torch = new Engine(path.basename(o.torchScript), tc.cmd, tc.args, tc.env ?? process.env);
  try {
    const measured: { ours: number[]; torch: number[] }[] = [];
    for (;;) {
      // the next measurement's warm-up done in both, or ours done (its records, then its exit)
      const a = await ours.expect('a measurement or its exit', (l) => l === 'ROUNDS READY', true);
      if (a === END) return rows(await ours.records(), await torch.records(), measured, o.repeat);
      await torch.expect('a measurement', (l) => l === 'ROUNDS READY');
      const m = { ours: [] as number[], torch: [] as number[] };
      for (let r = 0; r < o.repeat; r++) {
        for (const e of r % 2 === 0 ? [ours, torch] : [torch, ours]) {
          e.send(String(o.steps));
          const ms = JSON.parse(await e.expect('a round', (l) => l.startsWith('['))) as number[];
          (e === ours ? m.ours : m.torch).push(median(ms));
          await settle();
        }
      }
      ours.send('0');
      torch.send('0');
      measured.push(m);
    }
  } finally {
    ours.kill();
    torch.kill();
  }
}

function rows(ours: BenchRecord[], torch: BenchRecord[], measured: { ours: number[]; torch: number[] }[], rounds: number): InterleavedRow[] {
  if (ours.length !== measured.length || torch.length !== measured.length) {
    throw new BenchmarkError(`an interleaved run measured ${measured.length} times but got ${ours.length} records of ours and ${torch.length} of the reference`);
  }
  return measured.map((m, k) => {
    const a = { ...ours[k], ms_per_step: r3(median(m.ours)) }, b = { ...torch[k], ms_per_step: r3(median(m.torch)) };
    const row: InterleavedRow = {
      workload: a.workload, dtype: a.dtype, ours: a, torch: b, runs: rounds,
      time_ratio: r3(a.ms_per_step / b.ms_per_step),
      rss_ratio: r3(a.peak_rss_mb / b.peak_rss_mb),
      paired_ratio: r3(median(m.ours.map((x, i) => x / m.torch[i]))),
      ours_rounds: m.ours.map(r3), torch_rounds: m.torch.map(r3),
    };
    // gemm: throughput from the rounds' medians (the records' own come from every step of the process)
    const flops = (r: BenchRecord) => (r.gflops as number) * (r.ms_per_step as number);
    if (ours[k].gflops !== undefined && torch[k].gflops !== undefined) {
      a.gflops = r3(flops(ours[k]) / a.ms_per_step);
      b.gflops = r3(flops(torch[k]) / b.ms_per_step);
      row.gflops_ratio = r3(a.gflops / b.gflops);
    }
    return row;
  });
}
