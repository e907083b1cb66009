/** Ranks from the launchers people run: torchrun/Kubeflow, Open MPI, MPICH, Slurm; the collective timeout setting. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '../src/errors.js';
import { currentRankInfo } from '../src/distributed/env.js';
import { envTimeoutMs, launcherRank } from '../src/distributed/launchers.js';

const RDZV = { AUTOGLM_RDZV: 'redis://store:6379' };

test('torchrun / Kubeflow PyTorchJob: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, run id from TORCHELASTIC_RUN_ID', () => {
  const env = { RANK: '5', WORLD_SIZE: '8', LOCAL_RANK: '1', LOCAL_WORLD_SIZE: '4', TORCHELASTIC_RUN_ID: 'job-7', MASTER_ADDR: 'x', ...RDZV };
  assert.deepEqual(currentRankInfo(env), { rank: 5, localRank: 1, worldSize: 8, localWorldSize: 4, backend: 'gloo', launcher: 'torchrun', rdzv: 'redis://store:6379', runId: 'job-7' });
  // Kubeflow sets RANK and WORLD_SIZE only
  assert.deepEqual(currentRankInfo({ RANK: '1', WORLD_SIZE: '2', ...RDZV }), { rank: 1, localRank: 1, worldSize: 2, backend: 'gloo', launcher: 'torchrun', rdzv: 'redis://store:6379', runId: 'autoglm' });
});

test('Open MPI: OMPI_COMM_WORLD_*, run id from PMIX_NAMESPACE made safe for the store', () => {
  const env = { OMPI_COMM_WORLD_RANK: '3', OMPI_COMM_WORLD_SIZE: '4', OMPI_COMM_WORLD_LOCAL_RANK: '1', OMPI_COMM_WORLD_LOCAL_SIZE: '2', PMIX_NAMESPACE: 'prterun-host-123@1', ...RDZV };
  assert.deepEqual(currentRankInfo(env), { rank: 3, localRank: 1, worldSize: 4, localWorldSize: 2, backend: 'gloo', launcher: 'mpi', rdzv: 'redis://store:6379', runId: 'prterun-host-123_1' });
});

test('MPICH / Intel MPI: PMI_RANK, PMI_SIZE, MPI_LOCALRANKID', () => {
  const r = launcherRank({ PMI_RANK: '2', PMI_SIZE: '3', MPI_LOCALRANKID: '0', PMI_KVSNAME: 'kvs_1' });
  assert.deepEqual(r, { launcher: 'mpi', rank: 2, localRank: 0, worldSize: 3, rdzv: undefined, runId: 'kvs_1' });
});

test('Slurm srun: SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NTASKS_PER_NODE; not in the batch script', () => {
  const step = { SLURM_PROCID: '6', SLURM_NTASKS: '8', SLURM_LOCALID: '2', SLURM_NTASKS_PER_NODE: '4', SLURM_JOB_ID: '991', SLURM_STEP_ID: '0', ...RDZV };
  assert.deepEqual(currentRankInfo(step), { rank: 6, localRank: 2, worldSize: 8, localWorldSize: 4, backend: 'gloo', launcher: 'slurm', rdzv: 'redis://store:6379', runId: '991.0' });
  // uneven nodes: '4(x2),2' is not a per-node count; the local world size is then left out
  assert.equal(launcherRank({ ...step, SLURM_NTASKS_PER_NODE: '4(x2),2' })?.localWorldSize, undefined);
  // the batch script (no job step) is one process even in an 8-task allocation
  const { SLURM_STEP_ID: _, ...batch } = step;
  assert.equal(currentRankInfo(batch).worldSize, 1);
});

test('precedence: autoglm launch > torchrun > Open MPI > MPICH > Slurm (mpirun inside a Slurm allocation is MPI)', () => {
  const slurm = { SLURM_PROCID: '0', SLURM_NTASKS: '2', SLURM_STEP_ID: '1' };
  const ompi = { OMPI_COMM_WORLD_RANK: '1', OMPI_COMM_WORLD_SIZE: '2' };
  const torch = { RANK: '0', WORLD_SIZE: '2' };
  const ours = { AUTOGLM_RANK: '1', AUTOGLM_WORLD_SIZE: '2' };
  assert.equal(launcherRank({ ...slurm, ...ompi })?.launcher, 'mpi');
  assert.equal(launcherRank({ ...slurm, ...ompi, ...torch })?.launcher, 'torchrun');
  assert.equal(launcherRank({ ...slurm, ...ompi, ...torch, ...ours })?.launcher, 'autoglm');
  assert.equal(launcherRank({ AUTOGLM_RUN_ID: 'mine', ...ompi, PMIX_NAMESPACE: 'x' })?.runId, 'mine', 'AUTOGLM_RUN_ID wins');
});

test('bad launcher variables and a missing store are ConfigErrors naming the variable', () => {
  const bad = (env: NodeJS.ProcessEnv, re: RegExp) => assert.throws(() => currentRankInfo(env), (e: unknown) => e instanceof ConfigError && re.test(e.message), JSON.stringify(env));
  bad({ RANK: '2', WORLD_SIZE: '2', ...RDZV }, /RANK is 2 \(torchrun\); expected below WORLD_SIZE \(2\)/);
  bad({ OMPI_COMM_WORLD_RANK: 'x', OMPI_COMM_WORLD_SIZE: '2', ...RDZV }, /OMPI_COMM_WORLD_RANK is 'x' \(mpi\)/);
  bad({ OMPI_COMM_WORLD_RANK: '0', OMPI_COMM_WORLD_SIZE: '2', OMPI_COMM_WORLD_LOCAL_RANK: '3', OMPI_COMM_WORLD_LOCAL_SIZE: '2', ...RDZV }, /LOCAL_RANK is 3 \(mpi\)/);
  bad({ SLURM_PROCID: '0', SLURM_NTASKS: '-1', SLURM_STEP_ID: '0', ...RDZV }, /SLURM_NTASKS is '-1' \(slurm\)/);
  bad({ OMPI_COMM_WORLD_RANK: '0', OMPI_COMM_WORLD_SIZE: '2' }, /AUTOGLM_RDZV is not set.*2 ranks that mpi started/);
  // world size 1 needs no store
  assert.equal(currentRankInfo({ RANK: '0', WORLD_SIZE: '1' }).backend, 'single');
});

test('AUTOGLM_DP_TIMEOUT_MS: a positive number of milliseconds, refused otherwise', () => {
  assert.equal(envTimeoutMs({}), undefined);
  assert.equal(envTimeoutMs({ AUTOGLM_DP_TIMEOUT_MS: '2500' }), 2500);
  for (const v of ['0', '-3', 'soon']) assert.throws(() => envTimeoutMs({ AUTOGLM_DP_TIMEOUT_MS: v }), /AUTOGLM_DP_TIMEOUT_MS is/);
});

test('AUTOGLM_DP_TIMEOUT_MS is the timeout of the communicator createCommunicator makes, over what the code asks', async () => {
  const { LocalGroup } = await import('../src/distributed/local.js');
  const { createCommunicator } = await import('../src/distributed/env.js');
  const group = new LocalGroup(2);
  const prev = process.env.AUTOGLM_DP_TIMEOUT_MS;
  process.env.AUTOGLM_DP_TIMEOUT_MS = '300';
  try {
    const comm = await createCommunicator({ rank: 0, localRank: 0, worldSize: 2, backend: 'local', group: group.take(0).data }, { timeoutMs: 600_000 });
    const t0 = performance.now();
    await assert.rejects(comm.barrier(), /timed out after 300 ms on rank 0: rank 1 did not arrive/);
    assert.ok(performance.now() - t0 < 5000);
  } finally {
    if (prev === undefined) delete process.env.AUTOGLM_DP_TIMEOUT_MS;
    else process.env.AUTOGLM_DP_TIMEOUT_MS = prev;
  }
});
