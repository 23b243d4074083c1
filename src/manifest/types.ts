/**
 * The typed tree a manifest becomes: every default applied, units resolved (durations in
 * milliseconds, sizes in bytes, cpu in cores) and every node and child carrying its absolute
 * path (`/shop/db`). Plain data, so layers above can compare, serialise and journal it.
 */
import type { AUTO_SHUTDOWNS, KILL_MODES, PRIORITIES, RESTART_TYPES, SIGNALS, STRATEGIES } from './schema.ts';

export type Strategy = (typeof STRATEGIES)[number];
export type RestartType = (typeof RESTART_TYPES)[number];
export type AutoShutdown = (typeof AUTO_SHUTDOWNS)[number];
export type Signal = (typeof SIGNALS)[number];
export type KillMode = (typeof KILL_MODES)[number];
export type Priority = (typeof PRIORITIES)[number];
/** Milliseconds to wait after the stop signal, or kill at once, or wait forever. */
export type Shutdown = number | 'brutal' | 'infinity';

export type Endpoint = { type: 'tcp'; host: string; port: number } | { type: 'unix'; path: string };

export interface PathGrant {
  /** Absolute: relative paths are resolved against the manifest's directory. */
  path: string;
  mode: 'ro' | 'rw';
}

/**
 * What a child asks of its parent. A quantity left out (null) reserves nothing: the child shares
 * the parent's unreserved remainder. `net: null` inherits the parent's network.
 */
export interface Requires {
  /** Cores. */
  cpu: number | null;
  cpuWeight: number | null;
  /** Bytes. */
  memory: number | null;
  pids: number | null;
  /** 'none' | 'host' | 'any' | a network name; null inherits. */
  net: string | null;
  services: string[];
  /** Listening sockets by name, passed as LISTEN_FDS with LISTEN_FDNAMES = the names. */
  listen: Record<string, Endpoint>;
  paths: PathGrant[];
  secrets: string[];
  env: string[];
  /** Canonical privileges named (caps/privileges.ts); null: none named (a node passes on its parent's). */
  privileges: string[] | null;
}

export interface ProvidedService {
  endpoint: Endpoint;
  kind: string | null;
}

export interface Policy {
  /** Capability combinations no descendant may hold together. */
  never: string[][];
  maxDepth: number | null;
  allowAdvisory: boolean;
}

interface ChildCommon {
  name: string;
  /** Absolute: `/root/child/grandchild`. */
  path: string;
  restart: RestartType;
  shutdown: Shutdown;
  significant: boolean;
  requires: Requires;
  provides: Record<string, ProvidedService>;
}

export interface NodeSpec extends ChildCommon {
  kind: 'node';
  strategy: Strategy;
  intensity: number;
  /** Milliseconds. */
  period: number;
  autoShutdown: AutoShutdown;
  maxChildren: number | null;
  policy: Policy;
  /** null: closed; an object (possibly empty): open to `captree admit` with these rules. */
  admission: AdmissionRules | null;
  /** `reconcile:` as written (absent: inherited from the parent; see src/reconcile/auto.ts). */
  reconcile?: ReconcileRules;
  children: ChildSpec[];
}

/**
 * A node's `reconcile:` rules, each key as written (a key left out is inherited from the nearest
 * ancestor that sets it, else its default). Durations in ms.
 */
export interface ReconcileRules {
  /** `recommend` (the default): journal what to do; `auto`: do `reconcile_required` itself. */
  mode?: 'recommend' | 'auto';
  /** At most this many automatic actions per `per` in the subtree (default 3 per 10 min). */
  maxActions?: number;
  per?: number;
  /** When given, automatic actions only inside one of these windows. */
  allow?: ReconcileWindow[];
  /** Never inside one of these windows. */
  deny?: ReconcileWindow[];
  /** How often limits are read back in an auto subtree (cgroupfs sends no event; default 30s). */
  checkEvery?: number;
}

/** A window: opens at each minute `cron` matches (UTC), stays open `duration` ms. */
export interface ReconcileWindow {
  cron: string;
  duration: number;
}

/** A node's `admission:` rules; a key left out is absent (no limit, no template, no tokens). */
export interface AdmissionRules {
  /** Children admitted at run time at most. */
  maxChildren?: number;
  /** The most one request may reserve (cores, bytes, count). */
  maxGrant?: { cpu?: number; memory?: number; pids?: number };
  /** Process fields merged under every request, as written (validated as a partial process). */
  template?: Record<string, unknown>;
  /** Token files (absolute paths); when given, every request must carry one of their contents. */
  tokens?: { name: string; file: string }[];
}

/** Readiness and liveness declarations, shared with the process driver that carries them out. */
import type { LivenessSpec, ReadySpec } from '../runtime/readiness/spec.ts';

export type Ready = ReadySpec;
export type Liveness = LivenessSpec;

export interface Backoff {
  initial: number;
  max: number;
  factor: number;
  resetAfter: number;
}

export interface ProcessSpec extends ChildCommon {
  kind: 'process';
  /** argv; a string command becomes ['/bin/sh', '-c', command]. */
  command: string[];
  env: Record<string, string>;
  /** Names inherited from captree's environment beyond PATH, LANG, TZ, HOME; true: everything. */
  inheritEnv: string[] | true;
  /** Absolute. */
  cwd: string;
  user: string | number | null;
  group: string | number | null;
  stopSignal: Signal;
  /** What `captree reload` does; null or absent: nothing declared (reload is refused). */
  reload?: Reload | null;
  /** Who gets the stop signal: every process of the child, or its main process (systemd's KillMode=). */
  killMode: KillMode;
  /** Absolute: where a forking daemon writes its main pid (systemd's PIDFile=), or null. */
  pidFile: string | null;
  /** null: restart at once (`backoff: false`). */
  backoff: Backoff | null;
  permanentExitCodes: number[];
  /** null: ready as soon as it is started. */
  ready: Ready | null;
  liveness: Liveness | null;
  /** Milliseconds between required WATCHDOG=1 messages; null: no watchdog. */
  watchdog: number | null;
  logs: { maxSize: number; keep: number };
  /** Gets a channel to its parent, its grant and its cgroup subtree in its environment (docs/protocol.md). */
  supervisor: boolean;
  /** Who gives back first when a sibling asks for more: `low`, then `normal`, then `high`. */
  priority: Priority;
}

/** A signal to the child's main process, or a command run in its confinement (ms timeout). */
export type Reload =
  | { type: 'signal'; signal: Signal }
  | { type: 'exec'; command: string[]; timeout: number };

export type ChildSpec = NodeSpec | ProcessSpec;

/** A named network's options (none yet). */
export type NetworkSpec = Record<string, never>;

export interface ManifestTree {
  /** The manifest's file name as given to the parser. */
  file: string;
  /** Absolute directory relative paths were resolved against. */
  dir: string;
  root: NodeSpec;
  /** The root's `networks:` (named networks the tree holds); absent when none are declared. */
  networks?: Record<string, NetworkSpec>;
}

/** A path into the YAML document: keys and list indexes, e.g. ['children', 0, 'requires', 'cpu']. */
export type YamlPath = (string | number)[];

export interface ManifestError {
  file: string;
  /** 1-based. */
  line: number;
  /** 1-based. */
  col: number;
  /** The tree path of the node or child concerned (`/shop/db`), or '' for whole-file errors. */
  path: string;
  /** The field within it (`requires.cpu`), or '' when the child itself is at fault. */
  field: string;
  /** What is wrong and how to fix it. */
  message: string;
}
