/**
 * Re-admission of a whole tree: does the desired manifest fit what the running tree holds?
 *
 * The desired tree is admitted afresh by caps (`checkTree`, the admission `up` runs), with two
 * things the manifest does not say: a child renegotiated at run time keeps its live reservation
 * where the manifest leaves its quantity unchanged (the manifest's value was only its starting
 * point), and every child admitted at run time is admitted again under its node, so a node
 * shrunk below what its admitted children hold is refused ("would squeeze admitted child ...").
 * The running tree is admitted the same way, so the two sets of grants compare like with like:
 * a child whose grant changes (a service now routed from elsewhere, a network it newly reaches)
 * must restart even when its own spec did not change.
 */
import {
  type CapTree,
  checkTree,
  type Grant,
  grantOf,
  type HostCapabilities,
  type Reason,
  remainingOf,
  type TreeSpec,
} from '../caps/index.ts';
import type { ManifestTree } from '../manifest/index.ts';
import { contractOf } from './contracts.ts';
import type { Spec } from './fields.ts';
import type { Actual, BudgetLine, CapabilityDelta, PlanReason, Reserved } from './types.ts';

export interface Admitted {
  ok: boolean;
  /** The admitted capability tree (what the daemon installs once a plan is applied). */
  caps: CapTree | null;
  reasons: PlanReason[];
  grants: ReadonlyMap<string, Grant>;
  /** Node path → children's names in contract (start) order. */
  startOrder: ReadonlyMap<string, readonly string[]>;
  /** Reserved and remaining per node (user units), for the budget lines. */
  budget(path: string): { reserved: Reserved; remaining: Reserved } | undefined;
}

/** The host as a tree sees it: the networks are the ones its own root declares. */
export function hostFor(tree: ManifestTree, host: HostCapabilities): HostCapabilities {
  const networks = Object.fromEntries(Object.keys(tree.networks ?? {}).map((n) => [n, {}]));
  const { networks: _old, ...rest } = host;
  return Object.keys(networks).length > 0 ? { ...rest, networks } : rest;
}

/** `tree` admitted against the host, with live reservations and admitted children (see above). */
export function admitTree(tree: ManifestTree, actual: Actual, running: ReadonlyMap<string, Spec>): Admitted {
  const admittedUnder = new Map<string, TreeSpec[]>();
  const dynamic = new Set<string>();
  for (const a of actual.admitted) {
    const list = admittedUnder.get(a.node) ?? [];
    list.push(a.contract);
    admittedUnder.set(a.node, list);
    dynamic.add(a.path);
  }
  const spec = contractTree(tree.root, actual, running, admittedUnder);
  const checked = checkTree(spec, hostFor(tree, actual.host));
  if (!checked.ok) {
    return {
      ok: false,
      caps: null,
      reasons: checked.reasons.map((r) => reasonOf(r, dynamic)),
      grants: new Map(),
      startOrder: new Map(),
      budget: () => undefined,
    };
  }
  const caps = checked.tree;
  return {
    ok: true,
    caps,
    reasons: [],
    grants: checked.grants,
    startOrder: checked.startOrder,
    budget(path) {
      const g = grantOf(caps, path);
      const left = remainingOf(caps, path);
      if (!g || !left) return undefined;
      return {
        reserved: { cpu: g.cpu.reserved, memory: g.memory.reserved, pids: g.pids.reserved },
        remaining: left,
      };
    },
  };
}

/** The caps contract of `node` and its subtree, live reservations and admitted children folded in. */
function contractTree(
  node: Spec,
  actual: Actual,
  running: ReadonlyMap<string, Spec>,
  admittedUnder: ReadonlyMap<string, TreeSpec[]>,
): TreeSpec {
  const own = contractOf(node.kind === 'node' ? { ...node, children: [] } : node);
  const contract = withLiveQuantities(own, node, actual.reserved[node.path], running.get(node.path));
  if (node.kind !== 'node') return contract;
  const children = node.children.map((c) => contractTree(c, actual, running, admittedUnder));
  for (const extra of admittedUnder.get(node.path) ?? []) children.push(extra);
  return { ...contract, children };
}

/**
 * Where the manifest leaves a quantity as it was, the live reservation (renegotiated) stands;
 * a quantity the manifest changes is what the manifest now says.
 */
function withLiveQuantities(
  contract: TreeSpec,
  spec: Spec,
  live: Reserved | undefined,
  before: Spec | undefined,
): TreeSpec {
  if (!live || !before) return contract;
  const requires: Record<string, unknown> = { ...(contract.requires ?? {}) };
  const r = spec.requires;
  if (before.requires.cpu === r.cpu) {
    const weight = r.cpuWeight;
    if (live.cpu > 0) requires.cpu = weight !== null ? { cores: live.cpu, weight } : live.cpu;
    else if (weight !== null) requires.cpu = { weight };
    else delete requires.cpu;
  }
  for (const q of ['memory', 'pids'] as const) {
    if (before.requires[q] !== r[q]) continue;
    if (live[q] > 0) requires[q] = live[q];
    else delete requires[q];
  }
  return { ...contract, requires };
}

function reasonOf(r: Reason, dynamic: ReadonlySet<string>): PlanReason {
  const field = fieldOf(r);
  if (dynamic.has(r.path))
    return { path: r.path, field, message: `would squeeze admitted child ${r.path}: ${r.message}` };
  return { path: r.path, field, message: r.message };
}

/** The manifest field a caps reason is about, as `captree check` names it. */
function fieldOf(r: Reason): string {
  const d = r.detail;
  if (d && 'quantity' in d) return `requires.${d.quantity}`;
  switch (r.code) {
    case 'network-not-held':
      return 'requires.net';
    case 'listen-not-held':
    case 'listen-taken':
      return 'requires.listen';
    case 'unroutable-service':
      return 'requires.services';
    case 'duplicate-provider':
      return 'provides';
    case 'path-not-held':
      return 'requires.paths';
    case 'secret-not-held':
      return 'requires.secrets';
    case 'env-not-held':
      return 'requires.env';
    case 'invariant-never':
    case 'max-depth':
      return 'policy';
    default:
      return '';
  }
}

const QUALITIES = ['net', 'listen', 'services', 'paths', 'secrets', 'env'] as const;

/** What a grant holds of each quality, as comparable strings. */
function qualities(g: Grant): Record<CapabilityDelta['kind'], string[]> {
  return {
    net: [...g.net].sort(),
    listen: Object.entries(g.listen)
      .map(([name, addr]) => `${name}=${addr}`)
      .sort(),
    services: g.services.map((s) => `${s.name} from ${s.from} ${JSON.stringify(s.endpoint)}`).sort(),
    paths: Object.entries(g.paths)
      .map(([p, mode]) => `${p}:${mode}`)
      .sort(),
    secrets: [...g.secrets].sort(),
    env: [...g.env].sort(),
  };
}

/** The qualities of `before` and `after` that differ (`after` absent: the child is gone). */
export function capabilityDeltas(
  path: string,
  before: Grant | undefined,
  after: Grant | undefined,
): CapabilityDelta[] {
  const empty = { net: [], listen: [], services: [], paths: [], secrets: [], env: [] };
  const a = before ? qualities(before) : empty;
  const b = after ? qualities(after) : empty;
  const out: CapabilityDelta[] = [];
  for (const kind of QUALITIES) {
    const was = new Set(a[kind]);
    const now = new Set(b[kind]);
    const gained = b[kind].filter((x) => !was.has(x));
    const lost = a[kind].filter((x) => !now.has(x));
    if (gained.length > 0 || lost.length > 0) out.push({ path, kind, gained, lost });
  }
  return out;
}

/** Budget lines of a node whose reservation or children's share changes. */
export function budgetLines(path: string, before: Admitted, after: Admitted): BudgetLine[] {
  const a = before.budget(path);
  const b = after.budget(path);
  if (!b) return [];
  const out: BudgetLine[] = [];
  for (const q of ['cpu', 'memory', 'pids'] as const) {
    const was = a ? { reserved: a.reserved[q], children: round(q, a.reserved[q] - a.remaining[q]) } : null;
    const now = { reserved: b.reserved[q], children: round(q, b.reserved[q] - b.remaining[q]) };
    if (now.reserved === 0) continue;
    if (was && was.reserved === now.reserved && was.children === now.children) continue;
    out.push({
      path,
      quantity: q,
      before: was ?? { reserved: 0, children: 0 },
      after: now,
      slack: round(q, now.reserved - now.children),
    });
  }
  return out;
}

function round(q: 'cpu' | 'memory' | 'pids', v: number): number {
  return q === 'cpu' ? Math.round(v * 1000) / 1000 : v;
}
