/**
 * Chromium's WebGPU on Mesa's llvmpipe instead of SwiftShader, for machines without a GPU (Linux, Node only).
 *
 * Headless Chromium gives pages SwiftShader: with no GPU its GL is ANGLE on SwiftShader, so WebGPU's status is
 * "software" and Dawn is asked for the fallback adapter. On Linux, Chromium's default WebGPU adapter is Vulkan only
 * when its compositor (Skia) runs on Vulkan, and then Dawn must also be able to import external images, which needs
 * VK_KHR_external_semaphore_fd: Mesa 25.0's lavapipe lacks it, so even a Vulkan compositor on lavapipe falls back to
 * SwiftShader (src/backend/webgpu/README.md). What works: Chromium under a virtual X server (Xvfb), not headless, with
 * the GPU blocklist ignored (its GL is then ANGLE on Mesa's llvmpipe, OpenGL 4.5), and Dawn's OpenGL ES backend
 * (`--use-webgpu-adapter=opengles`) at the compatibility feature level (`--force-webgpu-compat`: that backend offers
 * no core adapter here). The page's kernels are compute shaders on storage buffers, which compatibility mode allows.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../errors.js';

const XVFB_CANDIDATES = ['/usr/bin/Xvfb', '/usr/local/bin/Xvfb'];
/** Mesa's software GL driver (llvmpipe behind the swrast name), per multiarch folder. */
const LLVMPIPE_CANDIDATES = ['x86_64-linux-gnu', 'aarch64-linux-gnu', ''].flatMap((d) =>
  ['/usr/lib', '/usr/lib64'].map((root) => path.join(root, d, 'dri', 'swrast_dri.so')));

/**
 * Chromium's flags for WebGPU on llvmpipe (with `--enable-unsafe-webgpu` from `webgpuFlags`). The developer features
 * fill the adapter's `info.description` ("ANGLE (Mesa, llvmpipe ...)"), which the backend reads to pick its software
 * kernels and the caller checks; without them it is empty.
 */
export const LLVMPIPE_CHROMIUM_FLAGS = [
  '--ozone-platform=x11', '--use-angle=gl', '--ignore-gpu-blocklist', '--use-webgpu-adapter=opengles', '--force-webgpu-compat',
  '--enable-webgpu-developer-features', '--disable-gpu-watchdog',
];

/** Why Chromium cannot be given llvmpipe here (no Xvfb, no Mesa GL), or null when it can. */
export function llvmpipeUnavailable(): string | null {
  if (process.platform !== 'linux') return `Chromium on llvmpipe is set up for Linux only; this is ${process.platform}`;
  if (!XVFB_CANDIDATES.some((p) => existsSync(p))) return `no Xvfb (apt-get install -y xvfb); looked for ${XVFB_CANDIDATES.join(', ')}`;
  if (!LLVMPIPE_CANDIDATES.some((p) => existsSync(p))) {
    return `no Mesa llvmpipe GL driver (apt-get install -y libgl1-mesa-dri libegl-mesa0); looked for ${LLVMPIPE_CANDIDATES.join(', ')}`;
  }
  return null;
}

export interface VirtualDisplay {
  /** The DISPLAY value, e.g. ':99'. */
  display: string;
  close(): Promise<void>;
}

/** Starts Xvfb on a free display number (Xvfb picks it and writes it to `-displayfd`). */
export async function startXvfb(): Promise<VirtualDisplay> {
  const why = llvmpipeUnavailable();
  if (why) throw new ConfigError(`Chromium on llvmpipe: ${why}`);
  const exe = XVFB_CANDIDATES.find((p) => existsSync(p))!;
  const child: ChildProcess = spawn(exe, ['-displayfd', '3', '-screen', '0', '1280x1024x24', '-nolisten', 'tcp'], { stdio: ['ignore', 'ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  const display = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => { child.kill(); reject(new ConfigError(`Xvfb did not report a display within 10 s: ${stderr.trim().slice(-300)}`)); }, 10_000);
    child.stdio[3]!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) { clearTimeout(timer); resolve(`:${out.trim()}`); }
    });
    child.on('exit', (code) => { clearTimeout(timer); reject(new ConfigError(`Xvfb exited (${code}) before reporting a display: ${stderr.trim().slice(-300)}`)); });
    child.on('error', (e) => { clearTimeout(timer); reject(new ConfigError(`Xvfb could not start: ${e.message}`, { cause: e })); });
  });
  // An Xvfb outlives a Node process that exits without close() (an uncaught error): stop it then too.
  const onExit = () => { child.kill(); };
  process.once('exit', onExit);
  return {
    display,
    close: () => new Promise<void>((resolve) => {
      process.removeListener('exit', onExit);
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill();
    }),
  };
}
