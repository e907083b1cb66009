#!/usr/bin/env node
/**
 * Builds the native addon (build/Release/autoglm_native.node) with node-gyp at `npm install` / `npm ci`.
 * Never fails the install: when the compiler or the system libraries are missing, or the build fails, it prints
 * one line saying so and how to get the fast backend, and exits 0 (the wasm backend then runs, else the portable one).
 * AUTOGLM_SKIP_NATIVE=1 skips the build. With libgloo-dev installed it also builds build/Release/autoglm_gloo.node (the
 * gloo communicator; AUTOGLM_GLOO=0 skips it); if that target breaks the build, it rebuilds without it.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const HINT = 'apt-get install -y libopenblas-dev libopenblas0-openmp libdnnl-dev g++ make && npm rebuild open-autoglm';
const notBuilt = (why) => {
  console.log(`open-autoglm: native backend not built (${why}); the WebAssembly backend will be used. For the fastest one: ${HINT}`);
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
const build = (env) => spawnSync(cmd, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', env });
const built = (name) => existsSync(path.join(root, 'build', 'Release', `${name}.node`));
const firstError = (r) => `${r.stdout ?? ''}\n${r.stderr ?? ''}`.split('\n').find((l) => /error/i.test(l))?.trim().slice(0, 200) ??
  (r.error ? String(r.error) : `exit ${r.status}`);
// binding.gyp adds the optional autoglm_gloo target when libgloo-dev is installed (unless AUTOGLM_GLOO=0).
const GLOO_HINT = 'apt-get install -y libgloo-dev && npm rebuild open-autoglm';
let glooWhy = process.env.AUTOGLM_GLOO === '0' ? 'AUTOGLM_GLOO=0'
  : existsSync('/usr/include/gloo/rendezvous/redis_store.h') ? null : 'libgloo-dev is not installed';
let r = build(process.env);
if ((r.status !== 0 || !built('autoglm_native')) && glooWhy === null) {
  glooWhy = `node-gyp failed: ${firstError(r)}`; // retry without it: the gloo addon never costs the main one
  r = build({ ...process.env, AUTOGLM_GLOO: '0' });
}
if (r.status !== 0 || !built('autoglm_native')) notBuilt(`node-gyp failed: ${firstError(r)}`);
console.log('open-autoglm: native backend built (build/Release/autoglm_native.node)');
if (glooWhy === null && built('autoglm_gloo')) console.log('open-autoglm: gloo communicator built (build/Release/autoglm_gloo.node)');
else console.log(`open-autoglm: gloo communicator not built (${glooWhy ?? 'unknown'}); for multi-machine training: ${GLOO_HINT}`);
