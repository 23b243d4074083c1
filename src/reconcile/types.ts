/**
 * The vocabulary of reconciliation: what the running tree is (`Actual`, plus what events told
 * about it: `Observed`), what a manifest asks for (a `ManifestTree`), the plan between them
 * (`Plan`: actions for people, steps for the daemon) and the drift and recommendations of
 * `captree status`. Plain JSON data throughout: a snapshot written to a file and read back
 * gives the same decisions (`captree reconcile --actual SNAPSHOT.json`).
 */
import type { HostCapabilities, TreeSpec } from '../caps/index.ts';
import type { ManifestTree } from '../manifest/index.ts';

export type ActionKind = 'noop' | 'update' | 'restart' | 'add' | 'remove';

/** How a restart reaches a child that did not change itself. */
export type Via = 'rest_for_one' | 'one_for_all' | 'node';

export interface Action {
  path: string;
  action: ActionKind;
  /**
   * Field paths that cause it: the child's own (`command`, `requires.cpu`, `grant.services`),
   * or, for a child dragged along or added/removed, another path's field (`/shop/db.command`,
   * `/shop.children.cache`).
   */
  because: string[];
  /** Every path this action restarts: itself, its strategy's scope, a node's whole subtree. */
  restarts: string[];
  /** One line per change, in the operator's units (`cpu 0.2 → 0.4`, `command changed`). */
  detail: string[];
  /** Set when the restart comes from another child's change. */
  via?: Via;
  /** A child admitted at run time (not in the manifest): kept as it is. */
  admitted?: true;
}

/** A reason the desired tree cannot be applied, in `captree check`'s words. */
export interface PlanReason {
  path: string;
  /** The field to fix (`requires.cpu`), or '' for the child itself. */
  field: string;
  message: string;
}

/** Something a child newly holds or no longer holds (a network, a secret, a service...). */
export interface CapabilityDelta {
  path: string;
  kind: 'net' | 'listen' | 'services' | 'paths' | 'secrets' | 'env';
  gained: string[];
  lost: string[];
}

/** A node's budget of one quantity before and after: reserved for itself, carved by its children. */
export interface BudgetLine {
  path: string;
  quantity: 'cpu' | 'memory' | 'pids';
  before: { reserved: number; children: number };
  after: { reserved: number; children: number };
  /** `after.reserved - after.children`: what is left to admit or renegotiate. */
  slack: number;
}

/** New cgroup limits (cores, bytes, count; null removes the limit). */
export interface LimitChange {
  cpu?: number | null;
  cpuWeight?: number | null;
  memory?: number | null;
  pids?: number | null;
}

/**
 * One thing the daemon does, in order. Each is journalled before the next begins, so a daemon
 * killed in the middle resumes at the first one not done (see `src/daemon/reconcile-apply.ts`).
 * - `limits`: rewrite cgroup limits live (lowerings come first, raisings after the stops).
 * - `stop`: stop a child (a node: its subtree) that is restarted or removed; consumers first.
 * - `remove`: delete a stopped child's spec.
 * - `revise`: give a child its new spec; a running one keeps running (the change applies at its
 *   next start, or at the `start` step that follows).
 * - `flags`: change a node's strategy, intensity, period... in place.
 * - `add`: insert a new child at `index` (start order) and start it.
 * - `start`: start a child stopped by this plan.
 */
export type Step =
  | { op: 'limits'; path: string; limits: LimitChange }
  | { op: 'stop'; path: string }
  | { op: 'remove'; path: string }
  | { op: 'revise'; path: string }
  | { op: 'flags'; path: string }
  | { op: 'add'; path: string; index: number }
  | { op: 'start'; path: string };

export interface PlanSummary {
  add: number;
  remove: number;
  update: number;
  restart: number;
  noop: number;
  /** Distinct paths the plan restarts (what `apply` will be seen to restart, by pid). */
  restarted: number;
}

export interface Plan {
  /** The running tree's generation the plan was made against (`apply --plan` checks it). */
  generation: number;
  /** Digest of the running spec the plan was made against. */
  base: string;
  /** Digest of the desired spec: the running spec once applied. */
  target: string;
  fits: boolean;
  reasons: PlanReason[];
  actions: Action[];
  capabilities: CapabilityDelta[];
  budget: BudgetLine[];
  /** What the daemon carries out; empty when nothing changes or the tree does not fit. */
  steps: Step[];
  summary: PlanSummary;
}

/** Cores, bytes, count reserved (0: shares the parent's remainder). */
export interface Reserved {
  cpu: number;
  memory: number;
  pids: number;
}

/** One node or child of the running tree, as the engine reports it. */
export interface ActualChild {
  kind: 'node' | 'process' | 'task' | 'worker';
  /** The engine's state (`running`, `ready`, `stopped`, `failed`, ...). */
  state: string;
  pid: number | null;
  /** Held stopped by an operator (`captree stop`). */
  held: boolean;
}

/** The running tree, as the daemon knows it: the input of planning. */
export interface Actual {
  generation: number;
  /** The spec the tree runs (the manifest it was started or last applied with). */
  tree: ManifestTree;
  /** What the host holds and enforces, as admission sees it. */
  host: HostCapabilities;
  /** Node path → its children in the engine's start order, children admitted at run time included. */
  order: Record<string, string[]>;
  /** Path → live reservations, for paths renegotiated away from their manifest value. */
  reserved: Record<string, Reserved>;
  /** Children admitted at run time (`captree admit`), with the contract they were admitted with. */
  admitted: { path: string; node: string; contract: TreeSpec }[];
  /** Path → its engine state, for every node and child. */
  children: Record<string, ActualChild>;
  /** Subtrees an operator holds (`captree hold`): no plan may change anything in them. */
  holds?: Hold[];
}

/** An operator's hold on a subtree (`captree hold PATH`), journalled with who asked. */
export interface Hold {
  path: string;
  /** Who asked, as the client said (`$USER` over the control socket). */
  by: string;
  reason: string;
  /** ms epoch. */
  at: number;
}

/** What events told about one path since the tree (or its last restart) started. */
export interface Observed {
  /** Restarts of this child so far. */
  restarts: number;
  /** The last exit, in words, or null. */
  lastExit: string | null;
  /** OOM kills of this child seen in the events (since the daemon started). */
  oomKills: number;
  /** Liveness failures of its current instance. */
  livenessFailures: number;
  /** A node: restarts in its intensity window now, out of `intensity` in `period` ms. */
  window?: { restarts: number; intensity: number; period: number };
  /** A node that gave up (more restarts than its intensity allows). */
  escalated?: boolean;
  /** Limits read back from the cgroup, where they differ from the grant (cores, bytes, count; null = none). */
  limitDrift?: { quantity: 'cpu' | 'memory' | 'pids'; granted: number | null; enforced: number | null }[];
}

/** What `captree status --json` prints: the input of `captree reconcile --actual`. */
export interface Snapshot {
  version: 1;
  generation: number;
  base: string;
  actual: Actual;
  /** Path → what events told about it. */
  observed: Record<string, Observed>;
  /** An apply under way: its generation and the paths it changes. */
  applying: { generation: number; paths: string[] } | null;
}

export type DriftKind = 'missing' | 'unhealthy' | 'failed' | 'limit' | 'pending' | 'incident' | 'blocked';

export interface Drift {
  path: string;
  kind: DriftKind;
  /** What was seen, in words. */
  message: string;
}

export type RecommendationType = 'reconcile_required' | 'reconcile_recommended' | 'reconcile_blocked';

export interface Recommendation {
  type: RecommendationType;
  path: string;
  drift: DriftKind;
  /** `restart`, `rewrite limit`, `apply`, `raise memory`, `diagnostics`, `wait for dependency`. */
  action: string;
  /** The exact command that carries it out (or shows why it is blocked). */
  command: string;
  /** The paths it restarts: empty when nothing restarts. */
  blastRadius: string[];
  reason: string;
}

export type NodeStatus = 'nominal' | 'degraded' | 'unstable' | 'reconciling';

export interface StatusReport {
  generation: number;
  /** The root's status, rolled up from the whole tree. */
  summary: NodeStatus;
  /** Every node with its rolled-up status. */
  nodes: { path: string; status: NodeStatus; drift: number }[];
  drift: Drift[];
  recommendations: Recommendation[];
}
