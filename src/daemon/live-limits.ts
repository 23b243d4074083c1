/**
 * The limits and environment each process child of a tree was started with, kept by reference so
 * that a renegotiated grant survives the child's restarts: the process driver reads its `limits`
 * and `env` objects again at every start, and renegotiation (src/daemon/renegotiate.ts) updates
 * them in place. Keyed by the tree's runtime, so two trees in one process never mix.
 */
import type { Limits } from '../runtime/cgroup/index.ts';

export interface LiveChild {
  /** The child's cgroup limits, as written at its next start. */
  readonly limits: Limits;
  /** The child's extra environment (CAPTREE_GRANT is rewritten on a grant change). */
  readonly env: Record<string, string>;
}

const registry = new WeakMap<object, Map<string, LiveChild>>();

/** Tree path → live limits and environment of every process child started by `runtime`. */
export function liveChildren(runtime: object): Map<string, LiveChild> {
  let map = registry.get(runtime);
  if (!map) {
    map = new Map();
    registry.set(runtime, map);
  }
  return map;
}
