/** Where data lives: the package root (for the embedded datasets) and the data folder of the public datasets. */
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';

export { packageRoot } from '../package-root.js';
import { packageRoot } from '../package-root.js';

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
