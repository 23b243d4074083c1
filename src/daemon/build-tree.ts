/**
 * From a parsed manifest to a running tree: the supervision engine's specs, an OS-process driver
 * per process child, the host runtime (launcher, cgroups, logs) and the handles a grant names
 * (listening sockets, an isolated network). Nothing starts until `supervisor.start()`.
 *
 * Limits come from each node's and child's own `requires`: a quantity given is a limit on its
 * cgroup; one left out sets none, so the child shares its parent's remainder, still capped by the
 * parent's cgroup. Node limits are written top-down before any child exists (cgroup v1 refuses a
 * child limit above its parent's).
 *
 * Admission runs first (`admitManifest` against what this host can enforce and hold): a rejected
 * manifest throws `AdmissionError` with every formatted error, before anything is created. The
 * grants it returns decide what each process reaches through the filesystem (runtime/confine):
 * routed unix services, secrets (read from `<manifest dir>/secrets/NAME`, delivered in a private
 * `$CREDENTIALS_DIRECTORY`), read-only paths, a narrowed filesystem view (a grant whose `paths`
 * do not hold `/`: a new root with only those, see runtime/confine). Every process child is
 * confined, whatever it asks for (a default child is untrusted too): a private mount namespace in
 * which the tree's whole state directory is covered (what it was granted mounted back), a
 * read-only cgroup tree, a PID namespace of its own (it sees and signals only its own subtree:
 * not the launcher, the daemon, its siblings or another tree), and no capabilities with
 * no_new_privs (a root child with CAP_SYS_ADMIN could unmount the cover). A child granted no
 * network (`net: none`) or a named one (`net: lan`, see `networkOf`) also gets that network
 * namespace. Where the host has no mount namespaces, only a tree whose policy allows advisory mode
 * runs, unconfined. See runtime/confine and native/launcher.c.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { type CapTree, capabilityOf, type Grant, type HostCapabilities } from '../caps/index.ts';
import {
  type ChildDriver,
  type ChildSpec as EngineChild,
  node,
  Supervisor,
  type SupervisorOptions,
  type SupervisorSpec,
} from '../core/index.ts';
// Types only from the manifest layer (it loads `yaml` and `zod`): the daemon may build a tree it
// received as plain data (`tree.json`) and loads the parser only to position admission errors.
import { formatErrors } from '../manifest/format.ts';
import type {
  ChildSpec,
  ManifestError,
  ManifestSource,
  ManifestTree,
  NodeSpec,
  ProcessSpec,
  Reload,
  Requires,
} from '../manifest/index.ts';
import { CounterReader, type Counters } from '../runtime/cgroup/counters.ts';
import type { CgroupGroup, Limits } from '../runtime/cgroup/index.ts';
import {
  planConfinement,
  serviceDir,
  sessionDirsIn,
  supervisorKeeps,
  viewHolds,
} from '../runtime/confine/index.ts';
import {
  HostRuntime,
  type ListenFd,
  logName,
  type OrphanKill,
  type PathState,
  type Recovery,
  streamKey,
} from '../runtime/host-runtime.ts';
import { formatRecord } from '../runtime/logs/index.ts';
import { processDriver } from '../runtime/process-driver.ts';
import { describeRun, runInChild } from '../runtime/run-in-child.ts';
import { supervisorEnv } from './channel.ts';
import { admitContracts, hostCapabilities, manifestNetworks, privilegesOf } from './contracts.ts';
import { liveChildren } from './live-limits.ts';
import type { LimitDrift } from './types.ts';

export interface Resources {
  grant: { cpu: number | null; memory: number | null; pids: number | null };
  used: { cpu: number | null; memory: number | null };
  drift?: LimitDrift[];
}

export interface RunningTree {
  readonly supervisor: Supervisor;
  readonly runtime: HostRuntime;
  readonly manifest: ManifestTree;
  /** The admitted capability tree, live: run-time admissions and renegotiations go through it. */
  readonly caps: CapTree;
  /** What this host can hold and enforce, as admission saw it. */
  readonly host: HostCapabilities;
  /** The supervisor owning a path and the child's id there; null if absent. */
  locate(path: string): { supervisor: Supervisor; id: string } | null;
  /** Grant (cores, bytes, count; null = unlimited) and measured usage (null = unknown). */
  resources(path: string): Resources;
  /** The grant alone, without reading usage. */
  grant(path: string): Resources['grant'];
  /** Log directory and base name of a process child. */
  logFiles(path: string): { dir: string; name: string } | null;
  /** Live log lines of a process child; returns an unsubscribe function. */
  onLog(path: string, fn: (line: string) => void): () => void;
  /**
   * Once the tree has started: what an earlier daemon left (null on a fresh start) and the
   * processes killed because nothing supervises them (see `HostRuntime.sweep`).
   */
  recover(): Promise<{ recovery: Recovery | null; kills: OrphanKill[] }>;
  /**
   * The engine spec of a process admitted at run time, confined by `grant` (from caps `admit`);
   * from now on `ps`, logs and the recovery sweep know its path. Add it with `addChild`.
   */
  dynamicChild(spec: ProcessSpec, grant: Grant): Promise<EngineChild>;
  /** Forgets a run-time child once its supervisor no longer has it, and removes its cgroups. */
  forgetChild(path: string): Promise<void>;
  /**
   * Reconciliation: the engine spec of a manifest child (a process, or a node and its subtree,
   * node limits written) confined by a re-admitted tree's grants; nothing starts.
   */
  engineChild(spec: ChildSpec, admitted: Readmitted): Promise<EngineChild>;
  /** Reconciliation: the driver of a nested supervisor (the tree's checkpoints and holds). */
  nodeDriver(spec: SupervisorSpec): ChildDriver;
  /** Reconciliation: from now on the tree runs `manifest`, admitted as `admitted` (caps swapped). */
  install(manifest: ManifestTree, admitted: Readmitted): void;
  /** Reconciliation: a removed manifest child's cgroups (a node: its subtree's) and listening sockets go. */
  forgetManifestChild(path: string): Promise<void>;
}

/** A tree admitted again (src/reconcile/fit.ts): its capability tree, grants and start order. */
export interface Readmitted {
  caps: CapTree;
  grants: ReadonlyMap<string, Grant>;
  startOrder: ReadonlyMap<string, readonly string[]>;
}

export interface BuildOptions extends Pick<SupervisorOptions, 'checkpoints' | 'holds'> {
  stateDir: string;
  /** `none`: process groups only, no cgroups (advisory). */
  cgroups?: 'auto' | 'none';
  /** The manifest's source, for error positions; default: the file re-read, else 1:1. */
  source?: ManifestSource;
  /** What the host holds and enforces; default: probed, with the secrets found in `<dir>/secrets/`. */
  host?: HostCapabilities;
}

/** The manifest asks for more than its parent (or the host) holds; `errors` say where and why. */
export class AdmissionError extends Error {
  readonly errors: readonly ManifestError[];
  constructor(errors: readonly ManifestError[]) {
    super(`admission rejected the manifest:\n${formatErrors(errors)}`);
    this.name = 'AdmissionError';
    this.errors = errors;
  }
}

/** Secret names available to a tree: the regular files in `<manifest dir>/secrets/`. */
export function secretsDir(manifest: ManifestTree): string {
  return join(manifest.dir, 'secrets');
}

export function availableSecrets(manifest: ManifestTree): string[] {
  const dir = secretsDir(manifest);
  try {
    return readdirSync(dir).filter((name) => {
      try {
        return statSync(join(dir, name)).isFile();
      } catch {
        return false;
      }
    });
  } catch {
    return [];
  }
}

async function sourceOf(manifest: ManifestTree): Promise<ManifestSource> {
  const { parseManifest } = await import('../manifest/parse.ts');
  try {
    const parsed = parseManifest(readFileSync(manifest.file, 'utf8'), manifest.file, {
      baseDir: manifest.dir,
    });
    if (parsed.ok) return parsed.source;
  } catch {
    // Not a readable file (a manifest parsed from a string): errors point at 1:1.
  }
  return parseManifest('', manifest.file, { baseDir: manifest.dir }).source;
}

interface Confinement {
  stateDir: string;
  grants: ReadonlyMap<string, Grant>;
  /** Node path → its children's names in start order (providers before consumers). */
  startOrder: ReadonlyMap<string, readonly string[]>;
  /** Confine every process (always, unless the host cannot and the tree allows advisory mode). */
  hide: boolean;
  secretsDir: string;
}

export async function buildTree(manifest: ManifestTree, options: BuildOptions): Promise<RunningTree> {
  const host =
    options.host ??
    (await hostCapabilities({ secrets: availableSecrets(manifest), networks: manifestNetworks(manifest) }));
  const admitted = admitContracts(manifest, host);
  if (!admitted) {
    // Rejected: the full admission again, with the YAML source, says where and why.
    const { admitManifest } = await import('./admission.ts');
    const full = admitManifest(manifest, options.source ?? (await sourceOf(manifest)), host);
    throw new AdmissionError(full.ok ? [] : full.errors);
  }
  // Every child is confined from its supervisor; without mount namespaces (not root) only a tree
  // that allows advisory mode runs, and then only what it hides must be hidden.
  const hide = host.mountNamespaces || needsHiding(manifest.root);
  if (!host.mountNamespaces && (needsHiding(manifest.root) || !manifest.root.policy.allowAdvisory)) {
    throw new Error(
      `${manifest.root.path}: confining its children needs mount namespaces (root), not available here; run as root, or set policy.allowAdvisory: true to run them unconfined`,
    );
  }
  const runtime = await HostRuntime.open({
    stateDir: options.stateDir,
    name: manifest.root.name,
    cgroups: options.cgroups,
  });
  try {
    const confinement: Confinement = {
      stateDir: runtime.stateDir,
      grants: admitted.grants,
      startOrder: admitted.startOrder,
      hide,
      secretsDir: secretsDir(manifest),
    };
    const specs = new Map<string, ChildSpec | NodeSpec>();
    applyNodeLimits(runtime, manifest.root, specs);
    const rootSpec = await supervisorSpec(runtime, manifest.root, options, confinement);
    const supervisor = new Supervisor(rootSpec, { checkpoints: options.checkpoints, holds: options.holds });
    return new Tree(supervisor, runtime, manifest, specs, admitted.caps, host, confinement, options);
  } catch (err) {
    await runtime.close();
    throw err;
  }
}

function needsHiding(spec: ChildSpec | NodeSpec): boolean {
  if (spec.requires.secrets.length > 0) return true;
  if (Object.values(spec.provides).some((p) => p.endpoint.type === 'unix')) return true;
  return spec.kind === 'node' && spec.children.some(needsHiding);
}

/**
 * Where a process child's network grant puts it: the host's namespace (it holds `host`, or the
 * host cannot isolate and the grant is advisory), a fresh namespace with only loopback (it holds
 * none), or the namespace of the one named network it holds. A process holding two named networks
 * cannot be in both namespaces: refused when the tree is built.
 */
export function networkOf(
  path: string,
  grant: Grant | undefined,
  requested: string | null,
): { isolate: boolean; network: string | null } {
  if (!grant) return { isolate: requested === 'none', network: null };
  if (grant.net.includes('host') || grant.advisory.includes('netNamespaces'))
    return { isolate: false, network: null };
  const [first, ...more] = grant.net;
  if (first === undefined) return { isolate: true, network: null };
  if (more.length > 0) {
    throw new Error(
      `${path} holds networks ${grant.net.join(', ')}: a process can be in one named network only; narrow it with net: NAME`,
    );
  }
  return { isolate: false, network: first };
}

function limitsOf(requires: Requires): Limits {
  const limits: Limits = {};
  if (requires.cpu !== null) limits.cpu = requires.cpu;
  if (requires.cpuWeight !== null) limits.cpuWeight = requires.cpuWeight;
  if (requires.memory !== null) limits.memory = requires.memory;
  if (requires.pids !== null) limits.pids = requires.pids;
  return limits;
}

function applyNodeLimits(
  runtime: HostRuntime,
  spec: NodeSpec,
  index: Map<string, ChildSpec | NodeSpec>,
): void {
  index.set(spec.path, spec);
  const limits = limitsOf(spec.requires);
  if (Object.keys(limits).length > 0) runtime.groupFor(spec.path).setLimits(limits);
  for (const child of spec.children) {
    if (child.kind === 'node') applyNodeLimits(runtime, child, index);
    else index.set(child.path, child);
  }
}

async function supervisorSpec(
  runtime: HostRuntime,
  spec: NodeSpec,
  options: BuildOptions,
  confinement: Confinement,
): Promise<SupervisorSpec> {
  // Start order comes from the contract graph (providers first, list order breaking ties), so
  // stop order and the scope of rest_for_one follow the same edges.
  const order = confinement.startOrder.get(spec.path);
  const ordered = order
    ? [...spec.children].sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name))
    : spec.children;
  const children: EngineChild[] = [];
  for (const child of ordered) children.push(await childSpec(runtime, child, options, confinement));
  return {
    name: spec.name,
    strategy: spec.strategy,
    intensity: spec.intensity,
    period: spec.period,
    autoShutdown: spec.autoShutdown,
    maxChildren: spec.maxChildren ?? undefined,
    children,
  };
}

async function childSpec(
  runtime: HostRuntime,
  spec: ChildSpec,
  options: BuildOptions,
  confinement: Confinement,
): Promise<EngineChild> {
  const common = {
    id: spec.name,
    restart: spec.restart,
    shutdown: spec.shutdown,
    significant: spec.significant,
  };
  if (spec.kind === 'node') {
    return { ...common, driver: node(await supervisorSpec(runtime, spec, options, confinement), options) };
  }
  return {
    ...common,
    driver: await processDriverOf(runtime, spec, confinement),
    backoff: spec.backoff ?? undefined,
  };
}

async function processDriverOf(runtime: HostRuntime, spec: ProcessSpec, confinement: Confinement) {
  const grant = confinement.grants.get(spec.path);
  const supervised = supervisorEnv(runtime, spec, grant);
  // The grant says what the child's filesystem holds: without `/` (narrowed by its own
  // `requires.paths` or an ancestor's), exactly those paths (see runtime/confine).
  const view =
    grant && !('/' in grant.paths) && !grant.advisory.includes('mountNamespaces') ? grant.paths : null;
  if (view && !viewHolds(view, spec.cwd)) {
    throw new Error(
      `${spec.path}: cwd ${spec.cwd} is not in its filesystem view (paths: ${Object.keys(view).join(', ') || 'none'}); set cwd to a granted path`,
    );
  }
  const net = networkOf(spec.path, grant, spec.requires.net);
  const plan = planConfinement({
    stateDir: confinement.stateDir,
    path: spec.path,
    services: grant?.services ?? [],
    provides: Object.fromEntries(Object.entries(spec.provides).map(([name, p]) => [name, p.endpoint])),
    secrets: (grant?.secrets ?? spec.requires.secrets).map((name) => ({
      name,
      file: join(confinement.secretsDir, name),
    })),
    readOnly: grant
      ? Object.entries(grant.paths)
          .filter(([, mode]) => mode === 'ro')
          .map(([p]) => p)
      : spec.requires.paths.filter((p) => p.mode === 'ro').map((p) => p.path),
    view,
    hide: confinement.hide,
    alsoHide: existsSync(confinement.secretsDir) ? [confinement.secretsDir] : [],
    isolateNet: net.isolate || net.network !== null,
    keep: [...sessionDirsIn(confinement.stateDir, spec.command), ...supervisorKeeps(supervised)],
    delegate: supervised.CAPTREE_CGROUP ? supervised.CAPTREE_CGROUP.split(':') : [],
  });
  for (const [name, p] of Object.entries(spec.provides)) {
    if (p.endpoint.type === 'unix')
      mkdirSync(serviceDir(confinement.stateDir, spec.path, name), { recursive: true, mode: 0o755 });
  }
  // Mounted back into a confined supervisor child's view of the state dir: it must exist first.
  if (supervised.CAPTREE_LOGS) mkdirSync(supervised.CAPTREE_LOGS, { recursive: true, mode: 0o700 });
  const listenFds: ListenFd[] = [];
  const held = listenHandles(runtime);
  for (const [name, endpoint] of Object.entries(spec.requires.listen)) {
    // A child rebuilt by reconciliation keeps the socket it already listens on (no EADDRINUSE,
    // no dropped connections); a changed address gets a new one.
    const key = `${spec.path}\0${name}`;
    const address = JSON.stringify(endpoint);
    const known = held.get(key);
    if (known && known.address === address) {
      listenFds.push(known.fd);
      continue;
    }
    if (known) await runtime.launcher.closeListen(known.fd.handle).catch(() => {});
    const fd = await runtime.listen(
      endpoint.type === 'tcp'
        ? { tcp: { host: endpoint.host, port: endpoint.port } }
        : { unix: endpoint.path },
      name,
    );
    held.set(key, { address, fd });
    listenFds.push(fd);
  }
  // Kept by reference: a renegotiated grant updates both in place (live-limits.ts).
  const env = { ...spec.env, ...plan.env, ...supervised };
  const limits = limitsOf(spec.requires);
  liveChildren(runtime).set(spec.path, { limits, env });
  const uid = spec.user === null ? undefined : resolveId(spec.user, '/etc/passwd', 'user');
  const privileges = grant?.privileges ?? privilegesOf(spec) ?? [];
  return processDriver(runtime, {
    command: spec.command,
    env,
    inheritEnv: spec.inheritEnv,
    cwd: spec.cwd,
    uid,
    gid:
      spec.group !== null
        ? resolveId(spec.group, '/etc/group', 'group')
        : spec.user !== null
          ? primaryGroupOf(spec.user)
          : undefined,
    stopSignal: spec.stopSignal as NodeJS.Signals,
    killMode: spec.killMode,
    shutdown: spec.shutdown,
    ...(spec.pidFile !== null ? { pidFile: spec.pidFile } : {}),
    permanentExitCodes: spec.permanentExitCodes,
    ready: spec.ready,
    liveness: spec.liveness,
    watchdog: spec.watchdog,
    logs: spec.logs,
    limits,
    isolateNet: net.isolate,
    ...(net.network !== null ? { netns: await runtime.network(net.network) } : {}),
    listenFds,
    ...(plan.mounts ? { mounts: plan.mounts, noNewPrivs: true } : {}),
    ...(plan.credentials ? { credentials: plan.credentials } : {}),
    capabilities: privileges.flatMap((p) => {
      const n = capabilityOf(p);
      return n === undefined ? [] : [n];
    }),
    ...(plan.mounts && !view && runsAsRoot(uid) && !privileges.includes('root')
      ? { writableOnly: writableWithoutRoot(spec) }
      : {}),
  });
}

const listenRegistry = new WeakMap<object, Map<string, { address: string; fd: ListenFd }>>();

/** `path\0name` → the launcher's listening socket for it, per runtime. */
function listenHandles(runtime: HostRuntime): Map<string, { address: string; fd: ListenFd }> {
  let map = listenRegistry.get(runtime);
  if (!map) {
    map = new Map();
    listenRegistry.set(runtime, map);
  }
  return map;
}

function runsAsRoot(uid: number | undefined): boolean {
  return (uid ?? process.getuid?.()) === 0;
}

/**
 * Where a uid 0 child that was not granted `root` may write: the scratch directories, its working
 * directory and the paths it was granted rw; the rest of the host's filesystem is read-only for
 * it (systemd's ProtectSystem=strict), so owning root's files does not let it change them.
 */
function writableWithoutRoot(spec: ProcessSpec): string[] {
  const granted = spec.requires.paths.filter((p) => p.mode === 'rw' && p.path !== '/').map((p) => p.path);
  return [...new Set(['/tmp', '/var/tmp', '/dev/shm', spec.cwd, ...granted])];
}

/** A user or group name (or number) to its numeric id, from the host's passwd/group files. */
export function resolveId(value: string | number, file: string, what: string): number {
  if (typeof value === 'number') return value;
  if (/^\d+$/.test(value)) return Number(value);
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const fields = line.split(':');
    if (fields[0] === value && fields[2] !== undefined) return Number(fields[2]);
  }
  throw new Error(`unknown ${what} ${value} (not in ${file})`);
}

/** A uid with no passwd entry runs in `nogroup`. */
const NOGROUP = 65534;

/**
 * The group of a `user:` child whose manifest names none: the user's own (its passwd entry), as
 * systemd's `User=` does. Never the daemon's: a `user: nobody` child must not keep gid 0 (it
 * would own root's group-writable files).
 */
export function primaryGroupOf(user: string | number, file = '/etc/passwd'): number {
  const byName = typeof user === 'string' && !/^\d+$/.test(user);
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const fields = line.split(':');
    if (fields[3] === undefined) continue;
    if (byName ? fields[0] === user : Number(fields[2]) === Number(user)) return Number(fields[3]);
  }
  return NOGROUP;
}

class Tree implements RunningTree {
  readonly supervisor: Supervisor;
  readonly runtime: HostRuntime;
  manifest: ManifestTree;
  caps: CapTree;
  readonly host: HostCapabilities;
  readonly #specs: Map<string, ChildSpec | NodeSpec>;
  #confinement: Confinement;
  readonly #options: BuildOptions;
  /** Last cpu sample per path, to turn cumulative usage into cores. */
  #cpuSamples = new Map<string, { usec: number; at: number }>();
  readonly #counters = new CounterReader();

  constructor(
    supervisor: Supervisor,
    runtime: HostRuntime,
    manifest: ManifestTree,
    specs: Map<string, ChildSpec | NodeSpec>,
    caps: CapTree,
    host: HostCapabilities,
    confinement: Confinement,
    options: BuildOptions,
  ) {
    this.supervisor = supervisor;
    this.runtime = runtime;
    this.manifest = manifest;
    this.#specs = specs;
    this.caps = caps;
    this.host = host;
    this.#confinement = confinement;
    this.#options = options;
  }

  async engineChild(spec: ChildSpec, admitted: Readmitted): Promise<EngineChild> {
    const confinement = { ...this.#confinement, grants: admitted.grants, startOrder: admitted.startOrder };
    if (spec.kind === 'node') applyNodeLimits(this.runtime, spec, this.#specs);
    else this.#specs.set(spec.path, spec);
    return childSpec(this.runtime, spec, this.#options, confinement);
  }

  nodeDriver(spec: SupervisorSpec): ChildDriver {
    return node(spec, this.#options);
  }

  install(manifest: ManifestTree, admitted: Readmitted): void {
    const paths = (root: NodeSpec) => {
      const index = new Map<string, ChildSpec | NodeSpec>();
      const walk = (n: NodeSpec) => {
        index.set(n.path, n);
        for (const c of n.children)
          if (c.kind === 'node') walk(c);
          else index.set(c.path, c);
      };
      walk(root);
      return index;
    };
    const before = paths(this.manifest.root);
    const after = paths(manifest.root);
    // Run-time children are in neither manifest: they stay indexed.
    for (const [path, spec] of this.#specs) if (!before.has(path) && !after.has(path)) after.set(path, spec);
    this.#specs.clear();
    for (const [path, spec] of after) this.#specs.set(path, spec);
    this.manifest = manifest;
    this.caps = admitted.caps;
    this.#confinement = { ...this.#confinement, grants: admitted.grants, startOrder: admitted.startOrder };
  }

  async forgetManifestChild(path: string): Promise<void> {
    const held = listenHandles(this.runtime);
    for (const [key, { fd }] of [...held])
      if (key.startsWith(`${path}\0`) || key.startsWith(`${path}/`)) {
        held.delete(key);
        await this.runtime.launcher.closeListen(fd.handle).catch(() => {});
      }
    for (const known of [...this.#specs.keys()])
      if (known === path || known.startsWith(`${path}/`)) this.#specs.delete(known);
    liveChildren(this.runtime).delete(path);
    await this.runtime.releaseGroup(path);
  }

  async dynamicChild(spec: ProcessSpec, grant: Grant): Promise<EngineChild> {
    this.#specs.set(spec.path, spec);
    try {
      const confinement = { ...this.#confinement, grants: new Map([[spec.path, grant]]) };
      return {
        id: spec.name,
        restart: spec.restart,
        shutdown: spec.shutdown,
        significant: spec.significant,
        driver: await processDriverOf(this.runtime, spec, confinement),
        backoff: spec.backoff ?? undefined,
      };
    } catch (err) {
      this.#specs.delete(spec.path);
      throw err;
    }
  }

  forgetChild(path: string): Promise<void> {
    if (this.#specs.get(path)?.kind !== 'process') return Promise.resolve();
    this.#specs.delete(path);
    return this.runtime.releaseGroup(path);
  }

  locate(path: string): { supervisor: Supervisor; id: string } | null {
    return this.supervisor.locate(path);
  }

  grant(path: string): Resources['grant'] {
    const spec = this.#specs.get(path);
    // A renegotiated grant is in the live limits; the manifest's otherwise.
    const live = liveChildren(this.runtime).get(path)?.limits;
    return {
      cpu: live?.cpu ?? spec?.requires.cpu ?? null,
      memory: live?.memory ?? spec?.requires.memory ?? null,
      pids: live?.pids ?? spec?.requires.pids ?? null,
    };
  }

  resources(path: string): Resources {
    const grant = this.grant(path);
    let used: Resources['used'] = { cpu: null, memory: null };
    try {
      const usage = this.runtime.groupFor(path).usage();
      const now = performance.now();
      let cpu: number | null = null;
      if (usage.cpuUsec !== null) {
        const last = this.#cpuSamples.get(path);
        if (last && now > last.at) cpu = (usage.cpuUsec - last.usec) / 1000 / (now - last.at);
        this.#cpuSamples.set(path, { usec: usage.cpuUsec, at: now });
      }
      used = { cpu, memory: usage.memoryBytes };
    } catch {
      // A path without a cgroup (yet): usage unknown.
    }
    const drift = this.#specs.get(path)?.kind === 'process' ? this.#drift(path, grant) : [];
    return { grant, used, ...(drift.length > 0 ? { drift } : {}) };
  }

  /** The grant against what the kernel holds: a limit rewritten behind captree's back shows. */
  #drift(path: string, grant: Resources['grant']): LimitDrift[] {
    if (grant.cpu === null && grant.memory === null && grant.pids === null) return [];
    let enforced: ReturnType<CgroupGroup['enforced']>;
    try {
      enforced = this.runtime.groupFor(path).enforced();
    } catch {
      return [];
    }
    const out: LimitDrift[] = [];
    // The kernel's units: a quota of at least 1 ms per period, memory in whole pages.
    const tolerance = { cpu: 0.0051, memory: 4096, pids: 0 } as const;
    for (const q of ['cpu', 'memory', 'pids'] as const) {
      const g = grant[q];
      const e = enforced[q];
      if (g === null || e === undefined) continue;
      const wanted = q === 'cpu' ? Math.max(g, 0.01) : g;
      if (e === null || Math.abs(e - wanted) > tolerance[q])
        out.push({ quantity: q, granted: g, enforced: e });
    }
    return out;
  }

  counters(path: string, want?: number, quota?: boolean): Counters | null {
    if (!this.#inTree(path)) return null;
    const dirs = this.runtime.groupFor(path).dirs;
    if (dirs.length === 0) return null;
    return this.#counters.read(dirs, quota ?? this.grant(path).cpu !== null, want);
  }

  countersPass(begin: boolean): void {
    if (begin) this.#counters.beginPass();
    else this.#counters.endPass();
  }

  retainCounters(paths: readonly string[]): void {
    this.#counters.retain(paths.filter((p) => this.#inTree(p)).map((p) => this.runtime.groupFor(p).dirs));
  }

  #inTree(path: string): boolean {
    const root = this.runtime.rootPath;
    return path === root || path.startsWith(`${root}/`);
  }

  logFiles(path: string): { dir: string; name: string } | null {
    return this.#specs.get(path)?.kind === 'process'
      ? { dir: this.runtime.logsDir, name: logName(path) }
      : null;
  }

  onLog(path: string, fn: (line: string) => void): () => void {
    const log = this.runtime.existingLog(path);
    if (!log) return () => {};
    return log.onRecord((r) => fn(formatRecord(r).trimEnd()));
  }

  reloadOf(path: string): Reload | null {
    const spec = this.#specs.get(path);
    return spec?.kind === 'process' ? (spec.reload ?? null) : null;
  }

  async runInChild(path: string, main: number, command: readonly string[], timeoutMs: number, note: string) {
    this.runtime.existingLog(path)?.note(note);
    const run = await runInChild({
      launcher: this.runtime.launcher,
      group: this.runtime.groupFor(path),
      main,
      command,
      timeoutMs,
      stdout: streamKey(path, 'out'),
      stderr: streamKey(path, 'err'),
    });
    this.runtime.existingLog(path)?.note(`reload: ${describeRun(command, run, timeoutMs)}`);
    return run;
  }

  adoptable(path: string): boolean {
    return this.runtime.adoptable(path);
  }

  async recover(): Promise<{ recovery: Recovery | null; kills: OrphanKill[] }> {
    const recovery = this.runtime.recovery;
    if (recovery === null) return { recovery, kills: [] };
    const kills = await this.runtime.sweep((path) => this.#stateOf(path));
    return { recovery, kills };
  }

  #stateOf(path: string): PathState {
    const spec = this.#specs.get(path);
    if (!spec) return 'absent';
    if (spec.kind === 'node') return 'node';
    const at = this.supervisor.locate(path);
    const child = at?.supervisor.child(at.id);
    if (!at || !child || child.state === 'failed') return 'stopped';
    // Between an exit and its restart a child is `stopped` for a moment (a restart storm): its
    // group is its driver's to clean, and sweeping it could kill the instance starting now.
    if (child.state === 'stopped' && at.supervisor.isHeld(at.id)) return 'stopped';
    return child.state === 'stopped' && at.supervisor.state !== 'ready' ? 'stopped' : 'running';
  }
}
