/**
 * Liveness beside the collectives: a rank that stops answering (SIGSTOP, a debugger, a frozen VM, a host whose
 * network dropped without a reset) keeps its gloo TCP connections open, so Gloo alone would wait for the whole
 * collective timeout (10 minutes under the trainer). Each gloo rank therefore runs a small heartbeat thread (a
 * worker thread with its own event loop, so a long step on the main thread never delays a beat):
 *
 *   - every rank listens on its own address; after the gloo rendezvous the ranks exchange `host:port` with one
 *     allGather, rank i connects to every rank below it and says its rank (4 bytes, little-endian);
 *   - every `periodMs` each rank writes one byte (0x01) to every peer; on a graceful close it writes 0x02 (bye);
 *   - a rank that loses a peer tells the others (0x03 rank:reason newline), so every rank names the first culprit;
 *   - a peer is lost when its connection closes without a bye (the process died: found at once) or when nothing
 *     came from it for `silenceMs` (stopped or hung: found within silenceMs + periodMs);
 *   - when the heartbeat thread itself was descheduled (a tick late by more than two periods, as on a loaded
 *     machine), the lateness is not counted against the peers.
 *
 * The communicator then fails its pending and later operations with a CommunicationError naming the lost rank, and
 * the launcher (`autoglm launch --max-restarts N`) restarts the job from its last checkpoint.
 */
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { CommunicationError } from '../errors.js';

export interface HeartbeatOptions {
  /** How long a peer may stay silent before it is declared lost (ms). */
  silenceMs: number;
  /** Time between beats (ms). Default silenceMs / 10. */
  periodMs?: number;
  /** The address (or interface name) to listen on; peers connect to it. */
  host: string;
  /** How long connecting to every peer may take (ms). */
  timeoutMs: number;
}

/** A lost peer, as reported by the heartbeat thread. */
export interface LostPeer {
  rank: number;
  reason: string;
}

/** The heartbeat thread, as source: a plain CommonJS script, so it starts fast and without the TS loader. */
const WORKER_SOURCE = String.raw`
const net = require('node:net');
const { parentPort, workerData } = require('node:worker_threads');
const { rank, world, host, periodMs, silenceMs } = workerData;
const BEAT = '\x01', BYE = '\x02', LOST = '\x03';
const peers = new Map();             // rank -> { sock, last, state: 'alive' | 'left' | 'lost' }
let ready = false, closing = false, gotPeers = false, lastTick = performance.now();
// 'ready' only once the parent has sent the peers' addresses: it listens for 'ready' from then on, and a lower rank
// can be connected to by every peer before that (while its own address exchange has not returned yet).
const maybeReady = () => { if (!ready && gotPeers && peers.size === world - 1) { ready = true; post({ type: 'ready' }); } };
const post = (m) => parentPort.postMessage(m);
const lost = (peer, reason) => {
  const p = peers.get(peer);
  if (!p || p.state !== 'alive' || closing) return;
  p.state = 'lost';
  post({ type: 'lost', rank: peer, reason });
  const relay = LOST + peer + ':' + reason.replace(/[^ -~]/g, ' ') + '\n';
  for (const [r, q] of peers) if (r !== peer && q.state === 'alive' && !q.sock.destroyed) q.sock.write(relay);
};
function adopt(sock, peer) {
  sock.setNoDelay(true);
  let head = Buffer.alloc(0), text = '';
  const rec = { sock, last: performance.now(), state: 'alive' };
  const register = () => {
    peers.set(peer, rec);
    maybeReady();
  };
  if (peer !== null) { register(); const b = Buffer.alloc(4); b.writeUInt32LE(rank); sock.write(b); }
  sock.on('data', (d) => {
    if (peer === null) {
      head = Buffer.concat([head, d]);
      if (head.length < 4) return;
      const r = head.readUInt32LE(0);
      if (r <= rank || r >= world || peers.has(r)) { sock.destroy(); return; }  // not one of ours
      peer = r;
      d = head.subarray(4);
      register();
    }
    rec.last = performance.now();
    text = (text + d.toString('latin1')).split(BEAT).join('');
    if (text.includes(BYE)) rec.state = 'left';
    for (let i = text.indexOf(LOST), j = text.indexOf('\n', i); i >= 0 && j > i; i = text.indexOf(LOST), j = text.indexOf('\n', i)) {
      const msg = text.slice(i + 1, j), colon = msg.indexOf(':');
      text = text.slice(j + 1);
      lost(Number(msg.slice(0, colon)), msg.slice(colon + 1) + ' (seen by rank ' + peer + ')');
    }
    if (!text.includes(LOST) || text.length > 4096) text = '';
  });
  sock.on('error', () => undefined);
  sock.on('close', () => { if (peer !== null) lost(peer, 'closed its heartbeat connection without saying goodbye (the process died or its network dropped)'); });
}
const server = net.createServer((sock) => adopt(sock, null));
server.on('error', (e) => post({ type: 'error', message: 'heartbeat listen on ' + host + ': ' + e.message }));
server.listen(0, host, () => post({ type: 'listening', port: server.address().port }));
parentPort.on('message', (m) => {
  if (m.type === 'peers') {
    for (let r = 0; r < rank; r++) {
      const { host: h, port } = m.addrs[r];
      const sock = net.connect({ host: h, port });
      sock.on('connect', () => adopt(sock, r));
      sock.on('error', (e) => { if (!peers.has(r)) post({ type: 'error', message: 'heartbeat connect to rank ' + r + ' at ' + h + ':' + port + ': ' + e.message }); });
    }
    gotPeers = true;
    maybeReady();
  } else if (m.type === 'bye') {
    closing = true;
    clearInterval(timer);
    server.close();
    let open = 0;
    for (const p of peers.values()) {
      if (p.sock.destroyed) continue;
      open++;
      p.sock.end(BYE, () => { if (--open === 0) post({ type: 'closed' }); });
    }
    if (open === 0) post({ type: 'closed' });
  }
});
const timer = setInterval(() => {
  const now = performance.now();
  const late = now - lastTick - periodMs;
  lastTick = now;
  for (const [r, p] of peers) {
    if (p.state !== 'alive') continue;
    if (late > periodMs) p.last += late;  // this thread was descheduled: not the peer's silence
    if (!p.sock.destroyed) p.sock.write(BEAT);
    const silent = now - p.last;
    if (ready && silent > silenceMs) lost(r, 'sent no heartbeat for ' + Math.round(silent) + ' ms (stopped, hung, or unreachable)');
  }
}, periodMs);
`;

export class Heartbeats {
  /** The first peer found lost, if any. */
  lost: LostPeer | null = null;
  private listeners: ((p: LostPeer) => void)[] = [];
  private closed = false;

  private constructor(private readonly worker: Worker) {
    worker.on('message', (m: { type: string; rank?: number; reason?: string }) => {
      if (m.type !== 'lost' || this.lost) return;
      this.lost = { rank: m.rank!, reason: m.reason! };
      for (const f of this.listeners) f(this.lost);
    });
  }

  /**
   * Starts the heartbeat thread of `rank`, exchanges addresses through `exchange` (a collective allGather every
   * rank calls once) and resolves when this rank is connected to every peer.
   */
  static async start(rank: number, worldSize: number, exchange: (mine: Uint8Array) => Promise<Uint8Array[]>, opts: HeartbeatOptions): Promise<Heartbeats> {
    const host = listenAddress(opts.host);
    const periodMs = Math.max(5, Math.round(opts.periodMs ?? opts.silenceMs / 10));
    const worker = new Worker(WORKER_SOURCE, { eval: true, execArgv: [], env: {}, workerData: { rank, world: worldSize, host, periodMs, silenceMs: opts.silenceMs } });
    worker.unref();
    const hb = new Heartbeats(worker);
    const next = (type: string, what: string): Promise<Record<string, unknown>> => new Promise((resolve, reject) => {
      const timer = setTimeout(() => done(new CommunicationError(`heartbeat of rank ${rank} of ${worldSize}: ${what} took over ${opts.timeoutMs} ms`)), opts.timeoutMs);
      const onMsg = (m: Record<string, unknown>): void => {
        if (m.type === type) done(null, m);
        else if (m.type === 'error') done(new CommunicationError(`rank ${rank} of ${worldSize}: ${String(m.message)}`));
      };
      const onErr = (e: Error): void => done(new CommunicationError(`heartbeat thread of rank ${rank} failed: ${e.message}`, { cause: e }));
      const done = (e: Error | null, m?: Record<string, unknown>): void => {
        clearTimeout(timer);
        worker.off('message', onMsg);
        worker.off('error', onErr);
        if (e) reject(e);
        else resolve(m!);
      };
      worker.on('message', onMsg);
      worker.on('error', onErr);
    });
    try {
      const listening = next('listening', 'listening');
      const { port } = await listening;
      const all = await exchange(new TextEncoder().encode(JSON.stringify({ host, port })));
      const addrs = all.map((b) => JSON.parse(new TextDecoder().decode(b)) as { host: string; port: number });
      const ready = next('ready', 'connecting to every peer');
      worker.postMessage({ type: 'peers', addrs });
      await ready;
      worker.unref(); // after the listeners: the thread never keeps the process alive
    } catch (e) {
      await worker.terminate();
      throw e;
    }
    return hb;
  }

  /** Calls `f` once when a peer is lost (at once when one already is). */
  onLost(f: (p: LostPeer) => void): void {
    if (this.lost) f(this.lost);
    else this.listeners.push(f);
  }

  /** Says goodbye to every peer (so they do not count this rank as lost) and stops the thread. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (!this.lost) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 1000);
        this.worker.on('message', (m: { type: string }) => { if (m.type === 'closed') { clearTimeout(t); resolve(); } });
        this.worker.postMessage({ type: 'bye' });
      });
    }
    await this.worker.terminate();
  }

  /** Stops the thread at once, without a goodbye (the job is failing anyway). */
  async abort(): Promise<void> {
    this.closed = true;
    await this.worker.terminate();
  }
}

/** An interface name becomes its first IPv4 (else IPv6) address; anything else is used as given. */
function listenAddress(host: string): string {
  const nic = os.networkInterfaces()[host];
  if (!nic) return host;
  const a = nic.find((x) => x.family === 'IPv4') ?? nic[0];
  if (!a) throw new CommunicationError(`interface '${host}' has no address to listen on for heartbeats`);
  return a.address;
}
