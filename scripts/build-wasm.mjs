#!/usr/bin/env node
/**
 * Builds the WebAssembly kernels (wasm/*.cc -> build/wasm/autoglm-mt.wasm, threads on shared memory, and
 * build/wasm/autoglm-st.wasm, single-threaded for pages that are not cross-origin isolated) with clang's wasm32
 * target and lld, at `npm install` / `npm ci`. Never fails the install: without clang, lld or the wasm32 target
 * it says so and the package's committed build (wasm/prebuilt/, the same sources) is used.
 *   node scripts/build-wasm.mjs            build into build/wasm/
 *   node scripts/build-wasm.mjs --prebuilt build into wasm/prebuilt/ (maintainers, after changing wasm/*.cc)
 *   node scripts/build-wasm.mjs --out DIR  build into DIR
 * AUTOGLM_SKIP_WASM=1 skips the build.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const outDir = args.includes('--prebuilt') ? path.join(root, 'wasm', 'prebuilt')
  : args.includes('--out') ? path.resolve(args[args.indexOf('--out') + 1]) : path.join(root, 'build', 'wasm');
const strict = args.includes('--strict');

function skip(why) {
  console.log(`open-autoglm: wasm kernels not built from source (${why}); the prebuilt ones in wasm/prebuilt are used`);
  process.exit(strict ? 1 : 0);
}
if (process.env.AUTOGLM_SKIP_WASM === '1') skip('AUTOGLM_SKIP_WASM=1');
const clang = process.env.AUTOGLM_CLANG ?? 'clang++';
if (spawnSync(clang, ['--version'], { stdio: 'ignore' }).status !== 0) skip(`no ${clang}`);
if (spawnSync('wasm-ld', ['--version'], { stdio: 'ignore' }).status !== 0) skip('no wasm-ld (apt-get install -y lld)');

const src = path.join(root, 'wasm');
const sources = readdirSync(src).filter((f) => f.endsWith('.cc')).sort();
const compile = ['--target=wasm32', '-O3', '-msimd128', '-mbulk-memory', '-mmutable-globals', '-mnontrapping-fptoint',
  '-msign-ext', '-ffreestanding', '-fno-exceptions', '-fno-rtti', '-std=c++17', '-Wall', '-Werror',
  '-ffile-prefix-map=' + root + '=.'];
const link = ['--target=wasm32', '-nostdlib', '-Wl,--no-entry', '-Wl,--import-memory', '-Wl,--export=__stack_pointer',
  '-Wl,--export=__heap_base', '-Wl,-z,stack-size=1048576', '-Wl,--strip-all'];
// gemm.cc without loop strength reduction: with it, LLVM turns the micro-kernel's constant offsets into i32 adds
// ahead of each load (wasm folds an offset into a load only when the add cannot wrap), which V8 then emits as an
// instruction each; without, the offsets ride in the loads (~5% more GFLOP/s). Other kernels keep it.
const perSource = { 'gemm.cc': ['-mllvm', '-disable-lsr'] };
const variants = [
  ['autoglm-mt.wasm', ['-matomics', '-DAG_THREADS'], ['-Wl,--shared-memory', '-Wl,--max-memory=4294967296']],
  ['autoglm-st.wasm', [], ['-Wl,--max-memory=4294967296']],
];
let tmp = null;  // the objects' folder, removed on the way out (skip() exits the process)
function run(args, what) {
  const r = spawnSync(clang, args, { encoding: 'utf8' });
  if (r.status !== 0) {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
    if (/unknown target|No available targets|wasm32/.test(r.stderr)) skip(`${clang} has no wasm32 target: ${r.stderr.trim().split('\n')[0]}`);
    console.log(r.stderr);
    skip(`${clang} failed on ${what}`);
  }
}
mkdirSync(outDir, { recursive: true });
tmp = mkdtempSync(path.join(os.tmpdir(), 'autoglm-wasm-obj-'));
try {
  for (const [name, cflags, lflags] of variants) {
    const objects = sources.map((f) => {
      const obj = path.join(tmp, `${path.basename(name, '.wasm')}-${f}.o`);
      run([...compile, ...cflags, ...(perSource[f] ?? []), '-c', '-o', obj, path.join(src, f)], `${f} (${name})`);
      return obj;
    });
    run([...link, ...lflags, '-o', path.join(outDir, name), ...objects], name);
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
// the compiler that made them: test/wasm.test.ts compares a fresh build with wasm/prebuilt only under the same one
const version = spawnSync(clang, ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0].trim();
writeFileSync(path.join(outDir, 'clang-version.txt'), version + '\n');
console.log(`open-autoglm: wasm kernels built into ${path.relative(root, outDir) || '.'}`);
