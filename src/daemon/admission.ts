/**
 * The bridge from a parsed manifest to admission: the manifest's typed tree becomes a caps
 * `TreeSpec`, the runtime probes become `HostCapabilities`, and every caps rejection becomes a
 * `ManifestError` at the `file:line:col` of the field to fix, in the loader's format.
 *
 * Mapping rules (manifest → caps contract, one caps node per manifest node or process):
 * - Quantities: `null` ("not given") is omitted, so the child shares its parent's remainder and a
 *   root without them holds what the host allows. `cpu` + `cpuWeight` become `{ cores, weight }`
 *   when a weight is given, plain cores otherwise.
 * - Empty lists and maps (`services`, `secrets`, `env`, `listen`, `paths`) are omitted: the
 *   manifest defaults them to empty, so empty means "not given". For a child this is the same
 *   as empty (services, secrets and env are never inherited; omitted paths inherit the parent's
 *   view, which is what a manifest without `paths` means). For the root it means it holds the
 *   host's secrets and env, as for a root without `requires`.
 * - `net`: the string as given; `null` is omitted (inherit the parent's networks).
 * - `listen`: TCP endpoints become `host:port` (`[v6]:port`, `:port` for all addresses). Unix
 *   listen sockets are left out of the caps contract: caps models listening addresses on a
 *   network (a `net: none` child with a unix socket must not need the host network), and a
 *   socket file is exclusive through the filesystem, not a port. Their one-holder rule is
 *   checked here instead: two children may not listen on the same resolved socket path. A
 *   consequence: a `listen:NAME` policy label matches TCP sockets only.
 * - `paths`: `[{ path, mode }]` (already absolute) becomes `{ path: mode }`.
 * - `provides`: each service becomes its endpoint's fields (`type`, `host`/`port` or `path`,
 *   unix paths as written) plus `kind` when given; caps reads only `kind`, consumers get the rest.
 * - `policy` (nodes only): `never` when non-empty, `maxDepth` when given, `allowAdvisory` only
 *   when true. The manifest defaults it to false and cannot tell an explicit false from the
 *   default; caps reads false as a veto on the whole subtree ("restrictive wins"), which would
 *   make a subtree's `allowAdvisory: true` useless under every default root.
 *
 * Reasons map to fields by code (the message is kept verbatim): a quantity shortfall or a missing
 * limit to `requires.<quantity>`, networks and network confinement to `requires.net`, a missing
 * mount namespace to `requires.paths`, unheld secrets, env, services, listen sockets and paths to
 * their entry in the list, a duplicate provider to `provides.<name>`, a cycle to the service entry
 * of its first member that closes it, a `never` invariant to the child's `requires.net` when it
 * sets one (the usual fix), else to the first field of the forbidden set it declares, and a depth
 * violation to the child itself. A field the child does not write is positioned at the mapping
 * that should hold it (see `positionOf`).
 *
 * The mapping and the host probes live in `contracts.ts`, free of `yaml` and `zod` (the daemon
 * starts a tree with them alone); this module adds the positions and is loaded on rejection.
 */
import { isMap, isScalar, isSeq } from 'yaml';
import {
  type CapTree,
  checkTree,
  type Grant,
  type HostCapabilities,
  normalizePath,
  type Reason,
} from '../caps/index.ts';
import {
  errorAt,
  type ManifestError,
  type ManifestSource,
  type ManifestTree,
  type ParseResult,
  type YamlPath,
} from '../manifest/index.ts';
import { contractsOf, type Spec, unixListenClashes } from './contracts.ts';

// The yaml-free part (the daemon's start-up path uses it directly).
export {
  admitContracts,
  contractOf,
  contractsOf,
  type HostExtras,
  type HostFacts,
  hostCapabilities,
  hostCapabilitiesFrom,
  manifestNetworks,
} from './contracts.ts';

export type Admission =
  | {
      ok: true;
      grants: Map<string, Grant>;
      startOrder: Map<string, string[]>;
      /** The admitted tree, live: admissions, releases and renegotiations at run time go through it. */
      caps: CapTree;
    }
  | { ok: false; errors: ManifestError[] };

// ---------------------------------------------------------------------------------------------
// Admission

/**
 * Full admission of the tree without starting anything: every rejection becomes a ManifestError
 * at the offending field, sorted like the loader's errors, all of them at once.
 */
export function admitManifest(tree: ManifestTree, source: ManifestSource, host: HostCapabilities): Admission {
  const specs = new Map<string, Spec>();
  const walk = (node: Spec): void => {
    specs.set(node.path, node);
    if (node.kind === 'node') for (const c of node.children) walk(c);
  };
  walk(tree.root);

  const errors: ManifestError[] = listenClashErrors(tree, source);
  const checked = checkTree(contractsOf(tree), host);
  if (!checked.ok) {
    for (const reason of checked.reasons) {
      const spec = specs.get(reason.path);
      const field = spec ? fieldOf(reason, spec, specs, source) : [];
      const at = spec ? reason.path : tree.root.path;
      // The error line already starts with the path: do not say it twice.
      const message = reason.message.startsWith(`${at} `)
        ? reason.message.slice(at.length + 1)
        : reason.message;
      errors.push(errorAt(source, at, field, message));
    }
  }
  if (!checked.ok || errors.length > 0) return { ok: false, errors: sortUnique(errors) };
  return {
    ok: true,
    grants: new Map(checked.grants),
    startOrder: new Map([...checked.startOrder].map(([p, order]) => [p, [...order]])),
    caps: checked.tree,
  };
}

/** `captree check` in one call: the loader's errors if it failed, else admission's. */
export function admitParsed(parsed: ParseResult, host: HostCapabilities): Admission {
  if (!parsed.ok) return { ok: false, errors: parsed.errors };
  return admitManifest(parsed.tree, parsed.source, host);
}

function sortUnique(errors: ManifestError[]): ManifestError[] {
  const seen = new Set<string>();
  return errors
    .filter((e) => {
      const key = `${e.line}:${e.col}:${e.path}:${e.field}:${e.message}`;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    })
    .sort((a, b) => a.line - b.line || a.col - b.col);
}

function listenClashErrors(tree: ManifestTree, source: ManifestSource): ManifestError[] {
  return unixListenClashes(tree).map((c) => errorAt(source, c.path, c.field, c.message));
}

const quantityField = { cpu: 'cpu', memory: 'memory', pids: 'pids' } as const;

/** The YAML path, inside the child, of the field a reason is about. */
function fieldOf(
  reason: Reason,
  spec: Spec,
  specs: ReadonlyMap<string, Spec>,
  source: ManifestSource,
): YamlPath {
  const r = spec.requires;
  const m = reason.message;
  const entry = (list: readonly string[], field: string, mention: (x: string) => string): YamlPath => {
    const i = list.findIndex((x) => m.includes(mention(x)));
    return i >= 0 ? ['requires', field, i] : ['requires', field];
  };
  switch (reason.code) {
    case 'insufficient':
    case 'children-hold-more': {
      const d = reason.detail;
      if (d && 'quantity' in d) return ['requires', quantityField[d.quantity]];
      const q = /requires (?:to reserve no )?(cpu|memory|pids)\b/.exec(m)?.[1] as keyof typeof quantityField;
      return q ? ['requires', quantityField[q]] : ['requires'];
    }
    case 'host-cannot-enforce': {
      const d = reason.detail;
      const missing = d && 'missing' in d ? d.missing : undefined;
      if (missing === 'cpuLimits')
        return ['requires', r.cpu === null && r.cpuWeight !== null ? 'cpuWeight' : 'cpu'];
      if (missing === 'memoryLimits') return ['requires', 'memory'];
      if (missing === 'pidsLimits') return ['requires', 'pids'];
      if (missing === 'mountNamespaces') return ['requires', 'paths'];
      return ['requires', 'net'];
    }
    case 'network-not-held':
      return ['requires', 'net'];
    case 'listen-not-held':
    case 'listen-taken': {
      const name = Object.keys(r.listen).find((n) => m.includes(` listen ${n} `));
      return name === undefined ? ['requires', 'listen'] : ['requires', 'listen', name];
    }
    case 'unroutable-service':
      return entry(r.services, 'services', (s) => ` service ${s}:`);
    case 'secret-not-held':
      return entry(r.secrets, 'secrets', (s) => ` secret ${s},`);
    case 'env-not-held':
      return entry(r.env, 'env', (e) => ` env ${e},`);
    case 'path-not-held':
      return pathEntry(spec, m, source);
    case 'duplicate-provider': {
      const name = Object.keys(spec.provides).find((n) => m.includes(` provides ${n},`));
      return name === undefined ? ['provides'] : ['provides', name];
    }
    case 'cycle':
      return cycleField(reason, spec, specs);
    case 'invariant-never':
      return neverField(m, spec);
    case 'children-hold-quality':
      return ['requires'];
    case 'max-depth':
    case 'duplicate-name':
      return [];
    default: {
      // Shapes the schema already guarantees; point at the part the message names, if any.
      const what = /: (cpu|memory|pids|net|listen|services|paths|secrets|env|provides|policy)\b/.exec(m)?.[1];
      if (what === 'provides' || what === 'policy') return [what];
      return what ? ['requires', what] : [];
    }
  }
}

function pathEntry(spec: Spec, message: string, source: ManifestSource): YamlPath {
  const i = spec.requires.paths.findIndex((p) =>
    message.includes(` ${p.mode} ${normalizePath(p.path) ?? p.path},`),
  );
  if (i < 0) return ['requires', 'paths'];
  // The loader keeps the YAML order, so entry i is the i-th list item or mapping key.
  const base = source.nodes.get(spec.path) ?? [];
  const node = source.doc.getIn([...base, 'requires', 'paths'], true);
  if (isSeq(node)) return ['requires', 'paths', i];
  if (isMap(node)) {
    const key = node.items[i]?.key;
    if (isScalar(key)) return ['requires', 'paths', String(key.value)];
  }
  return ['requires', 'paths'];
}

/** The entry of the first member's services that routes to the next member: the edge to cut. */
function cycleField(reason: Reason, spec: Spec, specs: ReadonlyMap<string, Spec>): YamlPath {
  const d = reason.detail;
  const cycle = d && 'cycle' in d ? d.cycle : undefined;
  const parentPath = spec.path.slice(0, spec.path.lastIndexOf('/'));
  const next = cycle?.[1] !== undefined ? specs.get(`${parentPath}/${cycle[1]}`) : undefined;
  if (next) {
    const offers = Object.entries(next.provides);
    const i = spec.requires.services.findIndex((s) => offers.some(([name, p]) => name === s || p.kind === s));
    if (i >= 0) return ['requires', 'services', i];
  }
  return ['requires', 'services'];
}

function neverField(message: string, spec: Spec): YamlPath {
  const r = spec.requires;
  const set = /\(never: \[(.*?)\]\)/.exec(message)?.[1]?.split(', ') ?? [];
  const declared = (label: string): YamlPath | undefined => {
    const colon = label.indexOf(':');
    const kind = label.slice(0, colon);
    const name = label.slice(colon + 1);
    const indexIn = (list: readonly string[], field: string): YamlPath | undefined => {
      if (list.length === 0) return undefined;
      const i = name === '*' ? 0 : list.indexOf(name);
      return i >= 0 ? ['requires', field, i] : ['requires', field];
    };
    switch (kind) {
      case 'net':
        return r.net !== null ? ['requires', 'net'] : undefined;
      case 'secret':
        return indexIn(r.secrets, 'secrets');
      case 'env':
        return indexIn(r.env, 'env');
      case 'service':
        return indexIn(r.services, 'services');
      case 'listen':
        return name in r.listen ? ['requires', 'listen', name] : undefined;
      default:
        return undefined;
    }
  };
  const net = set.find((l) => l.startsWith('net:'));
  const netField = net ? declared(net) : undefined;
  if (netField) return netField;
  for (const label of set) {
    const f = declared(label);
    if (f) return f;
  }
  // Nothing in the set is written by the child: its network is inherited, so `net:` is what to add.
  return net ? ['requires', 'net'] : ['requires'];
}

// ---------------------------------------------------------------------------------------------
// Run-time admission (one child into the live tree)

/**
 * Caps reasons about one child admitted at run time, as `ManifestError`s in `captree check`'s
 * wording and field mapping; `siblings` are the other children of its node (for cycles).
 */
export function errorsOfReasons(
  reasons: readonly Reason[],
  spec: Spec,
  source: ManifestSource,
  siblings: ReadonlyMap<string, Spec> = new Map(),
): ManifestError[] {
  const specs = new Map<string, Spec>(siblings);
  specs.set(spec.path, spec);
  return reasons.map((reason) => {
    const own = specs.get(reason.path);
    const at = own ? reason.path : spec.path;
    const field = own ? fieldOf(reason, own, specs, source) : [];
    const message = reason.message.startsWith(`${at} `)
      ? reason.message.slice(at.length + 1)
      : reason.message;
    return errorAt(source, at, field, message);
  });
}
