/**
 * Headless Chromium with WebGPU for the kernel tests and the WebGPU bench: bundles a page script with esbuild into a
 * temporary folder, opens it from file:// (a secure context, so navigator.gpu exists; a classic script, as file://
 * refuses module scripts) and returns what a function of the page gives. The browser is found and driven as the
 * browser tests do (src/web/headless.ts: `findChromium`, `browserUnavailable`, playwright-core).
 * Chromium exposes WebGPU there through SwiftShader with `--enable-unsafe-webgpu` alone (probed: Chromium 156 on
 * Debian 12, adapter "google swiftshader", no shader-f16); AUTOGLM_CHROMIUM_ADAPTER=llvmpipe runs it under Xvfb on
 * Mesa's llvmpipe instead (src/web/llvmpipe.ts).
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { browserUnavailable, chromiumAdapterFromEnv, findChromium, webgpuLaunchOptions } from '../../src/web/headless.js';
import { startXvfb, type VirtualDisplay } from '../../src/web/llvmpipe.js';

/** As the browser build (scripts/build-web.mjs): `x.ts` gives way to a sibling `x.browser.ts` (src/backend/index.ts). */
const browserVariants: import('esbuild').Plugin = {
  name: 'browser-variants',
  setup(b) {
    b.onResolve({ filter: /^\.\.?\// }, (args) => {
      if (args.kind === 'entry-point') return undefined;
      const alt = `${path.resolve(args.resolveDir, args.path).replace(/\.js$/, '')}.browser.ts`;
      return existsSync(alt) ? { path: alt } : undefined;
    });
  },
};

/** Why a WebGPU browser test cannot run here (no Chromium, no playwright-core), or null when it can try. */
export const browserMissing = browserUnavailable;

/** Bundles `entry` (a browser module) and runs `fn(arg)` in a headless page; `timeoutMs` bounds the page's call. */
export async function runInChromium<T>(entry: string, fn: string, arg: unknown, timeoutMs: number): Promise<T> {
  const exe = findChromium();
  if (!exe) throw new Error(`no Chromium found (${await browserUnavailable()})`);
  const esbuild = await import('esbuild');
  const { chromium } = await import('playwright-core');
  const dir = mkdtempSync(path.join(tmpdir(), 'autoglm-webgpu-'));
  try {
    await esbuild.build({ entryPoints: [entry], bundle: true, format: 'iife', platform: 'browser', target: 'es2022',
      outfile: path.join(dir, 'page.js'), logLevel: 'error', plugins: [browserVariants],
      alias: { 'csv-parse/sync': 'csv-parse/browser/esm/sync' } });
    writeFileSync(path.join(dir, 'index.html'), '<!doctype html><meta charset="utf-8"><script src="page.js"></script>\n');
    const adapter = chromiumAdapterFromEnv();
    const xvfb: VirtualDisplay | null = adapter === 'llvmpipe' ? await startXvfb() : null;
    const { args, ...rest } = webgpuLaunchOptions(adapter, xvfb?.display ?? null);
    const browser = await chromium.launch({ executablePath: exe, ...rest, args: ['--no-sandbox', ...args, '--disable-dev-shm-usage'] })
      .catch(async (e: unknown) => { await xvfb?.close(); throw e; });
    try {
      const page = await browser.newPage();
      const logs: string[] = [];
      page.on('pageerror', (e) => logs.push(String(e)));
      page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') logs.push(m.text()); });
      await page.goto(`file://${dir}/index.html`);
      await page.waitForFunction(`typeof globalThis.${fn} === 'function'`, undefined, { timeout: 30_000 }).catch(() => {
        throw new Error(`the page did not load: ${logs.join('\n') || 'no error in the console'}`);
      });
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${fn} did not finish in ${timeoutMs / 1000} s: ${logs.slice(-10).join('\n')}`)), timeoutMs);
      });
      try {
        return (await Promise.race([page.evaluate(`globalThis.${fn}(${JSON.stringify(arg)})`), timeout])) as T;
      } finally {
        clearTimeout(timer);
      }
    } finally {
      await browser.close();
      await xvfb?.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
