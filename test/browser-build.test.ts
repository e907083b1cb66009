/**
 * The browser build: esbuild bundles the browser entry, the page's worker and the page for platform=browser with
 * no Node builtin anywhere in what they import (scripts/build-web.mjs fails the build naming the file otherwise);
 * this test also shows that a builtin sneaking in fails the build, and that package.json routes the "browser"
 * condition to the bundle. No browser needed: runs everywhere.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
type Meta = { inputs: Record<string, { imports: Array<{ path: string }> }> };
const { buildWeb, nodeImports, WEB_ENTRIES } = (await import(pathToFileURL(path.join(ROOT, 'scripts', 'build-web.mjs')).href)) as {
  buildWeb(o: { entries?: Record<string, string>; write?: boolean; minify?: boolean }): Promise<Meta>;
  nodeImports(m: Meta): Array<[string, string]>;
  WEB_ENTRIES: Record<string, string>;
};

test('the browser entry, worker and page bundle for platform=browser with no Node builtin', async () => {
  const meta = await buildWeb({ write: false, minify: false });
  assert.deepEqual(nodeImports(meta), []);
  const files = Object.keys(meta.inputs);
  // the Node backend selection gave way to the browser one; no native addon, no worker_threads loader
  assert.ok(files.includes('src/backend/index.browser.ts'), 'index.browser.ts bundled');
  for (const f of ['src/backend/index.ts', 'src/backend/native.ts', 'src/backend/wasm/node.ts', 'src/backend/gc.ts']) assert.ok(!files.includes(f), `${f} must stay out of the browser build`);
  assert.ok(files.includes('src/browser/train.ts') && files.includes('src/backend/wasm/browser.ts'));
});

test('a Node builtin in the browser build fails it, naming the importing file', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'autoglm-web-'));
  try {
    const entry = path.join(dir, 'leaky.ts');
    writeFileSync(entry, `import { readFileSync } from 'node:fs';\nexport * from ${JSON.stringify(WEB_ENTRIES.autoglm)};\nexport const x = readFileSync;\n`);
    await assert.rejects(buildWeb({ entries: { leaky: entry }, write: false }), (e: Error) => /imports Node builtins/.test(e.message) && /leaky\.ts imports 'node:fs'/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('package.json: the "browser" condition and ./browser point at the bundle; build writes it', () => {
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { exports: Record<string, Record<string, unknown>>; scripts: Record<string, string>; files: string[] };
  assert.deepEqual(pkg.exports['.']!.browser, { types: './dist/browser/index.d.ts', default: './dist/web/autoglm.js' });
  assert.equal(pkg.exports['./browser']!.default, './dist/web/autoglm.js');
  assert.match(pkg.scripts.build!, /build-web\.mjs/);
  assert.match(pkg.scripts['build:web']!, /build-web\.mjs/);
  assert.ok(pkg.files.includes('examples/browser/index.html') && pkg.files.includes('scripts/build-web.mjs'));
});
