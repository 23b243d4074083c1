/**
 * Whole-tree check, as `captree check` runs it. Rules:
 * - the root is admitted against the host; if it is rejected nothing below is checked.
 * - each node's children are ordered from the contract graph (order.ts), then admitted in start
 *   order, so a provider is admitted before its consumers; list position stays their sequence
 *   number, so kind routing picks the same provider the order did.
 * - every error is collected: each rejected child's reasons, every cycle (one per strongly
 *   connected component). Children on or behind a cycle are admitted in list order without
 *   service routing, since the cycle is the error to fix. Descendants of a rejected child are
 *   not checked: there is no grant to check them against.
 */
import { orderChildren, siblingEdges, topological } from './order.ts';
import { admit, type CapTree, createTree, grantOf } from './tree.ts';
import type { Grant, HostCapabilities, Reason, Rejected, TreeSpec } from './types.ts';

export interface Checked {
  readonly ok: true;
  readonly tree: CapTree;
  /** Every node's grant, keyed by path, in depth-first list order. */
  readonly grants: ReadonlyMap<string, Grant>;
  /** Start order of each node's children, keyed by the node's path. */
  readonly startOrder: ReadonlyMap<string, readonly string[]>;
}

export function checkTree(spec: TreeSpec, host: HostCapabilities): Checked | Rejected {
  const created = createTree(spec, host);
  if (!created.ok) return created;
  const tree = created.tree;
  const reasons: Reason[] = [];
  const startOrder = new Map<string, readonly string[]>();
  const visit = (path: string, node: TreeSpec): void => {
    const children = node.children ?? [];
    if (!Array.isArray(children)) {
      reasons.push({ code: 'invalid-value', path, message: `${path}: children must be a list` });
      return;
    }
    if (children.length === 0) return;
    const grant = grantOf(tree, path)!;
    const parentOffers = [
      ...Object.entries(node.provides ?? {}).map(([name, ep]) => ({
        name,
        kind: typeof ep?.kind === 'string' ? ep.kind : undefined,
      })),
      ...grant.services.map((s) => ({ name: s.name, kind: s.kind })),
    ];
    const order = orderChildren(children, { parentPath: path, parentOffers });
    let sequence: number[];
    let stuck = new Set<number>();
    if (order.ok) {
      const index = new Map(children.map((c, i) => [c.name, i]));
      sequence = order.start.map((n) => index.get(n)!);
      startOrder.set(path, order.start);
    } else {
      // Duplicate names are reported again, per child, by admission.
      reasons.push(...order.reasons.filter((r) => r.code === 'cycle'));
      const topo = topological(siblingEdges(children, parentOffers));
      stuck = topo.stuck;
      sequence = [...topo.start, ...[...stuck].sort((a, b) => a - b)];
    }
    for (const i of sequence) {
      const child = children[i]!;
      const r = admit(tree, path, child, { seq: i, skipServices: stuck.has(i) });
      if (r.ok) visit(r.path, child);
      else reasons.push(...r.reasons);
    }
  };
  visit(`/${spec.name}`, spec);
  if (reasons.length > 0) return { ok: false, reasons };
  const grants = new Map<string, Grant>();
  const walk = (path: string, node: TreeSpec): void => {
    grants.set(path, grantOf(tree, path)!);
    for (const c of node.children ?? []) walk(`${path}/${c.name}`, c);
  };
  walk(`/${spec.name}`, spec);
  return { ok: true, tree, grants, startOrder };
}
