/**
 * The runtime a supervisor running as a captree child uses for OS-process children of its own:
 * its own launcher (tied to this process: if the supervisor dies, the launcher kills every child's
 * process group), a cgroup per child under the delegated subtree (`delegatedGroup`), and a log per
 * child. It is what `processDriver` needs (`ProcessRuntime`), so the same driver that runs the
 * root's children runs these, readiness, liveness and kill-the-whole-group included.
 *
 * Children's output goes to `<logsDir>/<name>.log` and, by default, is also copied to this
 * process's stdout/stderr prefixed with the child's name, so it reaches the parent's log of the
 * supervisor itself (`captree logs /app/sup`).
 */
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CgroupGroup } from '../runtime/cgroup/index.ts';
import { type AdoptedChild, logName, openChildLog } from '../runtime/host-runtime.ts';
import { Launcher, type NotifyEvent } from '../runtime/launcher/client.ts';
import type { ChildLog, StreamTag } from '../runtime/logs/index.ts';
import type { ProcessRuntime } from '../runtime/process-driver.ts';
import { delegatedGroup } from './cgroup.ts';

export interface ChildRuntimeOptions {
  /** This supervisor's tree path (CAPTREE_PATH); its children are `<path>/<id>`. */
  path: string;
  /** The delegated cgroup directories (CAPTREE_CGROUP); empty: process groups only. */
  cgroupDirs: readonly string[];
  /** Default: CAPTREE_LOGS (set by the parent: beside the tree's logs), else under the temporary directory. */
  logsDir?: string;
  /** Copy children's output to this process's stdout/stderr (default true). */
  forwardOutput?: boolean;
}

export class ChildRuntime implements ProcessRuntime {
  readonly path: string;
  readonly launcher: Launcher;
  /** The group every child's group is created under (`<delegated>/children`). */
  readonly root: CgroupGroup;
  readonly logsDir: string;
  #groups = new Map<string, CgroupGroup>();
  #logs = new Map<string, ChildLog>();
  #notify = new Map<number, (n: NotifyEvent) => void>();
  #forward: boolean;
  #closed = false;

  private constructor(options: ChildRuntimeOptions, launcher: Launcher, root: CgroupGroup, logsDir: string) {
    this.path = options.path;
    this.launcher = launcher;
    this.root = root;
    this.logsDir = logsDir;
    this.#forward = options.forwardOutput ?? true;
    launcher.on('notify', (n) => this.#notify.get(n.pid)?.(n));
    launcher.on('output', ({ key, data }) => {
      const hash = key.lastIndexOf('#');
      this.#logs.get(key.slice(0, hash))?.push(key.slice(hash + 1) as StreamTag, data);
    });
  }

  static async open(options: ChildRuntimeOptions): Promise<ChildRuntime> {
    const logsDir =
      options.logsDir ?? process.env.CAPTREE_LOGS ?? join(tmpdir(), `captree-child-${logName(options.path)}`);
    mkdirSync(logsDir, { recursive: true, mode: 0o700 });
    // The group first: on v2 it moves this process into a leaf, and the launcher follows it there.
    const root = delegatedGroup(options.cgroupDirs);
    let launcher: Launcher;
    try {
      // No socket path: the launcher lives and dies with this process. Its runtime dir sits in
      // our logs dir, not /tmp: a kill -9 of our cgroup takes the launcher down before it can
      // remove its own dir, and the state dir is where leftovers of this tree belong.
      const runtimeDir = join(logsDir, '.launcher');
      mkdirSync(runtimeDir, { recursive: true, mode: 0o700 });
      launcher = await Launcher.start({ runtimeDir });
    } catch (err) {
      await root.remove().catch(() => {});
      throw err;
    }
    return new ChildRuntime(options, launcher, root, logsDir);
  }

  /** The group of `path` (this supervisor's own path: the root group), nested like the tree. */
  groupFor(path: string): CgroupGroup {
    if (path === this.path) return this.root;
    const known = this.#groups.get(path);
    if (known) return known;
    const cut = path.lastIndexOf('/');
    if (!path.startsWith(`${this.path}/`)) throw new Error(`${path} is not below ${this.path}`);
    const group = this.groupFor(path.slice(0, cut)).createChild(path.slice(cut + 1), { reuse: true });
    this.#groups.set(path, group);
    return group;
  }

  /** Nothing to adopt: the launcher is this process's own. */
  adopt(_path: string): AdoptedChild | null {
    return null;
  }

  noteLeftovers(_path: string, _pids: readonly number[]): void {}

  logFor(path: string, options: { maxSize: number; keep: number }): ChildLog {
    let log = this.#logs.get(path);
    if (!log) {
      log = openChildLog(this.logsDir, path, options);
      this.#logs.set(path, log);
      if (this.#forward) {
        const name = path.slice(path.lastIndexOf('/') + 1);
        log.onRecord((r) => {
          const out = r.stream === 'err' ? process.stderr : process.stdout;
          out.write(`[${name}] ${r.stream === 'sys' ? `(captree) ${r.text}` : r.text}\n`);
        });
      }
    }
    return log;
  }

  onNotify(pid: number, fn: (n: NotifyEvent) => void): () => void {
    this.#notify.set(pid, fn);
    return () => {
      if (this.#notify.get(pid) === fn) this.#notify.delete(pid);
    };
  }

  /** Kills whatever is left in the children's groups, removes them, stops the launcher. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.launcher.close().catch(() => {});
    if (!this.root.isEmpty()) {
      await this.root.kill().catch(() => {});
      await this.root.waitEmpty(AbortSignal.timeout(5000)).catch(() => {});
    }
    await this.root.remove().catch(() => {});
    await Promise.all([...this.#logs.values()].map((l) => l.close()));
  }
}
