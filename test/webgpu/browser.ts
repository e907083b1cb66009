/**
 * Headless Chromium with WebGPU for the kernel tests: bundles a page script with esbuild into a temporary folder,
 * opens it from file:// (a secure context, so navigator.gpu exists; a classic script, as file:// refuses module scripts) and returns what a function of the page gives.
 * Chromium exposes WebGPU there through SwiftShader with `--enable-unsafe-webgpu` alone (probed: Chromium 156 on
 * Debian 12, adapter "google swiftshader", no shader-f16).
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export const CHROMIUM = process.env.AUTOGLM_CHROMIUM ?? '/usr/bin/chromium';

/** Why a WebGPU browser test cannot run here, or null when it can try. */
export async function browserMissing(): Promise<string | null> {
  if (!existsSync(CHROMIUM)) return `no Chromium at ${CHROMIUM} (apt-get install chromium, or set AUTOGLM_CHROMIUM)`;
  try {
    await import('puppeteer-core');
  } catch {
    return 'puppeteer-core is not installed (npm install)';
  }
  return null;
}

/** Bundles `entry` (a browser module) and runs `call(arg)` in a headless page; `timeoutMs` bounds the whole run. */
export async function runInChromium<T>(entry: string, fn: string, arg: unknown, timeoutMs: number): Promise<T> {
  const esbuild = await import('esbuild');
  const { default: puppeteer } = await import('puppeteer-core');
  const dir = mkdtempSync(path.join(tmpdir(), 'autoglm-webgpu-'));
  try {
    await esbuild.build({ entryPoints: [entry], bundle: true, format: 'iife', platform: 'browser', target: 'es2022',
      outfile: path.join(dir, 'page.js'), logLevel: 'error' });
    writeFileSync(path.join(dir, 'index.html'), '<!doctype html><meta charset="utf-8"><script src="page.js"></script>\n');
    const browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--enable-unsafe-webgpu', '--disable-dev-shm-usage'],
      protocolTimeout: timeoutMs,
    });
    try {
      const page = await browser.newPage();
      const logs: string[] = [];
      page.on('pageerror', (e) => logs.push(String(e)));
      page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warn') logs.push(m.text()); });
      await page.goto(`file://${dir}/index.html`);
      await page.waitForFunction(`typeof globalThis.${fn} === 'function'`, { timeout: 30_000 }).catch(() => {
        throw new Error(`the page did not load: ${logs.join('\n') || 'no error in the console'}`);
      });
      return (await page.evaluate(`globalThis.${fn}(${JSON.stringify(arg)})`)) as T;
    } finally {
      await browser.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
