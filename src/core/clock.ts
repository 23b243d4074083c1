/**
 * Time enters the engine through this interface only, so `core/` stays deterministic: tests drive
 * a `VirtualClock` and assert exact restart windows, backoff delays and shutdown deadlines.
 */

export interface Timer {
  cancel(): void;
}

export interface Clock {
  /** Monotonic milliseconds; only differences are meaningful. */
  now(): number;
  /** Calls `fn` once after `ms`; the returned timer can be cancelled. */
  setTimer(ms: number, fn: () => void): Timer;
}

/** The real clock: `performance.now()` and unref'd Node timers (a pending backoff must not keep a process alive). */
export const systemClock: Clock = {
  now: () => performance.now(),
  setTimer(ms, fn) {
    const handle = setTimeout(fn, ms);
    handle.unref?.();
    return { cancel: () => clearTimeout(handle) };
  },
};

interface PendingTimer {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/**
 * A clock that moves only when told to. `advance(ms)` fires due timers in deadline order, letting
 * the microtasks each timer schedules run before the next fires, as real timers would.
 */
export class VirtualClock implements Clock {
  #now = 0;
  #seq = 0;
  #timers: PendingTimer[] = [];

  now(): number {
    return this.#now;
  }

  setTimer(ms: number, fn: () => void): Timer {
    const timer: PendingTimer = { at: this.#now + Math.max(0, ms), seq: this.#seq++, fn, cancelled: false };
    this.#timers.push(timer);
    return {
      cancel: () => {
        timer.cancelled = true;
      },
    };
  }

  /** Number of timers still pending (not fired, not cancelled). */
  get pending(): number {
    return this.#timers.filter((t) => !t.cancelled).length;
  }

  /** Moves time forward by `ms`, firing every timer that falls due, in order. */
  async advance(ms: number): Promise<void> {
    const target = this.#now + ms;
    for (;;) {
      await flushMicrotasks();
      this.#timers = this.#timers.filter((t) => !t.cancelled);
      let next: PendingTimer | undefined;
      for (const t of this.#timers) {
        if (t.at <= target && (!next || t.at < next.at || (t.at === next.at && t.seq < next.seq))) next = t;
      }
      if (!next) break;
      this.#now = next.at;
      next.cancelled = true;
      next.fn();
    }
    this.#now = target;
    await flushMicrotasks();
  }
}

/** Lets every already-queued promise continuation run: a macrotask boundary drains the microtask queue. */
export function flushMicrotasks(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
