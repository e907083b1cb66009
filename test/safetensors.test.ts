/** safetensors: round trips, 16-bit storage, and hostile files (typed errors, never a crash). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadSafetensors, saveSafetensors } from '../src/models/safetensors.js';
import { Tensor } from '../src/tensor/tensor.js';
import { tensor, randn } from '../src/tensor/creation.js';
import { CheckpointError } from '../src/errors.js';
import { Rng } from '../src/backend/rng.js';

const dir = mkdtempSync(path.join(tmpdir(), 'autoglm-st-'));

function sample(): Map<string, Tensor> {
  return new Map<string, Tensor>([
    ['w', randn([3, 5], 1)],
    ['b.bf16', randn([4], 2).to('bf16')],
    ['h.f16', randn([2, 2], 3).to('f16')],
    ['ids', tensor([1, 2, 3], { dtype: 'i32' })],
    ['empty', new Tensor(new Float32Array(0), 'f32', [0, 3])],
  ]);
}

test('round trip: load -> save -> load gives identical tensors', () => {
  const f = path.join(dir, 'a.safetensors');
  const src = sample();
  saveSafetensors(f, src, { format: 'pt' });
  const { tensors, metadata } = loadSafetensors(f, { floatDType: 'keep' });
  assert.equal(metadata.format, 'pt');
  for (const [k, t] of src) {
    const u = tensors.get(k) as Tensor;
    assert.equal(u.dtype, t.dtype, k);
    assert.deepEqual(u.shape, t.shape, k);
    assert.deepEqual(Array.from(u.dense()), Array.from(t.dense()), k);
  }
  const f2 = path.join(dir, 'b.safetensors');
  saveSafetensors(f2, tensors, metadata);
  assert.deepEqual(readFileSync(f2), readFileSync(f));
  // default: floats as f32
  const asF32 = loadSafetensors(f).tensors;
  assert.equal(asF32.get('b.bf16')?.dtype, 'f32');
  assert.deepEqual(asF32.get('b.bf16')?.toFlatArray(), src.get('b.bf16')?.toFlatArray());
});

function withHeader(header: unknown, data = new Uint8Array(16), lenOverride?: bigint): string {
  const hb = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lenOverride ?? BigInt(hb.length));
  const f = path.join(dir, `h-${Math.random().toString(36).slice(2)}.safetensors`);
  writeFileSync(f, Buffer.concat([len, hb, data]));
  return f;
}

test('hostile headers raise CheckpointError naming the file and the tensor', () => {
  const cases: Array<[string, string, RegExp]> = [
    ['length past end', withHeader({}, new Uint8Array(0), 1n << 40n), /runs past the end/],
    ['bad json', (() => { const f = path.join(dir, 'j.safetensors'); const b = Buffer.alloc(8 + 3); b.writeBigUInt64LE(3n); b.write('{x}', 8); writeFileSync(f, b); return f; })(), /not valid UTF-8 JSON/],
    ['unknown dtype', withHeader({ t: { dtype: 'Q4', shape: [2], data_offsets: [0, 8] } }), /'t'.*unknown dtype/],
    ['offsets out of range', withHeader({ t: { dtype: 'F32', shape: [8], data_offsets: [0, 32] } }), /'t'.*run past/],
    ['overlap', withHeader({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }), /overlap/],
    ['size mismatch', withHeader({ t: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }), /'t'.*needs 12/],
    ['negative shape', withHeader({ t: { dtype: 'F32', shape: [-1], data_offsets: [0, 0] } }), /shape/],
    ['end before begin', withHeader({ t: { dtype: 'F32', shape: [0], data_offsets: [8, 4] } }), /end before/],
    ['tiny file', (() => { const f = path.join(dir, 't.safetensors'); writeFileSync(f, Buffer.alloc(3)); return f; })(), /8-byte header/],
  ];
  for (const [what, f, re] of cases) {
    assert.throws(() => loadSafetensors(f), (e: unknown) => e instanceof CheckpointError && re.test(e.message) && e.message.includes(f), what);
  }
  assert.throws(() => loadSafetensors(path.join(dir, 'missing.safetensors')), CheckpointError);
});

test('overlaps are found between any two tensors, not only neighbours; a zero-length entry cannot mask one', () => {
  const F = (b: number, e: number) => ({ dtype: 'F32', shape: [(e - b) / 4], data_offsets: [b, e] });
  const bad: Array<[string, Record<string, unknown>]> = [
    ['zero-length between', { a: F(0, 8), z: F(4, 4), b: F(4, 12) }],
    ['zero-length strictly inside', { a: F(0, 8), z: F(4, 4) }],
    ['inside a long one, past its neighbour', { big: F(0, 16), b: F(4, 8), c: F(8, 12) }],
  ];
  for (const [what, h] of bad) {
    assert.throws(() => loadSafetensors(withHeader(h)), (e: unknown) => e instanceof CheckpointError && /overlap tensor/.test(e.message), what);
  }
  // zero-length entries at a boundary, and back-to-back tensors, are fine
  const ok = loadSafetensors(withHeader({ z0: F(0, 0), a: F(0, 8), z1: F(8, 8), b: F(8, 16), z2: F(16, 16) })).tensors;
  assert.deepEqual([...ok.keys()].sort(), ['a', 'b', 'z0', 'z1', 'z2']);
});

test('I64 tensors load as i32 when every value fits, and raise CheckpointError naming the tensor when one does not', () => {
  const fits = new BigInt64Array([0n, -5n, 2147483647n, -2147483648n]);
  const t = loadSafetensors(withHeader({ ids: { dtype: 'I64', shape: [4], data_offsets: [0, 32] } }, new Uint8Array(fits.buffer))).tensors.get('ids') as Tensor;
  assert.equal(t.dtype, 'i32');
  assert.deepEqual(Array.from(t.dense()), [0, -5, 2147483647, -2147483648]);
  for (const v of [2147483648n, -2147483649n, 1n << 40n]) {
    const data = new BigInt64Array([1n, v]);
    const f = withHeader({ pos: { dtype: 'I64', shape: [2], data_offsets: [0, 16] } }, new Uint8Array(data.buffer));
    assert.throws(() => loadSafetensors(f), (e: unknown) => e instanceof CheckpointError && /tensor 'pos'.*element 1 is -?\d+, outside the int32 range/.test(e.message), String(v));
  }
});

test('fuzz: 2000 mutated files either load or raise CheckpointError', () => {
  const f = path.join(dir, 'fuzz-src.safetensors');
  saveSafetensors(f, sample());
  const good = readFileSync(f);
  const rng = new Rng(42);
  let loaded = 0, rejected = 0;
  for (let i = 0; i < 2000; i++) {
    const b = Buffer.from(good);
    const kind = rng.int(4);
    if (kind === 0) b.writeUInt8(rng.int(256), rng.int(8)); // header length bytes
    else if (kind === 1) for (let k = 0; k < 3; k++) b.writeUInt8(32 + rng.int(95), 8 + rng.int(Number(good.readBigUInt64LE(0)))); // header text
    else if (kind === 2) { /* truncate */ }
    else b.writeUInt8(rng.int(10) + 48, 8 + rng.int(Number(good.readBigUInt64LE(0))));
    const bytes = kind === 2 ? b.subarray(0, rng.int(b.length)) : b;
    const m = path.join(dir, 'fuzz.safetensors');
    writeFileSync(m, bytes);
    try {
      loadSafetensors(m);
      loaded++;
    } catch (e) {
      if (!(e instanceof CheckpointError)) throw new Error(`mutation ${i} (kind ${kind}) raised ${(e as Error).name}: ${(e as Error).message}`);
      rejected++;
    }
  }
  assert.ok(rejected > 500, `only ${rejected} mutations rejected`);
  assert.equal(loaded + rejected, 2000);
});
