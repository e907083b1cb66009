#!/usr/bin/env node
// Links this package's own `autoglm` command into node_modules/.bin (run by `prepare`, after `npm ci`), so that
// `npx autoglm` in a checkout runs it at once. npm links the bins of dependencies, never the root package's own; without
// the link, the first `npx autoglm` in a checkout installs the checkout into npm's npx cache (a link to it, whose
// install and prepare scripts then rebuild the addon, the wasm kernels and dist/: about a minute on 2 cores).
import { existsSync, lstatSync, mkdirSync, readlinkSync, symlinkSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
if (!existsSync(path.join(root, 'node_modules'))) process.exit(0); // not a checkout with its dependencies installed
const dir = path.join(root, 'node_modules', '.bin');
mkdirSync(dir, { recursive: true });
const link = path.join(dir, 'autoglm'), target = path.join('..', '..', 'bin', 'autoglm.js');
let current = null;
try {
  current = lstatSync(link).isSymbolicLink() ? readlinkSync(link) : '';
} catch {
  // no link yet
}
if (current !== target) {
  if (current !== null) unlinkSync(link);
  symlinkSync(target, link);
}
