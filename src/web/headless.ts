/**
 * Driving the page in headless Chromium (playwright-core, a dev dependency, over Debian's `chromium`): the browser
 * tests and `autoglm web --headless-run` (the main job in the page, with its time and memory). Node only.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { ConfigError } from '../errors.js';
import { startWebServer, type WebServer, type WebServerOptions } from './server.js';
import { LLVMPIPE_CHROMIUM_FLAGS, startXvfb, type VirtualDisplay } from './llvmpipe.js';
import type { TrainSummary } from '../browser/worker.js';

const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome', '/usr/bin/google-chrome-stable'];

/** The Chromium to drive: AUTOGLM_CHROMIUM, else a system one; null when none is installed. */
export function findChromium(): string | null {
  const env = process.env.AUTOGLM_CHROMIUM;
  if (env) return existsSync(env) ? env : null;
  return CANDIDATES.find((p) => existsSync(p)) ?? null;
}

/** Why the browser tests cannot run here (no Chromium, no playwright-core), or null when they can. */
export async function browserUnavailable(): Promise<string | null> {
  if (process.env.AUTOGLM_CHROMIUM && !findChromium()) return `AUTOGLM_CHROMIUM is '${process.env.AUTOGLM_CHROMIUM}', which does not exist`;
  if (!findChromium()) return `no Chromium (apt-get install -y chromium, or set AUTOGLM_CHROMIUM); looked for ${CANDIDATES.join(', ')}`;
  try {
    await import('playwright-core');
  } catch {
    return 'playwright-core is not installed (a dev dependency: npm install)';
  }
  return null;
}

export interface PageSession {
  server: WebServer;
  browser: BrowserContext;
  page: Page;
  /** The browser's profile folder (its process is found by it, for memory figures). */
  profile: string;
  /** Console lines and page errors, for failure messages. */
  log: string[];
  close(): Promise<void>;
}

/**
 * Chromium's WebGPU flags: `--enable-unsafe-webgpu`, plus Dawn toggles from `dawnFeatures` or, where that is not
 * given, the comma-separated AUTOGLM_WEBGPU_DAWN_FEATURES (e.g. `disable_robustness`: no bounds clamping of buffer
 * accesses, which SwiftShader pays for on every load; every kernel of ours checks its own bounds).
 */
export function webgpuFlags(dawnFeatures?: string[]): string[] {
  const features = dawnFeatures ?? (process.env.AUTOGLM_WEBGPU_DAWN_FEATURES ?? '').split(',').map((f) => f.trim()).filter(Boolean);
  for (const f of features) {
    if (!/^[a-z0-9_]+$/.test(f)) throw new ConfigError(`Dawn feature names are lower-case words joined by '_' (e.g. disable_robustness); got '${f}'`);
  }
  return ['--enable-unsafe-webgpu', ...(features.length ? [`--enable-dawn-features=${features.join(',')}`] : [])];
}

/**
 * Which adapter Chromium's WebGPU gets: 'default' (headless; SwiftShader where there is no GPU) or 'llvmpipe' (Chromium
 * under Xvfb, not headless, on Mesa's llvmpipe through Dawn's OpenGL ES backend at the compatibility level: see
 * src/web/llvmpipe.ts).
 */
export type ChromiumAdapter = 'default' | 'llvmpipe';

/** AUTOGLM_CHROMIUM_ADAPTER ('default' or 'llvmpipe'; unset or empty: 'default'): the kernel tests' and bench's adapter. */
export function chromiumAdapterFromEnv(): ChromiumAdapter {
  const v = process.env.AUTOGLM_CHROMIUM_ADAPTER ?? '';
  if (v === '' || v === 'default' || v === 'llvmpipe') return v === 'llvmpipe' ? 'llvmpipe' : 'default';
  throw new ConfigError(`AUTOGLM_CHROMIUM_ADAPTER must be 'default' or 'llvmpipe'; got '${v}'`);
}

/**
 * How to launch Chromium with WebGPU on `adapter`: headless with `webgpuFlags`, or for 'llvmpipe' not headless on the
 * X display `display` (an Xvfb from `startXvfb`) with LLVMPIPE_CHROMIUM_FLAGS, and without playwright's
 * `--use-angle=swiftshader-webgl`, which would put ANGLE back on SwiftShader.
 */
export function webgpuLaunchOptions(adapter: ChromiumAdapter, display: string | null, dawnFeatures?: string[]):
  { headless: boolean; args: string[]; env?: Record<string, string | undefined>; ignoreDefaultArgs?: string[] } {
  if (adapter === 'default') return { headless: true, args: webgpuFlags(dawnFeatures) };
  if (adapter !== 'llvmpipe') throw new ConfigError(`adapter must be 'default' or 'llvmpipe'; got '${String(adapter)}'`);
  if (!display) throw new ConfigError(`adapter 'llvmpipe' runs Chromium on an X display (startXvfb); none was given`);
  return { headless: false, args: [...webgpuFlags(dawnFeatures), ...LLVMPIPE_CHROMIUM_FLAGS], env: { ...process.env, DISPLAY: display },
    ignoreDefaultArgs: ['--use-angle=swiftshader-webgl'] };
}

/**
 * Serves the page and opens it in headless Chromium; `query` is appended to the page URL (backend, threads). `webgpu`
 * launches Chromium with WebGPU (`--enable-unsafe-webgpu`: SwiftShader where there is no GPU) instead of `--disable-gpu`;
 * `adapter: 'llvmpipe'` (with `webgpu`) runs it under Xvfb on Mesa's llvmpipe instead.
 */
export async function openPage(o: WebServerOptions & { query?: string; path?: string; webgpu?: boolean; dawnFeatures?: string[]; adapter?: ChromiumAdapter } = {}): Promise<PageSession> {
  const exe = findChromium();
  if (!exe) throw new ConfigError('no Chromium found: apt-get install -y chromium, or set AUTOGLM_CHROMIUM to its path');
  let chromium: typeof import('playwright-core').chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (e) {
    throw new ConfigError('driving Chromium needs playwright-core (a dev dependency of open-autoglm: npm install --save-dev playwright-core)', { cause: e });
  }
  const adapter = o.adapter ?? 'default';
  if (adapter !== 'default' && adapter !== 'llvmpipe') throw new ConfigError(`adapter must be 'default' or 'llvmpipe'; got '${String(adapter)}'`);
  if (adapter === 'llvmpipe' && !o.webgpu) throw new ConfigError(`adapter 'llvmpipe' is a WebGPU adapter: it needs webgpu: true`);
  const xvfb: VirtualDisplay | null = adapter === 'llvmpipe' ? await startXvfb() : null;
  const server = await startWebServer({ port: 0, ...o });
  let browser: BrowserContext;
  const profile = mkdtempSync(path.join(os.tmpdir(), 'autoglm-chromium-'));
  try {
    const root = typeof process.getuid === 'function' && process.getuid() === 0;
    const { args, ...rest } = o.webgpu ? webgpuLaunchOptions(adapter, xvfb?.display ?? null, o.dawnFeatures) : { headless: true, args: ['--disable-gpu'] };
    browser = await chromium.launchPersistentContext(profile, { executablePath: exe, ...rest, args: [...(root ? ['--no-sandbox'] : []), ...args, '--disable-dev-shm-usage'] });
  } catch (e) {
    await server.close();
    await xvfb?.close();
    rmSync(profile, { recursive: true, force: true });
    throw e;
  }
  const log: string[] = [];
  const page = browser.pages()[0] ?? await browser.newPage();
  page.on('console', (m) => log.push(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => log.push(`pageerror: ${e.message}`));
  page.on('worker', (w) => w.on('console', (m) => log.push(`worker console.${m.type()}: ${m.text()}`)));
  await page.goto(`${server.url}${o.path ?? ''}${o.query ? `?${o.query}` : ''}`);
  return { server, browser, page, profile, log, close: async () => {
    await browser.close();
    await server.close();
    await xvfb?.close();
    rmSync(profile, { recursive: true, force: true });
  } };
}

/**
 * Peak resident memory (VmHWM, MB) of each process of the browser started with profile folder `profile` (the one
 * whose command line names it, and every process under it; Linux /proc), largest first.
 */
export function processPeaksMb(profile: string): number[] {
  if (!existsSync('/proc')) return [];
  const children = new Map<number, number[]>();
  let pid = 0;
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const ppid = Number(/PPid:\s+(\d+)/.exec(readFileSync(`/proc/${d}/status`, 'utf8'))?.[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(d)]);
      if (!pid && readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(`--user-data-dir=${profile}`) && !readFileSync(`/proc/${d}/cmdline`, 'utf8').includes('--type=')) pid = Number(d);
    } catch { /* gone */ }
  }
  if (!pid) return [];
  const all: number[] = [];
  const walk = (p: number) => { all.push(p); for (const c of children.get(p) ?? []) walk(c); };
  walk(pid);
  const peaks: number[] = [];
  for (const p of all) {
    try {
      const kb = Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, 'utf8'))?.[1]);
      if (kb) peaks.push(Math.round(kb / 1024));
    } catch { /* gone */ }
  }
  return peaks.sort((a, b) => b - a);
}

export interface HeadlessRunOptions {
  maxTrain?: number;
  maxEval?: number;
  threads?: number;
  backend?: 'webgpu' | 'wasm' | 'portable';
  /** Dawn toggles for Chromium's WebGPU (`webgpuFlags`), e.g. ['disable_robustness']; only with backend 'webgpu'. */
  dawnFeatures?: string[];
  /** Chromium's WebGPU adapter (`ChromiumAdapter`); 'llvmpipe' only with backend 'webgpu'. */
  adapter?: ChromiumAdapter;
  isolate?: boolean;
  /** Rebuild the browser bundles first (a checkout whose dist/web may be older than its sources). */
  rebuild?: boolean;
  config?: Record<string, unknown>;
  /** Called with each status line. */
  say?(line: string): void;
}

export interface HeadlessRunResult {
  summary: TrainSummary;
  backend: string;
  wallS: number;
  /** The largest process's peak RSS (the renderer that runs the page and its worker), MB. */
  rendererPeakMb: number | null;
  /** Peak RSS summed over the browser's processes, MB. */
  browserPeakSumMb: number | null;
}

/** The main job (LoRA on custom_intent_v2 with the trainer's defaults) in the page, in headless Chromium. */
export async function headlessMainJob(o: HeadlessRunOptions = {}): Promise<HeadlessRunResult> {
  const q = new URLSearchParams();
  if (o.threads) q.set('threads', String(o.threads));
  if (o.backend) q.set('backend', o.backend);
  if (o.dawnFeatures?.length && o.backend !== 'webgpu') throw new ConfigError(`dawnFeatures apply to the WebGPU backend only; the backend is '${o.backend ?? 'default'}'`);
  if (o.adapter === 'llvmpipe' && o.backend !== 'webgpu') throw new ConfigError(`adapter 'llvmpipe' applies to the WebGPU backend only; the backend is '${o.backend ?? 'default'}'`);
  const s = await openPage({ query: q.toString(), isolate: o.isolate, rebuild: o.rebuild, webgpu: o.backend === 'webgpu', dawnFeatures: o.dawnFeatures, adapter: o.adapter });
  try {
    const t0 = performance.now();
    await s.page.evaluate(() => (window as unknown as { autoglm: { whenReady(): Promise<void> } }).autoglm.whenReady());
    const backend = (await s.page.evaluate(() => (window as unknown as { autoglm: { status(): string } }).autoglm.status())) ?? '';
    o.say?.(backend);
    if (o.adapter === 'llvmpipe' && !/llvmpipe/i.test(backend)) {
      throw new ConfigError(`Chromium was launched for llvmpipe but the page's WebGPU adapter is not llvmpipe: ${backend}\n${s.log.slice(-10).join('\n')}`);
    }
    const stop = setInterval(() => {
      s.page.evaluate(() => document.getElementById('stepInfo')?.textContent ?? '').then((l) => l && o.say?.(l), () => undefined);
    }, 10_000);
    let summary: TrainSummary;
    try {
      summary = await s.page.evaluate((a) => (window as unknown as { autoglm: { train(x: unknown): Promise<TrainSummary> } }).autoglm.train(a),
        { dataset: 'custom_intent_v2', maxTrain: o.maxTrain, maxEval: o.maxEval, config: o.config ?? {} });
    } catch (e) {
      throw new Error(`${(e as Error).message}\n${s.log.slice(-20).join('\n')}`);
    } finally {
      clearInterval(stop);
    }
    const peaks = processPeaksMb(s.profile);
    return { summary, backend, wallS: (performance.now() - t0) / 1e3, rendererPeakMb: peaks[0] ?? null, browserPeakSumMb: peaks.length ? peaks.reduce((a, b) => a + b, 0) : null };
  } finally {
    await s.close();
  }
}
