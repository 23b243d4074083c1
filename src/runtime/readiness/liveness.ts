/**
 * Liveness: a periodic check that declares a child unhealthy after N consecutive failures, and a
 * watchdog timer that must be kicked (sd_notify `WATCHDOG=1`) within an interval.
 *
 * Hazards: checks never overlap (the next starts `intervalMs` after the previous ended), so a
 * slow check stretches the period instead of piling up; `onUnhealthy` fires once per failure
 * streak, not on every failure after the threshold, so the supervisor restarts once. A watchdog
 * reports one miss and then waits for the next kick: a hung child yields one report, not a stream.
 */
import type { Check } from './checks.ts';

export interface LivenessOptions {
  check: Check;
  intervalMs: number;
  /** Consecutive failures that make the child unhealthy. Default 3. */
  failureThreshold?: number;
  /** Delay before the first check (startup grace). Default `intervalMs`. */
  initialDelayMs?: number;
  onUnhealthy: (reason: string, consecutiveFailures: number) => void;
  /** Every failed check, including those below the threshold. */
  onFailure?: (reason: string, consecutiveFailures: number) => void;
  /** A success after the child had been reported unhealthy. */
  onRecovered?: () => void;
  signal?: AbortSignal;
}

export class LivenessMonitor {
  readonly intervalMs: number;
  readonly failureThreshold: number;
  #opts: LivenessOptions;
  #failures = 0;
  #unhealthy = false;
  #timer: NodeJS.Timeout | null = null;
  #stopped = false;
  #inflight: AbortController | null = null;
  #onAbort = () => this.stop();

  constructor(options: LivenessOptions) {
    this.#opts = options;
    this.intervalMs = options.intervalMs;
    this.failureThreshold = options.failureThreshold ?? 3;
    if (!(this.failureThreshold >= 1)) throw new RangeError('failureThreshold must be >= 1');
    if (options.signal?.aborted) {
      this.#stopped = true;
      return;
    }
    options.signal?.addEventListener('abort', this.#onAbort, { once: true });
    this.#schedule(options.initialDelayMs ?? options.intervalMs);
  }

  get consecutiveFailures(): number {
    return this.#failures;
  }

  get healthy(): boolean {
    return !this.#unhealthy;
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#inflight?.abort(new Error('liveness stopped'));
    this.#opts.signal?.removeEventListener('abort', this.#onAbort);
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => void this.#run(), ms);
  }

  async #run(): Promise<void> {
    this.#timer = null;
    const ac = new AbortController();
    this.#inflight = ac;
    let failure: string | null = null;
    try {
      await this.#opts.check(ac.signal);
    } catch (e) {
      failure = e instanceof Error ? e.message : String(e);
    }
    this.#inflight = null;
    if (this.#stopped) return;
    if (failure === null) {
      this.#failures = 0;
      if (this.#unhealthy) {
        this.#unhealthy = false;
        this.#opts.onRecovered?.();
      }
    } else {
      this.#failures++;
      this.#opts.onFailure?.(failure, this.#failures);
      if (!this.#unhealthy && this.#failures >= this.failureThreshold) {
        this.#unhealthy = true;
        this.#opts.onUnhealthy(failure, this.#failures);
      }
    }
    this.#schedule(this.intervalMs);
  }
}

export interface WatchdogOptions {
  intervalMs: number;
  /** Called once when `intervalMs` passes without a kick; `sinceKickMs` is the silence so far. */
  onMiss: (sinceKickMs: number) => void;
  signal?: AbortSignal;
}

/** A timer that must be `kick()`ed within `intervalMs` (sd_notify WATCHDOG=1), else reports a miss. */
export class Watchdog {
  readonly intervalMs: number;
  #onMiss: (sinceKickMs: number) => void;
  #timer: NodeJS.Timeout | null = null;
  #lastKick = performance.now();
  #misses = 0;
  #stopped = false;
  #signal: AbortSignal | undefined;
  #onAbort = () => this.stop();

  constructor(options: WatchdogOptions) {
    if (!(options.intervalMs > 0)) throw new RangeError('intervalMs must be positive');
    this.intervalMs = options.intervalMs;
    this.#onMiss = options.onMiss;
    this.#signal = options.signal;
    if (options.signal?.aborted) {
      this.#stopped = true;
      return;
    }
    options.signal?.addEventListener('abort', this.#onAbort, { once: true });
    this.#arm();
  }

  get misses(): number {
    return this.#misses;
  }

  /** The child is alive: restart the interval (and re-arm after a miss). */
  kick(): void {
    if (this.#stopped) return;
    this.#lastKick = performance.now();
    // refresh() reuses the timer: kicks can come at high rates without allocating.
    if (this.#timer) this.#timer.refresh();
    else this.#arm();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#signal?.removeEventListener('abort', this.#onAbort);
  }

  #arm(): void {
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#misses++;
      this.#onMiss(performance.now() - this.#lastKick);
    }, this.intervalMs);
  }
}
