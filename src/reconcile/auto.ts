/**
 * `reconcile: { mode: auto }`: whether the daemon carries out a recommendation itself, now.
 * A pure decision over the recommendation, the subtree's rules (inherited key by key from the
 * nearest ancestor that sets them), the guardrails' state (actions already taken, holds) and
 * the clock. Checked in this order, the first that says no wins:
 *
 * | guard | acts only when |
 * |---|---|
 * | `mode` | the subtree's mode is `auto` (else: a recommendation, as always) |
 * | `not_required` | it is `reconcile_required` and its action is one the daemon does (restart, rewrite limit) |
 * | `held` | no `captree hold` covers the path |
 * | `denied` | no `deny` window is open |
 * | `outside_window` | an `allow` window is open (or there are none) |
 * | `rate_limit` | fewer than `maxActions` actions of the subtree in the last `per` |
 *
 * The rate limit is a sliding window: an action is taken only when fewer than `maxActions`
 * were taken since `now - per` (later ones too: a wall clock stepped back does not free any),
 * so no interval of length `per` ever holds more.
 */
import type { ManifestTree, NodeSpec, ReconcileRules, ReconcileWindow } from '../manifest/index.ts';
import { type Cron, nextOpening, parseCron, windowStart } from './cron.ts';
import type { Hold, Recommendation } from './types.ts';

export type Mode = 'recommend' | 'auto';

export interface AutoPolicy {
  mode: Mode;
  maxActions: number;
  /** ms. */
  per: number;
  allow: ReconcileWindow[];
  deny: ReconcileWindow[];
  /** ms between limit read-backs in an auto subtree. */
  checkEvery: number;
  /** The node whose `reconcile:` the rate limit belongs to (the nearest that declares one; else the root). */
  scope: string;
}

export const DEFAULT_POLICY: Omit<AutoPolicy, 'scope'> = {
  mode: 'recommend',
  maxActions: 3,
  per: 10 * 60_000,
  allow: [],
  deny: [],
  checkEvery: 30_000,
};

/** What the daemon can do itself: the `action` of a `reconcile_required` recommendation. */
export const AUTO_ACTIONS: ReadonlySet<string> = new Set(['restart', 'rewrite limit']);

export type Guard = 'mode' | 'not_required' | 'held' | 'denied' | 'outside_window' | 'rate_limit';

export interface AutoAction {
  /** The policy's scope it counts against. */
  scope: string;
  path: string;
  /** ms epoch. */
  at: number;
}

export interface GuardState {
  /** Actions taken (any order, any scope). */
  actions: readonly AutoAction[];
  holds: readonly Hold[];
}

export type Verdict =
  | { act: true }
  | {
      act: false;
      guard: Guard;
      /** Why, in words, for the journal. */
      reason: string;
      /** The earliest time the answer can change by the clock alone (ms epoch), when known. */
      retryAt: number | null;
    };

/** The rules in force at `path`: every node from the root down to it (or to its parent), merged. */
export function policyFor(tree: ManifestTree, path: string): AutoPolicy {
  const out: AutoPolicy = { ...DEFAULT_POLICY, scope: tree.root.path };
  let node: NodeSpec | undefined = tree.root;
  let at = tree.root.path;
  for (;;) {
    if (node.reconcile) {
      merge(out, node.reconcile);
      out.scope = at;
    }
    if (!path.startsWith(`${at}/`)) break;
    const name = path.slice(at.length + 1).split('/')[0];
    const next: NodeSpec['children'][number] | undefined = node.children.find((c) => c.name === name);
    if (next?.kind !== 'node') break;
    node = next;
    at = `${at}/${name}`;
  }
  return out;
}

function merge(out: AutoPolicy, r: ReconcileRules): void {
  if (r.mode !== undefined) out.mode = r.mode;
  if (r.maxActions !== undefined) out.maxActions = r.maxActions;
  if (r.per !== undefined) out.per = r.per;
  if (r.allow !== undefined) out.allow = r.allow;
  if (r.deny !== undefined) out.deny = r.deny;
  if (r.checkEvery !== undefined) out.checkEvery = r.checkEvery;
}

/** Shortest `checkEvery` of the auto subtrees; null when none is auto. */
export function checkInterval(tree: ManifestTree): number | null {
  let best: number | null = null;
  const walk = (n: NodeSpec) => {
    const p = policyFor(tree, n.path);
    if (p.mode === 'auto') best = best === null ? p.checkEvery : Math.min(best, p.checkEvery);
    for (const c of n.children) if (c.kind === 'node') walk(c);
  };
  walk(tree.root);
  return best;
}

const crons = new Map<string, Cron>();
function cronOf(source: string): Cron {
  let c = crons.get(source);
  if (!c) {
    c = parseCron(source);
    crons.set(source, c);
  }
  return c;
}

/** Whether to act on `rec` now; see the module comment for the order of the guards. */
export function decide(rec: Recommendation, policy: AutoPolicy, state: GuardState, now: number): Verdict {
  if (policy.mode !== 'auto')
    return { act: false, guard: 'mode', reason: `mode is ${policy.mode}`, retryAt: null };
  const hold = state.holds.find((h) => within(rec.path, h.path) || within(h.path, rec.path));
  if (hold || rec.action === 'wait for release')
    return {
      act: false,
      guard: 'held',
      reason: hold
        ? `${hold.path} is held by ${hold.by}${hold.reason ? ` (${hold.reason})` : ''}; release it with: captree release ${hold.path}`
        : rec.reason,
      retryAt: null,
    };
  if (rec.type !== 'reconcile_required' || !AUTO_ACTIONS.has(rec.action))
    return {
      act: false,
      guard: 'not_required',
      reason: `${rec.type} (${rec.action}) is for an operator`,
      retryAt: null,
    };
  for (const w of policy.deny) {
    const start = windowStart(cronOf(w.cron), w.duration, now);
    if (start !== null)
      return {
        act: false,
        guard: 'denied',
        reason: `inside the deny window '${w.cron}' for ${minutes(w.duration)} (until ${iso(start + w.duration)})`,
        retryAt: start + w.duration,
      };
  }
  if (
    policy.allow.length > 0 &&
    !policy.allow.some((w) => windowStart(cronOf(w.cron), w.duration, now) !== null)
  ) {
    const next = policy.allow
      .map((w) => nextOpening(cronOf(w.cron), now))
      .filter((t): t is number => t !== null)
      .sort((a, b) => a - b)[0];
    return {
      act: false,
      guard: 'outside_window',
      reason: `outside every allow window (${policy.allow.map((w) => `'${w.cron}' for ${minutes(w.duration)}`).join(', ')})${next !== undefined ? `; the next opens at ${iso(next)}` : ''}`,
      retryAt: next ?? null,
    };
  }
  const recent = state.actions
    // An action stamped after `now` (the wall clock stepped back) still counts: never more, not fewer.
    .filter((a) => a.scope === policy.scope && a.at > now - policy.per)
    .map((a) => a.at)
    .sort((a, b) => a - b);
  if (recent.length >= policy.maxActions) {
    // The (n - max + 1)-th most recent leaves the window first and frees one action.
    const frees = (recent[recent.length - policy.maxActions] as number) + policy.per;
    return {
      act: false,
      guard: 'rate_limit',
      reason: `rate limit: ${recent.length} of ${policy.maxActions} automatic action(s) per ${minutes(policy.per)} in ${policy.scope} already taken; the next is allowed at ${iso(frees)}`,
      retryAt: frees,
    };
  }
  return { act: true };
}

function within(path: string, prefix: string): boolean {
  return path === prefix || path.startsWith(`${prefix}/`);
}

function minutes(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

function iso(t: number): string {
  return new Date(t).toISOString().replace('.000Z', 'Z');
}
