/**
 * A Redis PING before gloo's own Redis client connects: gloo's RedisStore (hiredis, blocking, no timeout) waits
 * forever on a port where something that is not Redis listens, or on a Redis that does not answer; this check
 * turns both, and a Redis that refuses us (protected mode, a password), into one clear CommunicationError.
 */
import net from 'node:net';
import { CommunicationError } from '../errors.js';

/** Resolves when `host:port` answers PING with +PONG within `timeoutMs`; otherwise rejects saying what it saw. */
export function pingRedis(url: string, host: string, port: number, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const fail = (why: string): void => {
      sock.destroy();
      reject(new CommunicationError(`the rendezvous store ${url} ${why}`));
    };
    const sock = net.connect({ host, port });
    let reply = '';
    sock.setTimeout(timeoutMs, () => fail(`did not answer PING within ${timeoutMs} ms${reply ? ` (it said ${JSON.stringify(reply.slice(0, 80))})` : ''}: is it a Redis, and is it alive?`));
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('error', (e) => fail(`cannot be reached: ${e.message}`));
    sock.on('data', (d) => {
      reply += d.toString('latin1');
      if (!reply.includes('\r\n')) {
        if (reply.length > 512) fail(`answered PING with something that is not Redis (${JSON.stringify(reply.slice(0, 80))})`);
        return;
      }
      const line = reply.slice(0, reply.indexOf('\r\n'));
      if (line === '+PONG') {
        sock.end();
        resolve();
      } else if (line.startsWith('-')) {
        fail(`refused us: ${line.slice(1, 300)}`);
      } else {
        fail(`answered PING with something that is not Redis (${JSON.stringify(line.slice(0, 80))})`);
      }
    });
  });
}
