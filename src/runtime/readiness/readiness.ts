/**
 * Readiness probes: wait until a child is ready, or reject with a precise reason. TCP, HTTP and
 * exec probes retry their check at an interval until a deadline; the log probe is a matcher fed
 * the child's output lines. notify-fd and sd_notify readiness arrive from the launcher as events
 * and are not handled here.
 *
 * Hazards: these probes know nothing of the child's life. The supervisor must abort the signal
 * when the child exits, or a probe keeps knocking at a port nobody will open until its timeout.
 * Polling is inherent to TCP/HTTP/exec readiness (there is no event for "someone else started
 * listening"); the interval bounds the added latency.
 */
import { setTimeout as delay } from 'node:timers/promises';
import {
  type Check,
  CheckTimeout,
  type ExecTarget,
  execCheck,
  type HttpTarget,
  httpCheck,
  type TcpTarget,
  tcpCheck,
} from './checks.ts';

/** Why a probe gave up: `timeout` with the last check's failure, or `failed` (log stream ended). */
export class ReadinessError extends Error {
  readonly kind: 'timeout' | 'failed';
  readonly attempts: number;
  readonly lastError: string | null;
  constructor(kind: 'timeout' | 'failed', message: string, attempts: number, lastError: string | null) {
    super(message);
    this.name = 'ReadinessError';
    this.kind = kind;
    this.attempts = attempts;
    this.lastError = lastError;
  }
}

export interface WaitOptions {
  /** Overall deadline. */
  timeoutMs: number;
  /** Pause between failed checks. Default 100 ms. */
  intervalMs?: number;
  /** Per-check cap. Default: whatever is left of the deadline. */
  attemptTimeoutMs?: number;
  /** Abort (child exited, supervisor stopping): rejects with the signal's reason. */
  signal?: AbortSignal;
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('aborted', 'AbortError');
}

/** Retries `make(attemptTimeout)` until it succeeds, the deadline passes, or the signal aborts. */
export async function waitUntil(
  what: string,
  make: (attemptTimeoutMs: number) => Check,
  options: WaitOptions,
): Promise<{ attempts: number; elapsedMs: number }> {
  const { timeoutMs, intervalMs = 100, signal } = options;
  const start = performance.now();
  const deadline = start + timeoutMs;
  let attempts = 0;
  let last: string | null = null;
  const giveUp = () =>
    new ReadinessError(
      'timeout',
      `${what} not ready after ${timeoutMs} ms (${attempts} attempt${attempts === 1 ? '' : 's'}${last ? `, last: ${last}` : ''})`,
      attempts,
      last,
    );
  for (;;) {
    if (signal?.aborted) throw abortReason(signal);
    const remaining = Math.max(1, Math.floor(deadline - performance.now()));
    const attemptTimeout = Math.min(remaining, options.attemptTimeoutMs ?? remaining);
    const cutByDeadline = attemptTimeout < (options.attemptTimeoutMs ?? Number.POSITIVE_INFINITY);
    attempts++;
    try {
      await make(attemptTimeout)(signal ?? new AbortController().signal);
      return { attempts, elapsedMs: performance.now() - start };
    } catch (e) {
      if (signal?.aborted) throw abortReason(signal);
      // An attempt squeezed into the deadline's last moments says nothing about the target: keep
      // the reason of the attempt before it.
      if (!(e instanceof CheckTimeout && cutByDeadline && last !== null)) {
        last = e instanceof Error ? e.message : String(e);
      }
    }
    const left = deadline - performance.now();
    if (left <= 0) throw giveUp();
    try {
      await delay(Math.min(intervalMs, left), undefined, signal ? { signal } : undefined);
    } catch {
      throw abortReason(signal!);
    }
    // The pause reached the deadline: no attempt is started with no time left to answer.
    if (deadline - performance.now() <= 0) throw giveUp();
  }
}

export function waitTcp(target: TcpTarget, options: WaitOptions) {
  return waitUntil(`tcp ${target.host ?? '127.0.0.1'}:${target.port}`, (t) => tcpCheck(target, t), options);
}

export function waitHttp(target: HttpTarget, options: WaitOptions) {
  return waitUntil(`http ${target.url}`, (t) => httpCheck(target, t), options);
}

export function waitExec(target: ExecTarget, options: WaitOptions) {
  return waitUntil(`exec ${target.command.join(' ')}`, (t) => execCheck(target, t), options);
}

/**
 * Readiness by log line: feed it every line the child prints; `ready` resolves on the first line
 * matching `pattern`, or rejects on timeout, abort, or `end()` (the stream closed first).
 */
export class LogMatcher {
  readonly pattern: RegExp;
  readonly ready: Promise<{ line: string; match: RegExpExecArray }>;
  #resolve!: (v: { line: string; match: RegExpExecArray }) => void;
  #reject!: (e: unknown) => void;
  #done = false;
  #seen = 0;
  #last: string | null = null;
  #timer: NodeJS.Timeout;
  #signal: AbortSignal | undefined;
  #onAbort = () => this.#finish(abortReason(this.#signal!));

  constructor(pattern: RegExp | string, options: { timeoutMs: number; signal?: AbortSignal }) {
    // A global or sticky regex carries lastIndex between lines and would miss matches.
    const src = typeof pattern === 'string' ? new RegExp(pattern) : pattern;
    this.pattern = new RegExp(src.source, src.flags.replace(/[gy]/g, ''));
    this.ready = new Promise((res, rej) => {
      this.#resolve = res;
      this.#reject = rej;
    });
    // Callers may attach later; a rejection nobody awaited must not crash the process.
    this.ready.catch(() => {});
    this.#timer = setTimeout(
      () => this.#finish(this.#error('timeout', `within ${options.timeoutMs} ms`)),
      options.timeoutMs,
    );
    this.#signal = options.signal;
    if (options.signal?.aborted) this.#onAbort();
    else options.signal?.addEventListener('abort', this.#onAbort, { once: true });
  }

  get settled(): boolean {
    return this.#done;
  }

  /** Feeds one line; returns true if this line made the child ready. */
  feed(line: string): boolean {
    if (this.#done) return false;
    this.#seen++;
    this.#last = line;
    const match = this.pattern.exec(line);
    if (!match) return false;
    this.#finish(undefined, { line, match });
    return true;
  }

  /** The output ended (child exited) before a match. */
  end(reason = 'output ended'): void {
    this.#finish(this.#error('failed', `before that: ${reason}`));
  }

  #error(kind: 'timeout' | 'failed', when: string): ReadinessError {
    const last = this.#last === null ? '' : `, last: ${JSON.stringify(this.#last.slice(0, 200))}`;
    return new ReadinessError(
      kind,
      `no log line matched ${this.pattern} ${when} (${this.#seen} lines seen${last})`,
      this.#seen,
      this.#last,
    );
  }

  #finish(err: unknown, value?: { line: string; match: RegExpExecArray }): void {
    if (this.#done) return;
    this.#done = true;
    clearTimeout(this.#timer);
    this.#signal?.removeEventListener('abort', this.#onAbort);
    if (value) this.#resolve(value);
    else this.#reject(err);
  }
}
