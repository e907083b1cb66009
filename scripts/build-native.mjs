#!/usr/bin/env node
/**
 * Builds the native addon (build/Release/autoglm_native.node) with node-gyp at `npm install` / `npm ci`.
 * Never fails the install: when the compiler or the system libraries are missing, or the build fails, it prints
 * one line saying so and how to get the fast backend, and exits 0 (the portable backend then runs).
 * AUTOGLM_SKIP_NATIVE=1 skips the build.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const HINT = 'apt-get install -y libopenblas-dev libopenblas0-openmp libdnnl-dev g++ make && npm rebuild open-autoglm';
const notBuilt = (why) => {
  console.log(`open-autoglm: native backend not built (${why}); the portable TypeScript backend will be used. For the fast one: ${HINT}`);
  process.exit(0);
};

if (process.env.AUTOGLM_SKIP_NATIVE === '1') {
  console.log('open-autoglm: AUTOGLM_SKIP_NATIVE=1, native backend not built');
  process.exit(0);
}
if (process.platform !== 'linux' || process.arch !== 'x64') notBuilt(`unsupported platform ${process.platform}-${process.arch}`);

const has = (cmd, args = ['--version']) => spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;
if (!has('g++')) notBuilt('no C++ compiler (g++)');
if (!has('make')) notBuilt('no make');
const required = [
  ['/usr/include/dnnl.hpp', 'oneDNN headers (libdnnl-dev)'],
  ['/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0', 'OpenBLAS OpenMP build (libopenblas0-openmp)'],
];
for (const [file, what] of required) if (!existsSync(file)) notBuilt(`missing ${what}`);
if (!['/usr/include/x86_64-linux-gnu/cblas.h', '/usr/include/cblas.h'].some((f) => existsSync(f))) {
  notBuilt('missing cblas.h (libopenblas-dev)');
}
try {
  createRequire(path.join(root, 'package.json')).resolve('node-addon-api');
} catch {
  notBuilt('node-addon-api is not installed');
}

/** node-gyp: npm's own copy (npm_config_node_gyp, or next to npm), else npx. */
function nodeGyp() {
  const env = process.env.npm_config_node_gyp;
  if (env && existsSync(env)) return [process.execPath, [env]];
  const candidates = [];
  if (process.env.npm_execpath) {
    candidates.push(path.join(path.dirname(process.env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  }
  candidates.push(path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  for (const c of candidates) if (existsSync(c)) return [process.execPath, [c]];
  try {
    const req = createRequire(path.join(root, 'package.json'));
    return [process.execPath, [req.resolve('node-gyp/bin/node-gyp.js')]];
  } catch {
    return ['npx', ['--yes', 'node-gyp']];
  }
}

const [cmd, pre] = nodeGyp();
const args = [...pre, 'rebuild', '-j', process.env.AUTOGLM_BUILD_JOBS ?? '2'];
const headers = path.join(path.dirname(process.execPath), '..', 'include', 'node', 'node_api.h');
if (existsSync(headers)) args.push(`--nodedir=${path.resolve(path.dirname(process.execPath), '..')}`);
const r = spawnSync(cmd, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
if (r.status !== 0 || !existsSync(path.join(root, 'build', 'Release', 'autoglm_native.node'))) {
  const log = `${r.stdout ?? ''}\n${r.stderr ?? ''}`;
  const firstErr = log.split('\n').find((l) => /error/i.test(l))?.trim().slice(0, 200) ?? (r.error ? String(r.error) : `exit ${r.status}`);
  notBuilt(`node-gyp failed: ${firstErr}`);
}
console.log('open-autoglm: native backend built (build/Release/autoglm_native.node)');
