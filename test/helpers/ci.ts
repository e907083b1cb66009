/**
 * Pieces a test needs that a machine may lack (the native addon, the gloo addon, Redis, ...). Locally a test
 * without its piece skips with the reason; under CI=true the missing piece is a FAILURE, so a CI run without the
 * addon build cannot pass by skipping everything that needs it.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { nativeAvailable } from '../../src/backend/index.js';
import { nativeLoadError } from '../../src/backend/native.js';
import { glooAvailable } from '../../src/distributed/gloo.js';

export const CI = process.env.CI === 'true';

const reported = new Set<string>();

/**
 * A `skip` option for `test(...)`: false when the piece is there; otherwise the reason, and under CI=true one
 * failing test `'<piece> is required under CI=true'` is registered (once per piece and file) so the run fails.
 */
export function requirePiece(piece: string, ok: boolean, reason: string): string | false {
  if (ok) return false;
  const msg = `${piece} not available (${reason})`;
  if (CI && !reported.has(piece)) {
    reported.add(piece);
    test(`${piece} is required under CI=true`, () => assert.fail(`${msg}; CI=true requires it`));
  }
  return msg;
}

/** Inside a test: skips it with the reason, or under CI=true fails it. Returns so the caller can `return`. */
export function skipOrFail(t: TestContext, piece: string, reason: string): void {
  const msg = `${piece} not available (${reason})`;
  if (CI) assert.fail(`${msg}; CI=true requires it`);
  t.skip(msg);
}

/** `requirePiece` for the native addon. */
export function requireNative(): string | false {
  const ok = nativeAvailable();
  return requirePiece('native addon', ok, ok ? '' : nativeLoadError() ?? 'unknown reason');
}

/** `requirePiece` for the gloo addon. */
export function requireGloo(): string | false {
  const g = glooAvailable();
  return requirePiece('gloo addon', g.ok, g.ok ? '' : g.reason);
}
