#!/usr/bin/env node
// The `autoglm` command: runs the compiled CLI (npm ci / npm run build produces dist/).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  process.stderr.write('autoglm: dist/ is missing; run `npm run build` in the open-autoglm folder first\n');
  process.exit(1);
}
const { main } = await import(entry.href);
process.exitCode = await main(process.argv.slice(2));
