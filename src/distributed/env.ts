/**
 * Where this rank stands, and its communicator. `autoglm launch` tells each rank who it is: through workerData for
 * the `local` backend (worker threads share one process environment) and through AUTOGLM_* variables for child
 * processes (`gloo`). Anything else is a single process of world size 1.
 *
 *   AUTOGLM_RANK        global rank (node_rank * nproc + local rank)
 *   AUTOGLM_LOCAL_RANK  rank on this node
 *   AUTOGLM_WORLD_SIZE  number of ranks in all
 *   AUTOGLM_RDZV        rendezvous store: redis://host:port or file:///dir
 *   AUTOGLM_RUN_ID      names this run in the store
 */
import { isMainThread, workerData } from 'node:worker_threads';
import { ConfigError, CommunicationError } from '../errors.js';
import type { Communicator, CommunicatorBackend } from './communicator.js';
import { LocalCommunicator, type LocalGroupData } from './local.js';
import type { LocalWorkerData } from './run-local.js';
import { SingleCommunicator } from './single.js';

export interface RankInfo {
  rank: number;
  localRank: number;
  worldSize: number;
  backend: CommunicatorBackend;
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
    return { rank: wd.rank!, localRank: wd.rank!, worldSize: wd.worldSize!, backend: 'local', group: wd.group, args: wd.args };
  }
  if (env.AUTOGLM_WORLD_SIZE === undefined || env.AUTOGLM_WORLD_SIZE === '') return { rank: 0, localRank: 0, worldSize: 1, backend: 'single' };
  const worldSize = envInt(env, 'AUTOGLM_WORLD_SIZE', 1);
  const rank = envInt(env, 'AUTOGLM_RANK', 0);
  if (rank >= worldSize) throw new ConfigError(`environment variable AUTOGLM_RANK is ${rank}; expected below AUTOGLM_WORLD_SIZE (${worldSize})`);
  const localRank = env.AUTOGLM_LOCAL_RANK ? envInt(env, 'AUTOGLM_LOCAL_RANK', 0) : rank;
  if (worldSize === 1) return { rank: 0, localRank: 0, worldSize: 1, backend: 'single' };
  const rdzv = env.AUTOGLM_RDZV;
  if (!rdzv) throw new ConfigError(`environment variable AUTOGLM_RDZV is not set; expected redis://host:port or file:///dir when AUTOGLM_WORLD_SIZE is ${worldSize}`);
  return { rank, localRank, worldSize, backend: 'gloo', rdzv, runId: env.AUTOGLM_RUN_ID || 'autoglm' };
}

function envInt(env: NodeJS.ProcessEnv, name: string, min: number): number {
  const v = env[name];
  const n = Number(v);
  if (v === undefined || v === '' || !Number.isInteger(n) || n < min) {
    throw new ConfigError(`environment variable ${name} is '${v ?? ''}'; expected an integer >= ${min}`);
  }
  return n;
}

export interface CreateCommunicatorOptions {
  /** Collective timeout (default 60 s). */
  timeoutMs?: number;
}

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
  return f(info, opts);
}
