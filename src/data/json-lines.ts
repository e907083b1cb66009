/**
 * Line numbers for JSON documents. `JSON.parse` gives values but no positions, so this scanner walks the text once
 * (strings and escapes aware) and returns, for the top-level array or for each top-level key holding an array, the
 * 1-based line on which each element starts. Used to report `file:line` for records of .json datasets.
 */

/** Key '' is the top-level array; other keys are the top-level object's keys whose values are arrays. */
export function arrayElementLines(text: string): Map<string, number[]> {
  const out = new Map<string, number[]>();
  type Frame = { kind: 'arr' | 'obj'; lines?: number[]; awaitingValue: boolean };
  const stack: Frame[] = [];
  let line = 1;
  let topKey: string | null = null; // last key read at depth 1 of a top-level object
  let expectKey = false;
  const startValue = () => {
    const top = stack[stack.length - 1];
    if (top && top.kind === 'arr' && top.awaitingValue) {
      top.lines?.push(line);
      top.awaitingValue = false;
    }
  };
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (ch === '\n') { line++; continue; }
    if (ch === ' ' || ch === '\t' || ch === '\r') continue;
    if (ch === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') {
        if (text[j] === '\\') j++;
        else if (text[j] === '\n') line++;
        j++;
      }
      const depth = stack.length;
      if (expectKey && depth === 1 && stack[0]!.kind === 'obj') topKey = JSON.parse(text.slice(i, j + 1)) as string;
      else if (!expectKey) startValue();
      expectKey = false;
      i = j;
      continue;
    }
    if (ch === '{' || ch === '[') {
      startValue();
      const frame: Frame = { kind: ch === '[' ? 'arr' : 'obj', awaitingValue: ch === '[' };
      const depth = stack.length;
      if (ch === '[' && depth === 0) out.set('', (frame.lines = []));
      if (ch === '[' && depth === 1 && stack[0]!.kind === 'obj' && topKey !== null) out.set(topKey, (frame.lines = []));
      stack.push(frame);
      expectKey = ch === '{';
      continue;
    }
    if (ch === '}' || ch === ']') { stack.pop(); expectKey = false; continue; }
    if (ch === ',') {
      const top = stack[stack.length - 1];
      if (top?.kind === 'arr') top.awaitingValue = true;
      expectKey = top?.kind === 'obj';
      continue;
    }
    if (ch === ':') continue;
    // a number, true, false or null
    startValue();
    while (i + 1 < text.length && /[^\s,\]}]/.test(text[i + 1]!)) i++;
  }
  return out;
}

/** The 1-based line of a character offset. */
export function lineOfOffset(text: string, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset && i < text.length; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}
