/**
 * The OS-process driver: a child that is a real process, spawned by the launcher into its own
 * cgroup before it runs, stopped with kernel mechanisms, and called ready only when it says so.
 *
 * Lifecycle of one instance:
 * 1. Its cgroup (`HostRuntime.groupFor(path)`) gets the child's limits; the launcher forks, the
 *    child writes its own pid into every `cgroup.procs`, then execs. Nothing runs outside it.
 * 2. Readiness: none declared → up once exec'd; `notify` (s6 newline on an fd), `sd_notify`
 *    (READY=1), `tcp`, `http`, `exec`, `log` → up when that succeeds, each with a timeout; a
 *    timeout stops the child (stop signal, `shutdown` grace, SIGKILL) and is a crash ("not ready
 *    within 30 s: …").
 * 3. Liveness and watchdog: a failing check or a missed WATCHDOG=1 stops the child the same way: a crash.
 * 4. Stop (`killMode`, systemd's KillMode=): `control-group` (default) sends the stop signal to
 *    every process of the child (its cgroup: other sessions and process groups too) and waits for
 *    all of them; `mixed` sends it to the main process only and SIGKILLs the rest once the main
 *    process is gone. The engine's deadline then calls `kill()`: SIGKILL to everything.
 * 5. The main process: the program, until it exits 0 leaving processes behind (a daemon that forked
 *    into the background); then the pid in `pidFile` (systemd's PIDFile=), else the oldest process
 *    left. `pid` (what `ps` shows) follows it, and its death is the child's exit, with its status.
 *    Exit is reported once the cgroup is empty: whatever the main process left is killed.
 *    (Children without a PID namespace of their own, only where the host cannot confine, keep the
 *    older rule: supervised until the last process is gone, no `pidFile`.)
 *
 * Adoption: when the daemon restarted and its launcher still runs this path's instance
 * (`HostRuntime.adopt`: by the launcher's own record of the path and the cgroup's membership),
 * `start()` takes that process instead of spawning: `adopted` then `started` with its main pid,
 * readiness re-checked by a tcp/http/exec probe (other kinds cannot be asked again: reported up,
 * not declared), then stop, kill and exit exactly as for a spawned one.
 *
 * Exit classification: asked to stop → `shutdown`; killed by us → `killed`; readiness, liveness
 * or watchdog failure → `crashed` with that reason; the main process SIGKILLed with the cgroup's
 * OOM counter risen → `crashed` + `oom` (a helper's OOM kill does not override how the main
 * process ended); exit 0 → `normal`; a declared permanent exit code (default 125) →
 * `permanent_failure`; any other code or signal → `crashed`.
 */
import type {
  ChildDriver,
  ChildEvents,
  ChildHandle,
  EventSink,
  ExitReason,
  StartContext,
} from '../core/index.ts';
import { describeExit } from '../core/index.ts';
import type { CgroupGroup, Limits } from './cgroup/index.ts';
import { readCredentials, type SecretSource } from './confine/index.ts';
import type { AdoptedChild, HostRuntime } from './host-runtime.ts';
import { streamKey } from './host-runtime.ts';
import type { ExitEvent, Launcher, MountSpec, NotifyEvent, SpawnResult } from './launcher/client.ts';
import type { ChildLog } from './logs/index.ts';
import {
  type Check,
  execCheck,
  httpCheck,
  LivenessMonitor,
  LogMatcher,
  tcpCheck,
  Watchdog,
  waitExec,
  waitHttp,
  waitTcp,
} from './readiness/index.ts';
import { servedByAnother } from './readiness/precheck.ts';
import type { LivenessSpec, ReadySpec } from './readiness/spec.ts';

export type { LivenessSpec, ReadySpec } from './readiness/spec.ts';

/** systemd's KillMode=: `control-group` signals every process of the child, `mixed` the main one. */
export type KillMode = 'control-group' | 'mixed';

export interface ProcessOptions {
  command: readonly string[];
  /** Set for the child on top of the base environment. */
  env: Readonly<Record<string, string>>;
  /** Names inherited from captree's environment beyond PATH, LANG, TZ, HOME; true: all. */
  inheritEnv: readonly string[] | true;
  cwd: string;
  uid?: number;
  gid?: number;
  stopSignal: NodeJS.Signals;
  /** Who gets the stop signal: every process of the child, or its main process (see the module comment). */
  killMode: KillMode;
  /**
   * Time between the stop signal and SIGKILL when the driver itself stops the child (a readiness,
   * liveness or watchdog failure); the engine applies the same to stops it asks for.
   */
  shutdown: number | 'brutal' | 'infinity';
  /** Where a forking daemon writes its main pid, as the child sees the filesystem (absolute). */
  pidFile?: string;
  /** Exit codes that mean "do not restart me" (s6's 125). */
  permanentExitCodes: readonly number[];
  ready: ReadySpec | null;
  liveness: LivenessSpec | null;
  /** ms between required WATCHDOG=1 notifications, or null. */
  watchdog: number | null;
  logs: { maxSize: number; keep: number };
  /** Limits of the child's own cgroup (from its grant). */
  limits?: Limits;
  /** Run in a fresh network namespace with only loopback (`net: none`). */
  isolateNet?: boolean;
  /** Join the named network held at this file (`HostRuntime.network`); excludes `isolateNet`. */
  netns?: string;
  /** Listening sockets held by the launcher, passed with LISTEN_FDS in this order. */
  listenFds?: readonly { handle: number; name: string }[];
  /** A private mount namespace with these paths hidden, mounted back or read-only. */
  mounts?: Omit<MountSpec, 'credentials'>;
  /** Secrets delivered as files in a private tmpfs at `dir` ($CREDENTIALS_DIRECTORY), read at each start. */
  credentials?: { dir: string; secrets: readonly SecretSource[] };
  /** Drop capabilities (bounding and inheritable sets) and set no_new_privs; implied by `isolateNet` and `netns`. */
  noNewPrivs?: boolean;
  /** Linux capability numbers the child keeps (granted `requires.privileges`); the rest are dropped. */
  capabilities?: readonly number[];
  /** The host's filesystem read-only for the child but these directories (a uid 0 child not granted `root`). */
  writableOnly?: readonly string[];
}

/**
 * Options for `command` with the defaults a manifest gives a process child (no extra env,
 * SIGTERM, exit 125 permanent, no readiness, 10 MiB logs × 3), `overrides` winning where given
 * (an override left undefined keeps the default).
 */
export function processOptions(
  command: readonly string[],
  overrides: Partial<ProcessOptions> = {},
): ProcessOptions {
  return {
    command,
    env: {},
    inheritEnv: [],
    cwd: process.cwd(),
    stopSignal: 'SIGTERM',
    killMode: 'control-group',
    shutdown: 5000,
    permanentExitCodes: [125],
    ready: null,
    liveness: null,
    watchdog: null,
    logs: { maxSize: 10 * 2 ** 20, keep: 3 },
    ...Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined)),
  };
}

const baseEnvNames = ['PATH', 'LANG', 'TZ', 'HOME'];

/** The child's environment: nothing inherited but PATH/LANG/TZ/HOME unless asked. */
export function childEnv(options: ProcessOptions, path: string, host = process.env): Record<string, string> {
  const env: Record<string, string> = {};
  const names = options.inheritEnv === true ? Object.keys(host) : [...baseEnvNames, ...options.inheritEnv];
  for (const name of names) {
    const value = host[name];
    if (value !== undefined) env[name] = value;
  }
  env.PATH ??= '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
  Object.assign(env, options.env);
  env.CAPTREE_PATH = path;
  return env;
}

/**
 * What the driver needs of a runtime: the host's (`HostRuntime`), or the smaller one a supervisor
 * running as a captree child builds inside its grant (`src/child/runtime.ts`).
 */
export type ProcessRuntime = Pick<
  HostRuntime,
  'groupFor' | 'adopt' | 'noteLeftovers' | 'logFor' | 'launcher' | 'onNotify'
> &
  // A runtime that replaces a lost launcher (the host's): see HostRuntime's module comment.
  Partial<Pick<HostRuntime, 'launcherReady' | 'refreshListen'>>;

export function processDriver(runtime: ProcessRuntime, options: ProcessOptions): ChildDriver {
  return {
    kind: 'process',
    startsAsync: true,
    start(ctx: StartContext, events: ChildEvents): ChildHandle {
      const instance = new ProcessInstance(runtime, options, ctx.path, events);
      const adopted = runtime.adopt(ctx.path);
      if (adopted) void instance.adopt(adopted, ctx.sink, () => ctx.clock.now());
      else void instance.begin();
      return instance;
    },
  };
}

/** The exit reason of a process, given what we know about why it ended. */
export function classifyExit(
  exit: Pick<ExitEvent, 'code' | 'signal'>,
  context: { stopRequested: boolean; killed: boolean; failure: ExitReason | null; oom: boolean },
  permanentExitCodes: readonly number[],
): ExitReason {
  if (context.killed && !context.failure) return { kind: 'killed' };
  if (context.stopRequested && !context.failure) return { kind: 'shutdown' };
  if (context.failure) return context.failure;
  // Only a SIGKILL of the main process can be the OOM killer's doing: a helper's OOM kill does
  // not make an exit 0 (or a permanent exit code) a crash.
  if (context.oom && exit.signal === 'SIGKILL')
    return { kind: 'crashed', message: 'out of memory', signal: 'SIGKILL', oom: true };
  if (exit.code === 0) return { kind: 'normal' };
  if (exit.code !== null && permanentExitCodes.includes(exit.code)) {
    return {
      kind: 'permanent_failure',
      message: `exit code ${exit.code} declared permanent`,
      code: exit.code,
    };
  }
  if (exit.code !== null) return { kind: 'crashed', message: `exit code ${exit.code}`, code: exit.code };
  return { kind: 'crashed', message: `killed by ${exit.signal}`, signal: exit.signal ?? 'SIGKILL' };
}

/**
 * A group's OOM-kill count read when its last instance exited (the group then empty), handed to
 * the next instance as its baseline instead of reading the counter again on the restart path.
 */
const settledOomKills = new WeakMap<CgroupGroup, number>();

/** A child with a PID namespace of its own: the launcher reports an outer process, and its init follows the main one. */
function isConfined(o: ProcessOptions): boolean {
  return Boolean(o.isolateNet || o.netns !== undefined || o.noNewPrivs || o.mounts || o.credentials);
}

class ProcessInstance implements ChildHandle {
  /** The main process (what `ps` shows): the program, or the daemon it forked. */
  pid: number | null = null;
  readonly #runtime: ProcessRuntime;
  readonly #options: ProcessOptions;
  readonly #path: string;
  readonly #events: ChildEvents;
  readonly #abort = new AbortController();
  #group: CgroupGroup | null = null;
  #log: ChildLog | null = null;
  /** The pid the launcher spawned and reports the exit of (a confined child's outer process). */
  #launched: number | null = null;
  #confined = false;
  /** When the current instance was spawned (ms epoch): its log lines from then on are its own. */
  #spawnedAt = 0;
  #stopRequested = false;
  #killed = false;
  #failure: ExitReason | null = null;
  #oomBefore = 0;
  #mainAlive = false;
  #reported = false;
  #cleanups: (() => void)[] = [];

  constructor(runtime: ProcessRuntime, options: ProcessOptions, path: string, events: ChildEvents) {
    this.#runtime = runtime;
    this.#options = options;
    this.#path = path;
    this.#events = events;
    this.#confined = isConfined(options);
  }

  async begin(): Promise<void> {
    const o = this.#options;
    let spawned: SpawnResult;
    let launcher: Launcher | null = null;
    try {
      const group = this.#runtime.groupFor(this.#path);
      this.#group = group;
      const settled = settledOomKills.get(group);
      settledOomKills.delete(group);
      if (!group.isEmpty()) {
        // Leftovers of an earlier instance must not share the new one's group.
        const left = group.pids();
        await group.kill();
        await group.waitEmpty(AbortSignal.timeout(5000));
        this.#runtime.noteLeftovers(this.#path, left);
        this.#oomBefore = group.oomKills();
      } else {
        // Empty since the previous instance's exit counted its OOM kills: reuse that count.
        this.#oomBefore = settled ?? group.oomKills();
      }
      if (o.limits) group.setLimits(o.limits);
      this.#log = this.#runtime.logFor(this.#path, o.logs);
      // A passed listening socket (LISTEN_FDS) is ours and answers already: nothing to tell then.
      if ((o.ready?.type === 'tcp' || o.ready?.type === 'http') && !o.listenFds?.length) {
        const taken = await servedByAnother(o.ready);
        if (taken) {
          this.#report({ kind: 'crashed', message: taken });
          return;
        }
      }
      const sdNotify = o.ready?.type === 'sd_notify' || o.watchdog !== null;
      const mounts: MountSpec | undefined =
        o.mounts || o.credentials
          ? {
              ...o.mounts,
              ...(o.credentials
                ? { credentials: { dir: o.credentials.dir, files: readCredentials(o.credentials.secrets) } }
                : {}),
            }
          : undefined;
      if (o.pidFile !== undefined && !this.#confined)
        throw new Error(
          `pidFile ${o.pidFile} is followed only for a child in its own PID namespace, which this host cannot give`,
        );
      // After a launcher loss: its replacement, and the listening sockets opened again on it.
      const replacing = this.#runtime.launcherReady?.();
      if (replacing) await replacing;
      if (o.listenFds?.length) await this.#runtime.refreshListen?.(o.listenFds);
      launcher = this.#runtime.launcher;
      this.#spawnedAt = Date.now();
      spawned = await launcher.spawn({
        argv: o.command,
        env: childEnv(o, this.#path),
        cwd: o.cwd,
        uid: o.uid,
        gid: o.gid,
        cgroupProcs: group.procsFiles,
        notifyFd: o.ready?.type === 'notify' ? o.ready.fd : undefined,
        sdNotify,
        stdout: streamKey(this.#path, 'out'),
        stderr: streamKey(this.#path, 'err'),
        listenFds: o.listenFds,
        newNetNs: o.isolateNet,
        ...(o.netns !== undefined ? { netnsPath: o.netns } : {}),
        // Without it a root child could bring its namespace's way out back (nsenter, setns) or
        // unmount what hides the paths it was not granted.
        noNewPrivs: o.isolateNet || o.netns !== undefined || o.noNewPrivs,
        ...(o.capabilities && o.capabilities.length > 0 ? { capabilities: o.capabilities } : {}),
        ...(o.writableOnly ? { writableOnly: o.writableOnly } : {}),
        mounts,
        // The launcher's record of whose process this is: re-adoption trusts it, not the child.
        tag: this.#path,
        ...(o.pidFile !== undefined ? { pidFile: o.pidFile, pidFileWaitMs: o.ready?.timeout ?? 30_000 } : {}),
      });
    } catch (err) {
      const message = `could not start: ${(err as Error).message}`;
      // The launcher died under the spawn: not this child's failure (its restart is not counted).
      this.#report(
        launcher !== null && !launcher.connected
          ? { kind: 'crashed', message, reason: 'launcher_lost' }
          : { kind: 'crashed', message },
      );
      return;
    }
    this.#follow(spawned.pid, spawned.main, spawned.exited);
    this.#events.started(this.pid);
    if (this.#killed) {
      void this.#killAll();
      return;
    }
    if (this.#stopRequested) {
      this.#signalStop();
      return;
    }
    this.#watchNotify(spawned.pid);
    void this.#awaitReady(spawned);
  }

  /** From now on `launched` is this instance: its exit, its main process, its group membership. */
  #follow(launched: number, main: number, exited: Promise<ExitEvent>): void {
    this.#launched = launched;
    this.pid = main > 0 ? main : launched;
    this.#mainAlive = true;
    this.#group?.track(launched);
    this.#cleanups.push(
      this.#runtime.launcher.onMain(launched, (ev) => {
        this.pid = ev.main;
        this.#log?.note(
          ev.via === 'pidfile'
            ? `main process is now pid ${ev.main}, from ${this.#options.pidFile}`
            : ev.via === 'oldest-no-pidfile'
              ? `${this.#options.pidFile} named no live process in time; following the oldest process left, pid ${ev.main}`
              : `the program exited 0 leaving processes behind; following the oldest, pid ${ev.main}, as its main process`,
        );
      }),
    );
    exited.then(
      (exit) => void this.#onMainExit(exit),
      (err: unknown) => void this.#onMainExit({ code: null, signal: 'SIGKILL' }, err as Error),
    );
  }

  /** Takes over `child`, an instance an earlier daemon started (see the module comment). */
  async adopt(child: AdoptedChild, sink: EventSink, now: () => number): Promise<void> {
    const o = this.#options;
    let group: CgroupGroup;
    try {
      group = this.#runtime.groupFor(this.#path);
    } catch (err) {
      this.#runtime.launcher.killGroup(child.pid, 'SIGKILL').catch(() => {});
      this.#report({
        kind: 'crashed',
        message: `could not adopt pid ${child.pid}: ${(err as Error).message}`,
      });
      return;
    }
    this.#group = group;
    this.#follow(child.pid, child.main, child.exited);
    // Reported after start() returned, as for a spawned child.
    await Promise.resolve();
    settledOomKills.delete(group);
    this.#oomBefore = group.oomKills();
    this.#log = this.#runtime.logFor(this.#path, o.logs);
    this.#log.note(`adopted pid ${this.pid}, still running from before the daemon restarted`);
    try {
      // The same values as its group already holds, unless the manifest changed them.
      if (o.limits) group.setLimits(o.limits);
    } catch (err) {
      this.#log.note(`could not apply limits: ${(err as Error).message}`);
    }
    sink.emit({ type: 'adopted', path: this.#path, at: now(), pid: this.pid ?? child.pid });
    this.#events.started(this.pid);
    if (this.#killed) {
      void this.#killAll();
      return;
    }
    if (this.#stopRequested) {
      this.#signalStop();
      return;
    }
    this.#watchNotify(child.pid);
    const ready = o.ready;
    if (ready && (ready.type === 'tcp' || ready.type === 'http' || ready.type === 'exec')) {
      void this.#awaitReady({ ...child, forkedAtNs: 0n });
    } else {
      // Its notification (or log line) went to the daemon that died: it cannot be asked again.
      this.#events.ready(false);
      this.#startHealthChecks();
    }
  }

  stop(): void {
    this.#stopRequested = true;
    if (this.#launched !== null) this.#signalStop();
  }

  kill(): void {
    this.#killed = true;
    if (this.#launched !== null) void this.#killAll();
  }

  async #awaitReady(spawned: SpawnResult): Promise<void> {
    const ready = this.#options.ready;
    if (!ready) {
      this.#events.ready(false);
      this.#startHealthChecks();
      return;
    }
    const signal = this.#abort.signal;
    const wait = { timeoutMs: ready.timeout, signal };
    try {
      switch (ready.type) {
        case 'notify':
        case 'sd_notify':
          await withTimeout(spawned.ready, ready.timeout, signal);
          break;
        case 'tcp':
          await waitTcp({ host: ready.host, port: ready.port }, wait);
          break;
        case 'http':
          await waitHttp({ url: ready.url }, wait);
          break;
        case 'exec':
          await waitExec({ command: ready.command, cwd: this.#options.cwd }, wait);
          break;
        case 'log': {
          const matcher = new LogMatcher(ready.pattern, wait);
          // Lines this instance printed before the watch began (a fast child prints its ready
          // line while the spawn is still being answered): from the tail, then live.
          for (const r of this.#log?.tail.records(this.#spawnedAt) ?? [])
            if (r.stream !== 'sys') matcher.feed(r.text);
          const off = this.#log?.onRecord((r) => {
            if (r.stream !== 'sys') matcher.feed(r.text);
          });
          try {
            await matcher.ready;
          } finally {
            off?.();
          }
          break;
        }
      }
    } catch (err) {
      if (signal.aborted || this.#reported) return;
      this.#fail(`not ready within ${ready.timeout} ms (${ready.type}): ${(err as Error).message}`);
      return;
    }
    if (signal.aborted || this.#reported) return;
    this.#events.ready(true);
    this.#startHealthChecks();
  }

  #startHealthChecks(): void {
    const signal = this.#abort.signal;
    const l = this.#options.liveness;
    if (l) {
      const check: Check =
        l.type === 'tcp'
          ? tcpCheck({ host: l.host, port: l.port }, l.timeout)
          : l.type === 'http'
            ? httpCheck({ url: l.url }, l.timeout)
            : execCheck({ command: l.command, cwd: this.#options.cwd }, l.timeout);
      new LivenessMonitor({
        check,
        intervalMs: l.interval,
        failureThreshold: l.failures,
        signal,
        onUnhealthy: (reason, n) => this.#fail(`liveness check failed ${n} times: ${reason}`),
      });
    }
  }

  #watchNotify(pid: number): void {
    const watchdogMs = this.#options.watchdog;
    const watchdog =
      watchdogMs === null
        ? null
        : new Watchdog({
            intervalMs: watchdogMs,
            signal: this.#abort.signal,
            onMiss: (silence) => this.#fail(`watchdog missed: no WATCHDOG=1 for ${Math.round(silence)} ms`),
          });
    const onNotify = (n: NotifyEvent) => {
      if (n.fields.WATCHDOG === '1') watchdog?.kick();
      if (n.fields.WATCHDOG === 'trigger') this.#fail('watchdog triggered by the child');
      if (n.fields.STATUS !== undefined) this.#log?.note(`status: ${n.fields.STATUS}`);
    };
    this.#cleanups.push(this.#runtime.onNotify(pid, onNotify));
  }

  /**
   * A readiness, liveness or watchdog failure: the child is stopped as any stop would (the stop
   * signal, its `shutdown` grace, then SIGKILL: a database gets to shut down cleanly instead of
   * running crash recovery at its next start), and that failure is why it exited.
   */
  #fail(message: string): void {
    if (this.#reported || this.#failure) return;
    this.#failure = { kind: 'crashed', message };
    this.#log?.note(message);
    const grace = this.#options.shutdown;
    if (grace === 'brutal' || this.#killed) {
      void this.#killAll();
      return;
    }
    this.#signalStop();
    if (grace === 'infinity') return;
    const timer = setTimeout(() => {
      if (this.#reported) return;
      this.#log?.note(`still running ${grace} ms after ${this.#options.stopSignal}; killing it`);
      void this.#killAll();
    }, grace);
    this.#cleanups.push(() => clearTimeout(timer));
  }

  /** The stop signal, to every process or the main one as `killMode` says. */
  #signalStop(): void {
    const launched = this.#launched;
    if (launched === null) return;
    const o = this.#options;
    const scope = o.killMode === 'mixed' ? 'main' : 'all';
    if (this.#mainAlive) {
      this.#runtime.launcher.signal(launched, o.stopSignal, scope).catch(() => {
        // Exited meanwhile, or a launcher that predates scopes: its process group then.
        this.#runtime.launcher.killGroup(launched, o.stopSignal).catch(() => {});
      });
      return;
    }
    // An unconfined child's launched process is gone but what it forked is tracked: the cgroup.
    for (const p of this.#group?.pids() ?? []) {
      try {
        process.kill(p, o.stopSignal);
      } catch {
        // Already gone.
      }
    }
  }

  async #killAll(): Promise<void> {
    const launched = this.#launched;
    if (launched !== null && this.#mainAlive)
      await this.#runtime.launcher.killGroup(launched, 'SIGKILL').catch(() => {});
    await this.#group?.kill().catch(() => {});
  }

  async #onMainExit(exit: Pick<ExitEvent, 'code' | 'signal'>, lost?: Error): Promise<void> {
    this.#mainAlive = false;
    const group = this.#group as CgroupGroup;
    if (lost && !this.#killed)
      this.#failure ??= {
        kind: 'crashed',
        message: `launcher lost: ${lost.message}`,
        reason: 'launcher_lost',
      };
    // One read of the group's state: every cgroup file read is on the restart path.
    const empty = await isEmptyWhenFdsAllow(group);
    // A confined child's init already followed its main process: its exit is the child's. An
    // unconfined one that exits 0 may have left a daemon running: supervised until it is gone.
    const daemonized =
      !this.#confined && exit.code === 0 && !this.#stopRequested && !this.#killed && !this.#failure && !empty;
    // During a stop of every process, what the main process left had the signal too: it gets
    // the rest of the grace (the engine's deadline kills it).
    const graceful =
      (this.#stopRequested || (this.#failure !== null && !lost)) &&
      !this.#killed &&
      this.#options.killMode === 'control-group';
    if (daemonized) {
      this.#log?.note('main process exited 0; still supervising what it left running in its cgroup');
    } else if (!empty && !graceful) {
      await group.kill().catch(() => {});
    }
    // The common case is already empty: skip arming an inotify watch for it.
    const settled =
      empty ||
      (await group.waitEmpty().then(
        () => true,
        () => false,
      ));
    const oomKills = group.oomKills();
    // Empty now, so no OOM kill can happen in it before the next instance starts.
    if (settled) settledOomKills.set(group, oomKills);
    const oom = oomKills > this.#oomBefore;
    if (oom && exit.signal !== 'SIGKILL')
      this.#log?.note(
        `${oomKills - this.#oomBefore} process(es) in its cgroup were killed for lack of memory; the main process ended on its own (${exit.code !== null ? `exit code ${exit.code}` : `signal ${exit.signal}`})`,
      );
    // Its restart needs a launcher: reported once the lost one is replaced (or could not be).
    if (lost) await this.#runtime.launcherReady?.()?.catch(() => {});
    this.#report(
      classifyExit(
        exit,
        { stopRequested: this.#stopRequested, killed: this.#killed, failure: this.#failure, oom },
        this.#options.permanentExitCodes,
      ),
    );
  }

  #report(reason: ExitReason): void {
    if (this.#reported) return;
    this.#reported = true;
    this.#abort.abort();
    for (const cleanup of this.#cleanups.splice(0)) cleanup();
    this.#log?.note(`exited: ${describeExit(reason)}`);
    this.#events.exited(reason);
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err: unknown) => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/**
 * `group.isEmpty()`, waiting out a shortage of file descriptors (EMFILE, ENFILE) instead of
 * failing the exit handling: a child's exit must be handled whatever else holds descriptors.
 */
async function isEmptyWhenFdsAllow(group: CgroupGroup): Promise<boolean> {
  for (let attempt = 0; ; attempt++) {
    try {
      return group.isEmpty();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if ((code !== 'EMFILE' && code !== 'ENFILE') || attempt >= 100) throw err;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}
