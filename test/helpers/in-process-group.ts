/**
 * N ranks of one communicator group inside one thread (no workers, no service): each collective meets when every
 * rank has called it, sums in rank order with f32 rounding as the real backends do. For tests of the layers above
 * the communicator (data-parallel, compression) that need several ranks with different data.
 */
import { emptyStats, type Communicator } from '../../src/distributed/communicator.js';

export function inProcessGroup(world: number): Communicator[] {
  const rounds: { vals: unknown[]; n: number; done: Promise<unknown[]>; resolve: (v: unknown[]) => void }[] = [];
  const calls = new Array<number>(world).fill(0);
  const meet = (rank: number, v: unknown): Promise<unknown[]> => {
    const i = calls[rank]!++;
    if (!rounds[i]) {
      let resolve!: (v: unknown[]) => void;
      const done = new Promise<unknown[]>((r) => (resolve = r));
      rounds[i] = { vals: new Array(world), n: 0, done, resolve };
    }
    const r = rounds[i]!;
    r.vals[rank] = v;
    if (++r.n === world) r.resolve(r.vals);
    return r.done;
  };
  return Array.from({ length: world }, (_, rank): Communicator => ({
    backend: 'single', rank, worldSize: world, stats: emptyStats(),
    async allReduce(data, op = 'sum') {
      const all = (await meet(rank, data.slice())) as Float32Array[];
      for (let i = 0; i < data.length; i++) {
        let s = 0;
        for (const a of all) s = Math.fround(s + a[i]!);
        data[i] = op === 'mean' ? s / world : s;
      }
    },
    async allGather(payload) {
      return ((await meet(rank, payload.slice())) as Uint8Array[]).map((p) => p.slice());
    },
    async broadcast(data, root = 0) {
      data.set((await meet(rank, data.slice()))[root] as Uint8Array);
    },
    async barrier() {
      await meet(rank, null);
    },
    async close() {},
  }));
}
