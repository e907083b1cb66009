/**
 * Where this rank stands, and its communicator. `autoglm launch` tells each rank who it is: through workerData for
 * the `local` backend (worker threads share one process environment) and through AUTOGLM_* variables for child
 * processes (`gloo`). A rank started by torchrun, Kubeflow, mpirun or srun reads that launcher's variables instead
 * (launchers.ts), with the store in AUTOGLM_RDZV. Anything else is a single process of world size 1.
 *
 *   AUTOGLM_RANK        global rank (node_rank * nproc + local rank)
 *   AUTOGLM_LOCAL_RANK  rank on this node
 *   AUTOGLM_WORLD_SIZE  number of ranks in all
 *   AUTOGLM_RDZV        rendezvous store: redis://host:port or file:///dir
 *   AUTOGLM_RUN_ID      names this run in the store
 *   AUTOGLM_DP_TIMEOUT_MS  how long a collective waits for a peer before it fails (overrides what the code asks;
 *                       default 60 s, the trainer asks 10 minutes)
 */
import { isMainThread, workerData } from 'node:worker_threads';
import { ConfigError, CommunicationError } from '../errors.js';
import type { Communicator, CommunicatorBackend } from './communicator.js';
import { LocalCommunicator, type LocalGroupData } from './local.js';
import type { LocalWorkerData } from './run-local.js';
import { SingleCommunicator } from './single.js';
import { envTimeoutMs, launcherRank, type Launcher } from './launchers.js';

export interface RankInfo {
  rank: number;
  localRank: number;
  worldSize: number;
  /** Ranks on this node, when the launcher says. */
  localWorldSize?: number;
  backend: CommunicatorBackend;
  /** Who started this rank ('local' for autoglm launch's worker threads, 'none' for a single process). */
  launcher?: Launcher | 'local' | 'none';
  rdzv?: string;
  runId?: string;
  /** The local group, in a `local` worker. */
  group?: LocalGroupData;
  /** What the launcher passed to a local worker (the command's args). */
  args?: unknown;
}

/** The launched rank this code runs as (see the module comment). */
export function currentRankInfo(env: NodeJS.ProcessEnv = process.env): RankInfo {
  const wd = isMainThread ? undefined : (workerData as Partial<LocalWorkerData> | undefined);
  if (wd?.kind === 'autoglm-local-worker' && wd.group) {
    return { rank: wd.rank!, localRank: wd.rank!, worldSize: wd.worldSize!, backend: 'local', launcher: 'local', group: wd.group, args: wd.args };
  }
  const l = launcherRank(env);
  if (!l || l.worldSize === 1) return { rank: 0, localRank: 0, worldSize: 1, backend: 'single', launcher: l?.launcher ?? 'none' };
  if (!l.rdzv) {
    throw new ConfigError(`environment variable AUTOGLM_RDZV is not set; expected redis://host:port or file:///dir (a folder every rank sees) ` +
      `for the ${l.worldSize} ranks ${l.launcher === 'autoglm' ? 'AUTOGLM_WORLD_SIZE' : `that ${l.launcher}`} started (or pass 'autoglm --rdzv URL <command>')`);
  }
  const { launcher, rank, localRank, worldSize, localWorldSize, rdzv, runId } = l;
  return { rank, localRank, worldSize, ...(localWorldSize ? { localWorldSize } : {}), backend: 'gloo', launcher, rdzv, runId };
}

export interface CreateCommunicatorOptions {
  /** Collective timeout (default 60 s); the environment variable AUTOGLM_DP_TIMEOUT_MS, when set, wins. */
  timeoutMs?: number;
}

/** A collective's wait for a peer when neither the caller nor AUTOGLM_DP_TIMEOUT_MS says otherwise. */
export const DEFAULT_TIMEOUT_MS = 60_000;

type Factory = (info: RankInfo, opts: CreateCommunicatorOptions) => Promise<Communicator>;

/** One factory per backend. */
const FACTORIES: Record<CommunicatorBackend, Factory> = {
  single: async () => new SingleCommunicator(),
  local: async (info, opts) => {
    if (!info.group) throw new CommunicationError(`backend 'local' needs the group from workerData; run under 'autoglm launch --backend local' or runLocal()`);
    return LocalCommunicator.fromWorkerData(info.group, { timeoutMs: opts.timeoutMs });
  },
  gloo: async (info, opts) => {
    // Loaded on demand: gloo.ts loads its addon lazily, so a missing libgloo only fails here, when gloo is asked for.
    const { GlooCommunicator } = await import('./gloo.js');
    if (!info.rdzv) throw new ConfigError(`Argument 'info.rdzv' passed to 'createCommunicator' is missing; expected redis://host:port or file:///dir for backend 'gloo'`);
    return GlooCommunicator.create({ rank: info.rank, worldSize: info.worldSize, rendezvous: info.rdzv, runId: info.runId, timeoutMs: opts.timeoutMs });
  },
};

/** The communicator for `info` (default: this rank's `currentRankInfo()`). */
export async function createCommunicator(info: RankInfo = currentRankInfo(), opts: CreateCommunicatorOptions = {}): Promise<Communicator> {
  const f = FACTORIES[info.backend];
  if (!f) throw new ConfigError(`Argument 'info.backend' passed to 'createCommunicator' is '${info.backend}'; expected one of ${Object.keys(FACTORIES).join(', ')}`);
  return f(info, { ...opts, timeoutMs: envTimeoutMs(process.env) ?? opts.timeoutMs ?? DEFAULT_TIMEOUT_MS });
}
