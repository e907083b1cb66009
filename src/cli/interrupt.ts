/**
 * A graceful stop for a long command: SIGINT (Ctrl-C) or SIGTERM (a scheduler's preemption, `kill`) becomes an
 * AbortSignal that `finetune` honours after the step under way, with a checkpoint (FinetuneArgs.signal). The first
 * signal says so on stderr; another one more than DOUBLE_SIGNAL_MS later exits at once with 128 + the signal's number
 * (Ctrl-C reaches a launched rank twice, from the terminal and from `autoglm launch`: one request, not two).
 *
 * In a worker-thread rank of `autoglm launch` (backend local) signals reach the launcher's thread only: it posts
 * `{ type: STOP_MESSAGE, signal }` to each rank's worker (run-local.ts), which this turns into the same abort.
 */
import { isMainThread, parentPort } from 'node:worker_threads';

export const STOP_MESSAGE = 'autoglm-stop';

/** A repeat of the signal within this window is the same request (see the module comment). */
export const DOUBLE_SIGNAL_MS = 2000;

const SIGNAL_NUMBERS: Record<string, number> = { SIGINT: 2, SIGTERM: 15 };

/** The conventional exit code of a process stopped by the signal: 128 + its number (130 for SIGINT, 143 for SIGTERM). */
export function signalExitCode(signal: string): number {
  return 128 + (SIGNAL_NUMBERS[signal] ?? 15);
}

export interface Interrupt {
  readonly signal: AbortSignal;
  /** The signal that asked for the stop, or null. */
  received(): string | null;
  /** Removes the handlers (the command is done). */
  dispose(): void;
}

/**
 * Requests to stop, as a function of the signal's name: `first` for the first, `again` for one more than
 * DOUBLE_SIGNAL_MS after it; a repeat within that window is the same request and does nothing.
 */
export function stopRequests(first: (sig: string) => void, again: (sig: string) => void): (sig: string) => void {
  let at = 0;
  return (sig) => {
    if (at === 0) {
      at = Date.now();
      first(sig);
    } else if (Date.now() - at >= DOUBLE_SIGNAL_MS) {
      again(sig);
    }
  };
}

/** Sends SIGINT and SIGTERM to `handler` (instead of their default, which ends the process) until the returned call. */
export function onSignals(handler: (sig: NodeJS.Signals) => void): () => void {
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return () => {
    process.removeListener('SIGINT', handler);
    process.removeListener('SIGTERM', handler);
  };
}

/** Listens for SIGINT and SIGTERM (or the launcher's stop message in a worker thread) until `dispose`. */
export function onInterrupt(say: (msg: string) => void = (m) => process.stderr.write(`autoglm: ${m}\n`)): Interrupt {
  const ctl = new AbortController();
  let got: string | null = null;
  const request = stopRequests((sig) => {
    got = sig;
    say(`${sig}: stopping after the step under way and writing a checkpoint (after the last step: finishing the test evaluation and outputs); send it again to exit at once`);
    ctl.abort(sig);
  }, (sig) => {
    say(`${sig} again: exiting at once (the last checkpoint written stays)`);
    process.exit(signalExitCode(sig));
  });
  let dispose: () => void;
  if (isMainThread) {
    dispose = onSignals(request);
  } else if (parentPort) {
    const port = parentPort;
    const onMsg = (m: unknown): void => {
      const msg = m as { type?: string; signal?: string } | null;
      if (msg?.type === STOP_MESSAGE) request(msg.signal ?? 'SIGTERM');
    };
    port.on('message', onMsg);
    port.unref(); // listening must not keep a finished rank alive
    dispose = () => port.removeListener('message', onMsg);
  } else {
    dispose = () => {};
  }
  return { signal: ctl.signal, received: () => got, dispose };
}
