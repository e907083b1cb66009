/**
 * Reading text files: UTF-8 with a fast strict path; on damage (bytes that are not valid UTF-8, as in some SNIPS
 * files) the text is decoded with U+FFFD replacements and the damaged lines are returned, never thrown.
 */
import { readFileSync, statSync } from 'node:fs';
import { DatasetError } from '../errors.js';
import { decodeText, type DecodedFile } from './decode.js';

export { findInvalidUtf8, decodeText, type DecodedFile } from './decode.js';

export function readTextFile(file: string, caller = 'loadDataset'): DecodedFile {
  let bytes: Buffer;
  try {
    if (!statSync(file).isFile()) throw new Error('not a regular file');
    bytes = readFileSync(file);
  } catch (e) {
    throw new DatasetError(`'${caller}' cannot read dataset file '${file}': ${(e as Error).message}`, { cause: e });
  }
  return decodeText(bytes);
}

