// One rank of many short local groups: in each, a barrier, then close() at once (test/distributed-local.test.ts).
import { parentPort, workerData } from 'node:worker_threads';
import { LocalCommunicator, type LocalGroupData } from '../../src/distributed/local.js';

const { parts } = workerData as { parts: LocalGroupData[] };
let failures = 0, first = '';
for (const part of parts) {
  const c = LocalCommunicator.fromWorkerData(part, { timeoutMs: 10_000 });
  try {
    await c.barrier();
  } catch (e) {
    failures++;
    first ||= String(e);
  }
  await c.close();
}
parentPort!.postMessage({ failures, first });
