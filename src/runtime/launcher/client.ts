/**
 * Typed Node client for the C launcher (`native/launcher.c`), the process that forks and execs
 * every OS process captree runs, so that spawning costs the same whatever the supervisor's heap.
 *
 * The client starts the launcher with a socketpair at its fd 3 (a stdio 'pipe' at index >= 3)
 * and speaks the framed protocol of `protocol.ts`. Without `socketPath` the launcher's lifetime
 * is tied to that connection: when the client goes (even by crash), every child's process group
 * is SIGKILLed. With `socketPath` the launcher outlives the client and a restarted client
 * re-attaches with `Launcher.start({ socketPath })` or `Launcher.attach(socketPath)`.
 */
import { type ChildProcess, spawn as spawnProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { launcherBinary, launcherSource } from './build.ts';
import {
  encodeFrame,
  type Field,
  type Frame,
  FrameDecoder,
  fieldOf,
  fieldsOf,
  Req,
  type ReqType,
} from './protocol.ts';

export interface SpawnSpec {
  argv: readonly string[];
  /** Exactly the child's environment; nothing is inherited from the supervisor. */
  env: Readonly<Record<string, string>> | readonly string[];
  cwd?: string;
  uid?: number;
  gid?: number;
  /** `cgroup.procs` files the child writes its own pid to after fork, before exec. */
  cgroupProcs?: readonly string[];
  /** s6-style readiness: a pipe's write end is placed at this fd; a newline means ready. */
  notifyFd?: number;
  /** sd_notify readiness: NOTIFY_SOCKET is set to a datagram socket owned by the launcher. */
  sdNotify?: boolean;
  /** Stream keys: one pipe per key, kept by the launcher across spawns. Absent: /dev/null. */
  stdout?: string;
  stderr?: string;
  /** Listening sockets from `listen()`, placed at fd 3, 4, ... with LISTEN_FDS/FDNAMES/PID. */
  listenFds?: readonly { handle: number; name: string }[];
  /** Run in a fresh network namespace with only `lo` (up). */
  newNetNs?: boolean;
  /** Join the network namespace held at this file (`netns()`: a named network); excludes `newNetNs`. */
  netnsPath?: string;
  /** PR_SET_NO_NEW_PRIVS, and drop the capability bounding and inheritable sets. */
  noNewPrivs?: boolean;
  /**
   * Linux capability numbers (CAP_*) the child keeps: bounding, permitted, effective, inheritable
   * and ambient, across a uid switch too (systemd's AmbientCapabilities=). Absent or empty: none.
   */
  capabilities?: readonly number[];
  /**
   * The host's filesystem read-only in the child's mount namespace, but these directories
   * (absolute; those that do not exist are skipped). What `mounts` mounts back stays writable.
   */
  writableOnly?: readonly string[];
  /**
   * A private mount namespace (implied by any field of `mounts`): "/" is made recursively
   * private, then `hide` dirs are covered by an empty tmpfs, `bind` paths (as seen before the
   * hiding) are mounted back at their own place, `readOnly` paths are remounted read-only, and
   * `credentials` are written to a fresh tmpfs at `credentials.dir` (files 0400, dir 0500, owned
   * by the child's uid/gid, then remounted read-only; `CREDENTIALS_DIRECTORY` is set).
   * All paths absolute. Any failure fails the spawn, naming the step.
   *
   * A child with `mounts`, `newNetNs`, `netnsPath` or `noNewPrivs` is confined: it also gets /sys/fs/cgroup
   * read-only (except `delegate` dirs) and a PID namespace of its own with a fresh /proc (the
   * program is pid 2 there, LISTEN_PID=2; the reported pid is an outer process that forwards
   * signals and exits as the program did). See native/launcher.c.
   */
  mounts?: MountSpec;
  /** The launcher's own name for the child (a tree path), listed by `list()`: an identity the child cannot overwrite. */
  tag?: string;
  /**
   * Confined children only: where a daemon that forks into the background writes its main pid (as
   * the child sees paths and pids); followed once the program exited 0 leaving processes behind.
   */
  pidFile?: string;
  /** How long the child's init waits for `pidFile` to name a live process; default 10 s. */
  pidFileWaitMs?: number;
}

/** Which processes of a child a signal reaches: all of them (its cgroup, its PID namespace) or its main process. */
export type SignalScope = 'all' | 'main';

export interface MainEvent {
  /** The spawned pid (what `exited` is about). */
  pid: number;
  /** Host pid of the child's main process from now on. */
  main: number;
  /** How it was found: `pidfile`, `oldest` (the oldest process left), `oldest-no-pidfile`. */
  via: string;
}

export interface MountSpec {
  hide?: readonly string[];
  bind?: readonly string[];
  readOnly?: readonly string[];
  /** Like `bind`, skipped when the path does not exist at spawn time. */
  bindIfExists?: readonly string[];
  /** Cgroup directories left writable below the read-only /sys/fs/cgroup (their own limit files stay read-only). */
  delegate?: readonly string[];
  /**
   * A narrowed filesystem view: a new root holding only these paths (`readOnly` ones too, read-only)
   * plus the system read-only, a fresh /dev, /tmp and /proc, /sys read-only, and what the other
   * fields mount back (see native/launcher.c, `view=1`).
   */
  view?: { readonly rw: readonly string[] };
  credentials?: { dir: string; files: readonly { name: string; data: Uint8Array }[] };
}

export interface ExitEvent {
  pid: number;
  /** Exit status, or null when killed by a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
  /** CLOCK_MONOTONIC ns at reap, comparable with process.hrtime.bigint(). */
  atNs: bigint;
}

export interface ReadyEvent {
  pid: number;
  via: 'fd' | 'sd_notify';
}

export interface NotifyEvent {
  pid: number;
  /** The datagram as sent: newline-separated VAR=value assignments. */
  text: string;
  fields: Record<string, string>;
}

export interface OutputEvent {
  key: string;
  data: Buffer;
}

export interface SpawnResult {
  pid: number;
  /**
   * Host pid of the program itself: `pid` for an unconfined child, the program below the outer
   * process and init of a confined one (0 if it already exited). Changes are `main` events.
   */
  main: number;
  /** CLOCK_MONOTONIC ns just before fork, comparable with process.hrtime.bigint(). */
  forkedAtNs: bigint;
  /** Settles with the child's exit; rejects only if the launcher connection is lost first. */
  exited: Promise<ExitEvent>;
  /** First readiness notification; rejects if the child exits (or the launcher goes) before. */
  ready: Promise<ReadyEvent>;
}

export type ListenSpec = ({ tcp: { host: string; port: number } } | { unix: string }) & { backlog?: number };

export interface LauncherEvents {
  exited: [ExitEvent];
  ready: [ReadyEvent];
  notify: [NotifyEvent];
  /** A confined child's main process changed: a daemon it forked is followed now. */
  main: [MainEvent];
  output: [OutputEvent];
  /** The connection to the launcher is gone; `null` after an orderly close. */
  disconnect: [Error | null];
}

export interface LauncherOptions {
  /** Also listen here so a restarted client can re-attach; the launcher then outlives its client. */
  socketPath?: string;
  /** Where per-child sd_notify sockets live; default a fresh private temporary directory. */
  runtimeDir?: string;
  /** Prebuilt launcher binary; default `launcherBinary()`. */
  binary?: string;
}

export class LauncherError extends Error {
  readonly code: string | undefined;
  readonly errno: number | undefined;
  constructor(message: string, errno?: number) {
    super(message);
    this.name = 'LauncherError';
    this.errno = errno;
    this.code = errno === undefined ? undefined : errnoNames.get(errno);
  }
}

const errnoNames = new Map<number, string>(Object.entries(constants.errno).map(([k, v]) => [v, k]));
const signalNames = new Map<number, NodeJS.Signals>(
  Object.entries(constants.signals).map(([k, v]) => [v, k as NodeJS.Signals]),
);

function signalNumber(signal: NodeJS.Signals | number): number {
  if (typeof signal === 'number') return signal;
  const n = constants.signals[signal];
  if (n === undefined) throw new Error(`unknown signal ${signal}`);
  return n;
}

interface Pending {
  // Runs synchronously at reply time, before the frames after it are dispatched.
  resolve(frame: Frame): void;
  reject(err: Error): void;
}

interface Watch {
  exited: Deferred<ExitEvent>;
  ready: Deferred<ReadyEvent>;
  readySettled: boolean;
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve(v: T): void;
  reject(e: Error): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Callers often care about only one of exited/ready; an ignored rejection must not crash.
  promise.catch(() => {});
  return { promise, resolve, reject };
}

export class Launcher extends EventEmitter<LauncherEvents> {
  #sock: Socket;
  #proc: ChildProcess | undefined;
  #ownedRuntimeDir: string | undefined;
  #pending = new Map<number, Pending>();
  /** One listener per pid: a listener per child on `main` would make each event O(children). */
  #mainListeners = new Map<number, (ev: MainEvent) => void>();
  #watches = new Map<number, Watch>();
  #nextId = 1;
  #gone: Error | null | undefined;
  #closed: Promise<void>;

  private constructor(sock: Socket, proc?: ChildProcess, ownedRuntimeDir?: string) {
    super();
    this.#sock = sock;
    this.#proc = proc;
    this.#ownedRuntimeDir = ownedRuntimeDir;
    this.#closed = new Promise<void>((resolve) => sock.once('close', () => resolve()));
    const decoder = new FrameDecoder();
    sock.on('data', (chunk: Buffer) => {
      let frames: Frame[];
      try {
        frames = decoder.push(chunk);
      } catch (err) {
        sock.destroy(err as Error);
        return;
      }
      for (const f of frames) {
        if (f.type === 'h') this.#hello.resolve(Number(fieldOf(f, 'pid')));
        else if (this.#held) this.#held.push(f);
        else this.#onFrame(f);
      }
    });
    sock.on('error', (err) => this.#lost(err));
    sock.on('close', () => this.#lost(null));
  }

  /** The launcher process's pid. */
  get pid(): number {
    return this.#pid;
  }

  /** False once the connection to the launcher is gone (it died, or was closed). */
  get connected(): boolean {
    return this.#gone === undefined;
  }

  /** True when this client re-attached to a launcher that was already running (it may hold children). */
  get reattached(): boolean {
    return this.#reattached;
  }

  #reattached = false;

  #pid = 0;
  #hello = deferred<number>();
  // Frames after the hello wait one macrotask, so the caller of start()/attach() can add its
  // listeners first (a re-attached launcher sends the exits it queued right after its hello).
  #held: Frame[] | undefined = [];

  /** Starts a launcher (or re-attaches to a live one at `socketPath`). */
  static async start(opts: LauncherOptions = {}): Promise<Launcher> {
    if (opts.socketPath) {
      try {
        return await Launcher.attach(opts.socketPath);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'ENOENT' && code !== 'ECONNREFUSED') throw err;
      }
    }
    const bin = opts.binary ?? (await launcherBinary());
    const owned = opts.runtimeDir ? undefined : await mkdtemp(join(tmpdir(), 'captree-l-'));
    const runtimeDir = opts.runtimeDir ?? owned!;
    const args = ['--runtime-dir', runtimeDir];
    if (opts.socketPath) args.push('--socket', opts.socketPath);
    // A launcher that may be re-attached must remove its own runtime dir: we may not be there.
    if (owned) args.push('--remove-runtime-dir');
    const proc = spawnProcess(bin, args, {
      stdio: ['ignore', 'ignore', 'inherit', 'pipe'],
      // With a socket the launcher must survive its client, including a ^C to the client's group.
      detached: Boolean(opts.socketPath),
    });
    const launcher = new Launcher(proc.stdio[3] as Socket, proc, opts.socketPath ? undefined : owned);
    const exited = new Promise<never>((_, reject) => {
      proc.once('error', reject);
      proc.once('exit', (code, signal) =>
        reject(new Error(`captree launcher ${bin} exited during start (code ${code}, signal ${signal})`)),
      );
    });
    try {
      await Promise.race([launcher.#started(), exited]);
    } catch (err) {
      proc.kill('SIGKILL');
      if (owned) await rm(owned, { recursive: true, force: true });
      throw err;
    } finally {
      proc.removeAllListeners('exit');
      proc.removeAllListeners('error');
      proc.on('error', () => {});
    }
    return launcher;
  }

  /** Connects to a launcher started with `socketPath`, replacing any client it had. */
  static async attach(socketPath: string): Promise<Launcher> {
    const sock = await new Promise<Socket>((resolve, reject) => {
      const s = connect(socketPath);
      s.once('connect', () => {
        s.off('error', reject);
        resolve(s);
      });
      s.once('error', reject);
    });
    const launcher = new Launcher(sock);
    launcher.#reattached = true;
    await launcher.#started();
    return launcher;
  }

  async #started(): Promise<void> {
    this.#pid = await this.#hello.promise;
    setImmediate(() => {
      const held = this.#held ?? [];
      this.#held = undefined;
      for (const f of held) this.#onFrame(f);
    });
  }

  #lost(err: Error | null): void {
    if (this.#gone !== undefined) return;
    this.#gone = err;
    const reason = err ?? new Error('launcher connection closed');
    for (const p of this.#pending.values())
      p.reject(new LauncherError(`launcher unavailable: ${reason.message}`));
    this.#pending.clear();
    for (const w of this.#watches.values()) {
      w.exited.reject(new LauncherError(`launcher unavailable: ${reason.message}`));
      if (!w.readySettled) w.ready.reject(new LauncherError('launcher unavailable before ready'));
    }
    this.#watches.clear();
    this.#hello.reject(
      new LauncherError(`launcher closed the connection before saying hello: ${reason.message}`),
    );
    if (this.#ownedRuntimeDir) rm(this.#ownedRuntimeDir, { recursive: true, force: true }).catch(() => {});
    this.emit('disconnect', err);
  }

  #onFrame(f: Frame): void {
    switch (f.type) {
      case 'R': {
        const id = Number(fieldOf(f, 'id'));
        const p = this.#pending.get(id);
        if (!p) return;
        this.#pending.delete(id);
        if (fieldOf(f, 'ok') === '1') p.resolve(f);
        else {
          const errno = Number(fieldOf(f, 'errno'));
          p.reject(
            new LauncherError(
              fieldOf(f, 'err') ?? 'launcher error',
              Number.isFinite(errno) ? errno : undefined,
            ),
          );
        }
        return;
      }
      case 'x': {
        const sig = fieldOf(f, 'sig');
        const ev: ExitEvent = {
          pid: Number(fieldOf(f, 'pid')),
          code: sig === undefined ? Number(fieldOf(f, 'code')) : null,
          signal:
            sig === undefined ? null : (signalNames.get(Number(sig)) ?? (`SIG${sig}` as NodeJS.Signals)),
          atNs: BigInt(fieldOf(f, 't') ?? '0'),
        };
        const w = this.#watches.get(ev.pid);
        if (w) {
          this.#watches.delete(ev.pid);
          if (!w.readySettled)
            w.ready.reject(new LauncherError(`process ${ev.pid} exited before it was ready`));
          w.exited.resolve(ev);
        }
        this.emit('exited', ev);
        return;
      }
      case 'r':
        this.#ready({ pid: Number(fieldOf(f, 'pid')), via: 'fd' });
        return;
      case 'n': {
        const text = fieldOf(f, 'text') ?? '';
        const fields: Record<string, string> = {};
        for (const line of text.split('\n')) {
          const eq = line.indexOf('=');
          if (eq > 0) fields[line.slice(0, eq)] = line.slice(eq + 1);
        }
        const pid = Number(fieldOf(f, 'pid'));
        this.emit('notify', { pid, text, fields });
        if (fields.READY === '1') this.#ready({ pid, via: 'sd_notify' });
        return;
      }
      case 'm': {
        const ev: MainEvent = {
          pid: Number(fieldOf(f, 'pid')),
          main: Number(fieldOf(f, 'main')),
          via: fieldOf(f, 'via') ?? '',
        };
        this.#mainListeners.get(ev.pid)?.(ev);
        this.emit('main', ev);
        return;
      }
      case 'o':
        this.emit('output', { key: fieldOf(f, 'key') ?? '', data: f.data ?? Buffer.alloc(0) });
        return;
      default:
        return;
    }
  }

  #ready(ev: ReadyEvent): void {
    const w = this.#watches.get(ev.pid);
    if (w && !w.readySettled) {
      w.readySettled = true;
      w.ready.resolve(ev);
    }
    this.emit('ready', ev);
  }

  #request(type: ReqType, fields: readonly Field[]): Promise<Frame>;
  #request<T>(type: ReqType, fields: readonly Field[], onReply: (f: Frame) => T): Promise<T>;
  #request(type: ReqType, fields: readonly Field[], onReply?: (f: Frame) => unknown): Promise<unknown> {
    if (this.#gone !== undefined) return Promise.reject(new LauncherError('launcher connection is closed'));
    const id = this.#nextId++;
    const frame = encodeFrame(type, [['id', id], ...fields]);
    return new Promise<unknown>((resolve, reject) => {
      this.#pending.set(id, { resolve: (f) => resolve(onReply ? onReply(f) : f), reject });
      this.#sock.write(frame);
    });
  }

  /** Starts a process; rejects (LauncherError) if anything before exec failed, naming the step. */
  async spawn(spec: SpawnSpec): Promise<SpawnResult> {
    if (spec.argv.length === 0) throw new Error('spawn: argv is empty');
    const fields: Field[] = spec.argv.map((a) => ['arg', a] as const);
    const env = Array.isArray(spec.env)
      ? (spec.env as readonly string[])
      : Object.entries(spec.env as Record<string, string>).map(([k, v]) => `${k}=${v}`);
    for (const e of env) fields.push(['env', e]);
    if (spec.cwd !== undefined) fields.push(['cwd', spec.cwd]);
    if (spec.uid !== undefined) fields.push(['uid', spec.uid]);
    if (spec.gid !== undefined) fields.push(['gid', spec.gid]);
    for (const c of spec.cgroupProcs ?? []) fields.push(['cgroup', c]);
    if (spec.notifyFd !== undefined) fields.push(['notifyfd', spec.notifyFd]);
    if (spec.sdNotify) fields.push(['sdnotify', 1]);
    if (spec.stdout !== undefined) fields.push(['stdout', spec.stdout]);
    if (spec.stderr !== undefined) fields.push(['stderr', spec.stderr]);
    for (const l of spec.listenFds ?? []) {
      if (l.name.includes(':')) throw new Error(`spawn: listen fd name ${l.name} may not contain ':'`);
      fields.push(['listen', `${l.handle}:${l.name}`]);
    }
    if (spec.newNetNs) fields.push(['netns', 1]);
    if (spec.netnsPath !== undefined) fields.push(['netnspath', spec.netnsPath]);
    if (spec.noNewPrivs) fields.push(['nonewprivs', 1]);
    if (spec.capabilities && spec.capabilities.length > 0) {
      const mask = spec.capabilities.reduce((m, cap) => m | (1n << BigInt(cap)), 0n);
      fields.push(['caps', mask.toString()]);
    }
    if (spec.writableOnly) {
      fields.push(['protect', 1]);
      for (const dir of spec.writableOnly) fields.push(['wr', dir]);
    }
    if (spec.mounts) mountFields(spec.mounts, fields);
    if (spec.tag !== undefined) fields.push(['tag', spec.tag]);
    if (spec.pidFile !== undefined) fields.push(['pidfile', spec.pidFile]);
    if (spec.pidFileWaitMs !== undefined) fields.push(['pidfilems', Math.round(spec.pidFileWaitMs)]);
    try {
      // The watch must exist before the next frame, which may already be this child's exit.
      return await this.#request(Req.spawn, fields, (reply) => {
        const pid = Number(fieldOf(reply, 'pid'));
        return {
          ...this.#watch(pid, BigInt(fieldOf(reply, 't') ?? '0')),
          main: Number(fieldOf(reply, 'main') ?? 0),
        };
      });
    } catch (err) {
      const e = err as LauncherError;
      throw new LauncherError(`spawn ${spec.argv[0]} failed: ${e.message}`, e.errno);
    }
  }

  /**
   * Follows a live child this client did not spawn (one an earlier client spawned, found with
   * `list()` after a re-attach), as `spawn()` does for its own: `exited` settles with its exit.
   * Call it synchronously after learning the child is alive and unexited (an exit event already
   * delivered is not replayed); `ready` settles only on a notification that arrives from now on.
   */
  watch(pid: number): Omit<SpawnResult, 'forkedAtNs' | 'main'> {
    const existing = this.#watches.get(pid);
    if (existing) return { pid, exited: existing.exited.promise, ready: existing.ready.promise };
    if (this.#gone !== undefined) {
      const lost = deferred<never>();
      lost.reject(new LauncherError('launcher connection is closed'));
      return { pid, exited: lost.promise, ready: lost.promise };
    }
    const { exited, ready } = this.#watch(pid, 0n);
    return { pid, exited, ready };
  }

  /** Routes `main` events of spawned pid `pid` to `fn`; returns the function that stops it. */
  onMain(pid: number, fn: (ev: MainEvent) => void): () => void {
    this.#mainListeners.set(pid, fn);
    return () => {
      if (this.#mainListeners.get(pid) === fn) this.#mainListeners.delete(pid);
    };
  }

  /** True while a spawned or watched child of this client has not exited. */
  watching(pid: number): boolean {
    return this.#watches.has(pid);
  }

  #watch(pid: number, forkedAtNs: bigint): Omit<SpawnResult, 'main'> {
    const w: Watch = { exited: deferred(), ready: deferred(), readySettled: false };
    this.#watches.set(pid, w);
    return { pid, forkedAtNs, exited: w.exited.promise, ready: w.ready.promise };
  }

  async kill(pid: number, signal: NodeJS.Signals | number = 'SIGTERM'): Promise<void> {
    await this.#request(Req.kill, [
      ['pid', pid],
      ['sig', signalNumber(signal)],
    ]);
  }

  /** Signals a whole process group (every child is its own group leader: pgid = pid). */
  async killGroup(pgid: number, signal: NodeJS.Signals | number = 'SIGTERM'): Promise<void> {
    await this.#request(Req.kill, [
      ['pid', pgid],
      ['sig', signalNumber(signal)],
      ['group', 1],
    ]);
  }

  /**
   * Signals a child the launcher spawned by scope (see `SignalScope`): for a confined child its
   * init sends it within the PID namespace (`all`: every process there), otherwise the launcher
   * signals every pid of its cgroup, or its main process.
   */
  async signal(pid: number, signal: NodeJS.Signals | number, scope: SignalScope): Promise<void> {
    await this.#request(Req.kill, [
      ['pid', pid],
      ['sig', signalNumber(signal)],
      ['scope', scope],
    ]);
  }

  /** Creates a listening socket held by the launcher; pass its handle in `SpawnSpec.listenFds`. */
  async listen(spec: ListenSpec): Promise<{ handle: number; port?: number }> {
    const fields: Field[] =
      'tcp' in spec
        ? [['tcp', `${spec.tcp.host.includes(':') ? `[${spec.tcp.host}]` : spec.tcp.host}:${spec.tcp.port}`]]
        : [['unix', spec.unix]];
    if (spec.backlog !== undefined) fields.push(['backlog', spec.backlog]);
    const reply = await this.#request(Req.listen, fields);
    const port = fieldOf(reply, 'port');
    return port === undefined
      ? { handle: Number(fieldOf(reply, 'handle')) }
      : { handle: Number(fieldOf(reply, 'handle')), port: Number(port) };
  }

  /**
   * A network namespace with only `lo` (up), held by a bind mount at `path` (absolute; the file is
   * created): a named network, joined by spawns with `netnsPath`. One already held there is kept
   * (`existed: true`), so a re-attached runtime finds its networks again.
   */
  async netns(path: string): Promise<{ existed: boolean }> {
    const reply = await this.#request(Req.netns, [['path', path]]);
    return { existed: fieldOf(reply, 'existed') === '1' };
  }

  /** Unmounts the namespace held at `path` (it ends with its last member) and removes the file. */
  async removeNetns(path: string): Promise<void> {
    await this.#request(Req.netns, [
      ['path', path],
      ['remove', 1],
    ]);
  }

  async closeListen(handle: number): Promise<void> {
    await this.#request(Req.closeListen, [['handle', handle]]);
  }

  /** Releases a stream's pipe after forwarding what it holds. */
  async closeStream(key: string): Promise<void> {
    await this.#request(Req.closeStream, [['key', key]]);
  }

  /**
   * What the launcher holds: live children (pids) with the tag each was spawned with and its
   * current main process, stream keys, listen handles; and which of those children this client
   * was watching when the reply arrived (`watched`: decided before any later frame, such as one
   * of theirs exiting, is dispatched, so a child of ours that exits meanwhile is never taken for
   * one nobody follows).
   */
  async list(): Promise<{
    children: number[];
    tags: Map<number, string>;
    mains: Map<number, number>;
    streams: string[];
    handles: number[];
    watched: Set<number>;
  }> {
    let watched = new Set<number>();
    const r = await this.#request(Req.list, [], (reply) => {
      watched = new Set(
        fieldsOf(reply, 'child')
          .map(Number)
          .filter((pid) => this.#watches.has(pid)),
      );
      return reply;
    });
    const pairs = (name: string) =>
      fieldsOf(r, name).map((v) => {
        const colon = v.indexOf(':');
        return [Number(v.slice(0, colon)), v.slice(colon + 1)] as const;
      });
    return {
      children: fieldsOf(r, 'child').map(Number),
      tags: new Map(pairs('tag')),
      mains: new Map(pairs('main').map(([pid, main]) => [pid, Number(main)])),
      streams: fieldsOf(r, 'stream'),
      handles: fieldsOf(r, 'handle').map(Number),
      watched,
    };
  }

  async ping(): Promise<{ pid: number; children: number; rttMs: number }> {
    const t0 = process.hrtime.bigint();
    const r = await this.#request(Req.ping, []);
    return {
      pid: Number(fieldOf(r, 'pid')),
      children: Number(fieldOf(r, 'children')),
      rttMs: Number(process.hrtime.bigint() - t0) / 1e6,
    };
  }

  /** Stops the launcher: every child's process group gets SIGKILL, then it exits. */
  async close(): Promise<void> {
    if (this.#gone === undefined) {
      await this.#request(Req.shutdown, []).catch(() => {});
      this.#sock.end();
    }
    await this.#closed;
    await this.#procExit();
  }

  /**
   * Drops the connection without a shutdown. A launcher with a socket path keeps its children
   * for the next client; one without kills them all, as if this client had crashed.
   */
  async disconnect(): Promise<void> {
    this.#sock.end();
    await this.#closed;
  }

  /** Lets the Node process exit while the launcher connection is open. */
  unref(): this {
    this.#sock.unref();
    this.#proc?.unref();
    return this;
  }

  async #procExit(): Promise<void> {
    const proc = this.#proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    await new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  }
}

function mountFields(m: MountSpec, fields: Field[]): void {
  fields.push(['mntns', 1]);
  const absolute = (p: string) => {
    if (!p.startsWith('/')) throw new Error(`spawn: mount path ${p} must be absolute`);
    return p;
  };
  for (const p of m.hide ?? []) fields.push(['hide', absolute(p)]);
  for (const p of m.bind ?? []) fields.push(['bind', absolute(p)]);
  for (const p of m.bindIfExists ?? []) fields.push(['bindopt', absolute(p)]);
  for (const p of m.readOnly ?? []) fields.push(['ro', absolute(p)]);
  for (const p of m.delegate ?? []) fields.push(['delegate', absolute(p)]);
  if (m.view) {
    fields.push(['view', 1]);
    for (const p of m.view.rw) fields.push(['rw', absolute(p)]);
  }
  if (m.credentials) {
    fields.push(['credsdir', absolute(m.credentials.dir)]);
    for (const f of m.credentials.files) {
      if (!/^[^/:\0.][^/:\0]*$/.test(f.name))
        throw new Error(`spawn: credential name ${f.name} is not a plain file name`);
      fields.push(['cred', `${f.name}:${Buffer.from(f.data).toString('hex')}`]);
    }
  }
}

export interface LauncherHealth {
  ok: boolean;
  source: string;
  binary?: string;
  launcherPid?: number;
  /** Round trip of a ping, ms. */
  pingMs?: number;
  /** Spawn-to-exit of `true` through the launcher, ms. */
  spawnMs?: number;
  error?: string;
}

/** For `captree doctor`: can this host build, start and use the launcher? */
export async function launcherHealth(opts: LauncherOptions = {}): Promise<LauncherHealth> {
  const health: LauncherHealth = { ok: false, source: launcherSource };
  let launcher: Launcher | undefined;
  try {
    health.binary = opts.binary ?? (await launcherBinary());
    launcher = await Launcher.start({ ...opts, binary: health.binary, socketPath: undefined });
    health.launcherPid = launcher.pid;
    health.pingMs = (await launcher.ping()).rttMs;
    const t0 = process.hrtime.bigint();
    const child = await launcher.spawn({ argv: ['true'], env: { PATH: '/usr/local/bin:/usr/bin:/bin' } });
    const exit = await child.exited;
    health.spawnMs = Number(process.hrtime.bigint() - t0) / 1e6;
    if (exit.code !== 0) throw new Error(`'true' exited with ${exit.code ?? exit.signal}`);
    health.ok = true;
  } catch (err) {
    health.error = (err as Error).message;
  } finally {
    await launcher?.close().catch(() => {});
  }
  return health;
}
