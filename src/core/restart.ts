/**
 * The restart decision, in one place (OTP's `do_restart/3` then `restart/3`): first the child's
 * restart type decides whether its own exit calls for a restart at all, then the strategy decides
 * which siblings are stopped and started with it. The engine carries the decision out.
 *
 * - permanent: always restarted.
 * - transient: restarted only after an abnormal exit (not `normal`, not `shutdown`).
 * - temporary: never restarted; removed when it exits, also when a sibling's restart stopped it.
 * - a `permanent_failure` exit is never restarted, whatever the type; the child is marked failed.
 *
 * Strategies, over the children in start order:
 * - one_for_one, dynamic: only the exited child.
 * - one_for_all: stop all other children (reverse start order), then start all (start order).
 * - rest_for_one: stop the children started after it (reverse), then start it and them.
 */
import { type ExitReason, isAbnormal, type RestartType, type Strategy } from './types.ts';

export type ExitDecision =
  /** Restart per strategy. */
  | 'restart'
  /** Not restarted; the spec stays (transient after a normal exit). */
  | 'keep'
  /** Not restarted and removed (temporary). */
  | 'delete'
  /** Not restarted; marked failed and reported. */
  | 'fail';

export function decideExit(restart: RestartType, reason: ExitReason): ExitDecision {
  if (reason.kind === 'permanent_failure') return restart === 'temporary' ? 'delete' : 'fail';
  switch (restart) {
    case 'permanent':
      return 'restart';
    case 'transient':
      return isAbnormal(reason) ? 'restart' : 'keep';
    case 'temporary':
      return 'delete';
  }
}

/** Indexes (into start order) of the siblings that must stop before `failed` restarts, in stop order. */
export function siblingsToStop(strategy: Strategy, count: number, failed: number): number[] {
  const out: number[] = [];
  if (strategy === 'one_for_all') {
    for (let i = count - 1; i >= 0; i--) if (i !== failed) out.push(i);
  } else if (strategy === 'rest_for_one') {
    for (let i = count - 1; i > failed; i--) out.push(i);
  }
  return out;
}

/** Indexes (into start order) of the children to start for a restart of `failed`, in start order. */
export function childrenToStart(strategy: Strategy, count: number, failed: number): number[] {
  const out: number[] = [];
  if (strategy === 'one_for_all') {
    for (let i = 0; i < count; i++) out.push(i);
  } else if (strategy === 'rest_for_one') {
    for (let i = failed; i < count; i++) out.push(i);
  } else {
    out.push(failed);
  }
  return out;
}
