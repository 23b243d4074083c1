/**
 * Exponential restart backoff (OTP has none; users of every supervisor ask for it): the n-th
 * consecutive restart of a child waits `initial * factor^n`, capped at `max`. A child that stayed
 * up for `resetAfter` ms is considered healthy again, and its next crash waits `initial` only.
 * Backoff delays restarts; it does not exempt them from the intensity window.
 */
import type { BackoffSpec } from './types.ts';

export function backoffDelay(spec: BackoffSpec | false | undefined, attempt: number): number {
  if (!spec) return 0;
  const factor = spec.factor ?? 2;
  const delay = spec.initial * factor ** attempt;
  return Math.min(spec.max, Math.round(delay));
}
