/**
 * The driver-neutral shape of a cgroup (or, without cgroups, a process-group stand-in) as the rest
 * of the runtime sees it. The launcher only needs `procsFiles`; supervision needs kill, emptiness
 * and accounting; admission needs to know whether a limit was enforced or merely recorded.
 */

/**
 * Limits for one group. `undefined` leaves a limit unchanged, `null` removes it.
 * cpu: cores (0.2 = 20% of one CPU), cpuWeight: 1..10000 (v2 scale, default 100),
 * memory: bytes (RAM; swap is pinned to zero where the kernel allows, so the limit is real),
 * pids: processes and threads.
 */
export interface Limits {
  cpu?: number | null;
  cpuWeight?: number | null;
  memory?: number | null;
  pids?: number | null;
}

/** For each limit that was asked for: the mechanism that now enforces it, or `not enforced`. */
export type AppliedLimits = Partial<Record<keyof Limits, 'cgroup v2' | 'cgroup v1' | 'not enforced'>>;

/** Null where this host cannot measure the quantity for a group. */
export interface Usage {
  cpuUsec: number | null;
  memoryBytes: number | null;
  pids: number | null;
}

export interface CreateOptions {
  /**
   * Reuse a directory that already exists (re-adopting children after a daemon restart). Without
   * it an existing directory is an error: two supervisors sharing a group would kill each other's
   * children.
   */
  reuse?: boolean;
}

export interface CgroupGroup {
  readonly name: string;
  /** Slash-joined names from the root group, e.g. `shop/db`. */
  readonly path: string;
  readonly driver: 'v2' | 'hybrid' | 'v1' | 'none';
  /**
   * Every `cgroup.procs` file a new process must be written into (one per hierarchy), in the
   * order to write them. Empty for the none driver, where the process must instead be started as
   * a process-group leader and handed to `track()`.
   */
  readonly procsFiles: readonly string[];
  /** Directories of this group, one per hierarchy. */
  readonly dirs: readonly string[];
  createChild(name: string, options?: CreateOptions): CgroupGroup;
  /**
   * Writes limits. Ordering across a tree is the caller's job on v1 (the kernel rejects a child
   * cpu quota above its parent's, and a parent quota below an existing child's, with EINVAL):
   * when raising, set the parent before its children; when lowering, set the children before
   * the parent. v2 accepts any order and caps children at their parent.
   */
  setLimits(limits: Limits): AppliedLimits;
  /** The limits the kernel holds now, read back (cores, bytes, count; null: unlimited; undefined: not enforced here). */
  enforced(): { cpu?: number | null; memory?: number | null; pids?: number | null };
  usage(): Usage;
  /** Processes the kernel OOM-killed in this group and its descendants. */
  oomKills(): number;
  /** Pids in this group and all its descendants. */
  pids(): number[];
  /** For the none driver: remember a process-group leader. Cgroup drivers ignore it. */
  track(pid: number): void;
  /** Kills everything in the group and its descendants; resolve does not imply empty yet. */
  kill(): Promise<void>;
  isEmpty(): boolean;
  /** Resolves when no process is left in the group or its descendants. */
  waitEmpty(signal?: AbortSignal): Promise<void>;
  /** Removes the group and its descendants (children first). The group must be empty. */
  remove(): Promise<void>;
}

/** A cgroup operation that failed, with the file, the value and what usually causes it. */
export class CgroupError extends Error {
  readonly file: string;
  readonly code: string | undefined;
  readonly hint: string | undefined;
  constructor(message: string, file: string, code?: string, hint?: string, cause?: unknown) {
    super(hint ? `${message}: ${hint}` : message, { cause });
    this.name = 'CgroupError';
    this.file = file;
    this.code = code;
    this.hint = hint;
  }
}
