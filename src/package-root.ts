/** The folder of this package's package.json (works from src/ under tsx and from dist/, and as a dependency). */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

let root: string | undefined;

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
    if (up === dir) return (root = resolve(dirname(fileURLToPath(import.meta.url)), '..'));
    dir = up;
  }
}
