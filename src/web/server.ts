/**
 * The static server of `autoglm web`: the page (examples/browser/index.html), its bundles (dist/web, built by
 * scripts/build-web.mjs, and built here first when missing), the wasm kernels, open-autoglm-base's files from the
 * weights package, and custom_intent_v2's files. Every response carries Cross-Origin-Opener-Policy: same-origin
 * and Cross-Origin-Embedder-Policy: require-corp, so the page is cross-origin isolated and SharedArrayBuffer (the
 * threaded wasm kernels) works; `isolate: false` leaves them out (the single-threaded path). Node only.
 */
import { createServer, type Server } from 'node:http';
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { packageRoot } from '../package-root.js';
import { defaultModelDir } from '../models/use-lite/files.js';
import { wasmFile } from '../backend/wasm/node.js';
import { ConfigError } from '../errors.js';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.map': 'application/json', '.json': 'application/json',
  '.wasm': 'application/wasm', '.jsonl': 'application/x-ndjson; charset=utf-8', '.bin': 'application/octet-stream', '.css': 'text/css',
};

export interface WebServerOptions {
  port?: number;
  host?: string;
  /** Send COOP/COEP (default true). */
  isolate?: boolean;
  /** Extra static folders by URL prefix (e.g. '/test/' for the browser tests' bundles). */
  extra?: Record<string, string>;
  /** Rebuild dist/web before serving (default: only when it is missing). */
  rebuild?: boolean;
}

export interface WebServer {
  url: string;
  server: Server;
  close(): Promise<void>;
}

/** The browser bundles, built when missing (or when `rebuild`); throws with the fix when esbuild is absent. */
export async function ensureWebBuild(rebuild = false): Promise<string> {
  const root = packageRoot();
  const dir = path.join(root, 'dist', 'web');
  if (!rebuild && ['autoglm.js', 'worker.js', 'app.js'].every((f) => existsSync(path.join(dir, f)))) return dir;
  const script = path.join(root, 'scripts', 'build-web.mjs');
  if (!existsSync(script)) throw new ConfigError(`the browser bundles are missing in ${dir} and this install has no scripts/build-web.mjs to build them`);
  const { buildWeb } = (await import(pathToFileURL(script).href)) as { buildWeb(o?: { outdir?: string }): Promise<unknown> };
  await buildWeb({ outdir: dir });
  return dir;
}

/** Static folders by URL prefix, longest prefix first. */
function routes(webDir: string, extra: Record<string, string>): Array<[string, string]> {
  const root = packageRoot();
  const wasm = wasmFile();
  const r: Array<[string, string]> = [
    ['/wasm/', wasm ? path.dirname(wasm.file) : path.join(root, 'wasm', 'prebuilt')],
    ['/model/', defaultModelDir()],
    ['/datasets/', path.join(root, 'datasets')],
    ...Object.entries(extra),
    ['/', webDir],
  ];
  return r.sort((a, b) => b[0].length - a[0].length);
}

export async function startWebServer(o: WebServerOptions = {}): Promise<WebServer> {
  const webDir = await ensureWebBuild(o.rebuild);
  const page = path.join(packageRoot(), 'examples', 'browser', 'index.html');
  const table = routes(webDir, o.extra ?? {});
  const isolate = o.isolate ?? true;
  const server = createServer((req, res) => {
    const headers: Record<string, string> = { 'Cache-Control': 'no-cache', 'Cross-Origin-Resource-Policy': 'same-origin' };
    if (isolate) Object.assign(headers, { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' });
    const url = new URL(req.url ?? '/', 'http://x');
    let file: string | null = null;
    if (url.pathname === '/' || url.pathname === '/index.html') file = page;
    else {
      const hit = table.find(([prefix]) => url.pathname.startsWith(prefix));
      if (hit) {
        const rel = decodeURIComponent(url.pathname.slice(hit[0].length));
        const abs = path.resolve(hit[1], rel);
        if (abs.startsWith(path.resolve(hit[1]) + path.sep)) file = abs; // no way out of the folder
      }
    }
    if (!file || !existsSync(file) || !statSync(file).isFile() || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { ...headers, 'Content-Type': 'text/plain' });
      res.end('not found\n');
      return;
    }
    res.writeHead(200, { ...headers, 'Content-Type': TYPES[path.extname(file)] ?? 'application/octet-stream' });
    res.end(req.method === 'HEAD' ? undefined : readFileSync(file));
  });
  const host = o.host ?? '127.0.0.1';
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(o.port ?? 8080, host, () => ok());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : o.port;
  return {
    url: `http://${host === '0.0.0.0' ? 'localhost' : host}:${port}/`,
    server,
    close: () => new Promise((ok) => server.close(() => ok())),
  };
}
