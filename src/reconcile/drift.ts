/**
 * Drift and recommendations: a pure function of a snapshot (what `captree status --json`
 * prints) and, when given, the desired manifest's plan. The same input gives the same output,
 * byte for byte (`captree reconcile`), so a recommendation can be checked, journalled and
 * replayed.
 *
 * | drift | seen as | recommendation |
 * |---|---|---|
 * | missing | a child that should run is stopped (not held, not a finished transient) | required: restart (`captree start PATH`) |
 * | failed | permanent failure | required: restart; after 3 restarts or more, blocked: diagnostics |
 * | unhealthy | its liveness check failed | required: restart (`captree restart PATH`, strategy scope) |
 * | limit | a cgroup limit read back differs from the grant | required: rewrite the limit (`captree apply FILE`) |
 * | pending | the manifest differs from what runs | recommended: apply (`captree apply FILE`, the plan's restarts) |
 * | incident | repeated OOM kills; restarts inside a node's intensity window | recommended: raise memory / diagnostics |
 * | blocked | a node gave up (intensity exceeded); the manifest does not fit; a child waits for a stopped provider | blocked: diagnostics / recommended: wait for the dependency |
 *
 * A child held by an operator (`captree stop`) is where the operator wants it: no drift. A
 * subtree held from reconciliation (`captree hold`) turns what would act in it into
 * `reconcile_blocked` (wait for release).
 * Status per node, rolled up the tree: `reconciling` while an apply changes something below it,
 * else `unstable` (blocked or failed), `degraded` (any other drift), `nominal`.
 */
import { childrenToStart } from '../core/restart.ts';
import type { NodeSpec } from '../manifest/index.ts';
import type { Spec } from './fields.ts';
import { hasChanges, indexTree } from './plan.ts';
import type { Drift, NodeStatus, Plan, Recommendation, Snapshot, StatusReport } from './types.ts';

export interface AssessOptions {
  /** The desired manifest's plan against this snapshot: pending drift. */
  plan?: Plan;
  /** The manifest file commands name (default: the running tree's). */
  file?: string;
  /** Only this path and below. */
  under?: string;
}

const RUNNING = new Set(['starting', 'running', 'ready', 'restarting', 'stopping']);
/** Restarts after which a permanent failure is not worth another blind restart. */
const REPEATED = 3;

export function assess(snapshot: Snapshot, options: AssessOptions = {}): StatusReport {
  const actual = snapshot.actual;
  const specs = indexTree(actual.tree);
  const file = options.file ?? actual.tree.file;
  const drift: Drift[] = [];
  const recs: Recommendation[] = [];
  const add = (d: Drift, r: Omit<Recommendation, 'path' | 'drift'> | null) => {
    drift.push(d);
    if (r) recs.push({ ...r, path: d.path, drift: d.kind });
  };
  const order = pathsInOrder(actual.tree.root.path, snapshot);
  for (const path of order) {
    const c = actual.children[path];
    if (!c) continue;
    const o = snapshot.observed[path];
    const spec = specs.get(path);
    if (c.kind === 'node') {
      assessNode(path, c.state, o, add);
      continue;
    }
    if (c.held) continue;
    const lastExit = o?.lastExit ?? 'unknown';
    if (c.state === 'failed') {
      if ((o?.restarts ?? 0) >= REPEATED)
        add(
          { path, kind: 'failed', message: `failed for good after ${o?.restarts} restarts: ${lastExit}` },
          {
            type: 'reconcile_blocked',
            action: 'diagnostics',
            command: `captree logs ${path}`,
            blastRadius: [],
            reason: 'repeated failures: a restart would fail the same way; read its log first',
          },
        );
      else
        add(
          { path, kind: 'failed', message: `permanent failure: ${lastExit}` },
          restartOf(path, 'start', [path], 'it gave up for good; start it again once the cause is fixed'),
        );
      continue;
    }
    if (c.state === 'stopped') {
      const finished =
        spec?.kind === 'process' && spec.restart === 'transient' && lastExit === 'exited normally';
      if (!finished && spec)
        add(
          { path, kind: 'missing', message: `should run, is stopped (${lastExit})` },
          restartOf(path, 'start', [path], 'it should run and nothing will start it'),
        );
      continue;
    }
    if ((o?.livenessFailures ?? 0) > 0 && RUNNING.has(c.state))
      add(
        { path, kind: 'unhealthy', message: `liveness failed ${o?.livenessFailures} time(s)` },
        restartOf(path, 'restart', scopeOf(path, snapshot, specs), 'its liveness check fails'),
      );
    if (c.state === 'starting' || c.state === 'restarting') {
      const waiting = stoppedProvider(path, snapshot, specs);
      if (waiting)
        add(
          {
            path,
            kind: 'blocked',
            message: `waits for ${waiting.service} from ${waiting.provider} (${waiting.state})`,
          },
          {
            type: 'reconcile_recommended',
            action: 'wait for dependency',
            command: `captree start ${waiting.provider}`,
            blastRadius: [waiting.provider],
            reason: `${waiting.provider} provides ${waiting.service} and is ${waiting.state}`,
          },
        );
    }
    if ((o?.oomKills ?? 0) >= 2)
      add(
        { path, kind: 'incident', message: `killed for memory ${o?.oomKills} times` },
        {
          type: 'reconcile_recommended',
          action: 'raise memory',
          command: `captree apply ${file}`,
          blastRadius: [],
          reason: `raise requires.memory of ${path} in ${file}, then apply: memory changes live, nothing restarts`,
        },
      );
    for (const l of o?.limitDrift ?? [])
      add(
        {
          path,
          kind: 'limit',
          message: `${l.quantity} limit reads ${show(l.quantity, l.enforced)}, granted ${show(l.quantity, l.granted)}`,
        },
        {
          type: 'reconcile_required',
          action: 'rewrite limit',
          command: `captree apply ${file}`,
          blastRadius: [],
          reason: 'apply rewrites every limit that differs from its grant, live',
        },
      );
  }
  const plan = options.plan;
  if (plan && !plan.fits) {
    add(
      {
        path: actual.tree.root.path,
        kind: 'blocked',
        message: `${file} does not fit: ${plan.reasons.map((r) => r.message).join('; ')}`,
      },
      {
        type: 'reconcile_blocked',
        action: 'diagnostics',
        command: `captree plan ${file}`,
        blastRadius: [],
        reason: 'the manifest asks for more than the tree holds; plan lists every reason',
      },
    );
  } else if (plan && hasChanges(plan)) {
    const changed = plan.actions.filter((a) => a.action !== 'noop');
    for (const a of changed)
      drift.push({
        path: a.path,
        kind: 'pending',
        message: `${file} ${a.action === 'add' ? 'adds' : a.action === 'remove' ? 'removes' : `${a.action}s`} it (${a.because.join(', ') || a.action})`,
      });
    recs.push({
      type: 'reconcile_recommended',
      path: actual.tree.root.path,
      drift: 'pending',
      action: 'apply',
      command: `captree apply ${file}`,
      blastRadius: [...new Set(plan.actions.flatMap((a) => a.restarts))].sort(),
      reason: `${changed.length} change(s) not applied (see: captree plan ${file})`,
    });
  }
  // An operator's hold blocks whatever would act inside it (the pending apply included).
  const holds = actual.holds ?? [];
  for (const [i, r] of recs.entries()) {
    const h = holds.find(
      (x) => r.path === x.path || r.path.startsWith(`${x.path}/`) || x.path.startsWith(`${r.path}/`),
    );
    if (!h || r.type === 'reconcile_blocked') continue;
    recs[i] = {
      ...r,
      type: 'reconcile_blocked',
      action: 'wait for release',
      command: `captree release ${h.path}`,
      blastRadius: [],
      reason: `${h.path} is held by ${h.by} (${h.reason}); then: ${r.command}`,
    };
  }
  const inScope = (p: string) =>
    options.under === undefined || p === options.under || p.startsWith(`${options.under}/`);
  const rank = new Map(order.map((p, i) => [p, i]));
  const byPlace = <T extends { path: string }>(list: T[]) =>
    list.filter((x) => inScope(x.path)).sort((a, b) => (rank.get(a.path) ?? 1e9) - (rank.get(b.path) ?? 1e9));
  const nodes = rollUp(actual.tree.root.path, snapshot, drift, recs).filter((n) => inScope(n.path));
  const scoped = options.under === undefined ? actual.tree.root.path : options.under;
  return {
    generation: snapshot.generation,
    summary:
      nodes.find((n) => n.path === scoped)?.status ??
      statusOf(
        drift.filter((d) => inScope(d.path)),
        recs.filter((r) => inScope(r.path)),
        false,
      ),
    nodes,
    drift: byPlace(drift),
    recommendations: byPlace(recs),
  };
}

function assessNode(
  path: string,
  state: string,
  o: Snapshot['observed'][string] | undefined,
  add: (d: Drift, r: Omit<Recommendation, 'path' | 'drift'> | null) => void,
): void {
  if (o?.escalated || state === 'failed') {
    add(
      {
        path,
        kind: 'blocked',
        message: `gave up: ${o?.lastExit ?? 'more restarts than its intensity allows'}`,
      },
      {
        type: 'reconcile_blocked',
        action: 'diagnostics',
        command: `captree events --path ${path}`,
        blastRadius: [],
        reason: 'its children crashed more often than its intensity allows; find out why before restarting',
      },
    );
    return;
  }
  const w = o?.window;
  if (w && w.restarts > 0)
    add(
      {
        path,
        kind: 'incident',
        message: `${w.restarts} of ${w.intensity} restarts used in the last ${seconds(w.period)}`,
      },
      {
        type: 'reconcile_recommended',
        action: 'diagnostics',
        command: `captree events --path ${path} --since ${seconds(w.period)}`,
        blastRadius: [],
        reason: `${w.intensity - w.restarts} more restart(s) within ${seconds(w.period)} and ${path} gives up`,
      },
    );
}

function restartOf(
  path: string,
  verb: 'start' | 'restart',
  blastRadius: string[],
  reason: string,
): Omit<Recommendation, 'path' | 'drift'> {
  return {
    type: 'reconcile_required',
    action: 'restart',
    command: `captree ${verb} ${path}`,
    blastRadius,
    reason,
  };
}

/** What `captree restart PATH` restarts: the child and its strategy's running scope. */
function scopeOf(path: string, snapshot: Snapshot, specs: ReadonlyMap<string, Spec>): string[] {
  const node = path.slice(0, path.lastIndexOf('/'));
  const spec = specs.get(node) as NodeSpec | undefined;
  const order = snapshot.actual.order[node] ?? (spec ? spec.children.map((c) => c.name) : []);
  const i = order.indexOf(path.slice(node.length + 1));
  if (!spec || i < 0) return [path];
  const strategy = spec.strategy === 'dynamic' ? 'one_for_one' : spec.strategy;
  return childrenToStart(strategy, order.length, i)
    .map((j) => `${node}/${order[j]}`)
    .filter((p) => {
      const c = snapshot.actual.children[p];
      return p === path || (c !== undefined && RUNNING.has(c.state) && !c.held);
    });
}

/** A provider of a service this child requires that is not running, if any. */
function stoppedProvider(
  path: string,
  snapshot: Snapshot,
  specs: ReadonlyMap<string, Spec>,
): { service: string; provider: string; state: string } | null {
  const spec = specs.get(path);
  if (!spec) return null;
  for (const service of spec.requires.services) {
    for (const [p, s] of specs) {
      if (p === path || !(service in s.provides)) continue;
      const c = snapshot.actual.children[p];
      if (c && !RUNNING.has(c.state))
        return { service, provider: p, state: c.held ? 'held stopped' : c.state };
    }
  }
  return null;
}

function statusOf(drift: Drift[], recs: Recommendation[], reconciling: boolean): NodeStatus {
  if (reconciling) return 'reconciling';
  if (recs.some((r) => r.type === 'reconcile_blocked') || drift.some((d) => d.kind === 'failed'))
    return 'unstable';
  return drift.length > 0 ? 'degraded' : 'nominal';
}

/** Every node with the worst status of its subtree. */
function rollUp(
  root: string,
  snapshot: Snapshot,
  drift: Drift[],
  recs: Recommendation[],
): { path: string; status: NodeStatus; drift: number }[] {
  const nodes = Object.entries(snapshot.actual.children)
    .filter(([, c]) => c.kind === 'node')
    .map(([p]) => p);
  if (!nodes.includes(root)) nodes.unshift(root);
  const applying = snapshot.applying?.paths ?? [];
  const below = (p: string, node: string) => p === node || p.startsWith(`${node}/`);
  const out = nodes.map((node) => {
    const d = drift.filter((x) => below(x.path, node));
    const r = recs.filter((x) => below(x.path, node));
    const reconciling = applying.some((p) => below(p, node) || below(node, p));
    const own = statusOf(d, r, reconciling);
    return { path: node, status: own, drift: d.length };
  });
  const rank = new Map(pathsInOrder(root, snapshot).map((p, i) => [p, i]));
  out.sort((a, b) => (rank.get(a.path) ?? 1e9) - (rank.get(b.path) ?? 1e9));
  return out;
}

/** Every path of the snapshot, depth-first in the engine's start order. */
function pathsInOrder(root: string, snapshot: Snapshot): string[] {
  const specs = indexTree(snapshot.actual.tree);
  const out: string[] = [];
  const seen = new Set<string>();
  const walk = (path: string) => {
    if (seen.has(path)) return;
    seen.add(path);
    out.push(path);
    const spec = specs.get(path);
    const names =
      snapshot.actual.order[path] ?? (spec?.kind === 'node' ? spec.children.map((c) => c.name) : []);
    for (const n of names) walk(`${path}/${n}`);
  };
  walk(root);
  for (const p of Object.keys(snapshot.actual.children).sort()) walk(p);
  return out;
}

function show(q: 'cpu' | 'memory' | 'pids', v: number | null): string {
  if (v === null) return 'none';
  if (q === 'memory') return `${v} bytes`;
  return String(v);
}

function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}
