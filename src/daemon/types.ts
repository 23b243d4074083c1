/**
 * The daemon's view of a running tree. `build-tree.ts` (the runtime side) produces it; the
 * daemon, the control API and `ps` only consume it. Declared here structurally so the control
 * plane can be exercised with an in-process tree of tasks, without processes or cgroups.
 */
import type { HoldStore, Supervisor } from '../core/index.ts';
import type { ManifestTree, Reload } from '../manifest/index.ts';
import type { Counters } from '../runtime/cgroup/counters.ts';
import type { LauncherTrouble } from '../runtime/host-runtime.ts';
import type { LogTrouble } from '../runtime/logs/index.ts';
import type { RunResult } from '../runtime/run-in-child.ts';
import type { JournalHealth } from './journal.ts';

export interface Resources {
  /** Cores, bytes, count granted; null = unlimited. */
  grant: { cpu: number | null; memory: number | null; pids: number | null };
  /** Measured usage (cores, bytes); null = unknown. */
  used: { cpu: number | null; memory: number | null };
  /** Where the cgroup holds another limit than the grant (someone rewrote it): what each says. */
  drift?: LimitDrift[];
}

export interface LimitDrift {
  quantity: 'cpu' | 'memory' | 'pids';
  granted: number;
  /** What the cgroup file says; null: unlimited. */
  enforced: number | null;
}

export interface RunningTree {
  readonly supervisor: Supervisor;
  /** Closed after the supervisor stopped: removes cgroups, stops the launcher. */
  readonly runtime: {
    close(): Promise<void>;
    /** Hears that a child's log file cannot be written (records dropped), or can again. */
    onLogTrouble?: ((path: string, t: LogTrouble) => void) | undefined;
    /** Hears that the launcher was lost, and replaced (or could not be). */
    onLauncherTrouble?: ((t: LauncherTrouble) => void) | undefined;
  };
  locate(path: string): { supervisor: Supervisor; id: string } | null;
  /**
   * After a daemon restart: whether the launcher still runs `path`'s instance (it will be adopted).
   * Absent: an in-process tree, where nothing outlives the daemon.
   */
  adoptable?(path: string): boolean;
  resources(path: string): Resources;
  /** The grant alone, without reading usage (metrics read the counters themselves). */
  grant?(path: string): Resources['grant'];
  /**
   * The kernel's counters for a path's cgroup, read now (`GET /metrics`); null without a cgroup.
   * `want`: which (`Want` bits of runtime/cgroup/counters.ts, default all); `quota`: whether it has
   * a cpu limit (looked up if not given). Absent: an in-process tree (no cgroups).
   */
  counters?(path: string, want?: number, quota?: boolean): Counters | null;
  /** Brackets one scrape's reads (host-wide figures that spare per-group reads are taken once). */
  countersPass?(begin: boolean): void;
  /** After a scrape: closes the counter files of paths not in `paths`. */
  retainCounters?(paths: readonly string[]): void;
  logFiles(path: string): { dir: string; name: string } | null;
  onLog(path: string, fn: (line: string) => void): () => void;
  /** A process child's declared `reload:` (null: none); absent: an in-process tree. */
  reloadOf?(path: string): Reload | null;
  /**
   * Runs `command` in a process child's confinement (runtime/run-in-child.ts) with `main` the
   * host pid of its main process; `note` goes to the child's log first. Absent: in-process tree.
   */
  runInChild?(
    path: string,
    main: number,
    command: readonly string[],
    timeoutMs: number,
    note: string,
  ): Promise<RunResult>;
  /**
   * Once the tree has started: what an earlier daemon left behind and the processes killed
   * because nothing supervises them. Absent: nothing to recover (an in-process tree).
   */
  recover?(): Promise<RecoveryReport>;
}

export interface RecoveryReport {
  /** Null on a fresh start. */
  recovery: {
    launcherPid: number;
    found: readonly { path: string; pid: number }[];
    exitedOffline: readonly {
      pid: number;
      code: number | null;
      signal: string | null;
      path: string | null;
    }[];
  } | null;
  kills: readonly { pid: number; path: string; why: string }[];
}

export type TreeBuilder = (
  tree: ManifestTree,
  options: { stateDir: string; holds?: HoldStore },
) => Promise<RunningTree>;

/** One row of `ps --json`: a node or a child. */
export interface PsEntry {
  path: string;
  /** Depth below the root (root = 0), for indentation. */
  depth: number;
  kind: 'node' | 'process' | 'task' | 'worker';
  state: string;
  pid: number | null;
  uptimeMs: number | null;
  restarts: number;
  /** Up and serving: declared ready, or running with no readiness check. */
  ready: boolean;
  grant: Resources['grant'];
  used: Resources['used'];
  /** Why it last exited, in words; null if it never did. */
  lastExit: string | null;
  /** Limits the cgroup holds that differ from the grant; absent when none. */
  drift?: LimitDrift[];
}

/** Facts about the daemon itself (`GET /v1/daemon`). */
export interface DaemonInfo {
  pid: number;
  name: string;
  manifest: string;
  stateDir: string;
  /** ms epoch. */
  startedAt: number;
  state: string;
  version: string;
  /** `http://HOST:PORT` when the API is also served on TCP (`up --listen`), else null. */
  tcp: string | null;
  /** `http://HOST:PORT` of the dashboard (`up --web`), else null. */
  web: string | null;
  /** Whether events reach the journal file (a full disk degrades it to memory). */
  journal: JournalHealth;
}

/** The JSON error body of every failed API call. */
export interface ApiError {
  error: { code: string; message: string };
}
