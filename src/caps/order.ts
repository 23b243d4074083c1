/**
 * Start order, stop order and `rest_for_one` scope, derived from the contract graph among
 * siblings. Rules:
 * - an edge runs from a consumer to the sibling that routing (route.ts) picks for one of its
 *   service requirements; services met by the parent add no edge, unresolvable ones add none
 *   (admission reports them).
 * - start order: providers before consumers; among children free to start, list order wins
 *   (a stable topological sort: a child never moves ahead of an earlier free child).
 * - stop order: exactly the reverse of start order, so consumers stop before providers.
 * - `rest_for_one` scope of a failed child F: F and every child after F in start order. That
 *   set always contains every transitive dependent of F (a dependent starts after what it
 *   depends on), so "restart what depends on F" and OTP's "restart the ones started after F"
 *   agree; `dependents(F)` gives the narrower set (transitive dependents only) for callers who
 *   want it. The engine stops the scope in stop order and starts it again in start order.
 * - a cycle is rejected, naming one cycle per strongly connected component, starting at its
 *   earliest child in list order: `cycle: api -> worker -> api` (api requires worker's service).
 */
import { matchOffer, normalizeService, type Offer, type RoutingContext, resolveService } from './route.ts';
import type { Contract, Reason, Rejected } from './types.ts';

export interface ChildOrder {
  readonly ok: true;
  readonly start: readonly string[];
  readonly stop: readonly string[];
  /** Direct sibling providers of each child, in list order. */
  readonly dependsOn: ReadonlyMap<string, readonly string[]>;
  /** The failed child and every child after it in start order. */
  restForOne(name: string): readonly string[];
  /** Transitive dependents of a child, in start order. */
  dependents(name: string): readonly string[];
}

/** A service the parent offers itself (its own provides, or one routed to it). */
export interface ParentOffer {
  readonly name: string;
  readonly kind?: string | undefined;
}

export interface OrderOptions {
  /** Used to name paths in reasons; default ''. */
  readonly parentPath?: string;
  readonly parentOffers?: readonly ParentOffer[];
}

function offersOf(c: Contract, from: string): Offer[] {
  const out: Offer[] = [];
  const p = c.provides;
  if (p === undefined || p === null || typeof p !== 'object') return out;
  for (const [name, endpoint] of Object.entries(p)) {
    const kind =
      endpoint !== null && typeof endpoint === 'object' && typeof endpoint.kind === 'string'
        ? endpoint.kind
        : undefined;
    out.push({ name, kind, endpoint: endpoint ?? {}, from });
  }
  return out;
}

/** Edges consumer -> providers (indices), by the same routing admission uses. */
export function siblingEdges(
  children: readonly Contract[],
  parentOffers: readonly ParentOffer[] = [],
): number[][] {
  const offers = children.map((c) => offersOf(c, c.name));
  const byName = new Map<string, number[]>();
  const byKind = new Map<string, number[]>();
  const indexOf = new Map<string, number>();
  children.forEach((c, i) => {
    if (!indexOf.has(c.name)) indexOf.set(c.name, i);
    for (const o of offers[i]!) {
      push(byName, o.name, i);
      if (o.kind !== undefined) push(byKind, o.kind, i);
    }
  });
  const parentOffer = (pred: (o: ParentOffer) => boolean): Offer | undefined => {
    const o = parentOffers.find(pred);
    return o ? { name: o.name, kind: o.kind, endpoint: {}, from: '' } : undefined;
  };
  const edges: number[][] = [];
  children.forEach((c, self) => {
    const first = (list: number[] | undefined, key: (o: Offer) => boolean) => {
      if (!list) return undefined;
      for (const i of list) if (i !== self) return { sibling: i, offer: offers[i]!.find(key)! };
      return undefined;
    };
    const ctx: RoutingContext<number> = {
      siblingByName: (n) => first(byName.get(n), (o) => o.name === n),
      siblingByKind: (k) => first(byKind.get(k), (o) => o.kind === k),
      namedSibling: (n, s) => {
        const i = indexOf.get(n);
        if (i === undefined || i === self) return undefined;
        const m = matchOffer(offers[i]!, s);
        return m ? { sibling: i, offer: m } : undefined;
      },
      parentByName: (n) => parentOffer((o) => o.name === n),
      parentByKind: (k) => parentOffer((o) => o.kind === k),
    };
    const out: number[] = [];
    const services = c.requires?.services;
    if (Array.isArray(services)) {
      for (const r of services) {
        const s = normalizeService(r);
        if (!s) continue;
        const src = resolveService(s, ctx);
        if (src && 'sibling' in src && !out.includes(src.sibling)) out.push(src.sibling);
      }
    }
    out.sort((a, b) => a - b);
    edges.push(out);
  });
  return edges;
}

function push<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const l = m.get(k);
  if (l) l.push(v);
  else m.set(k, [v]);
}

/** Derives start/stop order and restart scopes, or rejects naming every cycle. */
export function orderChildren(
  children: readonly Contract[],
  options: OrderOptions = {},
): ChildOrder | Rejected {
  const parentPath = options.parentPath ?? '';
  const seen = new Set<string>();
  const dups: Reason[] = [];
  for (const c of children) {
    if (seen.has(c.name))
      dups.push({
        code: 'duplicate-name',
        path: `${parentPath}/${c.name}`,
        message: `${parentPath}/${c.name} is declared twice`,
      });
    seen.add(c.name);
  }
  if (dups.length > 0) return { ok: false, reasons: dups };
  const edges = siblingEdges(children, options.parentOffers);
  const { start, stuck, rev } = topological(edges);
  if (stuck.size > 0) return { ok: false, reasons: cycles(children, edges, stuck, parentPath) };
  const names = children.map((c) => c.name);
  const startNames = start.map((i) => names[i]!);
  const position = new Map<string, number>();
  startNames.forEach((name, p) => {
    position.set(name, p);
  });
  const dependsOn = new Map<string, readonly string[]>();
  edges.forEach((ps, c) => {
    dependsOn.set(
      names[c]!,
      ps.map((p) => names[p]!),
    );
  });
  const indexOf = new Map<string, number>();
  names.forEach((name, i) => {
    indexOf.set(name, i);
  });
  return {
    ok: true,
    start: startNames,
    stop: [...startNames].reverse(),
    dependsOn,
    restForOne(name: string): readonly string[] {
      const p = position.get(name);
      return p === undefined ? [] : startNames.slice(p);
    },
    dependents(name: string): readonly string[] {
      const i = indexOf.get(name);
      if (i === undefined) return [];
      const found = new Set<number>();
      const stack = [i];
      while (stack.length > 0) {
        for (const c of rev[stack.pop()!]!) {
          if (!found.has(c)) {
            found.add(c);
            stack.push(c);
          }
        }
      }
      return [...found]
        .sort((a, b) => position.get(names[a]!)! - position.get(names[b]!)!)
        .map((c) => names[c]!);
    },
  };
}

/**
 * Stable topological order of consumer -> provider edges. Children that cannot start (on or
 * behind a cycle) are left out of `start` and listed in `stuck`.
 */
export function topological(edges: readonly (readonly number[])[]): {
  start: number[];
  stuck: Set<number>;
  rev: number[][];
} {
  const n = edges.length;
  const rev: number[][] = edges.map(() => []);
  const pending = new Array<number>(n).fill(0);
  edges.forEach((ps, c) => {
    pending[c] = ps.length;
    for (const p of ps) rev[p]!.push(c);
  });
  const heap = new MinHeap();
  for (let i = 0; i < n; i++) if (pending[i] === 0) heap.push(i);
  const start: number[] = [];
  while (heap.size > 0) {
    const i = heap.pop();
    start.push(i);
    for (const c of rev[i]!) {
      pending[c] = pending[c]! - 1;
      if (pending[c] === 0) heap.push(c);
    }
  }
  const stuck = new Set<number>();
  for (let i = 0; i < n; i++) if (pending[i]! > 0) stuck.add(i);
  return { start, stuck, rev };
}

/** One named cycle per strongly connected component among the children that could not start. */
function cycles(
  children: readonly Contract[],
  edges: readonly (readonly number[])[],
  stuck: Set<number>,
  parentPath: string,
): Reason[] {
  const comps = tarjan(edges, stuck);
  const reasons: Reason[] = [];
  for (const comp of comps) {
    if (comp.length < 2) continue;
    const members = new Set(comp);
    const first = Math.min(...comp);
    // Shortest way back to `first`, neighbours in list order, so the named cycle is deterministic.
    const prev = new Map<number, number>();
    const queue = [first];
    let closing = -1;
    for (let q = 0; q < queue.length && closing < 0; q++) {
      const at = queue[q]!;
      for (const next of edges[at]!) {
        if (!members.has(next)) continue;
        if (next === first) {
          closing = at;
          break;
        }
        if (!prev.has(next)) {
          prev.set(next, at);
          queue.push(next);
        }
      }
    }
    const path: number[] = [];
    for (let at = closing; at !== first; at = prev.get(at)!) path.push(at);
    path.push(first);
    path.reverse();
    path.push(first);
    const cycle = path.map((i) => children[i]!.name);
    reasons.push({
      code: 'cycle',
      path: `${parentPath}/${cycle[0]}`,
      message: `${parentPath || '/'}: cycle: ${cycle.join(' -> ')}`,
      detail: { cycle },
    });
  }
  return reasons;
}

function tarjan(edges: readonly (readonly number[])[], within: Set<number>): number[][] {
  let counter = 0;
  const index = new Map<number, number>();
  const low = new Map<number, number>();
  const onStack = new Set<number>();
  const stack: number[] = [];
  const out: number[][] = [];
  const visit = (v: number): void => {
    index.set(v, counter);
    low.set(v, counter);
    counter++;
    stack.push(v);
    onStack.add(v);
    for (const w of edges[v]!) {
      if (!within.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const comp: number[] = [];
      let w: number;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        comp.push(w);
      } while (w !== v);
      out.push(comp);
    }
  };
  for (const v of [...within].sort((a, b) => a - b)) if (!index.has(v)) visit(v);
  return out.sort((a, b) => Math.min(...a) - Math.min(...b));
}

class MinHeap {
  private readonly items: number[] = [];
  get size(): number {
    return this.items.length;
  }
  push(v: number): void {
    const a = this.items;
    a.push(v);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p]! <= v) break;
      a[i] = a[p]!;
      i = p;
    }
    a[i] = v;
  }
  pop(): number {
    const a = this.items;
    const top = a[0]!;
    const last = a.pop()!;
    if (a.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= a.length) break;
        const r = l + 1;
        const m = r < a.length && a[r]! < a[l]! ? r : l;
        if (a[m]! >= last) break;
        a[i] = a[m]!;
        i = m;
      }
      a[i] = last;
    }
    return top;
  }
}
