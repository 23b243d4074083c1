/**
 * Planning: from the running tree (`Actual`) to a desired manifest with the fewest restarts,
 * computed by the rules the engine itself applies.
 *
 * 1. Re-admission (fit.ts): the desired tree against the host, live reservations and admitted
 *    children included; every reason when it does not fit, and then no steps.
 * 2. Per path, field by field (fields.ts): quantities are rewritten live, engine fields and node
 *    flags change in place, what a process runs with restarts it. A child whose grant changes
 *    (compared after re-admission: a provider's `provides`, a parent's network) restarts too.
 * 3. Scope: a restarted child drags along what its node's strategy restarts with it, by core's
 *    own `childrenToStart` over the engine's start order (rest_for_one: the children after it;
 *    one_for_all: all), counting only siblings that run (a held or failed sibling stays as it
 *    is, as in the engine); a restarted node restarts its whole subtree. A child that is not
 *    running is only given its new spec (`update`): it uses it when it next starts.
 * 4. Steps, in contract order: lowered limits (deepest first: they free budget and cgroup v1
 *    wants children lowered before parents), stops of what restarts or goes (consumers before
 *    providers: reverse start order), removals, new specs, node flags, raised limits (parents
 *    first), then starts and additions in start order (providers first), each ready before the
 *    next. The daemon journals each step (src/daemon/reconcile-apply.ts).
 *
 * Deliberate differences from a crash restart: a temporary sibling in the scope is started again
 * (the manifest lists it), and restarts made by a plan do not count against intensity (an
 * operator's restart does not either). A changed start order of existing children applies at the
 * node's next restart (the engine has no reorder).
 */
import type { Grant } from '../caps/index.ts';
import { childrenToStart } from '../core/restart.ts';
import type { ManifestTree, NodeSpec } from '../manifest/index.ts';
import { specDigest } from './canonical.ts';
import { changedFields, type FieldChange, isNodeFlag, isQuantityField, type Spec } from './fields.ts';
import { admitTree, budgetLines, capabilityDeltas } from './fit.ts';
import type { Action, Actual, Hold, LimitChange, Plan, PlanReason, Step, Via } from './types.ts';

const RUNNING = new Set(['starting', 'running', 'ready', 'restarting', 'stopping']);

/** Every node and child of a tree by path, depth-first in list order. */
export function indexTree(tree: ManifestTree): Map<string, Spec> {
  const out = new Map<string, Spec>();
  const walk = (s: Spec) => {
    out.set(s.path, s);
    if (s.kind === 'node') for (const c of s.children) walk(c);
  };
  walk(tree.root);
  return out;
}

function parentOf(path: string): string {
  return path.slice(0, path.lastIndexOf('/'));
}

function nameOf(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

interface Change {
  fields: FieldChange[];
  /** Grant qualities that differ after re-admission (`grant.services`...). */
  grant: string[];
  /** Paths of providers whose `provides` changed, for the consumers they drag. */
  providers: string[];
}

export function plan(desired: ManifestTree, actual: Actual): Plan {
  const before = indexTree(actual.tree);
  const after = indexTree(desired);
  const root = structuralReasons(actual.tree, desired);
  const base = specDigest(actual.tree);
  const target = specDigest(desired);
  // The running spec itself: nothing to change, nothing to admit again (it runs, so it fits).
  if (base === target && root.length === 0) return unchanged(actual, base, after);
  const admittedActual = admitTree(actual.tree, actual, before);
  const admittedDesired = admitTree(desired, actual, before);
  const reasons = [...root, ...admittedDesired.reasons];
  const fits = reasons.length === 0;

  const dynamic = new Map(actual.admitted.map((a) => [a.path, a]));
  const active = (path: string) => {
    const c = actual.children[path];
    return c === undefined ? true : RUNNING.has(c.state) && !c.held;
  };
  const actualOrder = (node: string): string[] =>
    actual.order[node] ?? [
      ...(admittedActual.startOrder.get(node) ?? childNames(before.get(node))),
      ...actual.admitted.filter((a) => a.node === node).map((a) => nameOf(a.path)),
    ];
  const desiredOrder = (node: string): string[] =>
    fits
      ? [...(admittedDesired.startOrder.get(node) ?? childNames(after.get(node)))]
      : childNames(after.get(node));

  // ---- 2. changes per path ------------------------------------------------------------------
  const changes = new Map<string, Change>();
  /** Grant deltas per path, computed once (changes and the capability list both need them). */
  const deltas = new Map<string, ReturnType<typeof capabilityDeltas>>();
  const deltasOf = (path: string) => {
    let d = deltas.get(path);
    if (!d) {
      // Identical grants (the common case) need no comparison field by field.
      const a = admittedActual.grants.get(path);
      const b = admittedDesired.grants.get(path);
      d = a && b && JSON.stringify(a) === JSON.stringify(b) ? [] : capabilityDeltas(path, a, b);
      deltas.set(path, d);
    }
    return d;
  };
  for (const [path, spec] of after) {
    const old = before.get(path);
    if (!old) continue;
    const fields = changedFields(old, spec);
    const grant: string[] = [];
    const providers: string[] = [];
    if (fits && spec.kind === 'process' && old.kind === 'process') {
      for (const d of deltasOf(path)) {
        grant.push(`grant.${d.kind}`);
        if (d.kind === 'services')
          providers.push(
            ...changedProviders(admittedActual.grants.get(path), admittedDesired.grants.get(path)),
          );
      }
    }
    changes.set(path, { fields, grant, providers: [...new Set(providers)].sort() });
  }
  const needsRestart = (path: string) => {
    const c = changes.get(path);
    return c !== undefined && (c.fields.some((f) => f.cls === 'restart') || c.grant.length > 0);
  };
  const replaced = (path: string) => changes.get(path)?.fields.some((f) => f.field === 'kind') ?? false;

  // ---- 3. scope --------------------------------------------------------------------------------
  /** Path → why it restarts: its own change, or the cause that drags it (and how). */
  const restarted = new Map<string, { own: boolean; by: string[]; via?: Via }>();
  const wholeNodes = new Set<string>();
  const mark = (path: string, own: boolean, by?: string, via?: Via) => {
    const r = restarted.get(path) ?? { own: false, by: [] };
    if (own) r.own = true;
    if (by && !r.by.includes(by)) r.by.push(by);
    if (via && !r.via && !r.own) r.via = via;
    restarted.set(path, r);
  };
  for (const path of after.keys()) {
    if (path === desired.root.path || !before.has(path) || !needsRestart(path)) continue;
    if (!active(path) && !replaced(path)) continue;
    mark(path, true);
    const node = parentOf(path);
    const strategy = (after.get(node) as NodeSpec).strategy;
    const order = actualOrder(node);
    const i = order.indexOf(nameOf(path));
    if (i < 0) continue;
    const scopeStrategy = strategy === 'dynamic' ? 'one_for_one' : strategy;
    for (const j of childrenToStart(scopeStrategy, order.length, i)) {
      const sibling = `${node}/${order[j]}`;
      if (sibling === path) continue;
      const kept = after.has(sibling) || (dynamic.has(sibling) && after.has(node));
      if (!kept || !active(sibling)) continue;
      mark(sibling, false, path, scopeStrategy === 'one_for_all' ? 'one_for_all' : 'rest_for_one');
    }
  }
  for (const [path] of restarted)
    if (after.get(path)?.kind === 'node' || before.get(path)?.kind === 'node') wholeNodes.add(path);
  // A restarted node restarts everything below it (the outermost one carries it out).
  const insideRestarted = (path: string): string | null => {
    for (let p = parentOf(path); p !== '' && p !== desired.root.path; p = parentOf(p))
      if (wholeNodes.has(p) && restarted.has(p)) return p;
    return null;
  };
  const descendants = (path: string): string[] => {
    const out: string[] = [];
    for (const p of after.keys()) if (p.startsWith(`${path}/`) && active(p)) out.push(p);
    for (const p of dynamic.keys()) if (p.startsWith(`${path}/`) && active(p)) out.push(p);
    return out;
  };

  // ---- actions ---------------------------------------------------------------------------------
  const removedTop = new Set<string>();
  const addedTop = new Set<string>();
  for (const path of before.keys())
    if (!after.has(path) && after.has(parentOf(path)) && !replaced(parentOf(path))) removedTop.add(path);
  for (const path of after.keys())
    if (!before.has(path) && before.has(parentOf(path)) && !replaced(parentOf(path))) addedTop.add(path);
  const topOf = (path: string, set: Set<string>): string => {
    for (let p = path; p !== ''; p = parentOf(p)) if (set.has(p)) return p;
    return path;
  };

  const afterRank = new Map([...after.keys()].map((p, i) => [p, i]));
  const actions: Action[] = [];
  for (const path of unionOrder(desired, actual, before, after, actualOrder, desiredOrder)) {
    const spec = after.get(path);
    const old = before.get(path);
    const isDynamic = dynamic.has(path);
    if (!spec && !old && !isDynamic) continue;
    if (!spec && !isDynamic) {
      const top = topOf(path, removedTop);
      actions.push({
        path,
        action: 'remove',
        because: [`${parentOf(top)}.children.${nameOf(top)}`],
        restarts: [],
        detail: [top === path ? 'not in the manifest: stopped and removed' : `removed with ${top}`],
      });
      continue;
    }
    if (isDynamic) {
      if (!after.has(parentOf(path))) {
        const top = topOf(parentOf(path), removedTop);
        actions.push({
          path,
          action: 'remove',
          because: [`${parentOf(top)}.children.${nameOf(top)}`],
          restarts: [],
          detail: [`admitted at run time; its node ${parentOf(path)} leaves the tree`],
          admitted: true,
        });
        continue;
      }
      const r = restarted.get(path);
      const inside = insideRestarted(path);
      if (r || inside) {
        actions.push({
          path,
          action: 'restart',
          because: (r?.by ?? [inside as string]).flatMap((b) => causeFields(b, changes)),
          restarts: [path],
          detail: ['admitted at run time: restarted with its current spec'],
          via: r?.via ?? 'node',
          admitted: true,
        });
      } else
        actions.push({
          path,
          action: 'noop',
          because: [],
          restarts: [],
          detail: ['admitted at run time: kept'],
          admitted: true,
        });
      continue;
    }
    if (!old) {
      const top = topOf(path, addedTop);
      actions.push({
        path,
        action: 'add',
        because: [`${parentOf(top)}.children.${nameOf(top)}`],
        restarts: [],
        detail: [top === path ? 'new: started in contract order' : `added with ${top}`],
      });
      continue;
    }
    const change = changes.get(path) as Change;
    const own = [...change.fields.map((f) => f.field), ...change.grant];
    const detail = [
      ...change.fields.map((f) => f.detail),
      ...change.grant.map((g) => `${g} changes after re-admission`),
    ];
    const r = restarted.get(path);
    const inside = insideRestarted(path);
    if (r || inside) {
      const scope = new Set<string>([path, ...(wholeNodes.has(path) ? descendants(path) : [])]);
      if (r?.own)
        for (const [p, why] of restarted)
          if (why.by.includes(path))
            for (const q of [p, ...(wholeNodes.has(p) ? descendants(p) : [])]) scope.add(q);
      const dragged = r && !r.own ? r.by.flatMap((b) => causeFields(b, changes)) : [];
      const viaNode = !r && inside ? causeFields(inside, changes) : [];
      const because = [...own, ...dragged, ...viaNode, ...change.providers.map((p) => `${p}.provides`)];
      const via: Via | undefined = r?.own ? undefined : (r?.via ?? 'node');
      actions.push({
        path,
        action: 'restart',
        because: [...new Set(because)],
        restarts: sortPaths([...scope], afterRank),
        detail:
          detail.length > 0
            ? detail
            : [via === 'node' ? `restarted with ${inside}` : `restarted with ${r?.by.join(', ')} (${via})`],
        ...(via ? { via } : {}),
      });
      continue;
    }
    if (own.length === 0) {
      actions.push({ path, action: 'noop', because: [], restarts: [], detail: [] });
      continue;
    }
    if (needsRestart(path)) detail.push('not running: its new spec applies when it next starts');
    actions.push({ path, action: 'update', because: own, restarts: [], detail });
  }

  // A hold refuses the whole plan when it would change anything inside the held subtree.
  const held = heldReasons(actions, actual.holds ?? []);
  reasons.push(...held);

  // ---- 4. steps --------------------------------------------------------------------------------
  const steps: Step[] = [];
  if (fits && held.length === 0 && actions.some((a) => a.action !== 'noop')) {
    const liveBefore = (path: string) => actual.reserved[path];
    const lowers: Step[] = [];
    const raises: Step[] = [];
    for (const [path, spec] of after) {
      const old = before.get(path);
      const c = changes.get(path);
      if (!old || !c || replaced(path)) continue;
      const quantityChange = c.fields.filter((f) => isQuantityField(f.field));
      if (quantityChange.length === 0) continue;
      // A restarted process gets its new limits when it starts; a node's cgroup is rewritten.
      if (spec.kind === 'process' && (restarted.has(path) || insideRestarted(path))) continue;
      const [lower, raise] = limitSteps(old, spec, liveBefore(path));
      if (Object.keys(lower).length > 0) lowers.push({ op: 'limits', path, limits: lower });
      if (Object.keys(raise).length > 0) raises.push({ op: 'limits', path, limits: raise });
    }
    const depth = (p: string) => p.split('/').length;
    const actualRank = rankOf(actual.tree.root.path, actualOrder);
    const desiredRank = rankOf(desired.root.path, desiredOrder);
    lowers.sort(
      (a, b) =>
        depth(b.path) - depth(a.path) || (actualRank.get(a.path) ?? 0) - (actualRank.get(b.path) ?? 0),
    );
    raises.sort(
      (a, b) =>
        depth(a.path) - depth(b.path) || (desiredRank.get(a.path) ?? 0) - (desiredRank.get(b.path) ?? 0),
    );
    steps.push(...lowers);

    const restartTop = [...restarted.keys()].filter((p) => insideRestarted(p) === null);
    const stopping = [...new Set([...restartTop, ...removedTop])]
      .filter((p) => active(p) || replaced(p))
      .sort((a, b) => (actualRank.get(b) ?? 0) - (actualRank.get(a) ?? 0));
    for (const path of stopping) steps.push({ op: 'stop', path });
    const removing = [...removedTop].sort((a, b) => (actualRank.get(b) ?? 0) - (actualRank.get(a) ?? 0));
    for (const path of removing) steps.push({ op: 'remove', path });
    for (const path of [...after.keys()].sort(
      (a, b) => (desiredRank.get(a) ?? 0) - (desiredRank.get(b) ?? 0),
    )) {
      const c = changes.get(path);
      if (!c || path === desired.root.path || insideRestarted(path) !== null) continue;
      if (replaced(path)) {
        steps.push({ op: 'remove', path });
        continue;
      }
      const wholeNode = wholeNodes.has(path) && restarted.has(path);
      const respec = c.fields.some(
        (f) => !isQuantityField(f.field) && !(after.get(path)?.kind === 'node' && isNodeFlag(f.field)),
      );
      if (wholeNode || respec || c.grant.length > 0) steps.push({ op: 'revise', path });
    }
    for (const [path, spec] of after) {
      const c = changes.get(path);
      if (!c || spec.kind !== 'node' || restarted.has(path) || insideRestarted(path)) continue;
      if (c.fields.some((f) => isNodeFlag(f.field))) steps.push({ op: 'flags', path });
    }
    steps.push(...raises);
    const starting: Step[] = [];
    for (const path of restartTop)
      if ((after.has(path) && !replaced(path)) || dynamic.has(path)) starting.push({ op: 'start', path });
    for (const path of [...addedTop, ...[...after.keys()].filter(replaced)])
      starting.push({ op: 'add', path, index: desiredOrder(parentOf(path)).indexOf(nameOf(path)) });
    const rankStart = (p: string) => desiredRank.get(p) ?? (actualRank.get(p) ?? 0) + 1e9;
    starting.sort((a, b) => rankStart(a.path) - rankStart(b.path));
    steps.push(...starting);
  }

  const capabilities = fits ? [...after.keys()].flatMap((p) => deltasOf(p)) : [];
  const budget = fits
    ? [...after.values()]
        .filter((s) => s.kind === 'node')
        .flatMap((s) => budgetLines(s.path, admittedActual, admittedDesired))
    : [];
  const restartedPaths = new Set(actions.flatMap((a) => a.restarts));
  const count = (k: Action['action']) => actions.filter((a) => a.action === k).length;
  return {
    generation: actual.generation,
    base,
    target,
    fits: fits && held.length === 0,
    reasons,
    actions,
    capabilities,
    budget,
    steps,
    summary: {
      add: count('add'),
      remove: count('remove'),
      update: count('update'),
      restart: count('restart'),
      noop: count('noop'),
      restarted: restartedPaths.size,
    },
  };
}

/** The plan of the running spec against itself: every path a noop. */
function unchanged(actual: Actual, digest: string, specs: ReadonlyMap<string, Spec>): Plan {
  const actions: Action[] = [...specs.keys()].map((path) => ({
    path,
    action: 'noop',
    because: [],
    restarts: [],
    detail: [],
  }));
  for (const a of actual.admitted)
    actions.push({
      path: a.path,
      action: 'noop',
      because: [],
      restarts: [],
      detail: ['admitted at run time: kept'],
      admitted: true,
    });
  return {
    generation: actual.generation,
    base: digest,
    target: digest,
    fits: true,
    reasons: [],
    actions,
    capabilities: [],
    budget: [],
    steps: [],
    summary: { add: 0, remove: 0, update: 0, restart: 0, noop: actions.length, restarted: 0 },
  };
}

/** True when the plan changes anything (exit 2 of `captree plan`). */
export function hasChanges(p: Plan): boolean {
  return p.actions.some((a) => a.action !== 'noop');
}

/** One reason per changed path inside a held subtree (a restart that reaches into one too). */
function heldReasons(actions: readonly Action[], holds: readonly Hold[]): PlanReason[] {
  if (holds.length === 0) return [];
  const holdOf = (path: string) => holds.find((h) => path === h.path || path.startsWith(`${h.path}/`));
  const out: PlanReason[] = [];
  for (const a of actions) {
    if (a.action === 'noop') continue;
    const h = holdOf(a.path) ?? a.restarts.map(holdOf).find((x) => x !== undefined);
    if (!h) continue;
    out.push({
      path: a.path,
      field: '',
      message: `${a.path} would ${a.action}, and ${h.path} is held by ${h.by} (${h.reason}); release it with: captree release ${h.path}`,
    });
  }
  return out;
}

/** What cannot change on a running tree at all. */
function structuralReasons(running: ManifestTree, desired: ManifestTree): PlanReason[] {
  const out: PlanReason[] = [];
  if (running.root.path !== desired.root.path)
    out.push({
      path: desired.root.path,
      field: 'name',
      message: `the root is ${running.root.path} in the running tree: another name is another tree (captree down, then captree up)`,
    });
  else if ((running.root.strategy === 'dynamic') !== (desired.root.strategy === 'dynamic'))
    out.push({
      path: desired.root.path,
      field: 'strategy',
      message: `the root's strategy cannot change to or from dynamic while it runs (${running.root.strategy} → ${desired.root.strategy}): captree down, then captree up`,
    });
  return out;
}

function childNames(spec: Spec | undefined): string[] {
  return spec?.kind === 'node' ? spec.children.map((c) => c.name) : [];
}

/** A cause's own field paths, qualified with its path (`/shop/db.command`). */
function causeFields(cause: string, changes: ReadonlyMap<string, Change>): string[] {
  const c = changes.get(cause);
  if (!c) return [`${cause}.children`];
  const fields = [...c.fields.map((f) => f.field), ...c.grant];
  return fields.length > 0 ? fields.map((f) => `${cause}.${f}`) : [cause];
}

function changedProviders(before: Grant | undefined, after: Grant | undefined): string[] {
  const key = (s: Grant['services'][number]) => `${s.name} ${s.from} ${JSON.stringify(s.endpoint)}`;
  const a = new Set((before?.services ?? []).map(key));
  const b = new Set((after?.services ?? []).map(key));
  const out: string[] = [];
  for (const s of after?.services ?? []) if (!a.has(key(s))) out.push(s.from);
  for (const s of before?.services ?? []) if (!b.has(key(s))) out.push(s.from);
  return out;
}

/** Depth-first position of every path, children in `order` (start order). */
function rankOf(root: string, order: (node: string) => readonly string[]): Map<string, number> {
  const out = new Map<string, number>();
  const walk = (path: string) => {
    out.set(path, out.size);
    for (const name of order(path)) walk(`${path}/${name}`);
  };
  walk(root);
  return out;
}

/** Paths of both trees (and admitted children), depth-first: desired start order, then what goes. */
function unionOrder(
  desired: ManifestTree,
  actual: Actual,
  before: ReadonlyMap<string, Spec>,
  after: ReadonlyMap<string, Spec>,
  actualOrder: (node: string) => string[],
  desiredOrder: (node: string) => string[],
): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  const walk = (path: string) => {
    if (seen.has(path)) return;
    seen.add(path);
    out.push(path);
    const isNode = after.get(path)?.kind === 'node' || before.get(path)?.kind === 'node';
    if (!isNode) return;
    const names = [...(after.get(path)?.kind === 'node' ? desiredOrder(path) : [])];
    if (before.get(path)?.kind === 'node')
      for (const n of actualOrder(path)) if (!names.includes(n)) names.push(n);
    for (const n of names) walk(`${path}/${n}`);
  };
  walk(desired.root.path);
  if (actual.tree.root.path !== desired.root.path) walk(actual.tree.root.path);
  return out;
}

/** Limits to lower first and to raise later (null: no limit, the highest of all). */
function limitSteps(
  old: Spec,
  spec: Spec,
  live: { cpu: number; memory: number; pids: number } | undefined,
): [LimitChange, LimitChange] {
  const lower: LimitChange = {};
  const raise: LimitChange = {};
  for (const q of ['cpu', 'memory', 'pids'] as const) {
    const was = live && live[q] > 0 ? live[q] : old.requires[q];
    const now = spec.requires[q];
    if (old.requires[q] === now) continue;
    if (now === was) continue;
    if (now !== null && (was === null || now < was)) lower[q] = now;
    else raise[q] = now;
  }
  if (old.requires.cpuWeight !== spec.requires.cpuWeight) raise.cpuWeight = spec.requires.cpuWeight;
  return [lower, raise];
}

/** Paths in depth-first desired order (unknown ones last, by name). */
function sortPaths(paths: string[], rank: ReadonlyMap<string, number>): string[] {
  return paths.sort((a, b) => (rank.get(a) ?? 1e9) - (rank.get(b) ?? 1e9) || (a < b ? -1 : a > b ? 1 : 0));
}
