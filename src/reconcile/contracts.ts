/**
 * A parsed manifest's typed tree as caps contracts (requires, provides, policy), one caps node
 * per manifest node or process. Pure: the daemon admits with it and reconciliation plans with it
 * (the mapping rules are described in `src/daemon/admission.ts`).
 */
import type { Policy, Provides, Requires, TreeSpec } from '../caps/index.ts';
import type { ChildSpec, Endpoint, ManifestTree, NodeSpec } from '../manifest/index.ts';

export type Spec = NodeSpec | ChildSpec;
/** Maps a parsed manifest to the caps TreeSpec (contracts: requires, provides, policy), one node per manifest node/process. */
export function contractsOf(tree: ManifestTree): TreeSpec {
  return specOf(tree.root);
}

function specOf(node: Spec): TreeSpec {
  const requires = requiresOf(node);
  const provides = providesOf(node);
  const policy = node.kind === 'node' ? policyOf(node) : undefined;
  return {
    name: node.name,
    ...(requires ? { requires } : {}),
    ...(provides ? { provides } : {}),
    ...(policy ? { policy } : {}),
    ...(node.kind === 'node' ? { children: node.children.map(specOf) } : {}),
  };
}

function requiresOf(node: Spec): Requires | undefined {
  const r = node.requires;
  const out: {
    -readonly [K in keyof Requires]: Requires[K];
  } = {};
  if (r.cpu !== null) out.cpu = r.cpuWeight !== null ? { cores: r.cpu, weight: r.cpuWeight } : r.cpu;
  else if (r.cpuWeight !== null) out.cpu = { weight: r.cpuWeight };
  if (r.memory !== null) out.memory = r.memory;
  if (r.pids !== null) out.pids = r.pids;
  if (r.net !== null) out.net = r.net;
  const listen = Object.entries(r.listen).flatMap(([name, ep]) =>
    ep.type === 'tcp' ? [[name, addressOf(ep)] as const] : [],
  );
  if (listen.length > 0) out.listen = Object.fromEntries(listen);
  if (r.services.length > 0) out.services = [...r.services];
  if (r.paths.length > 0) out.paths = Object.fromEntries(r.paths.map((p) => [p.path, p.mode]));
  if (r.secrets.length > 0) out.secrets = [...r.secrets];
  if (r.env.length > 0) out.env = [...r.env];
  const privileges = privilegesOf(node);
  if (privileges !== null) out.privileges = privileges;
  return Object.keys(out).length > 0 ? out : undefined;
}

/**
 * What a node holds of privileges: a process child exactly what it names plus what its `user:`
 * and `group:` imply (`root` for uid 0), so naming nothing is holding nothing; a node what it
 * names, or its parent's when it names none.
 */
export function privilegesOf(node: Spec): string[] | null {
  const named = node.requires.privileges;
  if (node.kind === 'node') return named === null ? null : [...named];
  const out = new Set(named ?? []);
  const user = node.user;
  if (user !== null) out.add(user === 0 || user === '0' || user === 'root' ? 'root' : `user:${user}`);
  if (node.group !== null)
    out.add(
      node.group === 0 || node.group === '0' || node.group === 'root' ? 'group:root' : `group:${node.group}`,
    );
  return [...out];
}

function addressOf(ep: Extract<Endpoint, { type: 'tcp' }>): string {
  const host = ep.host.includes(':') ? `[${ep.host}]` : ep.host;
  return `${host}:${ep.port}`;
}

function providesOf(node: Spec): Provides | undefined {
  const entries = Object.entries(node.provides);
  if (entries.length === 0) return undefined;
  return Object.fromEntries(
    entries.map(([name, s]) => [name, s.kind === null ? { ...s.endpoint } : { ...s.endpoint, kind: s.kind }]),
  );
}

function policyOf(node: NodeSpec): Policy | undefined {
  const p = node.policy;
  const out: { -readonly [K in keyof Policy]: Policy[K] } = {};
  if (p.never.length > 0) out.never = p.never.map((set) => [...set]);
  if (p.maxDepth !== null) out.maxDepth = p.maxDepth;
  if (p.allowAdvisory) out.allowAdvisory = true;
  return Object.keys(out).length > 0 ? out : undefined;
}

/** The caps contract of one manifest child, as `contractsOf` maps it inside a tree. */
export function contractOf(spec: Spec): TreeSpec {
  return specOf(spec);
}
