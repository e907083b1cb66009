/**
 * `autoglm launch`: runs a command as N data-parallel ranks, like torchrun.
 *
 *   autoglm launch --nproc 2 finetune --max-train 200                    # local: 2 worker threads, one process
 *   autoglm launch --nproc 2 --backend gloo finetune ...                 # 2 processes, file:// rendezvous in a temp dir
 *   autoglm launch --nproc 2 --nnodes 2 --node-rank 0 --rdzv redis://host:6379 --run-id exp1 finetune ...
 *
 * Backend gloo spawns N child processes of this CLI with AUTOGLM_RANK (node_rank * nproc + local rank),
 * AUTOGLM_LOCAL_RANK, AUTOGLM_WORLD_SIZE, AUTOGLM_RDZV, AUTOGLM_RUN_ID and OMP_NUM_THREADS = AUTOGLM_NUM_THREADS =
 * max(1, floor(cores / nproc)); backend local runs the command in N worker threads of this process (runLocal), the
 * rank coming through workerData. Output lines are prefixed `[rank N] `. When a rank fails the others are stopped
 * (SIGTERM, then SIGKILL after 5 s; terminate() for threads) and the launcher fails with one line naming the rank
 * and its exit code.
 *
 * Interrupting the launcher (SIGINT, Ctrl-C; SIGTERM) stops the job gracefully: every rank is asked to stop (the
 * signal for processes, a message for threads), the ranks agree to stop after the same step, rank 0 writes a
 * checkpoint, and the launcher exits 130 / 143 once they have (src/cli/interrupt.ts; `finetune --resume` continues).
 * A second signal, more than 2 s later, stops them at once (SIGKILL for processes); so do DEFAULTS.stopGraceMs.
 *
 * Elastic restarts, as torchelastic's: with `--max-restarts N`, when a rank fails the launcher stops the others and
 * starts all ranks again, up to N times, then gives up with one line naming the failure and N. Each attempt gets
 * AUTOGLM_RESTART_COUNT (0, 1, ...) and AUTOGLM_MAX_RESTARTS, and meets under run id <run-id>-r<attempt> (a fresh
 * set of store keys); `finetune` then resumes from the last checkpoint in its --output-dir (it refuses to start
 * under --max-restarts without --output-dir and --save-every). On several nodes each node's launcher restarts its
 * ranks; the other nodes' ranks see the lost peer, fail, and restart into the same attempt.
 *
 * Also the hidden `autoglm dist-selftest`, a tiny collective job the tests launch.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { CommanderError, type Command } from 'commander';
import { CommunicationError, ConfigError } from '../../errors.js';
import { choiceOption, intOption } from '../options.js';

/** Launcher defaults, in one place. */
const DEFAULTS = {
  /** Run id when none is given (the same on every node of a multi-node job). */
  runId: 'autoglm',
  /** After SIGTERM, how long a rank process gets before SIGKILL. */
  killAfterMs: 5000,
  /** After the launcher's own SIGINT / SIGTERM (a graceful stop: the step under way, then a checkpoint), how long the
   * ranks get before SIGKILL; a second signal kills them at once. */
  stopGraceMs: 120_000,
} as const;

interface LaunchOpts {
  nproc: number;
  backend?: 'local' | 'gloo';
  nnodes: number;
  nodeRank: number;
  rdzv?: string;
  runId?: string;
  maxRestarts: number;
}

/** The module each rank runs (.ts under tsx, .js once built). */
function entryUrl(): URL {
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  return new URL(`../launch-entry${ext}`, import.meta.url);
}

export function runIdOption(v: string): string {
  if (!/^[\w.-]+$/.test(v)) throw new ConfigError(`option '--run-id' is '${v}'; expected letters, digits, '.', '_' or '-'`);
  return v;
}

export function rdzvOption(v: string): string {
  if (!/^redis:\/\/[^/:]+(:\d+)?\/?$/.test(v) && !/^file:\/\/\/.+/.test(v)) {
    throw new ConfigError(`option '--rdzv' is '${v}'; expected redis://host[:port] or file:///absolute/dir`);
  }
  return v;
}

export function registerLaunch(program: Command): void {
  // Options after the launched command belong to it (`launch --nproc 2 finetune --max-train 10`).
  program.enablePositionalOptions();
  program.command('launch')
    .description('run a command as N data-parallel ranks (worker threads, or processes over gloo), like torchrun')
    .requiredOption('--nproc <n>', 'ranks on this node', intOption('--nproc'))
    .option('--backend <name>', 'local (worker threads; default on one node without --rdzv) | gloo (processes)', choiceOption('--backend', ['local', 'gloo'] as const))
    .option('--nnodes <n>', 'number of nodes', intOption('--nnodes'), 1)
    .option('--node-rank <r>', 'this node\'s index in [0, nnodes)', intOption('--node-rank', 0), 0)
    .option('--rdzv <url>', 'rendezvous store for gloo: redis://host:port or file:///dir (default: a fresh temp dir on one node)', rdzvOption)
    .option('--run-id <id>', `names the job in the rendezvous store (default ${DEFAULTS.runId})`)
    .option('--max-restarts <n>', 'when a rank fails, restart all ranks (from the last checkpoint) up to n times', intOption('--max-restarts', 0), 0)
    .argument('<command...>', 'the autoglm command to run on every rank, with its options')
    .passThroughOptions()
    .action(async (command: string[], o: LaunchOpts) => {
      const backend = o.backend ?? (o.nnodes > 1 || o.rdzv ? 'gloo' : 'local');
      if (o.nodeRank >= o.nnodes) throw new ConfigError(`option '--node-rank' is ${o.nodeRank}; expected below --nnodes (${o.nnodes})`);
      if (backend === 'local' && (o.nnodes > 1 || o.rdzv)) {
        throw new ConfigError(`option '--backend' is 'local'; expected gloo with --nnodes ${o.nnodes}${o.rdzv ? ` and --rdzv ${o.rdzv}` : ''} (local runs threads of one process)`);
      }
      if (o.nnodes > 1 && !o.rdzv) throw new ConfigError(`option '--rdzv' is missing; expected redis://host:port (or a shared file:///dir) with --nnodes ${o.nnodes}`);
      if (command[0] === 'launch') throw new ConfigError(`argument 'command' is 'launch'; expected a command to run on each rank`);
      if (o.runId !== undefined && !/^[\w.-]+$/.test(o.runId)) throw new ConfigError(`option '--run-id' is '${o.runId}'; expected letters, digits, '.', '_' or '-'`);
      await withRestarts(o.maxRestarts, (attempt) => (backend === 'local' ? launchLocal(command, o, attempt) : launchProcesses(command, o, attempt)));
    });
  registerSelftest(program);
}

/** Set when the launcher itself is interrupted (SIGINT/SIGTERM): the ranks it stopped are not restarted. */
let interrupted = false;

/** Runs `attempt(i)` for i = 0, 1, ... while a rank fails and restarts are left (see the module comment). */
async function withRestarts(maxRestarts: number, attempt: (i: number) => Promise<void>): Promise<void> {
  const { RankFailedError } = await import('../../distributed/run-local.js');
  for (let i = 0; ; i++) {
    try {
      await attempt(i);
      return;
    } catch (e) {
      if (!(e instanceof RankFailedError) || interrupted || maxRestarts === 0) throw e;
      if (i >= maxRestarts) {
        throw new RankFailedError(e.rank, e.exitCode, `${e.detail}; gave up after ${maxRestarts} restart${maxRestarts > 1 ? 's' : ''} (--max-restarts ${maxRestarts})`, { cause: e });
      }
      process.stderr.write(`autoglm launch: ${e.message}; restarting all ranks from the last checkpoint (restart ${i + 1} of ${maxRestarts})\n`);
    }
  }
}

/** The environment that tells an attempt's ranks where they stand among restarts. */
function restartEnv(o: LaunchOpts, attempt: number): Record<string, string> {
  return { AUTOGLM_RESTART_COUNT: String(attempt), AUTOGLM_MAX_RESTARTS: String(o.maxRestarts) };
}

function threadsPerRank(nproc: number): number {
  const env = process.env.AUTOGLM_NUM_THREADS;
  if (env) return intOption('AUTOGLM_NUM_THREADS')(env);
  const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  return Math.max(1, Math.floor(cores / nproc));
}

/**
 * The exit of a launcher whose ranks stopped on its signal `sig` (some rank exited 130 or 143): 128 + the signal's
 * number (CommanderError: main returns it). A rank that stopped because another one did cannot know which signal it was.
 */
async function interruptedExit(codes: Array<number | null>, sig: NodeJS.Signals | null): Promise<void> {
  const { signalExitCode } = await import('../interrupt.js');
  if (sig && codes.some((c) => c === 130 || c === 143)) throw new CommanderError(signalExitCode(sig), 'autoglm.interrupted', '');
}

/**
 * The launcher's SIGINT / SIGTERM while ranks run (see the module comment): `first` on the first signal, `again` on
 * one more than DOUBLE_SIGNAL_MS later (a repeat within it is the same request, as for a rank).
 */
async function handleSignals(first: (sig: NodeJS.Signals) => void, again: (sig: NodeJS.Signals) => void): Promise<() => void> {
  const { onSignals, stopRequests } = await import('../interrupt.js');
  return onSignals(stopRequests((sig) => {
    interrupted = true; // no restart after this (withRestarts)
    process.stderr.write(`autoglm launch: ${sig}: every rank stops after the step under way and rank 0 writes a checkpoint (send it again to stop them at once)\n`);
    first(sig as NodeJS.Signals);
  }, (sig) => {
    process.stderr.write(`autoglm launch: ${sig} again: stopping every rank at once\n`);
    again(sig as NodeJS.Signals);
  }));
}

async function launchLocal(command: string[], o: LaunchOpts, attempt: number): Promise<void> {
  const { runLocal } = await import('../../distributed/run-local.js');
  const { signalExitCode } = await import('../interrupt.js');
  Object.assign(process.env, restartEnv(o, attempt)); // worker threads share this process's environment
  const stop = new AbortController();
  const release = await handleSignals((sig) => stop.abort(sig), (sig) => process.exit(signalExitCode(sig)));
  try {
    const exits = await runLocal(o.nproc, entryUrl(), { args: { argv: command }, threadsPerRank: threadsPerRank(o.nproc), stop: stop.signal });
    await interruptedExit(exits.map((e) => e.exitCode), stop.signal.aborted ? (stop.signal.reason as NodeJS.Signals) : null);
  } finally {
    release();
  }
}

async function launchProcesses(command: string[], o: LaunchOpts, attempt: number): Promise<void> {
  const { pipeLines, RankFailedError } = await import('../../distributed/run-local.js');
  const tmp = o.rdzv ? null : mkdtempSync(path.join(os.tmpdir(), 'autoglm-rdzv-'));
  const rdzv = o.rdzv ?? pathToFileURL(tmp!).href;
  const threads = String(threadsPerRank(o.nproc));
  const worldSize = o.nnodes * o.nproc;
  const children: ChildProcess[] = [];
  let failure: InstanceType<typeof RankFailedError> | null = null;
  let killTimer: NodeJS.Timeout | null = null;
  const stopAll = (signal: NodeJS.Signals): void => {
    for (const c of children) {
      if (c.exitCode !== null || c.signalCode !== null) continue;
      c.kill(signal);
      c.kill('SIGCONT'); // a stopped rank (SIGSTOP, Ctrl-Z) only acts on the signal once continued
    }
    if (!killTimer) killTimer = setTimeout(() => { for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL'); }, DEFAULTS.killAfterMs);
  };
  // the first signal goes to every rank, which stops after its step with a checkpoint; they get stopGraceMs
  let received: NodeJS.Signals | null = null;
  const release = await handleSignals((sig) => {
    received = sig;
    for (const c of children) {
      if (c.exitCode !== null || c.signalCode !== null) continue;
      c.kill(sig);
      c.kill('SIGCONT');
    }
    if (killTimer) clearTimeout(killTimer);
    killTimer = setTimeout(() => { for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL'); }, DEFAULTS.stopGraceMs);
  }, () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  });
  try {
    await new Promise<void>((resolve) => {
      let left = o.nproc;
      for (let local = 0; local < o.nproc; local++) {
        const rank = o.nodeRank * o.nproc + local;
        const env = {
          ...process.env, AUTOGLM_RANK: String(rank), AUTOGLM_LOCAL_RANK: String(local), AUTOGLM_WORLD_SIZE: String(worldSize),
          AUTOGLM_RDZV: rdzv, AUTOGLM_RUN_ID: `${o.runId ?? DEFAULTS.runId}${attempt > 0 ? `-r${attempt}` : ''}`, OMP_NUM_THREADS: threads,
          AUTOGLM_NUM_THREADS: threads, ...(o.maxRestarts > 0 ? restartEnv(o, attempt) : {}),
        };
        const c = spawn(process.execPath, [...process.execArgv, fileURLToPath(entryUrl()), ...command], { env, stdio: ['ignore', 'pipe', 'pipe'] });
        children.push(c);
        pipeLines(c.stdout!, process.stdout, `[rank ${rank}] `);
        pipeLines(c.stderr!, process.stderr, `[rank ${rank}] `);
        c.on('error', (e) => {
          if (!failure) failure = new RankFailedError(rank, -1, `could not start: ${e.message}`, { cause: e });
          stopAll('SIGTERM');
        });
        c.on('close', (code, signal) => {
          // after the launcher's signal, a rank that stopped with its checkpoint exits 130 / 143: not a failure
          const stopped = interrupted && (code === 130 || code === 143);
          if ((code !== 0 || signal) && !failure && !stopped) {
            failure = new RankFailedError(rank, code ?? -1, signal ? `killed by ${signal}` : `exited with code ${code}`);
            stopAll('SIGTERM');
          }
          if (--left === 0) resolve();
        });
      }
    });
  } finally {
    if (killTimer) clearTimeout(killTimer);
    release();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }
  if (failure) throw failure;
  await interruptedExit(children.map((c) => c.exitCode), received);
}

interface SelftestOpts {
  failRank?: number;
  hangMs?: number;
  infoOnly?: boolean;
}

/** `autoglm dist-selftest` (hidden): one allReduce and one allGather, or a rank that fails on purpose. */
function registerSelftest(program: Command): void {
  program.command('dist-selftest', { hidden: true })
    .description('check the launched ranks can talk (used by the tests)')
    .option('--fail-rank <r>', 'this rank fails on purpose', intOption('--fail-rank', 0))
    .option('--hang-ms <ms>', 'the other ranks wait this long first', intOption('--hang-ms', 0))
    .option('--info-only', 'print the rank info without making a communicator')
    .action(async (o: SelftestOpts) => {
      const { currentRankInfo, createCommunicator } = await import('../../distributed/env.js');
      const info = currentRankInfo();
      const who = `rank ${info.rank}/${info.worldSize} (local ${info.localRank}, backend ${info.backend})`;
      if (info.rank === o.failRank) throw new CommunicationError(`${who} fails on purpose`);
      if (o.hangMs) await new Promise((r) => setTimeout(r, o.hangMs));
      console.log(`${who} rdzv ${info.rdzv ?? '-'} run ${info.runId ?? '-'} threads ${process.env.AUTOGLM_NUM_THREADS ?? '-'}`);
      if (o.infoOnly) return;
      const comm = await createCommunicator(info);
      const x = new Float32Array([info.rank + 1]);
      await comm.allReduce(x, 'sum');
      const all = await comm.allGather(new TextEncoder().encode(`r${info.rank}`));
      console.log(`${who} allReduce ${x[0]} allGather ${all.map((b) => new TextDecoder().decode(b)).join(',')}`);
      await comm.close();
    });
}
