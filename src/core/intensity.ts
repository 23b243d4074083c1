/**
 * Restart intensity (OTP's MaxR/MaxT): more than `intensity` restarts within a sliding window of
 * `period` ms means the supervisor gives up, stops its children and exits, and its parent treats
 * that as this supervisor's crash. Every restart counts, including failed restart attempts.
 */

/**
 * Timestamps of recent restarts, oldest first from `#head`; pruned on every add. Dropping from the
 * front moves a head index instead of shifting the array, so a large intensity costs O(1) per
 * restart; the dead prefix is compacted once it outweighs the live part.
 */
export class RestartWindow {
  readonly intensity: number;
  readonly period: number;
  #times: number[] = [];
  #head = 0;

  constructor(intensity: number, period: number) {
    this.intensity = intensity;
    this.period = period;
  }

  /** Records a restart at `now`; returns false when this restart exceeds the intensity. */
  add(now: number): boolean {
    const threshold = now - this.period;
    const times = this.#times;
    while (this.#head < times.length && (times[this.#head] as number) <= threshold) this.#head++;
    if (this.#head > 64 && this.#head * 2 > times.length) {
      times.splice(0, this.#head);
      this.#head = 0;
    }
    times.push(now);
    return times.length - this.#head <= this.intensity;
  }

  /** The same recent restarts under a new intensity and period (a supervisor revised in place). */
  resized(intensity: number, period: number): RestartWindow {
    const next = new RestartWindow(intensity, period);
    next.#times = this.#times.slice(this.#head);
    return next;
  }

  /** Restarts currently inside the window. */
  get count(): number {
    return this.#times.length - this.#head;
  }

  /** Restarts still inside the window at `now`, without pruning (a query, for metrics). */
  countAt(now: number): number {
    const threshold = now - this.period;
    let n = 0;
    for (let i = this.#times.length - 1; i >= this.#head && (this.#times[i] as number) > threshold; i--) n++;
    return n;
  }
}
