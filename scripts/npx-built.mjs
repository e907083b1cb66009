#!/usr/bin/env node
// Exits 0 (the caller then skips its build) when npm runs this package's lifecycle scripts only because `npx autoglm`
// (npm exec) installs a checkout into npm's npx cache, and the checkout has been built before (build/, which the
// package does not ship, and dist/cli/main.js exist); else 1. npm exec runs a command that the local package's own bin provides by installing the checkout
// as a linked package, once per checkout, and that install would run `install` and `prepare` again: the addon, the
// wasm kernels and dist/ rebuilt on the first `npx autoglm` (about a minute on 2 cores, after `npm ci` built them).
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const built = process.env.npm_command === 'exec' && existsSync(path.join(root, 'build')) && existsSync(path.join(root, 'dist', 'cli', 'main.js'));
if (built) console.log(`open-autoglm: ${process.env.npm_lifecycle_event ?? 'build'} skipped under npx: this checkout is already built (npm ci / npm run build rebuild it)`);
process.exit(built ? 0 : 1);
