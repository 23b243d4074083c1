/**
 * Restart intensity (OTP's MaxR/MaxT): more than `intensity` restarts within a sliding window of
 * `period` ms means the supervisor gives up, stops its children and exits, and its parent treats
 * that as this supervisor's crash. Every restart counts, including failed restart attempts.
 */

/** Timestamps of recent restarts, oldest first; pruned on every add so memory stays ≤ intensity + 1. */
export class RestartWindow {
  readonly intensity: number;
  readonly period: number;
  #times: number[] = [];

  constructor(intensity: number, period: number) {
    this.intensity = intensity;
    this.period = period;
  }

  /** Records a restart at `now`; returns false when this restart exceeds the intensity. */
  add(now: number): boolean {
    const threshold = now - this.period;
    let drop = 0;
    while (drop < this.#times.length && (this.#times[drop] as number) <= threshold) drop++;
    if (drop > 0) this.#times.splice(0, drop);
    this.#times.push(now);
    return this.#times.length <= this.intensity;
  }

  get count(): number {
    return this.#times.length;
  }
}
