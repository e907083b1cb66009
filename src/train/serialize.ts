/**
 * Lossless JSON for training state. JSON.stringify turns NaN and ±Infinity into null and typed arrays into
 * objects keyed by index, so an early-stopping "best so far" of Infinity came back as null after a resume. Here
 * non-finite numbers are written as {"$num": "Infinity" | "-Infinity" | "NaN"}, Float32Array / Float64Array /
 * Int32Array as {"$f32" | "$f64" | "$i32": base64} (little-endian bytes), and -0 as {"$num": "-0"}; everything else
 * is plain JSON, so the files stay readable. `parseState(stringifyState(x))` equals x bit for bit.
 */

const TYPED = { $f32: Float32Array, $f64: Float64Array, $i32: Int32Array } as const;
type TypedKey = keyof typeof TYPED;

function encode(v: unknown): unknown {
  if (typeof v === 'number') {
    if (Number.isNaN(v)) return { $num: 'NaN' };
    if (v === Infinity) return { $num: 'Infinity' };
    if (v === -Infinity) return { $num: '-Infinity' };
    if (Object.is(v, -0)) return { $num: '-0' };
    return v;
  }
  if (v === null || typeof v !== 'object') return v;
  for (const [tag, Ctor] of Object.entries(TYPED)) {
    if (v instanceof Ctor) return { [tag]: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') };
  }
  if (Array.isArray(v)) return v.map(encode);
  if (ArrayBuffer.isView(v)) throw new TypeError(`stringifyState: ${v.constructor.name} is not supported; use Float32Array, Float64Array or Int32Array`);
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) if (x !== undefined) out[k] = encode(x);
  return out;
}

function decode(v: unknown): unknown {
  if (v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map(decode);
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o);
  if (keys.length === 1) {
    const k = keys[0] as string;
    if (k === '$num' && typeof o[k] === 'string') {
      const s = o[k] as string;
      if (s === 'NaN') return NaN;
      if (s === 'Infinity') return Infinity;
      if (s === '-Infinity') return -Infinity;
      if (s === '-0') return -0;
    }
    if (k in TYPED && typeof o[k] === 'string') {
      const b = Buffer.from(o[k] as string, 'base64');
      const Ctor = TYPED[k as TypedKey];
      const bytes = new Uint8Array(b.byteLength);
      bytes.set(b);
      return new Ctor(bytes.buffer, 0, b.byteLength / Ctor.BYTES_PER_ELEMENT);
    }
  }
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(o)) out[k] = decode(x);
  return out;
}

/** JSON text of a state object, without loss (see the file comment). */
export function stringifyState(state: unknown): string {
  return JSON.stringify(encode(state));
}

/** The state object of `stringifyState`'s text (plain JSON reads as itself). */
export function parseState(text: string): unknown {
  return decode(JSON.parse(text));
}
