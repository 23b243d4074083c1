/**
 * The plan as the daemon and the CLI make it: the pure planner (src/reconcile) plus the one
 * check that needs the file system, unix listen paths two children would share once resolved.
 * Light on purpose: `captree status` and `captree reconcile` load it, not the daemon.
 */
import type { ManifestTree } from '../manifest/index.ts';
import { type Actual, type Plan, plan as planOf } from '../reconcile/index.ts';
import { unixListenClashes } from './contracts.ts';

/** `planOf` plus what needs the file system: unix listen paths two children would share. */
export function planAgainst(desired: ManifestTree, actual: Actual): Plan {
  const p = planOf(desired, actual);
  const clashes = unixListenClashes(desired);
  if (clashes.length === 0) return p;
  return {
    ...p,
    fits: false,
    steps: [],
    reasons: [
      ...p.reasons,
      ...clashes.map((c) => ({ path: c.path, field: c.field.join('.'), message: c.message })),
    ],
  };
}
