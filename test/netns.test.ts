/**
 * Two "hosts" on this machine: two network namespaces joined by a veth pair, with addresses only between them
 * (10.231.x.1 and .2/30, no route anywhere else). The first holds the Redis store; each holds one rank of a gloo
 * job started as its own node (`launch --nnodes 2 --node-rank i --rdzv redis://10.231.x.1`), which must train to
 * the same weights, bit for bit, as `autoglm launch --nproc 2 --backend gloo` on one host. The namespaces, the veth
 * pair and the Redis are removed whatever happens.
 *
 * Needs root with CAP_NET_ADMIN (`ip netns add`), redis-server and the gloo addon. Where the kernel refuses network
 * namespaces (a container without CAP_NET_ADMIN) the test is skipped with that reason, under CI=true too: that is a
 * property of the machine, not a missing piece of the project.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { requireGloo, requirePiece } from './helpers/ci.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(ROOT, 'src/cli/launch-entry.ts');
const FINETUNE = ['finetune', '--max-train', '64', '--max-eval', '16', '--max-steps', '4', '--batch-size', '16', '--max-length', '24',
  '--head-dropout', '0', '--length-bucketing', 'false', '--seed', '5', '--quiet'];
const sh = (cmd: string, args: string[]) => spawnSync(cmd, args, { encoding: 'utf8' });

/** Whether this machine lets us make a network namespace (false: why not). */
function netnsRefusal(): string | false {
  if (process.platform !== 'linux') return 'network namespaces are Linux only';
  const name = `agprobe${process.pid}`;
  const r = sh('ip', ['netns', 'add', name]);
  if (r.error) return `'ip' is not installed (apt-get install iproute2): ${r.error.message}`;
  if (r.status !== 0) return `the kernel refuses network namespaces here (${r.stderr.trim() || `exit ${r.status}`}; a container without CAP_NET_ADMIN?)`;
  sh('ip', ['netns', 'del', name]);
  return false;
}

const refusal = netnsRefusal();
const skip = refusal || requireGloo() || requirePiece('redis-server', sh('redis-server', ['--version']).status === 0, 'apt-get install redis-server');

function run(cmd: string, args: string[], env: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, AUTOGLM_NUM_THREADS: '1', OMP_NUM_THREADS: '1', AUTOGLM_DP_TIMEOUT_MS: '120000', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.slice(0, 6).join(' ')} exited ${code}:\n${out.slice(-3000)}`))));
  });
}

test('two network namespaces ("hosts"), Redis in the first: 2 ranks train to the same weights as autoglm launch', { skip, timeout: 400_000 }, async (t) => {
  const id = process.pid % 60000;
  const net = `10.231.${id % 250}`;
  const ns = [`ag${id}a`, `ag${id}b`], veth = [`ag${id}va`, `ag${id}vb`], addr = [`${net}.1`, `${net}.2`];
  const ref = mkdtempSync(path.join(tmpdir(), 'autoglm-nn-ref-')), out = mkdtempSync(path.join(tmpdir(), 'autoglm-nn-'));
  const cleanup: (() => void)[] = [];
  try {
    for (const n of ns) {
      const r = sh('ip', ['netns', 'add', n]);
      assert.equal(r.status, 0, r.stderr);
      cleanup.push(() => sh('ip', ['netns', 'del', n]));
    }
    const setup: string[][] = [
      ['link', 'add', veth[0]!, 'netns', ns[0]!, 'type', 'veth', 'peer', 'name', veth[1]!, 'netns', ns[1]!],
      ...[0, 1].flatMap((i) => [
        ['-n', ns[i]!, 'addr', 'add', `${addr[i]}/30`, 'dev', veth[i]!],
        ['-n', ns[i]!, 'link', 'set', veth[i]!, 'up'],
        ['-n', ns[i]!, 'link', 'set', 'lo', 'up'],
      ]),
    ];
    for (const a of setup) {
      const r = sh('ip', a);
      assert.equal(r.status, 0, `ip ${a.join(' ')}: ${r.stderr}`);
    }
    // the Redis of the job, in the first namespace, on its veth address only (reachable from the second alone, so
    // without protected mode, which would refuse every address but loopback)
    const redis = spawn('ip', ['netns', 'exec', ns[0]!, 'redis-server', '--bind', addr[0]!, '--port', '6379', '--protected-mode', 'no', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    cleanup.unshift(() => redis.kill('SIGKILL'));
    for (let i = 0; i < 100 && sh('ip', ['netns', 'exec', ns[1]!, 'redis-cli', '-h', addr[0]!, 'ping']).stdout?.trim() !== 'PONG'; i++) await new Promise((r) => setTimeout(r, 100));
    // no route out: each namespace knows only the /30 between them
    for (const n of ns) assert.doesNotMatch(sh('ip', ['-n', n, 'route', 'show']).stdout, /default/, `${n} has a route out`);

    await run(process.execPath, ['--import', 'tsx', CLI, 'launch', '--nproc', '2', '--backend', 'gloo', ...FINETUNE, '--output-dir', ref]);
    const rdzv = `redis://${addr[0]}:6379`;
    const outs = await Promise.all([0, 1].map((i) => run('ip', ['netns', 'exec', ns[i]!, 'env', `AUTOGLM_GLOO_HOST=${addr[i]}`, process.execPath, '--import', 'tsx', CLI,
      'launch', '--nproc', '1', '--nnodes', '2', '--node-rank', String(i), '--rdzv', rdzv, '--run-id', `nn${id}`, ...FINETUNE, '--output-dir', out])));
    assert.match(outs[0]!, /data-parallel: 2 ranks/);
    t.diagnostic(`ranks in ${ns.join(' and ')} (${addr.join(', ')}), Redis at ${rdzv}`);
    const weights = (dir: string) => readFileSync(path.join(dir, 'adapter', 'adapter_model.safetensors'));
    assert.ok(weights(out).equals(weights(ref)), 'the adapters differ');
  } finally {
    for (const f of cleanup) f();
    rmSync(ref, { recursive: true, force: true });
    rmSync(out, { recursive: true, force: true });
    assert.ok(!sh('ip', ['netns', 'list']).stdout.includes(ns[0]!), 'a namespace was left behind');
  }
});
