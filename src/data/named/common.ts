/** Helpers shared by the named-dataset loaders. */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { DatasetError } from '../../errors.js';

/** `<dataDir>/<folder>/<file>`, or a DatasetError saying where the dataset was expected and how to point at it. */
export function requireFile(dataDir: string, folder: string, file: string, dataset: string): string {
  const p = join(dataDir, folder, file);
  if (!existsSync(p)) {
    throw new DatasetError(
      `'loadDataset': dataset '${dataset}' not found: expected '${p}' (data folder '${dataDir}'; set dataDir / --data-dir or AUTOGLM_DATA_DIR)`,
    );
  }
  return p;
}
