/**
 * The gloo heartbeats' start-up (src/distributed/heartbeat.ts), two ranks in one process with an in-memory address
 * exchange. Rank 1 returns from the exchange first and connects to rank 0 while rank 0's exchange has not returned
 * yet: rank 0 must still see itself connected. Before the fix its worker said 'ready' before the parent listened
 * for it, and rank 0 waited until the timeout (in the fault suite: a 2-rank job that hung under load).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Heartbeats } from '../src/distributed/heartbeat.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('a rank whose address exchange returns after its peer has already connected still starts (no lost ready)', async () => {
  const slots: Array<Uint8Array | undefined> = [undefined, undefined];
  let allIn!: () => void;
  const gathered = new Promise<void>((r) => { allIn = r; });
  const exchange = (rank: number, delayMs: number) => async (mine: Uint8Array): Promise<Uint8Array[]> => {
    slots[rank] = mine;
    if (slots.every(Boolean)) allIn();
    await gathered;
    await sleep(delayMs);
    return slots as Uint8Array[];
  };
  const opts = { silenceMs: 5000, host: '127.0.0.1', timeoutMs: 3000 };
  const t0 = performance.now();
  const [h0, h1] = await Promise.all([Heartbeats.start(0, 2, exchange(0, 500), opts), Heartbeats.start(1, 2, exchange(1, 0), opts)]);
  assert.ok(performance.now() - t0 < 2500, `started after ${(performance.now() - t0).toFixed(0)} ms`);
  assert.equal(h0.lost, null);
  assert.equal(h1.lost, null);
  await Promise.all([h0.close(), h1.close()]);
});
