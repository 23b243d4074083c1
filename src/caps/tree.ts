/**
 * The capability tree and its admission algebra. Rules (each is a tested invariant):
 *
 * Authority only decreases.
 * - Quantities (cpu, memory, pids) are carved: a child's reservation comes out of its parent's
 *   unreserved remainder, so for every node and quantity
 *   `reserved = remaining + sum(children's reservations)` at all times, and no grant ever
 *   exceeds what the parent holds at that moment. Release returns the reservation.
 * - A child that omits a quantity reserves none (`reserved: 0`): it shares its parent's
 *   remainder, capped by the nearest reserving ancestor (`limit`). A node that reserves none of
 *   a quantity has nothing to carve, so its children may only share that quantity too.
 * - The root holds what the host reports unless its `requires` narrows it.
 * - Networks and the filesystem view are inherited unless `requires` narrows them (`net: none`
 *   = loopback only; `any` = the parent's least-authority network, a named one before `host`).
 *   A requested network must be held by the parent; a path must be at or below a path the
 *   parent holds, and `rw` only below an `rw` one.
 * - Secrets, environment variables and services are never inherited: the child holds exactly
 *   what it required, each of which the parent must hold (secrets, env) or route (services,
 *   see route.ts). The root holds the host's secrets and env unless its requires lists them.
 * - A listening socket has one holder. A parent passes an address it holds to at most one
 *   child; a parent holding the `host` network can hand out an address no one in the tree
 *   holds (`:port` conflicts with every address on that port).
 * - Two siblings may not provide the same service name (routing by name must be unambiguous).
 * - Release removes a node's whole subtree and returns its reservation; it is refused while a
 *   sibling still uses a service the node provides (release the consumers first).
 * - Renegotiate replaces a node's `requires`: growth comes only from the parent's slack, and
 *   the node may not shrink below what its children hold, nor drop a quality (network,
 *   address, path, secret, env, routed service) a child holds, nor come to depend on a sibling
 *   that depends on it (a cycle). Inherited networks and views are resolved at admission: a
 *   child keeps what it was given even if its parent later grows.
 *
 * Policy, declared on a node and binding on its descendants (the declaring node holds
 * capabilities in order to route them, so it is not itself bound):
 * - `never`: no descendant may hold every label of a listed set.
 * - `maxDepth`: no descendant more than that many levels below the declaring node.
 * - `allowAdvisory`: a requirement this host cannot enforce (see `needs`) is rejected unless
 *   some node on the path from the root to the child (the child included) allows advisory
 *   mode and none forbids it; restrictive wins, so a child cannot loosen its ancestors.
 *
 * Operations validate everything first and mutate only on success: a rejected `admit`,
 * `release` or `renegotiate` leaves the tree exactly as it was, and names every unmet
 * requirement, not only the first. Per-node sums of children's reservations are cached, so the
 * quantity check is O(1) whatever the number of children; routing, listen and provider lookups
 * are map lookups; policy is checked against the ancestors only (depth, not breadth).
 */

import { holdsPrivilege, parsePrivilege } from './privileges.ts';
import { coresToMilli, formatQuantity, type Quantity, quantities, toUser } from './quantity.ts';
import { Registry } from './registry.ts';
import {
  describeService,
  matchOffer,
  type NormalService,
  normalizeService,
  type Offer,
  type RoutingContext,
  resolveService,
} from './route.ts';
import type {
  Contract,
  Enforcement,
  Grant,
  HostCapabilities,
  PathMode,
  Policy,
  Provides,
  QuantityDetail,
  Reason,
  Rejected,
  Requires,
  ServiceGrant,
} from './types.ts';

export const requirementKinds = [
  'cpu',
  'memory',
  'pids',
  'net',
  'listen',
  'services',
  'paths',
  'secrets',
  'env',
  'privileges',
] as const;
const requirementKindSet: ReadonlySet<string> = new Set(requirementKinds);
export const labelKinds = ['secret', 'net', 'service', 'env', 'listen', 'privilege'] as const;
const labelKindSet: ReadonlySet<string> = new Set(labelKinds);
const policyKeys: ReadonlySet<string> = new Set(['never', 'maxDepth', 'allowAdvisory']);
const namePattern = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const defaultWeight = 100;
const holdersShown = 5;

interface Node {
  readonly name: string;
  readonly path: string;
  readonly depth: number;
  readonly seq: number;
  readonly parent: Node | undefined;
  readonly provides: readonly Offer[];
  readonly policy: Policy | undefined;
  requires: Requires;
  /** Reservations in internal units (millicores, bytes, count); 0 = shared. */
  q: Record<Quantity, number>;
  /** Cached sum of the children's reservations. */
  sum: Record<Quantity, number>;
  weight: number;
  net: readonly string[];
  netInherited: boolean;
  listen: ReadonlyMap<string, string>;
  /** Listen names whose address was minted from the parent's host network rather than passed. */
  minted: ReadonlySet<string>;
  services: readonly ServiceGrant[];
  /** Sibling names this node's services come from. */
  dependsOn: readonly string[];
  paths: ReadonlyMap<string, PathMode>;
  secrets: ReadonlySet<string>;
  env: ReadonlySet<string>;
  privileges: ReadonlySet<string>;
  advisory: readonly Enforcement[];
  // The maps below start as shared empty sentinels and are allocated on first write (see
  // `own`): most nodes are leaves, and fewer live objects per node is what keeps admission
  // fast in a wide tree (every admitted node survives the young generation).
  children: Registry<Node>;
  nextSeq: number;
  providersByName: Map<string, Node>;
  /** Providers of each kind, lowest sequence number first. */
  providersByKind: Map<string, Node[]>;
  /** Addresses this node holds that it passed to a child: address -> child name. */
  delegated: Map<string, string>;
  /** Sibling names whose services come from this node. */
  usedBy: Set<string>;
}

/** A capability tree. Mutable, but only through the operations below. */
export interface CapTree {
  readonly host: HostCapabilities;
  /** @internal */ readonly root: Node;
  /** @internal */ readonly index: Registry<Node>;
  /** @internal port -> holders of minted addresses on it */ readonly ports: Map<
    number,
    { host: string; path: string }[]
  >;
  /** @internal service name or kind -> providers anywhere, for hints */ readonly providers: Map<
    string,
    Set<string>
  >;
}

export interface Granted {
  readonly ok: true;
  readonly path: string;
  readonly grant: Grant;
}

export interface Released {
  readonly ok: true;
  readonly path: string;
  /** What went back to the parent, in user units. */
  readonly returned: { readonly cpu: number; readonly memory: number; readonly pids: number };
}

export interface AdmitOptions {
  /** @internal list position, so `checkTree` admits in start order yet resolves kinds in list order. */
  readonly seq?: number;
  /** @internal skip service routing (a cycle member; the cycle is reported instead). */
  readonly skipServices?: boolean;
}

/** The evaluated holdings of a prospective node, ready to commit. */
interface Plan {
  q: Record<Quantity, number>;
  weight: number;
  net: readonly string[];
  netInherited: boolean;
  listen: Map<string, string>;
  minted: Set<string>;
  /** Addresses passed on from the parent's own listen holdings (not minted). */
  passed: string[];
  services: ServiceGrant[];
  dependsOn: string[];
  paths: ReadonlyMap<string, PathMode>;
  secrets: ReadonlySet<string>;
  env: ReadonlySet<string>;
  privileges: ReadonlySet<string>;
  advisory: readonly Enforcement[];
}

// ---------------------------------------------------------------------------------------------
// Public operations

/** Admits the root: it holds what the host allows unless its `requires` narrows it. */
export function createTree(
  root: Contract,
  host: HostCapabilities,
): { ok: true; tree: CapTree; grant: Grant } | Rejected {
  const reasons: Reason[] = [];
  const path = `/${root.name}`;
  for (const q of quantities) {
    const v = q === 'cpu' ? coresToMilli(host.cpu) : host[q];
    if (v === undefined || !Number.isSafeInteger(v) || v <= 0) {
      reasons.push({
        code: 'invalid-value',
        path,
        message: `host ${q} must be a positive amount, got ${host[q]}`,
      });
    }
  }
  if (typeof root.name !== 'string' || !namePattern.test(root.name)) {
    reasons.push({
      code: 'invalid-value',
      path,
      message: `${path}: invalid name ${JSON.stringify(root.name)}`,
    });
  }
  if (reasons.length > 0) return { ok: false, reasons };
  const tree: CapTree = {
    host,
    root: undefined as unknown as Node,
    index: new Registry(),
    ports: new Map(),
    providers: new Map(),
  };
  const plan = evaluate(tree, undefined, root, path, 0, undefined, reasons, false);
  if (reasons.length > 0 || !plan) return { ok: false, reasons };
  const node = makeNode(root, path, 0, 0, undefined, plan);
  (tree as { root: Node }).root = node;
  commitNew(tree, node, plan);
  return { ok: true, tree, grant: grantOfNode(node) };
}

/** Admits `contract` as a child of `parentPath`, carving its grant, or rejects naming every unmet requirement. */
export function admit(
  tree: CapTree,
  parentPath: string,
  contract: Contract,
  options: AdmitOptions = {},
): Granted | Rejected {
  const parent = tree.index.get(parentPath);
  const name = contract.name;
  const path = `${parentPath}/${name}`;
  if (!parent) {
    return {
      ok: false,
      reasons: [{ code: 'no-such-node', path: parentPath, message: `${parentPath}: no such node` }],
    };
  }
  const reasons: Reason[] = [];
  if (typeof name !== 'string' || !namePattern.test(name)) {
    reasons.push({
      code: 'invalid-value',
      path,
      message: `${path}: invalid name ${JSON.stringify(name)} (letters, digits, '.', '_', '-'; not starting with a symbol)`,
    });
    return { ok: false, reasons };
  }
  if (parent.children.has(name)) {
    reasons.push({ code: 'duplicate-name', path, message: `${path} already exists` });
  }
  const plan = evaluate(
    tree,
    parent,
    contract,
    path,
    parent.depth + 1,
    undefined,
    reasons,
    options.skipServices ?? false,
  );
  if (reasons.length > 0 || !plan) return { ok: false, reasons };
  const seq = options.seq ?? parent.nextSeq;
  const node = makeNode(contract, path, parent.depth + 1, seq, parent, plan);
  commitNew(tree, node, plan);
  return { ok: true, path, grant: grantOfNode(node) };
}

/** Removes a node and its subtree, returning its reservations to its parent. */
export function release(tree: CapTree, path: string): Released | Rejected {
  const node = tree.index.get(path);
  if (!node)
    return { ok: false, reasons: [{ code: 'no-such-node', path, message: `${path}: no such node` }] };
  const parent = node.parent;
  if (!parent)
    return {
      ok: false,
      reasons: [{ code: 'root', path, message: `${path} is the root; it cannot be released` }],
    };
  if (node.usedBy.size > 0) {
    const users = [...node.usedBy].sort().map((u) => `${parent.path}/${u}`);
    return {
      ok: false,
      reasons: [
        {
          code: 'in-use',
          path,
          message: `${path} provides services still used by ${users.join(', ')}; release those first`,
        },
      ],
    };
  }
  const stack = [node];
  while (stack.length > 0) {
    const n = stack.pop()!;
    tree.index.delete(n.path);
    for (const name of n.minted) unmint(tree, n.listen.get(name)!, n.path);
    for (const o of n.provides) unindexProvider(tree, o, n.path);
    for (const c of n.children.values()) stack.push(c);
  }
  detach(parent, node);
  for (const q of quantities) parent.sum[q] -= node.q[q];
  return {
    ok: true,
    path,
    returned: { cpu: toUser('cpu', node.q.cpu), memory: node.q.memory, pids: node.q.pids },
  };
}

/**
 * Replaces a node's requirements: it may grow from its parent's slack or shrink, but never
 * below what its children hold, and its children's qualities must stay within its new holdings.
 */
export function renegotiate(tree: CapTree, path: string, requires: Requires): Granted | Rejected {
  const node = tree.index.get(path);
  if (!node)
    return { ok: false, reasons: [{ code: 'no-such-node', path, message: `${path}: no such node` }] };
  const reasons: Reason[] = [];
  const contract: Contract = { name: node.name, requires };
  const plan = evaluate(tree, node.parent, contract, path, node.depth, node, reasons, false);
  if (reasons.length > 0 || !plan) return { ok: false, reasons };
  const parent = node.parent;
  if (parent) {
    for (const q of quantities) parent.sum[q] += plan.q[q] - node.q[q];
    for (const [name, addr] of node.listen) if (!node.minted.has(name)) parent.delegated.delete(addr);
    for (const addr of plan.passed) own(parent, 'delegated').set(addr, node.name);
    for (const dep of node.dependsOn) parent.children.get(dep)?.usedBy.delete(node.name);
    for (const dep of plan.dependsOn) ownUsedBy(parent.children.get(dep)!).add(node.name);
  }
  for (const name of node.minted) unmint(tree, node.listen.get(name)!, path);
  for (const name of plan.minted) mint(tree, plan.listen.get(name)!, path);
  node.requires = requires;
  assignPlan(node, plan);
  return { ok: true, path, grant: grantOfNode(node) };
}

/** The grant a node holds now. */
export function grantOf(tree: CapTree, path: string): Grant | undefined {
  const node = tree.index.get(path);
  return node ? grantOfNode(node) : undefined;
}

/** A node's unreserved remainder, in user units (what a new child could still carve). */
export function remainingOf(
  tree: CapTree,
  path: string,
): { cpu: number; memory: number; pids: number } | undefined {
  const n = tree.index.get(path);
  if (!n) return undefined;
  return {
    cpu: toUser('cpu', n.q.cpu - n.sum.cpu),
    memory: n.q.memory - n.sum.memory,
    pids: n.q.pids - n.sum.pids,
  };
}

/** Children's names in list order (sequence order). */
export function childrenOf(tree: CapTree, path: string): readonly string[] | undefined {
  const n = tree.index.get(path);
  return n ? sortedChildren(n).map((c) => c.name) : undefined;
}

export function paths(tree: CapTree): readonly string[] {
  const out: string[] = [];
  const walk = (n: Node): void => {
    out.push(n.path);
    for (const c of sortedChildren(n)) walk(c);
  };
  walk(tree.root);
  return out;
}

export interface NodeSnapshot {
  readonly path: string;
  readonly seq: number;
  readonly requires: unknown;
  readonly grant: Grant;
  readonly reserved: Record<Quantity, number>;
  readonly childrenSum: Record<Quantity, number>;
  readonly delegated: readonly (readonly [string, string])[];
  readonly usedBy: readonly string[];
  readonly dependsOn: readonly string[];
  readonly children: readonly NodeSnapshot[];
}

/** A deterministic plain-data copy of everything the tree holds, caches included (for tests and diffing). */
export function snapshot(tree: CapTree): {
  root: NodeSnapshot;
  ports: [number, { host: string; path: string }[]][];
  providers: [string, string[]][];
} {
  const snap = (n: Node): NodeSnapshot => ({
    path: n.path,
    seq: n.seq,
    requires: JSON.parse(JSON.stringify(n.requires)),
    grant: grantOfNode(n),
    reserved: { ...n.q },
    childrenSum: { ...n.sum },
    delegated: [...n.delegated].sort(),
    usedBy: [...n.usedBy].sort(),
    dependsOn: [...n.dependsOn],
    children: sortedChildren(n).map(snap),
  });
  return {
    root: snap(tree.root),
    ports: [...tree.ports]
      .map(([p, l]): [number, { host: string; path: string }[]] => [
        p,
        [...l].sort((a, b) => cmp(a.path + a.host, b.path + b.host)),
      ])
      .sort((a, b) => a[0] - b[0]),
    providers: [...tree.providers]
      .filter(([, s]) => s.size > 0)
      .map(([k, s]): [string, string[]] => [k, [...s].sort()])
      .sort((a, b) => cmp(a[0], b[0])),
  };
}

// ---------------------------------------------------------------------------------------------
// Evaluation: everything is checked, nothing is changed.

function evaluate(
  tree: CapTree,
  parent: Node | undefined,
  contract: Contract,
  path: string,
  depth: number,
  existing: Node | undefined,
  reasons: Reason[],
  skipServices: boolean,
): Plan | undefined {
  const host = tree.host;
  const raw: unknown = contract.requires ?? {};
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    reasons.push({ code: 'invalid-value', path, message: `${path}: requires must be a mapping` });
    return undefined;
  }
  const req = raw as Requires;
  for (const key of Object.keys(req)) {
    if (!requirementKindSet.has(key)) {
      reasons.push({
        code: 'unknown-capability',
        path,
        message: `${path} requires unknown capability '${key}' (known: ${requirementKinds.join(', ')})`,
      });
    }
  }
  const parentName = parent ? parent.path : 'the host';
  const hostView = hostPaths(host);

  // Quantities.
  const q: Record<Quantity, number> = { cpu: 0, memory: 0, pids: 0 };
  let weight = defaultWeight;
  let weightGiven = false;
  for (const k of quantities) {
    const v = quantityRequirement(req, k, path, reasons);
    if (k === 'cpu' && typeof req.cpu === 'object' && req.cpu !== null && req.cpu.weight !== undefined) {
      const w = req.cpu.weight;
      if (!Number.isInteger(w) || w < 1 || w > 10000) {
        reasons.push({
          code: 'invalid-value',
          path,
          message: `${path}: cpu weight must be an integer 1..10000, got ${w}`,
        });
      } else {
        weight = w;
        weightGiven = true;
      }
    }
    if (v === null) continue;
    if (v === undefined) {
      if (!parent) q[k] = hostTotal(host, k);
      if (existing && existing.sum[k] > 0) {
        reasons.push(childrenHoldMore(existing, k, 0));
      }
      continue;
    }
    q[k] = v;
    if (existing && existing.sum[k] > v) reasons.push(childrenHoldMore(existing, k, v));
    if (!parent) {
      const total = hostTotal(host, k);
      if (v > total) {
        reasons.push({
          code: 'insufficient',
          path,
          message: `${path} requires ${k} ${formatQuantity(k, v)}, the host has ${formatQuantity(k, total)}`,
          detail: {
            quantity: k,
            required: toUser(k, v),
            available: toUser(k, total),
            total: toUser(k, total),
            holder: 'host',
            holders: [],
            others: { count: 0, amount: 0 },
          },
        });
      }
      continue;
    }
    const own = existing ? existing.q[k] : 0;
    const available = parent.q[k] - parent.sum[k] + own;
    if (parent.q[k] === 0) {
      reasons.push({
        code: 'insufficient',
        path,
        message: `${path} requires ${k} ${formatQuantity(k, v)}, ${parent.path} reserves no ${k} (it shares its parent's remainder); give ${parent.path} a ${k} reservation to carve from`,
        detail: {
          quantity: k,
          required: toUser(k, v),
          available: 0,
          total: 0,
          holder: parent.path,
          holders: [],
          others: { count: 0, amount: 0 },
        },
      });
    } else if (v > available) {
      reasons.push(insufficient(parent, k, v, path, existing));
    }
  }

  // Networks.
  const parentNet: readonly string[] = parent ? parent.net : hostNetworks(host);
  let net: readonly string[] = parentNet;
  let netInherited = true;
  if (req.net !== undefined) {
    netInherited = false;
    const n = req.net;
    const describe = (held: readonly string[]) =>
      held.length === 0 ? 'no network (net: none)' : held.join(', ');
    if (n === 'none') net = [];
    else if (n === 'any') {
      const pick = parentNet.find((x) => x !== 'host') ?? parentNet.find((x) => x === 'host');
      if (pick === undefined) {
        reasons.push({
          code: 'network-not-held',
          path,
          message: `${path} requires net any, ${parentName} holds ${describe(parentNet)}`,
        });
      } else net = [pick];
    } else {
      const list = typeof n === 'string' ? [n] : Array.isArray(n) ? n : undefined;
      if (!list || list.some((x) => typeof x !== 'string' || x === '' || x === 'none' || x === 'any')) {
        reasons.push({
          code: 'invalid-value',
          path,
          message: `${path}: net must be none, any, host, a network name or a list of names, got ${JSON.stringify(n)}`,
        });
      } else {
        for (const x of list) {
          if (!parentNet.includes(x)) {
            reasons.push({
              code: 'network-not-held',
              path,
              message: `${path} requires net ${x}, ${parentName} holds ${describe(parentNet)}`,
            });
          }
        }
        net = [...new Set(list)];
      }
    }
  }

  // Listening sockets.
  // Allocated only when asked for: the common contract carries no listen, services or secrets.
  const asked = req.listen !== undefined;
  const listen = asked ? new Map<string, string>() : emptyMap<string, string>();
  const minted = asked ? new Set<string>() : emptySet<string>();
  const passed: string[] = asked ? [] : (noStrings as string[]);
  if (req.listen !== undefined) {
    if (req.listen === null || typeof req.listen !== 'object' || Array.isArray(req.listen)) {
      reasons.push({
        code: 'invalid-value',
        path,
        message: `${path}: listen must map socket names to addresses`,
      });
    } else {
      const parentListen = parent ? parent.listen : new Map<string, string>();
      const parentHolds = new Set(parentListen.values());
      const hostNet = parentNet.includes('host');
      for (const [name, addrRaw] of Object.entries(req.listen)) {
        const addr = typeof addrRaw === 'string' ? parseAddress(addrRaw) : undefined;
        if (!addr) {
          reasons.push({
            code: 'invalid-value',
            path,
            message: `${path}: listen ${name} must be HOST:PORT or :PORT, got ${JSON.stringify(addrRaw)}`,
          });
          continue;
        }
        if ([...listen.values()].includes(addr.key)) {
          reasons.push({
            code: 'invalid-value',
            path,
            message: `${path}: listen ${name} repeats ${addr.key}`,
          });
          continue;
        }
        listen.set(name, addr.key);
        if (parent && parentHolds.has(addr.key)) {
          const taker = parent.delegated.get(addr.key);
          if (taker !== undefined && taker !== contract.name) {
            reasons.push({
              code: 'listen-taken',
              path,
              message: `${path} requires listen ${name} ${addr.key}, ${parent.path} already passed it to ${parent.path}/${taker}`,
            });
          } else passed.push(addr.key);
        } else if (hostNet) {
          const clash = (tree.ports.get(addr.port) ?? []).find(
            (h) => h.path !== path && (h.host === addr.host || h.host === '' || addr.host === ''),
          );
          if (clash) {
            reasons.push({
              code: 'listen-taken',
              path,
              message: `${path} requires listen ${name} ${addr.key}, ${clash.path} holds ${clash.host}:${addr.port}`,
            });
          } else minted.add(name);
        } else {
          reasons.push({
            code: 'listen-not-held',
            path,
            message: `${path} requires listen ${name} ${addr.key}, ${parentName} holds neither that address nor the host network`,
          });
        }
      }
    }
  }

  // Services.
  const routed = req.services !== undefined;
  const services: ServiceGrant[] = routed ? [] : (noServices as ServiceGrant[]);
  const dependsOn: string[] = routed ? [] : (noStrings as string[]);
  if (req.services !== undefined) {
    if (!Array.isArray(req.services)) {
      reasons.push({ code: 'invalid-value', path, message: `${path}: services must be a list` });
    } else if (!skipServices) {
      const ctx = parent ? routingContext(parent, contract.name) : undefined;
      for (const r of req.services) {
        const s = normalizeService(r);
        if (!s) {
          reasons.push({
            code: 'invalid-value',
            path,
            message: `${path}: invalid service requirement ${JSON.stringify(r)}`,
          });
          continue;
        }
        const src = ctx ? resolveService(s, ctx) : undefined;
        if (!src) {
          reasons.push(unroutable(tree, parent, path, s));
          continue;
        }
        const offer = 'sibling' in src ? src.offer : src.parent;
        services.push(
          offer.kind === undefined
            ? { name: offer.name, from: offer.from, endpoint: offer.endpoint }
            : { name: offer.name, kind: offer.kind, from: offer.from, endpoint: offer.endpoint },
        );
        if ('sibling' in src && !dependsOn.includes(src.sibling.name)) dependsOn.push(src.sibling.name);
      }
      if (existing && parent && dependsOn.length > 0) {
        const cycle = findCycle(parent, existing.name, dependsOn);
        if (cycle) {
          reasons.push({
            code: 'cycle',
            path,
            message: `${parent.path}: cycle: ${cycle.join(' -> ')}`,
            detail: { cycle },
          });
        }
      }
    }
  }

  // Filesystem view.
  const parentPaths: ReadonlyMap<string, PathMode> = parent ? parent.paths : hostView;
  let pathView = parentPaths;
  if (req.paths !== undefined) {
    if (req.paths === null || typeof req.paths !== 'object' || Array.isArray(req.paths)) {
      reasons.push({
        code: 'invalid-value',
        path,
        message: `${path}: paths must map absolute paths to ro or rw`,
      });
    } else {
      const view = new Map<string, PathMode>();
      for (const [p, mode] of Object.entries(req.paths)) {
        const norm = normalizePath(p);
        if (norm === undefined || (mode !== 'ro' && mode !== 'rw')) {
          reasons.push({
            code: 'invalid-value',
            path,
            message: `${path}: paths needs an absolute normalized path mapped to ro or rw, got ${JSON.stringify(p)}: ${JSON.stringify(mode)}`,
          });
          continue;
        }
        const held = coveringPath(parentPaths, norm);
        if (!held) {
          reasons.push({
            code: 'path-not-held',
            path,
            message: `${path} requires ${mode} ${norm}, ${parentName} holds nothing at or above it`,
          });
        } else if (mode === 'rw' && held[1] === 'ro') {
          reasons.push({
            code: 'path-not-held',
            path,
            message: `${path} requires rw ${norm}, ${parentName} holds it read-only (${held[0]} ro)`,
          });
        }
        view.set(norm, mode);
      }
      pathView = view;
    }
  }

  // Secrets and environment variables: named, routed, never inherited.
  // The root is the one node that starts from the host's holdings rather than from nothing.
  const secrets =
    !parent && req.secrets === undefined
      ? new Set(host.secrets ?? [])
      : namedSet(req.secrets, 'secrets', path, reasons);
  const parentSecrets = parent ? parent.secrets : new Set(host.secrets ?? []);
  for (const s of secrets) {
    if (!parentSecrets.has(s)) {
      reasons.push({
        code: 'secret-not-held',
        path,
        message: `${path} requires secret ${s}, ${parentName} does not hold it`,
      });
    }
  }
  const env =
    !parent && req.env === undefined ? new Set(host.env ?? []) : namedSet(req.env, 'env', path, reasons);
  const parentEnv = parent ? parent.env : new Set(host.env ?? []);
  for (const e of env) {
    if (!parentEnv.has(e)) {
      reasons.push({
        code: 'env-not-held',
        path,
        message: `${path} requires env ${e}, ${parentName} does not hold it`,
      });
    }
  }

  // Privileges: named (a node naming none inherits its parent's), each held by the parent.
  const parentPrivileges = parent ? parent.privileges : new Set(host.privileges ?? []);
  const privileges =
    req.privileges === undefined
      ? parent
        ? parent.privileges
        : new Set(host.privileges ?? [])
      : privilegeSet(req.privileges, path, reasons);
  if (req.privileges !== undefined) {
    for (const p of privileges) {
      if (!holdsPrivilege(parentPrivileges, p)) {
        reasons.push({
          code: 'privilege-not-held',
          path,
          message: `${path} requires privilege ${p}, ${parentName} does not hold it${p === 'root' ? ' (uid 0)' : ''}`,
        });
      }
    }
  }

  // Provides and policy (fixed at admission; renegotiate changes requires only).
  if (!existing) {
    validateProvides(contract.provides, parent, contract.name, path, reasons);
    validatePolicy(contract.policy, path, reasons);
  }

  // Children must stay within the new holdings.
  if (existing)
    checkChildrenFit(existing, net, listen, pathView, secrets, env, services, privileges, reasons);

  let labels: ReadonlySet<string> | undefined;

  // Policy of every ancestor binds this node.
  for (let a = parent; a; a = a.parent) {
    const pol = a.policy;
    if (!pol) continue;
    if (pol.maxDepth !== undefined && depth - a.depth > pol.maxDepth) {
      reasons.push({
        code: 'max-depth',
        path,
        message: `${path} is ${depth - a.depth} levels below ${a.path}, whose policy allows maxDepth ${pol.maxDepth}`,
      });
    }
    for (const set of pol.never ?? []) {
      labels ??= labelsOf(host, net, listen, services, secrets, env, privileges);
      const held = labels;
      if (set.length > 0 && set.every((l) => hasLabel(held, l))) {
        const hint =
          netInherited && set.some((l) => l.startsWith('net:'))
            ? `; net is inherited from ${parentName}, narrow it (net: none)`
            : '';
        reasons.push({
          code: 'invariant-never',
          path,
          message: `${path} would hold ${set.join(' and ')}, which ${a.path} forbids in its subtree (never: [${set.join(', ')}])${hint}`,
        });
      }
    }
  }

  // What the host must enforce, and whether advisory mode may stand in for it.
  let needs = 0;
  if (q.cpu > 0 && (parent || req.cpu !== undefined)) needs |= need.cpu;
  else if (weightGiven) needs |= need.cpuWeight;
  if (q.memory > 0 && (parent || req.memory !== undefined)) needs |= need.memory;
  if (q.pids > 0 && (parent || req.pids !== undefined)) needs |= need.pids;
  if (!net.includes('host')) needs |= need.net;
  if (!sameView(pathView, hostView)) needs |= need.mount;
  let advisory: Enforcement[] | undefined;
  if (needs !== 0) {
    let allowAdvisory: boolean | undefined =
      contract.policy?.allowAdvisory ?? (existing ? existing.policy?.allowAdvisory : undefined);
    for (let a = parent; a && allowAdvisory !== false; a = a.parent) {
      const v = a.policy?.allowAdvisory;
      if (v === false) allowAdvisory = false;
      else if (v === true) allowAdvisory = true;
    }
    for (const [bit, cap] of needOrder) {
      if ((needs & bit) === 0 || host[cap]) continue;
      if (allowAdvisory === true) {
        advisory ??= [];
        advisory.push(cap);
      } else {
        reasons.push({
          code: 'host-cannot-enforce',
          path,
          message: `${path} requires ${describeNeed(needs & bit, net)}, but this host cannot enforce it (missing: ${cap}); allowAdvisory is ${allowAdvisory === false ? 'forbidden on this path' : 'not set'}`,
          detail: { missing: cap },
        });
      }
    }
  }

  if (reasons.length > 0) return undefined;
  return {
    q,
    weight,
    net,
    netInherited,
    listen,
    minted,
    passed,
    services,
    dependsOn,
    paths: pathView,
    secrets,
    env,
    privileges,
    advisory: advisory ?? noEnforcements,
  };
}

/** The internal amount required, undefined when omitted (shared), null when invalid. */
function quantityRequirement(
  req: Requires,
  k: Quantity,
  path: string,
  reasons: Reason[],
): number | undefined | null {
  const raw: unknown =
    k === 'cpu' && typeof req.cpu === 'object' && req.cpu !== null ? req.cpu.cores : req[k];
  if (k === 'cpu' && typeof req.cpu === 'object' && req.cpu !== null) {
    for (const key of Object.keys(req.cpu)) {
      if (key !== 'cores' && key !== 'weight') {
        reasons.push({
          code: 'unknown-capability',
          path,
          message: `${path} requires unknown cpu field '${key}' (known: cores, weight)`,
        });
      }
    }
  }
  if (raw === undefined) return undefined;
  if (k === 'cpu') {
    const v = typeof raw === 'number' ? coresToMilli(raw) : undefined;
    if (v === undefined) {
      reasons.push({
        code: 'invalid-value',
        path,
        message: `${path}: cpu must be a positive number of cores in steps of 0.001 (omit it to share the parent's), got ${JSON.stringify(raw)}`,
      });
      return null;
    }
    return v;
  }
  if (typeof raw !== 'number' || !Number.isSafeInteger(raw) || raw <= 0) {
    reasons.push({
      code: 'invalid-value',
      path,
      message: `${path}: ${k} must be a positive whole number${k === 'memory' ? ' of bytes' : ''} (omit it to share the parent's), got ${JSON.stringify(raw)}`,
    });
    return null;
  }
  return raw;
}

function insufficient(
  parent: Node,
  k: Quantity,
  v: number,
  path: string,
  existing: Node | undefined,
): Reason {
  // One pass keeping the largest few: a rejection under 10,000 children stays O(width), no sort.
  const top: Node[] = [];
  let others = 0;
  let othersAmount = 0;
  const before = (a: Node, b: Node) => a.q[k] > b.q[k] || (a.q[k] === b.q[k] && a.seq < b.seq);
  for (const c of parent.children.values()) {
    if (c.q[k] <= 0) continue;
    if (top.length === holdersShown && !before(c, top[holdersShown - 1]!)) {
      others++;
      othersAmount += c.q[k];
      continue;
    }
    let i = top.length;
    while (i > 0 && before(c, top[i - 1]!)) i--;
    top.splice(i, 0, c);
    if (top.length > holdersShown) {
      const out = top.pop()!;
      others++;
      othersAmount += out.q[k];
    }
  }
  const left = parent.q[k] - parent.sum[k];
  const shown = top.map((h, i) => `${h.name}${i === 0 ? ' holds' : ''} ${formatQuantity(k, h.q[k])}`);
  if (others > 0) shown.push(`and ${others} others ${formatQuantity(k, othersAmount)}`);
  const now = existing && existing.q[k] > 0 ? ` (holds ${formatQuantity(k, existing.q[k])} now)` : '';
  const breakdown = shown.length > 0 ? `: ${shown.join(', ')}` : '';
  const detail: QuantityDetail = {
    quantity: k,
    required: toUser(k, v),
    available: toUser(k, left + (existing ? existing.q[k] : 0)),
    total: toUser(k, parent.q[k]),
    holder: parent.path,
    holders: top.map((h) => ({ path: h.path, amount: toUser(k, h.q[k]) })),
    others: { count: others, amount: toUser(k, othersAmount) },
  };
  return {
    code: 'insufficient',
    path,
    message: `${path} requires ${k} ${formatQuantity(k, v)}${now}, ${parent.path} has ${formatQuantity(k, left)} left of ${formatQuantity(k, parent.q[k])}${breakdown}`,
    detail,
  };
}

function childrenHoldMore(node: Node, k: Quantity, v: number): Reason {
  const holders = sortedChildren(node)
    .filter((c) => c.q[k] > 0)
    .sort((a, b) => b.q[k] - a.q[k] || a.seq - b.seq);
  const shown = holders
    .slice(0, holdersShown)
    .map((c, i) => `${c.name}${i === 0 ? ' holds' : ''} ${formatQuantity(k, c.q[k])}`);
  if (holders.length > holdersShown) shown.push(`and ${holders.length - holdersShown} others`);
  const want = v === 0 ? `to reserve no ${k}` : `${k} ${formatQuantity(k, v)}`;
  return {
    code: 'children-hold-more',
    path: node.path,
    message: `${node.path} requires ${want}, its children hold ${formatQuantity(k, node.sum[k])}: ${shown.join(', ')}`,
  };
}

function routingContext(parent: Node, self: string): RoutingContext<Node> {
  const ownOffers = parent.provides;
  const held: Offer[] = parent.services.map((s) => ({
    name: s.name,
    kind: s.kind,
    endpoint: s.endpoint,
    from: s.from,
  }));
  const offerOf = (n: Node, pick: (o: Offer) => boolean) => n.provides.find(pick)!;
  return {
    siblingByName(name) {
      const n = parent.providersByName.get(name);
      return n && n.name !== self ? { sibling: n, offer: offerOf(n, (o) => o.name === name) } : undefined;
    },
    siblingByKind(kind) {
      const list = parent.providersByKind.get(kind);
      if (!list) return undefined;
      for (const n of list)
        if (n.name !== self) return { sibling: n, offer: offerOf(n, (o) => o.kind === kind) };
      return undefined;
    },
    namedSibling(name, s) {
      const n = parent.children.get(name);
      if (!n || n.name === self) return undefined;
      const offer = matchOffer(n.provides, s);
      return offer ? { sibling: n, offer } : undefined;
    },
    parentByName: (name) => ownOffers.find((o) => o.name === name) ?? held.find((o) => o.name === name),
    parentByKind: (kind) => ownOffers.find((o) => o.kind === kind) ?? held.find((o) => o.kind === kind),
  };
}

function unroutable(tree: CapTree, parent: Node | undefined, path: string, s: NormalService): Reason {
  const what = describeService(s);
  const where = parent
    ? s.from !== undefined && s.from !== 'parent'
      ? `${parent.path}/${s.from} does not provide it`
      : s.from === 'parent'
        ? `${parent.path} neither provides it nor holds it`
        : `no sibling provides it and ${parent.path} neither provides it nor holds it`
    : 'nothing is routed to the root';
  const elsewhere = new Set<string>();
  for (const key of [s.name, s.kind]) {
    if (key === undefined) continue;
    for (const p of tree.providers.get(key) ?? []) if (p !== path) elsewhere.add(p);
  }
  const hint =
    elsewhere.size > 0
      ? `; provided by ${[...elsewhere].sort().slice(0, 3).join(', ')}, route it through ${parent ? parent.path : 'the root'}'s requires.services or move the provider`
      : '';
  return { code: 'unroutable-service', path, message: `${path} requires service ${what}: ${where}${hint}` };
}

/** A cycle through `self` if it came to depend on `deps`; sibling names, starting and ending at self. */
function findCycle(parent: Node, self: string, deps: readonly string[]): string[] | undefined {
  const prev = new Map<string, string>();
  const queue: string[] = [];
  for (const d of deps) {
    if (!prev.has(d)) {
      prev.set(d, self);
      queue.push(d);
    }
  }
  for (let i = 0; i < queue.length; i++) {
    const at = queue[i]!;
    if (at === self) {
      const back: string[] = [self];
      for (let x = prev.get(self)!; x !== self; x = prev.get(x)!) back.push(x);
      back.push(self);
      return back.reverse();
    }
    for (const d of parent.children.get(at)?.dependsOn ?? []) {
      if (!prev.has(d)) {
        prev.set(d, at);
        queue.push(d);
      }
    }
  }
  return undefined;
}

function validateProvides(
  provides: Provides | undefined,
  parent: Node | undefined,
  self: string,
  path: string,
  reasons: Reason[],
): void {
  if (provides === undefined) return;
  if (provides === null || typeof provides !== 'object' || Array.isArray(provides)) {
    reasons.push({
      code: 'invalid-value',
      path,
      message: `${path}: provides must map service names to endpoints`,
    });
    return;
  }
  for (const [name, ep] of Object.entries(provides)) {
    if (name === '' || ep === null || typeof ep !== 'object' || Array.isArray(ep)) {
      reasons.push({
        code: 'invalid-value',
        path,
        message: `${path}: provides ${name} must be an endpoint mapping`,
      });
      continue;
    }
    if (ep.kind !== undefined && (typeof ep.kind !== 'string' || ep.kind === '')) {
      reasons.push({ code: 'invalid-value', path, message: `${path}: provides ${name} kind must be a name` });
    }
    const other = parent?.providersByName.get(name);
    if (other && other.name !== self) {
      reasons.push({
        code: 'duplicate-provider',
        path,
        message: `${path} provides ${name}, which its sibling ${other.path} already provides`,
      });
    }
  }
}

function validatePolicy(policy: Policy | undefined, path: string, reasons: Reason[]): void {
  if (policy === undefined) return;
  if (policy === null || typeof policy !== 'object' || Array.isArray(policy)) {
    reasons.push({ code: 'invalid-value', path, message: `${path}: policy must be a mapping` });
    return;
  }
  for (const key of Object.keys(policy)) {
    if (!policyKeys.has(key)) {
      reasons.push({
        code: 'unknown-capability',
        path,
        message: `${path}: unknown policy '${key}' (known: ${[...policyKeys].join(', ')})`,
      });
    }
  }
  if (policy.maxDepth !== undefined && (!Number.isInteger(policy.maxDepth) || policy.maxDepth < 0)) {
    reasons.push({
      code: 'invalid-value',
      path,
      message: `${path}: policy maxDepth must be a whole number >= 0`,
    });
  }
  if (policy.allowAdvisory !== undefined && typeof policy.allowAdvisory !== 'boolean') {
    reasons.push({
      code: 'invalid-value',
      path,
      message: `${path}: policy allowAdvisory must be true or false`,
    });
  }
  if (policy.never !== undefined) {
    if (!Array.isArray(policy.never)) {
      reasons.push({
        code: 'invalid-value',
        path,
        message: `${path}: policy never must be a list of label lists`,
      });
      return;
    }
    for (const set of policy.never) {
      if (!Array.isArray(set) || set.length === 0) {
        reasons.push({
          code: 'invalid-value',
          path,
          message: `${path}: policy never entries must be non-empty label lists`,
        });
        continue;
      }
      for (const label of set) {
        const kind = typeof label === 'string' ? label.slice(0, label.indexOf(':')) : '';
        if (typeof label !== 'string' || label.indexOf(':') < 1 || label.endsWith(':')) {
          reasons.push({
            code: 'invalid-value',
            path,
            message: `${path}: policy label ${JSON.stringify(label)} must be KIND:NAME`,
          });
        } else if (!labelKindSet.has(kind)) {
          reasons.push({
            code: 'unknown-capability',
            path,
            message: `${path}: policy label ${label} names unknown capability kind '${kind}' (known: ${labelKinds.join(', ')})`,
          });
        }
      }
    }
  }
}

function checkChildrenFit(
  node: Node,
  net: readonly string[],
  listen: ReadonlyMap<string, string>,
  view: ReadonlyMap<string, PathMode>,
  secrets: ReadonlySet<string>,
  env: ReadonlySet<string>,
  services: readonly ServiceGrant[],
  privileges: ReadonlySet<string>,
  reasons: Reason[],
): void {
  const held = new Set(listen.values());
  const fail = (c: Node, what: string) =>
    reasons.push({
      code: 'children-hold-quality',
      path: node.path,
      message: `${node.path} would no longer hold ${what}, which ${c.path} holds`,
    });
  for (const c of sortedChildren(node)) {
    for (const x of c.net) if (!net.includes(x)) fail(c, `net ${x}`);
    for (const [name, addr] of c.listen) {
      if (c.minted.has(name) ? !net.includes('host') : !held.has(addr)) fail(c, `listen ${addr}`);
    }
    for (const [p, mode] of c.paths) {
      const cover = coveringPath(view, p);
      if (!cover || (mode === 'rw' && cover[1] === 'ro')) fail(c, `${mode} ${p}`);
    }
    for (const s of c.secrets) if (!secrets.has(s)) fail(c, `secret ${s}`);
    for (const e of c.env) if (!env.has(e)) fail(c, `env ${e}`);
    for (const p of c.privileges) if (!holdsPrivilege(privileges, p)) fail(c, `privilege ${p}`);
    for (const s of c.services) {
      const fromChild =
        s.from.startsWith(`${node.path}/`) && node.children.has(s.from.slice(node.path.length + 1));
      const viaNode = s.from !== node.path && !fromChild;
      if (viaNode && !services.some((h) => h.name === s.name && h.from === s.from))
        fail(c, `service ${s.name} from ${s.from}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Commit: the only code that mutates.

function makeNode(
  contract: Contract,
  path: string,
  depth: number,
  seq: number,
  parent: Node | undefined,
  plan: Plan,
): Node {
  const provides: Offer[] = [];
  for (const [name, endpoint] of Object.entries(contract.provides ?? {})) {
    provides.push({
      name,
      kind: typeof endpoint.kind === 'string' ? endpoint.kind : undefined,
      endpoint,
      from: path,
    });
  }
  const node: Node = {
    name: contract.name,
    path,
    depth,
    seq,
    parent,
    provides,
    policy: contract.policy,
    requires: contract.requires ?? {},
    q: plan.q,
    sum: { cpu: 0, memory: 0, pids: 0 },
    weight: plan.weight,
    net: plan.net,
    netInherited: plan.netInherited,
    listen: plan.listen,
    minted: plan.minted,
    services: plan.services,
    dependsOn: plan.dependsOn,
    paths: plan.paths,
    secrets: plan.secrets,
    env: plan.env,
    privileges: plan.privileges,
    advisory: plan.advisory,
    children: noChildren as Registry<Node>,
    nextSeq: 0,
    providersByName: emptyMap(),
    providersByKind: emptyMap(),
    delegated: emptyMap(),
    usedBy: emptySet(),
  };
  return node;
}

function assignPlan(node: Node, plan: Plan): void {
  node.q = plan.q;
  node.weight = plan.weight;
  node.net = plan.net;
  node.netInherited = plan.netInherited;
  node.listen = plan.listen;
  node.minted = plan.minted;
  node.services = plan.services;
  node.dependsOn = plan.dependsOn;
  node.paths = plan.paths;
  node.secrets = plan.secrets;
  node.env = plan.env;
  node.privileges = plan.privileges;
  node.advisory = plan.advisory;
}

function commitNew(tree: CapTree, node: Node, plan: Plan): void {
  tree.index.set(node.path, node);
  for (const name of plan.minted) mint(tree, plan.listen.get(name)!, node.path);
  for (const o of node.provides) indexProvider(tree, o, node.path);
  const parent = node.parent;
  if (!parent) return;
  ownChildren(parent).set(node.name, node);
  parent.nextSeq = Math.max(parent.nextSeq, node.seq + 1);
  for (const k of quantities) parent.sum[k] += node.q[k];
  for (const addr of plan.passed) own(parent, 'delegated').set(addr, node.name);
  for (const o of node.provides) {
    own(parent, 'providersByName').set(o.name, node);
    if (o.kind !== undefined) {
      const list = parent.providersByKind.get(o.kind);
      if (!list) own(parent, 'providersByKind').set(o.kind, [node]);
      else if (!list.includes(node)) {
        let i = list.length;
        while (i > 0 && list[i - 1]!.seq > node.seq) i--;
        list.splice(i, 0, node);
      }
    }
  }
  for (const dep of plan.dependsOn) ownUsedBy(parent.children.get(dep)!).add(node.name);
}

function detach(parent: Node, node: Node): void {
  parent.children.delete(node.name);
  for (const o of node.provides) {
    if (parent.providersByName.get(o.name) === node) parent.providersByName.delete(o.name);
    if (o.kind !== undefined) {
      const list = parent.providersByKind.get(o.kind);
      if (list) {
        const i = list.indexOf(node);
        if (i >= 0) list.splice(i, 1);
        if (list.length === 0) parent.providersByKind.delete(o.kind);
      }
    }
  }
  for (const [name, addr] of node.listen) if (!node.minted.has(name)) parent.delegated.delete(addr);
  for (const dep of node.dependsOn) parent.children.get(dep)?.usedBy.delete(node.name);
}

function mint(tree: CapTree, key: string, path: string): void {
  const a = parseAddress(key)!;
  const list = tree.ports.get(a.port);
  if (list) list.push({ host: a.host, path });
  else tree.ports.set(a.port, [{ host: a.host, path }]);
}

function unmint(tree: CapTree, key: string, path: string): void {
  const a = parseAddress(key)!;
  const list = tree.ports.get(a.port);
  if (!list) return;
  const i = list.findIndex((h) => h.path === path && h.host === a.host);
  if (i >= 0) list.splice(i, 1);
  if (list.length === 0) tree.ports.delete(a.port);
}

function indexProvider(tree: CapTree, o: Offer, path: string): void {
  for (const key of o.kind === undefined ? [o.name] : [o.name, o.kind]) {
    const s = tree.providers.get(key);
    if (s) s.add(path);
    else tree.providers.set(key, new Set([path]));
  }
}

function unindexProvider(tree: CapTree, o: Offer, path: string): void {
  for (const key of o.kind === undefined ? [o.name] : [o.name, o.kind]) {
    const s = tree.providers.get(key);
    s?.delete(path);
    if (s && s.size === 0) tree.providers.delete(key);
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers

function grantOfNode(n: Node): Grant {
  const limit = (k: Quantity): number => {
    let a: Node | undefined = n;
    while (a && a.q[k] === 0) a = a.parent;
    return a ? a.q[k] : 0;
  };
  const qg = (k: Quantity) => ({ reserved: toUser(k, n.q[k]), limit: toUser(k, limit(k)) });
  return {
    path: n.path,
    cpu: qg('cpu'),
    cpuWeight: n.weight,
    memory: qg('memory'),
    pids: qg('pids'),
    // Held arrays are never mutated after admission, so the grant may share them.
    net: n.net,
    listen: n.listen.size === 0 ? noRecord : Object.fromEntries(n.listen),
    services: n.services,
    paths: pathRecord(n.paths),
    secrets: n.secrets.size === 0 ? noStrings : [...n.secrets],
    env: n.env.size === 0 ? noStrings : [...n.env],
    privileges: n.privileges.size === 0 ? noStrings : [...n.privileges],
    advisory: n.advisory,
  };
}

const need = { cpu: 1, cpuWeight: 2, memory: 4, pids: 8, net: 16, mount: 32 } as const;
const needOrder: readonly (readonly [number, Enforcement])[] = [
  [need.cpu | need.cpuWeight, 'cpuLimits'],
  [need.memory, 'memoryLimits'],
  [need.pids, 'pidsLimits'],
  [need.net, 'netNamespaces'],
  [need.mount, 'mountNamespaces'],
];

function describeNeed(bit: number, net: readonly string[]): string {
  if (bit & need.cpu) return 'a cpu limit';
  if (bit & need.cpuWeight) return 'a cpu weight';
  if (bit === need.memory) return 'a memory limit';
  if (bit === need.pids) return 'a pids limit';
  if (bit === need.net) return `network confinement (net: ${net.length === 0 ? 'none' : net.join(', ')})`;
  return 'a narrowed filesystem view';
}

const pathRecords = new WeakMap<ReadonlyMap<string, PathMode>, Readonly<Record<string, PathMode>>>();
/** Views are shared between inheriting nodes and never mutated, so one record per view suffices. */
function pathRecord(view: ReadonlyMap<string, PathMode>): Readonly<Record<string, PathMode>> {
  let r = pathRecords.get(view);
  if (!r) {
    r = Object.freeze(Object.fromEntries(view));
    pathRecords.set(view, r);
  }
  return r;
}

/** A map or set no one may write: the shared stand-in until a node needs its own. */
class SealedMap<K, V> extends Map<K, V> {
  override set(): this {
    throw new Error('caps: write to a shared empty map');
  }
}
class SealedSet<T> extends Set<T> {
  override add(): this {
    throw new Error('caps: write to a shared empty set');
  }
}
const sealedMap = new SealedMap<unknown, unknown>();
const sealedSet = new SealedSet<unknown>();
const noStrings: readonly string[] = Object.freeze([]);
const noRecord: Readonly<Record<string, string>> = Object.freeze({});
const noServices: readonly ServiceGrant[] = Object.freeze([]);
const noEnforcements: readonly Enforcement[] = Object.freeze([]);

function emptyMap<K, V>(): Map<K, V> {
  return sealedMap as Map<K, V>;
}
function emptySet<T>(): Set<T> {
  return sealedSet as Set<T>;
}

type OwnedMap = 'providersByName' | 'providersByKind' | 'delegated';
function own<K extends OwnedMap>(n: Node, key: K): Node[K] {
  if ((n[key] as unknown) === sealedMap) (n as Record<OwnedMap, unknown>)[key] = new Map();
  return n[key];
}
class SealedRegistry extends Registry<never> {
  override set(): void {
    throw new Error('caps: write to a shared empty registry');
  }
}
const noChildren = new SealedRegistry();
function ownChildren(n: Node): Registry<Node> {
  if ((n.children as unknown) === noChildren) n.children = new Registry();
  return n.children;
}
function ownUsedBy(n: Node): Set<string> {
  if ((n.usedBy as unknown) === sealedSet) n.usedBy = new Set();
  return n.usedBy;
}

function sortedChildren(n: Node): Node[] {
  return [...n.children.values()].sort((a, b) => a.seq - b.seq);
}

function hostTotal(host: HostCapabilities, k: Quantity): number {
  return k === 'cpu' ? (coresToMilli(host.cpu) ?? 0) : host[k];
}

function hostNetworks(host: HostCapabilities): string[] {
  return [...Object.keys(host.networks ?? {}), 'host'];
}

const hostViews = new WeakMap<HostCapabilities, ReadonlyMap<string, PathMode>>();
function hostPaths(host: HostCapabilities): ReadonlyMap<string, PathMode> {
  const cached = hostViews.get(host);
  if (cached) return cached;
  const view = new Map<string, PathMode>();
  const given: Readonly<Record<string, PathMode>> = host.paths ?? { '/': 'rw' };
  for (const [p, m] of Object.entries(given)) view.set(normalizePath(p) ?? p, m);
  hostViews.set(host, view);
  return view;
}

function sameView(a: ReadonlyMap<string, PathMode>, b: ReadonlyMap<string, PathMode>): boolean {
  if (a === b) return true;
  if (a.size !== b.size) return false;
  for (const [p, m] of a) if (b.get(p) !== m) return false;
  return true;
}

function labelsOf(
  host: HostCapabilities,
  net: readonly string[],
  listen: ReadonlyMap<string, string>,
  services: readonly ServiceGrant[],
  secrets: ReadonlySet<string>,
  env: ReadonlySet<string>,
  privileges: ReadonlySet<string>,
): Set<string> {
  const out = new Set<string>();
  for (const p of privileges) out.add(`privilege:${p}`);
  for (const n of net) {
    out.add(`net:${n}`);
    if (n === 'host' || host.networks?.[n]?.internet === true) out.add('net:internet');
  }
  for (const name of listen.keys()) out.add(`listen:${name}`);
  for (const s of services) {
    out.add(`service:${s.name}`);
    if (s.kind !== undefined) out.add(`service:${s.kind}`);
  }
  for (const s of secrets) out.add(`secret:${s}`);
  for (const e of env) out.add(`env:${e}`);
  return out;
}

function hasLabel(labels: ReadonlySet<string>, pattern: string): boolean {
  if (!pattern.endsWith(':*')) return labels.has(pattern);
  const prefix = pattern.slice(0, -1);
  for (const l of labels) if (l.startsWith(prefix)) return true;
  return false;
}

function privilegeSet(raw: unknown, path: string, reasons: Reason[]): Set<string> {
  const out = new Set<string>();
  if (!Array.isArray(raw)) {
    reasons.push({ code: 'invalid-value', path, message: `${path}: privileges must be a list` });
    return out;
  }
  for (const x of raw) {
    const parsed = parsePrivilege(x);
    if (parsed.ok) out.add(parsed.privilege);
    else reasons.push({ code: 'invalid-value', path, message: `${path}: ${parsed.message}` });
  }
  return out;
}

function namedSet(raw: unknown, what: string, path: string, reasons: Reason[]): Set<string> {
  if (raw === undefined) return emptySet();
  const out = new Set<string>();
  if (!Array.isArray(raw)) {
    reasons.push({ code: 'invalid-value', path, message: `${path}: ${what} must be a list of names` });
    return out;
  }
  for (const x of raw) {
    if (typeof x !== 'string' || x === '') {
      reasons.push({
        code: 'invalid-value',
        path,
        message: `${path}: ${what} entries must be names, got ${JSON.stringify(x)}`,
      });
    } else out.add(x);
  }
  return out;
}

/** `/a/b` normalized (no `.`, `..`, `//`, trailing `/`), or undefined when not absolute or not normal. */
export function normalizePath(p: string): string | undefined {
  if (typeof p !== 'string' || !p.startsWith('/')) return undefined;
  if (p === '/') return '/';
  const trimmed = p.endsWith('/') ? p.slice(0, -1) : p;
  const parts = trimmed.slice(1).split('/');
  if (parts.some((s) => s === '' || s === '.' || s === '..')) return undefined;
  return trimmed;
}

/** The held path at or above `p` (the deepest), with its mode. */
function coveringPath(view: ReadonlyMap<string, PathMode>, p: string): [string, PathMode] | undefined {
  let at = p;
  for (;;) {
    const m = view.get(at);
    if (m !== undefined) return [at, m];
    if (at === '/') return undefined;
    const i = at.lastIndexOf('/');
    at = i === 0 ? '/' : at.slice(0, i);
  }
}

/** `HOST:PORT` or `:PORT`; `0.0.0.0` and `[::]` mean every address, like an empty host. */
function parseAddress(s: string): { key: string; host: string; port: number } | undefined {
  const m = /^(.*):(\d{1,5})$/.exec(s);
  if (!m) return undefined;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return undefined;
  let host = m[1]!;
  if (host === '0.0.0.0' || host === '[::]' || host === '*') host = '';
  if (host.includes(':') && !(host.startsWith('[') && host.endsWith(']'))) return undefined;
  return { key: `${host}:${port}`, host, port };
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
