/**
 * Under CI=true a test that needs the native or gloo addon must fail when the addon is missing, not skip. Runs
 * two such test files in child processes with AUTOGLM_ADDON_DIR pointing at an empty folder: they pass (skipping)
 * without CI and fail with CI=true.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const EMPTY = mkdtempSync(path.join(tmpdir(), 'autoglm-no-addon-'));

function runFiles(files: string[], ci: boolean): { status: number | null; out: string } {
  const env: NodeJS.ProcessEnv = { ...process.env, AUTOGLM_ADDON_DIR: EMPTY, AUTOGLM_BACKEND: '' };
  delete env.CI;
  delete env.NODE_TEST_CONTEXT; // set by the outer test runner; the child is a runner of its own
  if (ci) env.CI = 'true';
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', ...files.map((f) => path.join('test', f))],
    { cwd: ROOT, env, encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, out: `${r.stdout}\n${r.stderr}` };
}

const FILES = ['native-smoke.test.ts', 'memory.test.ts', 'distributed-gloo.test.ts'];

test('without the addons: the tests that need them skip locally', () => {
  const r = runFiles(FILES, false);
  assert.equal(r.status, 0, r.out);
  assert.match(r.out, /# skipped [1-9]/);
});

test('without the addons: the same tests fail under CI=true', () => {
  const r = runFiles(FILES, true);
  assert.notEqual(r.status, 0, r.out);
  assert.match(r.out, /native addon is required under CI=true/);
  assert.match(r.out, /gloo addon unavailable under CI=true/);
});
