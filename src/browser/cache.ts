/**
 * Files a page keeps between visits, in the Cache API: the base model's files (fetched once, then read from the
 * cache) and trained adapters (PEFT's two files under a name). Where the Cache API is missing (an insecure origin,
 * some private modes) files are fetched each time and adapters are not kept; nothing fails for it.
 */
const CACHE = 'open-autoglm-v1';
/** Adapters live under this made-up path of the page's origin. */
const ADAPTERS = '/__autoglm/adapters/';

async function openCache(): Promise<Cache | null> {
  try {
    return typeof caches === 'undefined' ? null : await caches.open(CACHE);
  } catch {
    return null;
  }
}

/** The bytes at `url`: from the cache when there, else fetched (and cached when the response is OK). */
export async function cachedBytes(url: string): Promise<ArrayBuffer> {
  const cache = await openCache();
  const hit = await cache?.match(url);
  if (hit) return hit.arrayBuffer();
  const r = await fetch(url);
  if (!r.ok) throw new Error(`fetching ${url}: HTTP ${r.status} ${r.statusText}`);
  if (cache) await cache.put(url, r.clone()).catch(() => undefined);
  return r.arrayBuffer();
}

export type AdapterFiles = { 'adapter_config.json': string; 'adapter_model.safetensors': Uint8Array };

function adapterUrl(name: string, file: string): string {
  return new URL(`${ADAPTERS}${encodeURIComponent(name)}/${file}`, (globalThis as { location?: { href: string } }).location?.href ?? 'http://localhost/').href;
}

/** Keeps an adapter under `name`; false where there is no Cache API. */
export async function storeAdapter(name: string, files: AdapterFiles): Promise<boolean> {
  const cache = await openCache();
  if (!cache) return false;
  await cache.put(adapterUrl(name, 'adapter_config.json'), new Response(files['adapter_config.json'], { headers: { 'content-type': 'application/json' } }));
  await cache.put(adapterUrl(name, 'adapter_model.safetensors'), new Response(files['adapter_model.safetensors'] as Uint8Array<ArrayBuffer>, { headers: { 'content-type': 'application/octet-stream' } }));
  return true;
}

/** An adapter kept by storeAdapter, or null. */
export async function loadStoredAdapter(name: string): Promise<AdapterFiles | null> {
  const cache = await openCache();
  const c = await cache?.match(adapterUrl(name, 'adapter_config.json'));
  const w = await cache?.match(adapterUrl(name, 'adapter_model.safetensors'));
  if (!c || !w) return null;
  return { 'adapter_config.json': await c.text(), 'adapter_model.safetensors': new Uint8Array(await w.arrayBuffer()) };
}
