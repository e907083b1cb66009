/**
 * The server of `autoglm web` (no browser needed): COOP/COEP on every response (or none with isolate false), the
 * page, its bundles, the wasm kernels, the model's files and custom_intent_v2 served with their types, and nothing
 * outside those folders.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startWebServer } from '../src/web/server.js';

test('autoglm web serves the page, bundles, kernels, model and dataset, cross-origin isolated', async () => {
  const s = await startWebServer({ port: 0 });
  try {
    const get = (p: string) => fetch(new URL(p, s.url));
    const page = await get('/');
    assert.equal(page.status, 200);
    assert.equal(page.headers.get('cross-origin-opener-policy'), 'same-origin');
    assert.equal(page.headers.get('cross-origin-embedder-policy'), 'require-corp');
    assert.match(await page.text(), /<script type="module" src="\/app.js">/);
    for (const [p, type] of [['/app.js', 'text/javascript'], ['/worker.js', 'text/javascript'], ['/autoglm.js', 'text/javascript'],
      ['/wasm/autoglm-mt.wasm', 'application/wasm'], ['/wasm/autoglm-st.wasm', 'application/wasm'], ['/model/model.json', 'application/json'],
      ['/model/vocab.json', 'application/json'], ['/datasets/custom_intent_v2/test.jsonl', 'application/x-ndjson']] as const) {
      const r = await get(p);
      assert.equal(r.status, 200, p);
      assert.ok(r.headers.get('content-type')!.startsWith(type), `${p}: ${r.headers.get('content-type')}`);
      assert.equal(r.headers.get('cross-origin-embedder-policy'), 'require-corp', p);
      await r.arrayBuffer();
    }
    for (const p of ['/model/../../../package.json', '/model/%2e%2e/%2e%2e/package.json', '/nothing-here.js', '/datasets/']) {
      const r = await get(p);
      assert.equal(r.status, 404, p);
      await r.text();
    }
  } finally {
    await s.close();
  }
  const plain = await startWebServer({ port: 0, isolate: false });
  try {
    const r = await fetch(plain.url);
    assert.equal(r.headers.get('cross-origin-opener-policy'), null);
    await r.text();
  } finally {
    await plain.close();
  }
});

test('autoglm web: a port outside 0-65535 is a ConfigError naming the option (exit 2), not a RangeError from the server', async () => {
  const { main } = await import('../src/cli/main.js');
  const errors: string[] = [];
  const saved = process.stderr.write;
  process.stderr.write = ((chunk: string | Uint8Array) => { errors.push(String(chunk)); return true; }) as typeof process.stderr.write;
  try {
    assert.equal(await main(['web', '--port', '99999']), 2);
    assert.equal(await main(['web', '--port', '-1']), 2);
  } finally {
    process.stderr.write = saved;
  }
  assert.match(errors.join(''), /option '--port' is '99999'; expected an integer from 0 to 65535/);
});
