/**
 * A running tree on this host: owns the state dir, builds and starts the tree, journals every
 * event and serves the control API. `captree up` runs one in the foreground (or, with
 * `--detach`, in a background copy of itself); this module has no terminal or signal handling,
 * so tests run it in-process.
 *
 * Shutdown order, whatever triggers it (`down`, a signal, the root giving up): the supervisor
 * stops its children in reverse start order, then the runtime removes cgroups and stops the
 * launcher, then the API answers the pending `down` and closes, then `state.json` and the pid
 * file go. A second `up` can therefore take the state dir over only once every process is gone.
 *
 * Crash recovery: a daemon killed without that shutdown (`kill -9`) leaves its launcher running
 * the children, a stale pid file (taken over) and `state.json` (children held stopped). The next
 * daemon re-attaches to the launcher, adopts each child still running instead of starting it,
 * keeps the held ones stopped, and once the tree is up kills whatever nothing supervises; the
 * journal records each adoption, each exit that happened meanwhile and each orphan killed.
 * Restart counters and intensity windows start over.
 */
import { readdirSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { ExitReason } from '../core/index.ts';
import type { ManifestTree } from '../manifest/index.ts';
import { admissionEndpoint } from './admit-endpoint.ts';
import { type Channels, openChannels } from './channel.ts';
import { watchDaemonLog } from './daemon-log.ts';
import { canAdmit, DynamicChildren } from './dynamic-children.ts';
import { Journal, type JournalRecord, pathsOfPids } from './journal.ts';
import { Metrics } from './metrics.ts';
import { appliedFile, canReconcile, Reconciler, recoveredManifest } from './reconcile.ts';
import { reconcileEndpoint } from './reconcile-endpoint.ts';
import { type ControlServer, createControlServer, type TcpOptions } from './server.ts';
import { signalEndpoint } from './signal-endpoint.ts';
import { acquireStateDir, DurableState, type StatePaths, statePaths } from './state.ts';
import type { DaemonInfo, RecoveryReport, RunningTree, TreeBuilder } from './types.ts';

export interface DaemonOptions {
  manifest: ManifestTree;
  stateDir: string;
  /** Default: the host runtime (`build-tree.ts`). */
  build?: TreeBuilder;
  /** Every journalled event, after it is on disk. */
  onEvent?(record: JournalRecord): void;
  /** Also serve the control API on TCP, authenticated by tokens (`server.ts`). */
  tcp?: TcpOptions;
  /** Serve the dashboard (and the API behind it) on TCP too, with this admin token (`web.ts`). */
  web?: TcpOptions;
}

export interface Daemon {
  readonly tree: RunningTree;
  readonly paths: StatePaths;
  readonly journal: Journal;
  /** Resolves once every child started; rejects with the reason one could not. */
  readonly started: Promise<void>;
  /** Resolves with the process exit code once everything is stopped and cleaned up. */
  readonly finished: Promise<number>;
  /** Stops the tree in order (idempotent); resolves when every process is gone. */
  stop(): Promise<void>;
  /** Kills every child at once: the second Ctrl-C. */
  kill(): Promise<void>;
  info(): DaemonInfo;
}

/**
 * The host runtime's tree builder, loaded on first use so that client commands (`ps`, `logs`)
 * do not load the launcher and cgroup code.
 */
export async function defaultBuilder(): Promise<TreeBuilder> {
  const { buildTree } = await import('./build-tree.ts');
  return buildTree;
}

let version: string | undefined;
function packageVersion(): string {
  if (version === undefined) {
    try {
      const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
      version = String(pkg.version);
    } catch {
      version = 'unknown';
    }
  }
  return version;
}

function fileSize(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

function exitCode(reason: ExitReason): number {
  return reason.kind === 'normal' || reason.kind === 'shutdown' ? 0 : 1;
}

/**
 * The journal's rotation from the environment: `CAPTREE_JOURNAL_MAX_SIZE` (bytes, or with a unit:
 * 4Mi, 512Ki) and `CAPTREE_JOURNAL_KEEP` (rotated files kept). Unset or unreadable: the defaults.
 */
export function journalLimits(env: NodeJS.ProcessEnv): { maxBytes?: number; keep?: number } {
  const out: { maxBytes?: number; keep?: number } = {};
  const size = env.CAPTREE_JOURNAL_MAX_SIZE?.trim();
  const units: Record<string, number> = { '': 1, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3 };
  const m = size ? /^(\d+)(|Ki|Mi|Gi)$/.exec(size) : null;
  if (m) out.maxBytes = Number(m[1]) * (units[m[2] as string] as number);
  const keep = env.CAPTREE_JOURNAL_KEEP?.trim();
  if (keep && /^\d+$/.test(keep)) out.keep = Number(keep);
  return out;
}

/**
 * Temporary files (`<file>.<pid>.<random>.tmp`, private-fs.ts) a process killed mid-write left in
 * the state dir: the dir is ours now, so one whose writer is gone is garbage.
 */
function removeStaleTemps(dir: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const m = /\.(\d+)\.[a-z0-9]+\.tmp$/.exec(name);
    if (!m || (Number(m[1]) !== process.pid && isRunning(Number(m[1])))) continue;
    try {
      unlinkSync(join(dir, name));
    } catch {
      // Gone already.
    }
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A writer killed with -9 and not reaped yet is a zombie: it writes nothing more.
  try {
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

export async function startDaemon(options: DaemonOptions): Promise<Daemon> {
  const paths = statePaths(options.stateDir);
  // sockaddr_un holds 107 bytes of path; a longer one fails later with a cryptic EINVAL.
  if (Buffer.byteLength(paths.socket) > 107) {
    throw new Error(
      `the state dir path is too long for a unix socket (${paths.socket}); use --state with a shorter path`,
    );
  }
  const release = acquireStateDir(paths);
  removeStaleTemps(paths.dir);
  let journal: Journal | undefined;
  let tree: RunningTree;
  let durable: DurableState;
  // What earlier daemons journalled ends here: their `started` records name the pids they ran.
  let journalEnd = 0;
  try {
    journalEnd = fileSize(paths.journal);
    journal = new Journal(paths.journal, journalLimits(process.env));
    durable = DurableState.load(paths.state);
    const build = options.build ?? (await defaultBuilder());
    // After a crash, the tree last applied runs again (an apply cut short included), not the file.
    const manifest = recoveredManifest(paths, durable) ?? options.manifest;
    tree = await build(manifest, { stateDir: paths.dir, holds: durable });
  } catch (err) {
    journal?.close();
    release();
    throw err;
  }
  const j = journal;
  // Journalled whether or not anyone listens (`onEvent?.(j.append(e))` would skip the append).
  const journalled = (event: Parameters<Journal['append']>[0]): void => {
    const r = j.append(event);
    options.onEvent?.(r);
  };
  const sup = tree.supervisor;
  // A child's log on a full disk: said once when records start being dropped, once on resuming.
  if ('onLogTrouble' in tree.runtime)
    tree.runtime.onLogTrouble = (path, t) =>
      journalled(
        t.state === 'dropping'
          ? { type: 'log_dropping', path, at: sup.clock.now(), error: t.error }
          : {
              type: 'log_resumed',
              path,
              at: sup.clock.now(),
              dropped: t.dropped,
              droppedBytes: t.droppedBytes,
            },
      );
  // A launcher lost (kill -9): its children are restarted on a new one, uncounted (host-runtime.ts).
  if ('onLauncherTrouble' in tree.runtime)
    tree.runtime.onLauncherTrouble = (t) =>
      journalled(
        t.state === 'lost'
          ? { type: 'launcher_lost', path: sup.path, at: sup.clock.now(), pid: t.pid, error: t.error }
          : {
              type: 'launcher_restarted',
              path: sup.path,
              at: sup.clock.now(),
              pid: t.pid,
              ms: t.ms,
              ...(t.error !== undefined ? { error: t.error } : {}),
            },
      );
  const metrics = new Metrics(tree);
  sup.subscribe((event) => {
    metrics.observe(event);
    const record = j.append(event);
    options.onEvent?.(record);
  });
  // Supervisor children's private channels (channel.ts), listening before anything starts.
  let channels: Channels | null;
  try {
    channels = await openChannels(tree, journalled);
  } catch (err) {
    await tree.runtime.close();
    j.close();
    release();
    throw err;
  }
  const startedAt = Date.now();
  let control: ControlServer | undefined;
  let webUrl: string | null = null;
  const info = (): DaemonInfo => ({
    pid: process.pid,
    name: options.manifest.root.name,
    manifest: options.manifest.file,
    stateDir: paths.dir,
    startedAt,
    state: sup.state,
    version: packageVersion(),
    tcp: control?.tcpAddress() ?? null,
    web: webUrl,
    journal: j.health,
  });

  // The runtime is closed whatever stopped the root: a `down`, a signal, or an escalation.
  const treeGone: Promise<ExitReason> = sup.whenStopped().then(async (reason) => {
    tree.retainCounters?.([]);
    await channels?.close();
    await tree.runtime.close();
    return reason;
  });
  const stop = async () => {
    await sup.stop();
    await treeGone;
  };
  const kill = async () => {
    await sup.kill();
    await treeGone;
  };
  // Children admitted at run time: re-admitted now (before anything starts), re-added as nodes come up.
  let dynamic: DynamicChildren | undefined;
  try {
    if (canAdmit(tree)) dynamic = await DynamicChildren.create({ tree, durable, record: journalled });
  } catch (err) {
    await channels?.close();
    await tree.runtime.close();
    j.close();
    release();
    throw err;
  }
  const admission = dynamic
    ? admissionEndpoint(dynamic, (node, status, body) => metrics.admission(node, status, body))
    : undefined;
  const reconciler = canReconcile(tree)
    ? new Reconciler({
        tree,
        durable,
        paths,
        dynamic,
        record: journalled,
        changed: () => channels?.renegotiator.refresh(),
      })
    : undefined;
  if (reconciler) {
    // An apply installs a whole new capability tree: a grant changed meanwhile would be undone.
    const paused = () =>
      reconciler.applyingNow
        ? 'an apply of a changed manifest is under way; nothing was changed: ask again once it is done'
        : null;
    if (dynamic) dynamic.pausedBy = paused;
    if (channels) channels.renegotiator.pausedBy = paused;
  }
  const scopesOf = dynamic ? (token: string) => (dynamic as DynamicChildren).scopesOf(token) : undefined;
  const signals = signalEndpoint(tree, journalled);
  control = createControlServer({
    tree,
    journal: j,
    info,
    down: stop,
    admission,
    scopesOf,
    metrics,
    ...(reconciler ? { reconcile: reconcileEndpoint(reconciler) } : {}),
    signals,
  });
  let serving = `the control socket ${paths.socket}`;
  try {
    await control.listen(paths.socket);
    if (options.tcp) {
      serving = `TCP ${options.tcp.host}:${options.tcp.port}`;
      await control.listenTcp(options.tcp);
    }
    if (options.web) {
      serving = `the dashboard on ${options.web.host}:${options.web.port}`;
      webUrl = await control.listenTcp(options.web, 'web');
    }
  } catch (err) {
    await control.close();
    await sup.stop();
    await treeGone;
    await import('node:fs/promises').then((fs) => fs.rm(paths.socket, { force: true }));
    j.close();
    release();
    throw new Error(`cannot serve ${serving}: ${(err as Error).message}`);
  }

  const record = journalled;
  const recover = async () => {
    let report: RecoveryReport | undefined;
    try {
      report = await tree.recover?.();
    } catch (err) {
      // The tree is up; what could not be swept stays visible in the log.
      console.error(`captree: recovery sweep failed: ${(err as Error).message}`);
      return;
    }
    if (!report?.recovery) return;
    const { recovery, kills } = report;
    const unknown = new Set(recovery.exitedOffline.filter((e) => e.path === null).map((e) => e.pid));
    const known = pathsOfPids(paths.journal, unknown, journalEnd);
    const root = sup.path;
    for (const e of recovery.exitedOffline) {
      const path = e.path ?? known.get(e.pid) ?? root;
      record({
        type: 'exited_offline',
        path,
        at: sup.clock.now(),
        pid: e.pid,
        code: e.code,
        signal: e.signal,
      });
    }
    for (const k of kills)
      record({ type: 'orphan_killed', path: k.path, at: sup.clock.now(), pid: k.pid, why: k.why });
    record({
      type: 'recovered',
      path: root,
      at: sup.clock.now(),
      launcherPid: recovery.launcherPid,
      found: recovery.found.length,
      exited: recovery.exitedOffline.length,
      killed: kills.length,
    });
  };
  // `started` includes the sweep: once it resolves, nothing unsupervised is left running.
  const started = sup
    .start()
    .then(() => dynamic?.settled())
    .then(recover)
    .then(() =>
      // An apply that cannot be finished is journalled as such; the tree runs on regardless.
      reconciler?.resume().catch((err: unknown) => {
        console.error(`captree: could not finish the apply: ${(err as Error).message}`);
      }),
    )
    .then(() => undefined);
  // A failed start is reported through `started`; `finished` still resolves (with exit code 1).
  started.catch(() => {});
  // A detached daemon's own output (daemon.log) is bounded too.
  const stopWatchingLog = watchDaemonLog(paths.log);
  const finished = treeGone.then(async (reason) => {
    reconciler?.close();
    stopWatchingLog();
    await control?.close();
    await import('node:fs/promises').then(async (fs) => {
      await fs.rm(paths.socket, { force: true });
      // Shell sessions whose clients were killed: their children are stopped with the tree.
      await fs.rm(join(paths.dir, 'shells'), { recursive: true, force: true });
    });
    // Stopped in order: the next `up` starts from the manifest alone.
    durable.remove();
    await import('node:fs/promises').then((fs) => fs.rm(appliedFile(paths), { force: true }));
    j.close();
    release();
    return exitCode(reason);
  });
  return { tree, paths, journal: j, started, finished, stop, kill, info };
}
