#!/usr/bin/env node
/**
 * The browser build (esbuild): src/browser/index.ts -> dist/web/autoglm.js (the library's browser entry),
 * src/browser/worker.ts -> dist/web/worker.js (the page's training worker), examples/browser/app.ts ->
 * dist/web/app.js (the page). ES modules for browsers, with source maps; class names are kept (error names such
 * as ConfigError reach the page).
 *
 * Node-only modules stay out: a module `x.ts` with a sibling `x.browser.ts` is replaced by it (the one today:
 * src/backend/index.ts, whose native addon and worker_threads give way to index.browser.ts's fetch + Web Workers),
 * and csv-parse's browser build stands in for its Node one. The build FAILS if any Node builtin (node:fs, path,
 * worker_threads, ...) is still imported by what it bundles, naming the importing file.
 *
 *   node scripts/build-web.mjs [--out dir]        (npm run build:web)
 */
import { existsSync, mkdirSync } from 'node:fs';
import { builtinModules } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BUILTINS = new Set([...builtinModules, ...builtinModules.map((m) => `node:${m}`)]);

export const WEB_ENTRIES = {
  autoglm: path.join(ROOT, 'src', 'browser', 'index.ts'),
  worker: path.join(ROOT, 'src', 'browser', 'worker.ts'),
  app: path.join(ROOT, 'examples', 'browser', 'app.ts'),
};

/** Replaces `x.ts` by a sibling `x.browser.ts` where there is one (relative imports inside the package). */
const browserVariants = {
  name: 'browser-variants',
  setup(b) {
    b.onResolve({ filter: /^\.\.?\// }, (args) => {
      if (args.kind === 'entry-point') return undefined;
      const target = path.resolve(args.resolveDir, args.path).replace(/\.js$/, '');
      const alt = `${target}.browser.ts`;
      return existsSync(alt) ? { path: alt } : undefined;
    });
  },
};

/** Every Node builtin imported by a bundled file: [importer, builtin]. */
export function nodeImports(metafile) {
  const bad = [];
  for (const [file, info] of Object.entries(metafile.inputs)) {
    for (const imp of info.imports) if (BUILTINS.has(imp.path)) bad.push([file, imp.path]);
  }
  return bad;
}

/**
 * Builds `entries` (name -> file; default WEB_ENTRIES) into `outdir`. Builtins are marked external so that every
 * one is found and reported at once; any found throws. Returns the metafile. `write: false` builds in memory.
 */
export async function buildWeb({ outdir = path.join(ROOT, 'dist', 'web'), entries = WEB_ENTRIES, write = true, minify = true } = {}) {
  let esbuild;
  try {
    esbuild = await import('esbuild');
  } catch (e) {
    throw new Error(`the browser build needs esbuild (npm install --save-dev esbuild): ${e.message}`);
  }
  if (write) mkdirSync(outdir, { recursive: true });
  const r = await esbuild.build({
    entryPoints: entries, outdir, bundle: true, format: 'esm', platform: 'browser', target: ['es2022', 'chrome111', 'firefox111', 'safari16.4'],
    sourcemap: write, minify, keepNames: true, write, metafile: true, logLevel: 'silent', absWorkingDir: ROOT,
    alias: { 'csv-parse/sync': 'csv-parse/browser/esm/sync' },
    external: [...BUILTINS], plugins: [browserVariants],
  });
  const bad = nodeImports(r.metafile);
  if (bad.length) {
    throw new Error(`the browser build imports Node builtins:\n${bad.map(([f, m]) => `  ${f} imports '${m}'`).join('\n')}\nmove that code behind a Node-only entry point or give the module a .browser.ts sibling`);
  }
  return r.metafile;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const i = process.argv.indexOf('--out');
  const outdir = i > 0 ? path.resolve(process.argv[i + 1]) : undefined;
  buildWeb({ outdir }).then((meta) => {
    const outs = Object.entries(meta.outputs).filter(([f]) => f.endsWith('.js'));
    for (const [f, o] of outs) console.log(`${path.relative(ROOT, f)}  ${(o.bytes / 1024).toFixed(0)} KiB`);
  }, (e) => {
    console.error(`build-web: ${e.message}`);
    process.exit(1);
  });
}
