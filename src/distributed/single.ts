/** `single`: world size 1. Every collective is a validated no-op (allGather returns a copy of the payload). */
import { CommunicationError } from '../errors.js';
import { emptyStats, type CommStats, type Communicator } from './communicator.js';

export class SingleCommunicator implements Communicator {
  readonly backend = 'single' as const;
  readonly rank = 0;
  readonly worldSize = 1;
  readonly stats: CommStats = emptyStats();
  private closed = false;

  async allReduce(data: Float32Array, op: 'sum' | 'mean' = 'sum'): Promise<void> {
    this.enter('allReduce');
    if (!(data instanceof Float32Array)) throw new CommunicationError(`Argument 'data' passed to 'allReduce' is not a Float32Array`);
    if (op !== 'sum' && op !== 'mean') throw new CommunicationError(`Argument 'op' passed to 'allReduce' is '${String(op)}'; expected 'sum' or 'mean'`);
  }

  async allGather(payload: Uint8Array): Promise<Uint8Array[]> {
    this.enter('allGather');
    if (!(payload instanceof Uint8Array)) throw new CommunicationError(`Argument 'payload' passed to 'allGather' is not a Uint8Array`);
    return [payload.slice()];
  }

  async broadcast(data: Uint8Array, root = 0): Promise<void> {
    this.enter('broadcast');
    if (!(data instanceof Uint8Array)) throw new CommunicationError(`Argument 'data' passed to 'broadcast' is not a Uint8Array`);
    if (root !== 0) throw new CommunicationError(`Argument 'root' passed to 'broadcast' is ${root}; expected 0 (world size 1)`);
  }

  async barrier(): Promise<void> {
    this.enter('barrier');
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private enter(op: string): void {
    if (this.closed) throw new CommunicationError(`'${op}' called after close()`);
    this.stats.calls++;
  }
}
