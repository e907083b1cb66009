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
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
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
const sources = readdirSync(src).filter((f) => f.endsWith('.cc')).sort().map((f) => path.join(src, f));
const common = ['--target=wasm32', '-O3', '-msimd128', '-mbulk-memory', '-mmutable-globals', '-mnontrapping-fptoint',
  '-msign-ext', '-nostdlib', '-ffreestanding', '-fno-exceptions', '-fno-rtti', '-std=c++17', '-Wall', '-Werror',
  '-Wl,--no-entry', '-Wl,--import-memory', '-Wl,--export=__stack_pointer', '-Wl,--export=__heap_base',
  '-Wl,-z,stack-size=1048576', '-Wl,--strip-all', '-ffile-prefix-map=' + root + '=.'];
const variants = [
  ['autoglm-mt.wasm', ['-matomics', '-DAG_THREADS', '-Wl,--shared-memory', '-Wl,--max-memory=4294967296']],
  ['autoglm-st.wasm', ['-Wl,--max-memory=4294967296']],
];
mkdirSync(outDir, { recursive: true });
for (const [name, flags] of variants) {
  const out = path.join(outDir, name);
  const r = spawnSync(clang, [...common, ...flags, '-o', out, ...sources], { encoding: 'utf8' });
  if (r.status !== 0) {
    if (/unknown target|No available targets|wasm32/.test(r.stderr)) skip(`${clang} has no wasm32 target: ${r.stderr.trim().split('\n')[0]}`);
    console.log(r.stderr);
    skip(`${clang} failed on ${name}`);
  }
}
// the compiler that made them: test/wasm.test.ts compares a fresh build with wasm/prebuilt only under the same one
const version = spawnSync(clang, ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0].trim();
writeFileSync(path.join(outDir, 'clang-version.txt'), version + '\n');
console.log(`open-autoglm: wasm kernels built into ${path.relative(root, outDir) || '.'}`);
