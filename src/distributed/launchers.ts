/**
 * The environment contracts of the launchers people already run, read into one rank description. First match wins:
 *
 *   autoglm launch     AUTOGLM_RANK, AUTOGLM_LOCAL_RANK, AUTOGLM_WORLD_SIZE, AUTOGLM_RDZV, AUTOGLM_RUN_ID
 *   torchrun/Kubeflow  RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE (run id: TORCHELASTIC_RUN_ID)
 *   Open MPI mpirun    OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK, _LOCAL_SIZE (run id: PMIX_NAMESPACE)
 *   MPICH/Intel MPI    PMI_RANK, PMI_SIZE (local rank: MPI_LOCALRANKID)
 *   Slurm srun         SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NTASKS_PER_NODE (run id: SLURM_JOB_ID.SLURM_STEP_ID);
 *                      only inside a job step (SLURM_STEP_ID set), not in the batch script itself
 *
 * None of them says where the ranks meet: gloo needs a store, given as AUTOGLM_RDZV (redis://host:port, or
 * file:///dir on a file system every rank sees; `autoglm --rdzv URL <command>` sets it) for a world size above 1.
 * AUTOGLM_RUN_ID, when set, names the run in the store whatever the launcher.
 */
import { ConfigError } from '../errors.js';

export type Launcher = 'autoglm' | 'torchrun' | 'mpi' | 'slurm';

export interface LauncherRank {
  launcher: Launcher;
  rank: number;
  localRank: number;
  worldSize: number;
  /** Ranks on this node, when the launcher says. */
  localWorldSize?: number;
  rdzv?: string;
  runId: string;
}

interface Contract {
  launcher: Launcher;
  /** The variable whose presence selects this contract. */
  detect: (env: NodeJS.ProcessEnv) => boolean;
  rank: string;
  worldSize: string;
  localRank?: string;
  localWorldSize?: string;
  runId: (env: NodeJS.ProcessEnv) => string | undefined;
}

const set = (env: NodeJS.ProcessEnv, name: string): boolean => env[name] !== undefined && env[name] !== '';

const CONTRACTS: Contract[] = [
  { launcher: 'autoglm', detect: (e) => set(e, 'AUTOGLM_WORLD_SIZE'), rank: 'AUTOGLM_RANK', worldSize: 'AUTOGLM_WORLD_SIZE',
    localRank: 'AUTOGLM_LOCAL_RANK', runId: () => undefined },
  { launcher: 'torchrun', detect: (e) => set(e, 'WORLD_SIZE') && set(e, 'RANK'), rank: 'RANK', worldSize: 'WORLD_SIZE',
    localRank: 'LOCAL_RANK', localWorldSize: 'LOCAL_WORLD_SIZE', runId: (e) => e.TORCHELASTIC_RUN_ID },
  { launcher: 'mpi', detect: (e) => set(e, 'OMPI_COMM_WORLD_SIZE'), rank: 'OMPI_COMM_WORLD_RANK', worldSize: 'OMPI_COMM_WORLD_SIZE',
    localRank: 'OMPI_COMM_WORLD_LOCAL_RANK', localWorldSize: 'OMPI_COMM_WORLD_LOCAL_SIZE', runId: (e) => e.PMIX_NAMESPACE ?? e.OMPI_MCA_ess_base_jobid },
  { launcher: 'mpi', detect: (e) => set(e, 'PMI_SIZE') && set(e, 'PMI_RANK'), rank: 'PMI_RANK', worldSize: 'PMI_SIZE',
    localRank: 'MPI_LOCALRANKID', runId: (e) => e.PMI_KVSNAME },
  { launcher: 'slurm', detect: (e) => set(e, 'SLURM_PROCID') && set(e, 'SLURM_NTASKS') && (set(e, 'SLURM_STEP_ID') || set(e, 'SLURM_STEPID')),
    rank: 'SLURM_PROCID', worldSize: 'SLURM_NTASKS', localRank: 'SLURM_LOCALID', localWorldSize: 'SLURM_NTASKS_PER_NODE',
    runId: (e) => e.SLURM_JOB_ID && `${e.SLURM_JOB_ID}.${e.SLURM_STEP_ID ?? e.SLURM_STEPID}` },
];

function envInt(env: NodeJS.ProcessEnv, name: string, min: number, launcher: Launcher): number {
  const v = env[name];
  const n = Number(v);
  if (v === undefined || v === '' || !/^\d+$/.test(v.trim()) || n < min) {
    throw new ConfigError(`environment variable ${name} is '${v ?? ''}' (${launcher}); expected an integer >= ${min}`);
  }
  return n;
}

/** A run id safe for the store's keys: letters, digits, '.', '_', '-'. */
function cleanRunId(id: string): string {
  return id.replace(/[^\w.-]/g, '_').slice(0, 120) || 'autoglm';
}

/** The launcher contract found in `env`, or null when none is (a single process). */
export function launcherRank(env: NodeJS.ProcessEnv): LauncherRank | null {
  const c = CONTRACTS.find((k) => k.detect(env));
  if (!c) return null;
  const worldSize = envInt(env, c.worldSize, 1, c.launcher);
  const rank = envInt(env, c.rank, 0, c.launcher);
  if (rank >= worldSize) throw new ConfigError(`environment variable ${c.rank} is ${rank} (${c.launcher}); expected below ${c.worldSize} (${worldSize})`);
  const localRank = c.localRank && set(env, c.localRank) ? envInt(env, c.localRank, 0, c.launcher) : rank;
  // Slurm writes SLURM_NTASKS_PER_NODE as '2' or, for uneven nodes, '2(x3),1': only a plain integer is taken
  const lws = c.localWorldSize && set(env, c.localWorldSize) && /^\d+$/.test(env[c.localWorldSize]!) ? envInt(env, c.localWorldSize, 1, c.launcher) : undefined;
  if (lws !== undefined && localRank >= lws) {
    throw new ConfigError(`environment variable ${c.localRank} is ${localRank} (${c.launcher}); expected below ${c.localWorldSize} (${lws})`);
  }
  const runId = cleanRunId(env.AUTOGLM_RUN_ID || c.runId(env) || 'autoglm');
  return { launcher: c.launcher, rank, localRank, worldSize, ...(lws !== undefined ? { localWorldSize: lws } : {}), rdzv: env.AUTOGLM_RDZV || undefined, runId };
}

/** The collective timeout from AUTOGLM_DP_TIMEOUT_MS (milliseconds), or undefined when unset. */
export function envTimeoutMs(env: NodeJS.ProcessEnv): number | undefined {
  const v = env.AUTOGLM_DP_TIMEOUT_MS;
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new ConfigError(`environment variable AUTOGLM_DP_TIMEOUT_MS is '${v}'; expected a positive number of milliseconds`);
  return n;
}
