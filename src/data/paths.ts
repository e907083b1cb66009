/** Where data lives: the package root (for the embedded datasets) and the data folder of the public datasets. */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

let root: string | undefined;

/** The folder of this package's package.json (works from src/ under tsx and from dist/). */
export function packageRoot(): string {
  if (root) return root;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pj = join(dir, 'package.json');
    if (existsSync(pj)) {
      try {
        if ((JSON.parse(readFileSync(pj, 'utf8')) as { name?: string }).name === 'open-autoglm') return (root = dir);
      } catch { /* not ours; keep looking */ }
    }
    const up = dirname(dir);
    if (up === dir) return (root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..'));
    dir = up;
  }
}

const isDir = (p: string) => existsSync(p) && statSync(p).isDirectory();

/**
 * The data folder: `dir` if given, else $AUTOGLM_DATA_DIR, else `../shared/data` next to the package root if it
 * exists, else `./data` (from the working directory). The folder is not required to exist here; loaders say
 * which file they missed.
 */
export function resolveDataDir(dir?: string): string {
  if (dir !== undefined && dir !== '') return resolve(dir);
  const env = process.env['AUTOGLM_DATA_DIR'];
  if (env !== undefined && env !== '') return resolve(env);
  const shared = resolve(packageRoot(), '..', 'shared', 'data');
  if (isDir(shared)) return shared;
  return resolve('data');
}
