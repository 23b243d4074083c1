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
 *
 * Recovery after the daemon died (`kill -9` included): the launcher (started with a socket in the
 * state dir) outlived it and kept the children. `open()` re-attaches and surveys what it holds:
 * every live launcher child, by the tree path the launcher recorded when it spawned it (its tag,
 * in the launcher's memory, which the child cannot touch: never its environment or its title,
 * which daemons like redis and nginx overwrite), becomes adoptable (the process driver takes it
 * instead of spawning, once: `adopt()`, which also requires it to be in that path's cgroup), and
 * the exits the launcher queued meanwhile are kept in `recovery`. Once the tree has started,
 * `sweep()` kills whatever is left that nothing supervises: launcher children nobody adopted, and
 * processes in the tree's cgroups outside a running child's group (held or removed children,
 * strays in node groups).
 *
 * Launcher loss (`kill -9` of the launcher, the OOM killer): its connection closes, every child
 * it ran is ended by its driver (its cgroup killed: what the launcher forked outlives it, orphaned
 * to init) and reported `crashed` with reason `launcher_lost`, which its supervisor restarts
 * without counting against the intensity. Meanwhile a new launcher is started on the same socket
 * (`launcherReady()`: drivers wait for it before reporting the exit and before spawning), and the
 * listening sockets the old one held are opened again on first use (`refreshListen()`), once the
 * processes that shared them are gone. Named networks are bind mounts: they outlive the launcher.
 *
 * Named networks (`network()`): one network namespace per name, with only `lo` (up), held by a
 * bind mount at `<state>/netns/<name>` (made by the launcher) and joined by the processes granted
 * it. A re-attached runtime finds them there and uses them again, so adopted and new children
 * share one; `sweep()` removes those this tree no longer uses, `close()` all of them (`detach()`
 * keeps them for the next daemon).
 */

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmdirSync, unlinkSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { type CgroupGroup, type CgroupHost, probeCgroups } from './cgroup/index.ts';
import { credentialsDir, servicesDir } from './confine/index.ts';
import {
  type ExitEvent,
  Launcher,
  type ListenSpec,
  type NotifyEvent,
  type SpawnResult,
} from './launcher/client.ts';
import { ChildLog, type LogTrouble, type StreamTag } from './logs/index.ts';

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

/** A child still running under a re-attached launcher, taken over by a new daemon. */
export type AdoptedChild = Omit<SpawnResult, 'forkedAtNs'>;

/** The pids in a cgroup.procs file of a group's, or [] when unreadable. */
function procsOf(file: string): number[] {
  try {
    return readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map(Number);
  } catch {
    return [];
  }
}

/** What happened to the launcher: it was lost, then replaced (`pid`) or could not be (`pid` null). */
export type LauncherTrouble =
  | { state: 'lost'; pid: number; error: string }
  | { state: 'restarted'; pid: number | null; ms: number; error?: string };

/**
 * A listening socket held by the launcher, passed to a child by `handle` (`ProcessOptions.listenFds`):
 * after a launcher loss the runtime opens it again and updates `handle` in place.
 */
export interface ListenFd {
  handle: number;
  readonly name: string;
}

interface HeldListen extends ListenFd {
  spec: ListenSpec;
  /** The launcher that holds `handle`. */
  holder: Launcher;
}

/** How long a listening socket is retried after a launcher loss (its old holders are still dying). */
const RELISTEN_MS = 5000;

/** What a re-attached launcher (or a non-empty cgroup subtree) held when the runtime opened. */
export interface Recovery {
  /** The launcher was already running (it outlived the daemon that started it). */
  reattached: boolean;
  launcherPid: number;
  /** Live launcher children by tree path, as found (adoption removes nothing from here). */
  found: { path: string; pid: number }[];
  /**
   * Children that exited while no daemon was attached (the launcher queued their exits), or
   * between the survey and their adoption; `path` is null when only the pid is known.
   */
  exitedOffline: (Pick<ExitEvent, 'pid' | 'code' | 'signal'> & { path: string | null })[];
}

/**
 * How the tree sees a path when sweeping: a process child with a current instance (left alone),
 * a node (processes directly in its group are strays), a process child with no instance (held,
 * failed), or a path the tree no longer has.
 */
export type PathState = 'running' | 'node' | 'stopped' | 'absent';

/** A process killed by `sweep()` because nothing supervised it. */
export interface OrphanKill {
  pid: number;
  /** Its tree path (`CAPTREE_PATH`, else the group it was found in). */
  path: string;
  why: string;
}

/**
 * The tree path in a process's environment (`CAPTREE_PATH`), or null if unreadable. For the
 * outer process or the init of a confined child (forked by the launcher, never exec'd), the
 * program's, found below them. A diagnostic only: the child can overwrite its environment (a
 * daemon rewriting its title does), so identity comes from the launcher's tags and cgroups.
 */
export function captreePathOf(pid: number, depth = 2): string | null {
  try {
    const env = readFileSync(`/proc/${pid}/environ`, 'latin1');
    for (const entry of env.split('\0')) {
      if (entry.startsWith('CAPTREE_PATH=')) return Buffer.from(entry.slice(13), 'latin1').toString('utf8');
    }
    // A confined child's outer process and the init of its PID namespace never exec (their
    // environment is the launcher's): the program, one or two levels down, says whose they are.
    if (depth > 0 && readFileSync(`/proc/${pid}/comm`, 'latin1').startsWith('captree-launche')) {
      const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'latin1').trim().split(' ');
      if (children.length === 1 && children[0]) return captreePathOf(Number(children[0]), depth - 1);
    }
  } catch {
    // Gone, or not ours to read.
  }
  return null;
}

/** Where the named networks of a tree's runtime are held: `<state>/netns/<name>`. */
export function netnsDir(stateDir: string): string {
  return join(stateDir, 'netns');
}

const NETWORK_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** Output kept for a stream key whose log does not exist yet (an adopted child's, after a re-attach). */
const PENDING_OUTPUT_MAX = 1 << 20;

export class HostRuntime {
  readonly stateDir: string;
  readonly logsDir: string;
  #launcher: Launcher;
  readonly cgroups: CgroupHost;
  readonly root: CgroupGroup;
  readonly rootPath: string;
  #groups = new Map<string, CgroupGroup>();
  #logs = new Map<string, ChildLog>();
  #onLogTrouble: ((path: string, t: LogTrouble) => void) | undefined;
  #closed = false;
  #notify = new Map<number, (n: NotifyEvent) => void>();
  /** Path → pid (and main pid) of a live launcher child not yet adopted; emptied by `sweep()`. */
  #adoptable = new Map<string, { pid: number; main: number }>();
  /** Launcher pid → its tag, from the survey: how `sweep()` names what it kills. */
  #tags = new Map<number, string>();
  /** Every exit the launcher reported since the re-attach, until `sweep()`. */
  #recentExits: Map<number, ExitEvent> | null = null;
  #pendingOutput = new Map<string, { tag: StreamTag; data: Buffer }[]>();
  #pendingBytes = 0;
  /** Leftovers the process driver killed in a group before spawning, during the recovery. */
  #leftovers: OrphanKill[] = [];
  /** Set by `open()` when there was something to recover; null on a fresh start. */
  recovery: Recovery | null = null;
  /** Named networks in use by this runtime: name → the file holding its namespace, once made. */
  #networks = new Map<string, Promise<string>>();
  readonly #launcherOptions: { socketPath: string; runtimeDir: string };
  /** The start of a new launcher after a loss, until it settles (then null, or kept while failed). */
  #replacing: Promise<Launcher> | null = null;
  #onLauncherTrouble: ((t: LauncherTrouble) => void) | undefined;
  /** Listening sockets by handle object, to open again on a new launcher. */
  #listens = new WeakSet<ListenFd>();

  private constructor(
    stateDir: string,
    launcher: Launcher,
    cgroups: CgroupHost,
    root: CgroupGroup,
    rootPath: string,
  ) {
    this.stateDir = stateDir;
    this.logsDir = join(stateDir, 'logs');
    this.#launcher = launcher;
    this.#launcherOptions = launcherOptionsFor(stateDir);
    this.cgroups = cgroups;
    this.root = root;
    this.rootPath = rootPath;
    this.#groups.set(rootPath, root);
    this.#listenTo(launcher);
    // Registered before the launcher's queued frames are dispatched (they wait one macrotask).
    if (launcher.reattached) {
      const exits = new Map<number, ExitEvent>();
      this.#recentExits = exits;
      launcher.on('exited', (ev) => {
        if (this.#recentExits === exits) exits.set(ev.pid, ev);
      });
    }
  }

  /** The launcher children are spawned by now (a new one after a loss). */
  get launcher(): Launcher {
    return this.#launcher;
  }

  #listenTo(launcher: Launcher): void {
    // One listener dispatching by pid: a listener per child would make every notification O(children).
    launcher.on('notify', (n) => this.#notify.get(n.pid)?.(n));
    launcher.on('output', ({ key, data }) => {
      const hash = key.lastIndexOf('#');
      const path = key.slice(0, hash);
      const tag = key.slice(hash + 1) as StreamTag;
      const log = this.#logs.get(path);
      if (log) log.push(tag, data);
      else if (this.#pendingBytes + data.length <= PENDING_OUTPUT_MAX) {
        // A re-attached launcher forwards what adopted children wrote before their log is open.
        const queue = this.#pendingOutput.get(path) ?? [];
        this.#pendingOutput.set(path, queue);
        queue.push({ tag, data });
        this.#pendingBytes += data.length;
      }
    });
    launcher.on('disconnect', (err) => this.#launcherGone(launcher, err));
  }

  /** Who hears that the launcher was lost and replaced (the daemon journals it). */
  set onLauncherTrouble(fn: ((t: LauncherTrouble) => void) | undefined) {
    this.#onLauncherTrouble = fn;
  }

  /** The launcher's connection closed while the runtime was open: it died; start another. */
  #launcherGone(launcher: Launcher, err: Error | null): void {
    if (this.#closed || launcher !== this.#launcher || this.#replacing !== null) return;
    const error = err?.message ?? 'its connection closed';
    this.#onLauncherTrouble?.({ state: 'lost', pid: launcher.pid, error });
    this.#replace();
  }

  #replace(): Promise<Launcher> {
    const t0 = performance.now();
    const replacing = (async () => {
      let lastError: Error | undefined;
      // A few tries: a launcher killed by the OOM killer may find memory short for a moment.
      for (const wait of [0, 100, 500]) {
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        if (this.#closed) break;
        try {
          return await Launcher.start(this.#launcherOptions);
        } catch (e) {
          lastError = e as Error;
        }
      }
      throw lastError ?? new Error('the runtime closed');
    })();
    this.#replacing = replacing;
    replacing.then(
      (next) => {
        const ms = Math.round(performance.now() - t0);
        if (this.#closed) {
          next.close().catch(() => {});
          return;
        }
        this.#launcher = next;
        this.#listenTo(next);
        if (this.#replacing === replacing) this.#replacing = null;
        this.#onLauncherTrouble?.({ state: 'restarted', pid: next.pid, ms });
      },
      (e: Error) => {
        // Kept: the next child that needs a launcher tries again (`launcherReady`).
        this.#onLauncherTrouble?.({
          state: 'restarted',
          pid: null,
          ms: Math.round(performance.now() - t0),
          error: e.message,
        });
      },
    );
    return replacing;
  }

  /**
   * Null while the launcher is connected; after a loss, the promise of its replacement (a failed
   * one is tried again), which drivers await before reporting an exit or spawning.
   */
  launcherReady(): Promise<Launcher> | null {
    if (this.#launcher.connected) return null;
    if (this.#closed) return Promise.reject(new Error('the runtime is closed'));
    const replacing = this.#replacing;
    if (replacing === null) return this.#replace();
    // A settled failure is retried by whoever needs a launcher next.
    return replacing.catch(() =>
      this.#replacing === replacing ? this.#replace() : (this.#replacing ?? replacing),
    );
  }

  /** A listening socket held by the launcher (see `ListenFd`), named `name` for LISTEN_FDNAMES. */
  async listen(spec: ListenSpec, name: string): Promise<ListenFd> {
    const launcher = this.#launcher;
    const { handle, port } = await launcher.listen(spec);
    // An ephemeral port is opened again at the port it got.
    const fixed: ListenSpec =
      'tcp' in spec && spec.tcp.port === 0 && port !== undefined
        ? { ...spec, tcp: { ...spec.tcp, port } }
        : spec;
    const held: HeldListen = { handle, name, spec: fixed, holder: launcher };
    this.#listens.add(held);
    return held;
  }

  /**
   * Opens again, on the current launcher, those of `fds` a lost launcher held (retrying while the
   * address is still held by the processes that shared it, which are being killed).
   */
  async refreshListen(fds: readonly ListenFd[]): Promise<void> {
    for (const fd of fds) {
      if (!this.#listens.has(fd)) continue;
      const held = fd as HeldListen;
      const launcher = this.#launcher;
      if (held.holder === launcher) continue;
      const deadline = Date.now() + RELISTEN_MS;
      for (;;) {
        try {
          held.handle = (await launcher.listen(held.spec)).handle;
          held.holder = launcher;
          break;
        } catch (err) {
          if ((err as { code?: string }).code !== 'EADDRINUSE' || Date.now() > deadline) throw err;
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      }
    }
  }

  static async open(options: HostRuntimeOptions): Promise<HostRuntime> {
    const stateDir = resolve(options.stateDir);
    mkdirSync(join(stateDir, 'logs'), { recursive: true, mode: 0o750 });
    mkdirSync(join(stateDir, 'run'), { recursive: true, mode: 0o700 });
    // Mount points a confined child finds covered (see runtime/confine): they must exist.
    mkdirSync(servicesDir(stateDir), { recursive: true, mode: 0o755 });
    mkdirSync(credentialsDir(stateDir), { recursive: true, mode: 0o711 });
    const cgroups = probeCgroups(options.cgroups === 'none' ? { force: 'none' } : {});
    const tag = createHash('sha256').update(stateDir).digest('hex').slice(0, 8);
    const root = cgroups.createRoot(`captree-${options.name}-${tag}`, { reuse: true });
    const leftovers = !root.isEmpty();
    const launcher = await Launcher.start(launcherOptionsFor(stateDir));
    const runtime = new HostRuntime(stateDir, launcher, cgroups, root, `/${options.name}`);
    if (launcher.reattached || leftovers) {
      try {
        await runtime.#survey();
      } catch (err) {
        await runtime.close();
        throw err;
      }
    }
    return runtime;
  }

  /** Builds the adoption table from what the launcher holds (see the module comment). */
  async #survey(): Promise<void> {
    const launcher = this.launcher;
    const recovery: Recovery = {
      reattached: launcher.reattached,
      launcherPid: launcher.pid,
      found: [],
      exitedOffline: [],
    };
    this.recovery = recovery;
    this.#recentExits ??= new Map();
    if (!launcher.reattached) return;
    // The exits queued while detached arrive before this reply (the launcher answers in order).
    const { children, tags, mains } = await launcher.list();
    const live = new Set(children);
    for (const ev of this.#recentExits.values()) {
      if (!live.has(ev.pid))
        recovery.exitedOffline.push({ pid: ev.pid, code: ev.code, signal: ev.signal, path: null });
    }
    for (const pid of children) {
      const path = tags.get(pid) ?? null;
      if (path !== null) this.#tags.set(pid, path);
      if (path === null || !this.#inTree(path) || this.#adoptable.has(path)) continue; // swept later
      const main = mains.get(pid) ?? pid;
      this.#adoptable.set(path, { pid, main });
      recovery.found.push({ path, pid: main });
    }
  }

  /** True while the launcher still runs an instance of `path` left by an earlier daemon, not yet adopted. */
  adoptable(path: string): boolean {
    return this.#adoptable.has(path);
  }

  #inTree(path: string): boolean {
    return path === this.rootPath || path.startsWith(`${this.rootPath}/`);
  }

  /**
   * The live instance of `path` left by an earlier daemon, watched from now on; null if there is
   * none (or it exited meanwhile: then it is noted in `recovery.exitedOffline`). Each is taken once.
   */
  adopt(path: string): AdoptedChild | null {
    const found = this.#adoptable.get(path);
    if (found === undefined) return null;
    this.#adoptable.delete(path);
    const { pid, main } = found;
    // Checked and watched in one synchronous step: no exit event can slip in between.
    const exit = this.#recentExits?.get(pid);
    if (exit || this.#recentExits === null) {
      if (exit) this.recovery?.exitedOffline.push({ pid, code: exit.code, signal: exit.signal, path });
      return null;
    }
    // The launcher's tag says whose it is; the kernel must agree: it is in that path's cgroup.
    if (!this.#inGroupOf(path, pid)) return null;
    return { ...this.launcher.watch(pid), main };
  }

  /** True when `pid` is in `path`'s group (in every hierarchy the group has a directory in). */
  #inGroupOf(path: string, pid: number): boolean {
    let group: CgroupGroup;
    try {
      group = this.groupFor(path);
    } catch {
      return false;
    }
    const files = group.procsFiles;
    // Process groups only (no cgroups): the launcher's record is all there is.
    if (files.length === 0) return true;
    return files.every((file) => procsOf(file).includes(pid));
  }

  /**
   * The process driver found `pids` in `path`'s group before spawning and killed them: during a
   * recovery, what an earlier instance left when the daemon died (reported by `sweep()`).
   */
  noteLeftovers(path: string, pids: readonly number[]): void {
    if (this.#recentExits === null) return;
    for (const pid of pids)
      this.#leftovers.push({ pid, path, why: 'left by an instance that exited while no daemon ran' });
  }

  /**
   * After the tree started (every adoption done): kills every launcher child nobody follows and
   * every process in the tree's cgroups outside a running child's group, removes the groups of
   * paths the tree no longer has, and ends the recovery (nothing is adoptable afterwards).
   */
  async sweep(stateOf: (path: string) => PathState): Promise<OrphanKill[]> {
    const kills: OrphanKill[] = this.#leftovers.splice(0);
    // Adoption ends here: a restart from now on spawns, never takes a process the sweep may kill.
    this.#adoptable.clear();
    const why = (path: string | null): string => {
      if (path === null || !this.#inTree(path)) return 'not a child of this tree';
      switch (stateOf(path)) {
        case 'absent':
          return 'its path is no longer in the manifest';
        case 'stopped':
          return 'its child is stopped';
        case 'node':
          return 'a stray process in a node';
        default:
          return 'a second instance of its child';
      }
    };
    try {
      const { children, tags, mains, watched } = await this.launcher.list();
      for (const pid of children) {
        // Decided at the reply: one of ours that exited since is gone, not an orphan.
        if (watched.has(pid)) continue;
        const path = tags.get(pid) ?? null;
        await this.launcher.killGroup(pid, 'SIGKILL').catch(() => {});
        // Named by its program (what `ps` showed), not a confined child's outer process.
        kills.push({ pid: mains.get(pid) || pid, path: path ?? this.rootPath, why: why(path) });
      }
      const dirs = this.root.dirs;
      if (dirs.length > 0) await this.#sweepGroup('', dirs, stateOf, kills, why);
      // Networks an earlier daemon made that this tree no longer uses.
      await this.#removeNetworks(new Set(this.#networks.keys()));
    } finally {
      this.#adoptable.clear();
      this.#recentExits = null;
      this.#tags.clear();
      this.#pendingOutput.clear();
      this.#pendingBytes = 0;
    }
    return kills;
  }

  async #sweepGroup(
    rel: string,
    dirs: readonly string[],
    stateOf: (path: string) => PathState,
    kills: OrphanKill[],
    why: (path: string | null) => string,
  ): Promise<void> {
    const path = rel === '' ? this.rootPath : `${this.rootPath}/${rel}`;
    const state = rel === '' ? 'node' : stateOf(path);
    if (state === 'running') return;
    const seen = new Set(kills.map((k) => k.pid));
    const note = (pid: number) => {
      if (seen.has(pid)) return;
      seen.add(pid);
      const own = this.#tags.get(pid) ?? null;
      kills.push({ pid, path: own ?? path, why: why(own ?? path) });
    };
    if (state === 'node') {
      for (const dir of dirs) {
        for (const pid of readProcs(join(dir, rel))) {
          note(pid);
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // Already gone.
          }
        }
      }
      const subs = new Set<string>();
      for (const dir of dirs) for (const name of subdirs(join(dir, rel))) subs.add(name);
      for (const name of subs)
        await this.#sweepGroup(rel === '' ? name : `${rel}/${name}`, dirs, stateOf, kills, why);
      return;
    }
    // A stopped child's group, or a path the tree no longer has: nothing in it is supervised.
    const group = this.groupFor(path);
    const pids = group.pids();
    if (pids.length > 0) {
      for (const pid of pids) note(pid);
      await group.kill().catch(() => {});
      await group.waitEmpty(AbortSignal.timeout(5000)).catch(() => {});
    }
    if (state === 'absent') {
      await group.remove().catch(() => {});
      for (const known of [...this.#groups.keys()])
        if (known === path || known.startsWith(`${path}/`)) this.#groups.delete(known);
    }
  }

  /**
   * The file holding named network `name`'s namespace (only `lo`, up), for `ProcessOptions.netns`:
   * made on first use, or the one an earlier daemon left (after a re-attach), so every member of
   * the network shares one namespace. Rejects naming the step the launcher could not take.
   */
  network(name: string): Promise<string> {
    let made = this.#networks.get(name);
    if (!made) {
      if (!NETWORK_NAME.test(name)) return Promise.reject(new Error(`network ${name}: not a network name`));
      const file = join(netnsDir(this.stateDir), name);
      made = (async () => {
        mkdirSync(netnsDir(this.stateDir), { recursive: true, mode: 0o700 });
        try {
          await this.launcher.netns(file);
        } catch (err) {
          throw new Error(`network ${name}: ${(err as Error).message}`);
        }
        return file;
      })();
      this.#networks.set(name, made);
      made.catch(() => {
        if (this.#networks.get(name) === made) this.#networks.delete(name);
      });
    }
    return made;
  }

  /** Unmounts and removes every held network not in `keep` (names); the directory too once empty. */
  async #removeNetworks(keep: ReadonlySet<string>): Promise<void> {
    const dir = netnsDir(this.stateDir);
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return;
    }
    for (const name of names) {
      if (keep.has(name)) continue;
      const file = join(dir, name);
      this.#networks.delete(name);
      try {
        await this.launcher.removeNetns(file);
      } catch {
        // The launcher is gone (or too old to know networks): unmount it from here.
        try {
          execFileSync('umount', ['-l', file], { stdio: 'ignore' });
        } catch {
          // Not mounted.
        }
        try {
          unlinkSync(file);
        } catch {
          // Already gone.
        }
      }
    }
    if (keep.size === 0) {
      try {
        rmdirSync(dir);
      } catch {
        // Not empty (something we could not remove), or gone.
      }
    }
  }

  /** Routes sd_notify messages of `pid` to `fn`; returns the function that stops it. */
  onNotify(pid: number, fn: (n: NotifyEvent) => void): () => void {
    this.#notify.set(pid, fn);
    return () => {
      if (this.#notify.get(pid) === fn) this.#notify.delete(pid);
    };
  }

  /**
   * A run-time child is gone for good (revoked, or never started): its cgroups go too, so no
   * directory is left behind and a later child of the same name starts with no old charge.
   */
  async releaseGroup(path: string): Promise<void> {
    const group = this.#groups.get(path);
    if (!group) return;
    if (group.pids().length > 0) {
      await group.kill().catch(() => {});
      await group.waitEmpty(AbortSignal.timeout(5000)).catch(() => {});
    }
    for (const known of [...this.#groups.keys()])
      if (known === path || known.startsWith(`${path}/`)) this.#groups.delete(known);
    await group.remove();
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

  /** Who hears that a child's log cannot be written (the daemon journals it). */
  set onLogTrouble(fn: ((path: string, t: LogTrouble) => void) | undefined) {
    this.#onLogTrouble = fn;
  }

  /** The log of a process child, created on first use; it outlives the child's restarts. */
  logFor(path: string, options: LogOptions): ChildLog {
    let log = this.#logs.get(path);
    if (!log) {
      log = openChildLog(this.logsDir, path, options, (t) => this.#onLogTrouble?.(path, t));
      this.#logs.set(path, log);
      const pending = this.#pendingOutput.get(path);
      if (pending) {
        this.#pendingOutput.delete(path);
        for (const { tag, data } of pending) {
          this.#pendingBytes -= data.length;
          log.push(tag, data);
        }
      }
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
    // A namespace outlives its bind mount while members remain; the launcher kills them next.
    await Promise.allSettled(this.#networks.values());
    await this.#replacing?.catch(() => {});
    await this.#removeNetworks(new Set());
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
    await this.#replacing?.catch(() => {});
    await this.launcher.disconnect();
    await Promise.all([...this.#logs.values()].map((log) => log.close()));
  }
}

/** The launcher of the tree whose state dir is `stateDir`: a socket there, so it can be re-attached. */
function launcherOptionsFor(stateDir: string): { socketPath: string; runtimeDir: string } {
  return { socketPath: join(stateDir, 'launcher.sock'), runtimeDir: join(stateDir, 'run') };
}

function readProcs(dir: string): number[] {
  try {
    return readFileSync(join(dir, 'cgroup.procs'), 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map(Number);
  } catch {
    return [];
  }
}

function subdirs(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name);
  } catch {
    return [];
  }
}

/** `/shop/db` → `shop.db` (the file base name of its log). */
export function logName(path: string): string {
  return path.slice(1).replaceAll('/', '.');
}

/** The rotating log of the child at `path`, under `dir`. */
export function openChildLog(
  dir: string,
  path: string,
  options: LogOptions,
  onTrouble?: (t: LogTrouble) => void,
): ChildLog {
  return new ChildLog({
    dir,
    name: logName(path),
    maxBytes: options.maxSize,
    keep: options.keep,
    ...(onTrouble ? { onTrouble } : {}),
  });
}
