/**
 * One tree's hold on the host: its launcher (which spawns, reaps and outlives the daemon), its
 * cgroup subtree (one group per node and per process child, nested like the tree so the kernel
 * enforces the hierarchy too) and its per-child logs.
 *
 * Hazards:
 * - The root cgroup's name is derived from the state directory, so a restarted daemon finds (and
 *   re-adopts) the same groups, while two trees on one host never share one.
 * - Output reaches a child's log through a launcher stream keyed by the child's path; the pipe
 *   behind a key lives as long as the launcher, so a restart of the child loses nothing.
 */
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { type CgroupGroup, type CgroupHost, probeCgroups } from './cgroup/index.ts';
import { credentialsDir, servicesDir } from './confine/index.ts';
import { Launcher, type NotifyEvent } from './launcher/client.ts';
import { ChildLog, type StreamTag } from './logs/index.ts';

export interface HostRuntimeOptions {
  /** Where the launcher socket, sd_notify sockets and logs live. */
  stateDir: string;
  /** The tree's root name; part of the cgroup name. */
  name: string;
  /** `none`: no cgroups (process groups only), whatever the host offers. */
  cgroups?: 'auto' | 'none';
}

export interface LogOptions {
  maxSize: number;
  keep: number;
}

/** Stream key of a child's stdout or stderr at the launcher. */
export function streamKey(path: string, tag: 'out' | 'err'): string {
  return `${path}#${tag}`;
}

export class HostRuntime {
  readonly stateDir: string;
  readonly logsDir: string;
  readonly launcher: Launcher;
  readonly cgroups: CgroupHost;
  readonly root: CgroupGroup;
  readonly rootPath: string;
  #groups = new Map<string, CgroupGroup>();
  #logs = new Map<string, ChildLog>();
  #closed = false;
  #notify = new Map<number, (n: NotifyEvent) => void>();

  private constructor(
    stateDir: string,
    launcher: Launcher,
    cgroups: CgroupHost,
    root: CgroupGroup,
    rootPath: string,
  ) {
    this.stateDir = stateDir;
    this.logsDir = join(stateDir, 'logs');
    this.launcher = launcher;
    this.cgroups = cgroups;
    this.root = root;
    this.rootPath = rootPath;
    this.#groups.set(rootPath, root);
    // One listener dispatching by pid: a listener per child would make every notification O(children).
    launcher.on('notify', (n) => this.#notify.get(n.pid)?.(n));
    launcher.on('output', ({ key, data }) => {
      const hash = key.lastIndexOf('#');
      const log = this.#logs.get(key.slice(0, hash));
      log?.push(key.slice(hash + 1) as StreamTag, data);
    });
  }

  static async open(options: HostRuntimeOptions): Promise<HostRuntime> {
    const stateDir = resolve(options.stateDir);
    mkdirSync(join(stateDir, 'logs'), { recursive: true });
    mkdirSync(join(stateDir, 'run'), { recursive: true, mode: 0o700 });
    // Mount points a confined child finds covered (see runtime/confine): they must exist.
    mkdirSync(servicesDir(stateDir), { recursive: true, mode: 0o755 });
    mkdirSync(credentialsDir(stateDir), { recursive: true, mode: 0o711 });
    const cgroups = probeCgroups(options.cgroups === 'none' ? { force: 'none' } : {});
    const tag = createHash('sha256').update(stateDir).digest('hex').slice(0, 8);
    const root = cgroups.createRoot(`captree-${options.name}-${tag}`, { reuse: true });
    const launcher = await Launcher.start({
      socketPath: join(stateDir, 'launcher.sock'),
      runtimeDir: join(stateDir, 'run'),
    });
    return new HostRuntime(stateDir, launcher, cgroups, root, `/${options.name}`);
  }

  /** Routes sd_notify messages of `pid` to `fn`; returns the function that stops it. */
  onNotify(pid: number, fn: (n: NotifyEvent) => void): () => void {
    this.#notify.set(pid, fn);
    return () => {
      if (this.#notify.get(pid) === fn) this.#notify.delete(pid);
    };
  }

  /** The cgroup of a tree path, created (or re-adopted) on first use under its parent's. */
  groupFor(path: string): CgroupGroup {
    const known = this.#groups.get(path);
    if (known) return known;
    const cut = path.lastIndexOf('/');
    if (cut <= 0 || !path.startsWith(`${this.rootPath}/`)) {
      throw new Error(`${path} is not inside this tree (${this.rootPath})`);
    }
    const group = this.groupFor(path.slice(0, cut)).createChild(path.slice(cut + 1), { reuse: true });
    this.#groups.set(path, group);
    return group;
  }

  /** The log of a process child, created on first use; it outlives the child's restarts. */
  logFor(path: string, options: LogOptions): ChildLog {
    let log = this.#logs.get(path);
    if (!log) {
      log = new ChildLog({
        dir: this.logsDir,
        name: logName(path),
        maxBytes: options.maxSize,
        keep: options.keep,
      });
      this.#logs.set(path, log);
    }
    return log;
  }

  existingLog(path: string): ChildLog | undefined {
    return this.#logs.get(path);
  }

  /**
   * Kills whatever is left in the tree's cgroups, removes them, closes logs and shuts the
   * launcher down. Call after the supervisor has stopped: then nothing should be left.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.launcher.close().catch(() => {});
    if (!this.root.isEmpty()) {
      await this.root.kill();
      await this.root.waitEmpty(AbortSignal.timeout(5000)).catch(() => {});
    }
    await this.root.remove().catch(() => {});
    await Promise.all([...this.#logs.values()].map((log) => log.close()));
  }

  /** Leaves children running under the launcher (for a daemon that will re-attach). */
  async detach(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.launcher.disconnect();
    await Promise.all([...this.#logs.values()].map((log) => log.close()));
  }
}

/** `/shop/db` → `shop.db` (the file base name of its log). */
export function logName(path: string): string {
  return path.slice(1).replaceAll('/', '.');
}
