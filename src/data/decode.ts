/** UTF-8 decoding of a dataset file's bytes: a fast strict path; on damage, U+FFFD replacements and the damaged lines. No file system. */

export interface DecodedFile {
  text: string;
  /** 1-based lines holding invalid UTF-8 -> number of invalid sequences on that line. */
  damagedLines: Map<number, number>;
}

/** The text of `bytes`, with the lines that are not valid UTF-8. */
export function decodeText(bytes: Uint8Array): DecodedFile {
  try {
    return { text: new TextDecoder('utf-8', { fatal: true }).decode(bytes), damagedLines: new Map() };
  } catch {
    return { text: new TextDecoder('utf-8').decode(bytes), damagedLines: findInvalidUtf8(bytes) };
  }
}

/** Lines (1-based) with invalid UTF-8 sequences and how many each holds (overlongs, surrogates, > U+10FFFF included). */
export function findInvalidUtf8(b: Uint8Array): Map<number, number> {
  const bad = new Map<number, number>();
  const mark = (line: number) => bad.set(line, (bad.get(line) ?? 0) + 1);
  let line = 1;
  let i = 0;
  while (i < b.length) {
    const c = b[i]!;
    if (c < 0x80) {
      if (c === 0x0a) line++;
      i++;
      continue;
    }
    let need: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) need = 1;
    else if (c >= 0xe0 && c <= 0xef) {
      need = 2;
      if (c === 0xe0) lo = 0xa0; // no overlongs
      if (c === 0xed) hi = 0x9f; // no surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 3;
      if (c === 0xf0) lo = 0x90;
      if (c === 0xf4) hi = 0x8f; // <= U+10FFFF
    } else {
      mark(line);
      i++;
      continue;
    }
    let j = 1;
    for (; j <= need; j++) {
      const d = b[i + j];
      const [l, h] = j === 1 ? [lo, hi] : [0x80, 0xbf];
      if (d === undefined || d < l || d > h) break;
    }
    if (j <= need) {
      mark(line);
      i += j; // resume at the byte that broke the sequence
    } else i += need + 1;
  }
  return bad;
}
