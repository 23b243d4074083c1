/**
 * `captree up`: validates the manifest, then runs the tree in the foreground with a live
 * summary, serving the control API until Ctrl-C, SIGTERM or `captree down`; with `--detach`,
 * starts a background copy of itself and returns once the tree is up.
 *
 * The background copy is this same command with CAPTREE_DAEMON=1, stdout and stderr appended
 * to `daemon.log` and an IPC channel on which it reports "ready" or "failed" exactly once, so
 * the foreground side waits on an event instead of polling.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  ControlClient,
  type Daemon,
  type DaemonInfo,
  type JournalRecord,
  liveOwner,
  StateDirBusyError,
  snapshot,
  startDaemon,
  stateDirFor,
  statePaths,
  type TcpOptions,
} from '../../daemon/index.ts';
// Not the manifest layer itself (`yaml`, `zod`): the detached daemon gets the parsed tree as
// JSON from the foreground side and never loads the parser (see `--tree-json`).
import {
  ensurePrivateDir,
  openAppend,
  readPrivate,
  UnsafeStateError,
  writeAtomic,
} from '../../daemon/private-fs.ts';
import { serviceManager } from '../../daemon/service-manager.ts';
import { formatErrors } from '../../manifest/format.ts';
import type { ManifestTree } from '../../manifest/index.ts';
import {
  CliError,
  type Command,
  display,
  type Io,
  palette,
  tokenFromFile,
  UsageError,
  type Values,
} from '../cli.ts';
import { FailureWatch } from '../failure.ts';
import { LiveView } from '../live.ts';
import { eventLine } from '../render.ts';
import { dashboardUrl, webOptions, webTokenFile } from './up-web.ts';

type DaemonMessage = { type: 'ready' } | { type: 'failed'; message: string };

export const up: Command = {
  name: 'up',
  summary: 'validate a manifest and run its tree (foreground, or --detach)',
  usage:
    'captree up [FILE] [--detach] [--state DIR] [--listen HOST:PORT --token-file FILE] [--web HOST:PORT]',
  help: `
Checks the manifest (default: captree.yaml) and, if it has no error, starts its tree: children
in order, each ready before the next. Runs in the foreground with a live summary (on a
terminal: the tree redrawn in place; otherwise one line per event) and serves the control API
on STATE/control.sock for ps, logs, restart, events and down. Ctrl-C or SIGTERM stops the tree
in order and exits once every process is gone (Ctrl-C twice kills at once).
The state directory (default: .captree beside the manifest) holds control.sock, daemon.pid,
journal.jsonl and daemon.log. A state directory owned by a live daemon is refused. One whose
daemon died (kill -9 included) is recovered: the children its launcher kept running are
adopted (same pids), children held by stop stay stopped, and anything left unsupervised is
killed; the journal records each.
With --detach, runs in the background (output to daemon.log) and returns once the tree is up.
With --listen, the same API is also served on TCP (plain HTTP: bind to loopback or a private
network, or put TLS in front). Every TCP request must carry Authorization: Bearer TOKEN: the
content of --token-file is the admin token (anything the socket allows); a node's admission
token (admission.tokens) may only admit, revoke and read under that node. Other commands
reach it with --url http://HOST:PORT --token-file FILE.
With --web, the dashboard (docs/dashboard.md) is served on HOST:PORT (port 0: any free port) and
up prints the URL to open, with a login token in it: the --token-file's admin token if given,
else a fresh one kept in STATE/web.token. With --listen, the dashboard is at /ui/ there too.

Example:
  captree up examples/demo/captree.yaml
  captree up --detach && captree ps
  captree up --detach --listen 127.0.0.1:7070 --token-file admin.token
  captree up --web 127.0.0.1:7071`,
  options: {
    detach: { type: 'boolean', short: 'd', description: 'run in the background; return once the tree is up' },
    state: { type: 'string', description: 'state directory (default: .captree beside the manifest)' },
    listen: { type: 'string', description: 'also serve the API on TCP at HOST:PORT (needs --token-file)' },
    'token-file': {
      type: 'string',
      description: 'with --listen or --web: file whose content is the admin token',
    },
    web: { type: 'string', description: 'serve the dashboard on HOST:PORT; prints the URL to open' },
    'web-token-file': { type: 'string', hidden: true },
    // Internal: the detached daemon's tree, parsed and checked by the `up --detach` that started it.
    'tree-json': { type: 'string', hidden: true },
  },
  positionals: [0, 1],
  async run({ values, positionals }, io) {
    const file = path.resolve(io.cwd, positionals[0] ?? 'captree.yaml');
    const shown = positionals[0] ?? 'captree.yaml';
    const tcp = tcpOptions(values, io);
    if (!fs.existsSync(file)) {
      throw new CliError(`no manifest at ${shown} (create one, or name it: captree up FILE)`);
    }
    let tree: ManifestTree;
    if (typeof values['tree-json'] === 'string') {
      // The detached daemon: the foreground side parsed and checked the manifest already.
      if (io.env.CAPTREE_DAEMON !== '1') throw new UsageError('--tree-json is internal to up --detach');
      tree = readTreeJson(path.resolve(io.cwd, values['tree-json']));
    } else {
      // Validate before touching the state dir: a bad manifest must leave a running tree alone.
      // Errors name the file as the user wrote it (relative paths stay relative).
      const { validate } = await import('./check.ts');
      const result = await validate(io.cwd === process.cwd() ? shown : file);
      if (!result.tree) {
        io.stderr.write(`${formatErrors(result.errors)}\n`);
        throw new CliError(`${result.errors.length} error(s) in ${shown}; nothing was started or changed`);
      }
      tree = result.tree;
    }
    const stateDir =
      typeof values.state === 'string' ? path.resolve(io.cwd, values.state) : stateDirFor(file);
    const paths = statePaths(stateDir);
    const owner = liveOwner(paths);
    if (owner !== null) throw new StateDirBusyError(display(paths.dir, io.cwd), owner);
    const web = webOptions(values, io, paths.dir);
    if (values.detach && io.env.CAPTREE_DAEMON !== '1') return detach(file, tree, paths.dir, io, values, web);
    return foreground(tree, paths.dir, io, tcp, web);
  },
};

/** `--listen HOST:PORT` (IPv6 as `[::1]:PORT`) with `--token-file`, checked before anything starts. */
function tcpOptions(values: Values, io: Io): TcpOptions | undefined {
  const listen = values.listen;
  if (typeof listen !== 'string') {
    if (typeof values['token-file'] === 'string' && typeof values.web !== 'string')
      throw new UsageError('--token-file goes with --listen HOST:PORT or --web HOST:PORT');
    return undefined;
  }
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(listen);
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || port > 65535)
    throw new UsageError(`--listen ${listen}: expected HOST:PORT (127.0.0.1:7070, [::1]:7070)`);
  const token = tokenFromFile(values, io);
  if (token === undefined)
    throw new UsageError(
      '--listen needs --token-file FILE: the admin token every TCP request must present (e.g. openssl rand -hex 32 > FILE)',
    );
  return { host: (m[1] ?? m[2]) as string, port, token };
}

/**
 * The daemon lives long and mostly idles: a small young generation (V8's default semi-space is
 * 16 MiB and kept resident) and a collection once the tree is up, so the peak of parsing the
 * manifest is given back instead of staying resident (containerd keeps its shims small the same way).
 * No memory reducer: its timer woke an idle daemon every 8 s for ever; the daemon collects once
 * its clients have gone instead (daemon/idle-collect.ts).
 */
const daemonV8Flags = ['--max-semi-space-size=1', '--expose-gc', '--no-memory-reducer'];

/**
 * Where the foreground side hands the parsed tree to the daemon: plain data (JSON), so the daemon
 * never loads `yaml` or `zod` nor parses the manifest again (at 1,000 children the parse is
 * most of its peak heap). Written whole (tmp, fsync, rename); the daemon removes it once read.
 */
function treeJsonPath(stateDir: string): string {
  return path.join(stateDir, 'tree.json');
}

function writeTreeJson(file: string, tree: ManifestTree): void {
  writeAtomic(file, JSON.stringify(tree));
}

function readTreeJson(file: string): ManifestTree {
  let tree: ManifestTree;
  try {
    const text = readPrivate(file);
    if (text === null) throw new Error('it does not exist');
    tree = JSON.parse(text) as ManifestTree;
  } catch (err) {
    throw new CliError(`cannot read the parsed manifest ${file}: ${(err as Error).message}`);
  }
  fs.rmSync(file, { force: true });
  return tree;
}

async function detach(
  file: string,
  tree: ManifestTree,
  stateDir: string,
  io: Io,
  values: Values,
  web: TcpOptions | undefined,
): Promise<number> {
  const paths = statePaths(stateDir);
  privateStateDir(paths.dir);
  // The daemon used to parse `file` itself, as an absolute path: its tree names it so.
  const treeJson = treeJsonPath(paths.dir);
  writeTreeJson(treeJson, { ...tree, file });
  const logStart = fs.existsSync(paths.log) ? fs.statSync(paths.log).size : 0;
  const log = privateOpen(() => openAppend(paths.log));
  const main = process.argv[1] ?? '';
  const child = spawn(
    process.execPath,
    [
      ...process.execArgv,
      ...daemonV8Flags,
      main,
      'up',
      file,
      '--state',
      paths.dir,
      '--tree-json',
      treeJson,
      ...(typeof values.listen === 'string'
        ? ['--listen', values.listen, '--token-file', path.resolve(io.cwd, String(values['token-file']))]
        : []),
      ...(web ? ['--web', String(values.web), '--web-token-file', webTokenOf(paths.dir, web)] : []),
    ],
    {
      cwd: io.cwd,
      detached: true,
      stdio: ['ignore', log, log, 'ipc'],
      // The service manager is told by this process or not at all (see service-manager.ts).
      env: { ...withoutNotify(io.env), CAPTREE_DAEMON: '1' },
    },
  );
  fs.closeSync(log);
  const outcome = await new Promise<{ ok: true } | { ok: false; message: string }>((resolve) => {
    let failure: string | null = null;
    child.on('message', (m: DaemonMessage) => {
      if (m.type === 'ready') resolve({ ok: true });
      else failure = m.message;
    });
    // After a failure report the daemon cleans up and exits; wait for that before answering.
    child.on('exit', (code, signal) =>
      resolve({
        ok: false,
        message: failure ?? `the daemon exited (${signal ?? `code ${code}`}) before the tree was up`,
      }),
    );
    child.on('error', (err) => resolve({ ok: false, message: `cannot start the daemon: ${err.message}` }));
  });
  if (!outcome.ok) {
    const tail = readFrom(paths.log, logStart).trimEnd().split('\n').slice(-15).join('\n');
    if (tail) io.stderr.write(`${tail}\n`);
    throw new CliError(`${outcome.message} (log: ${display(paths.log, io.cwd)})`);
  }
  const info = await new ControlClient(paths.socket).json<DaemonInfo>('/v1/daemon');
  child.disconnect();
  child.unref();
  io.stdout.write(
    `captree: /${info.name} is up in the background (daemon pid ${info.pid}, state ${display(paths.dir, io.cwd)})\n` +
      (info.tcp ? `  control API also on ${info.tcp} (bearer token required)\n` : '') +
      (info.web && web ? `  dashboard: ${dashboardUrl(info.web, web.token)}\n` : '') +
      (path.resolve(io.cwd, '.captree') === paths.dir
        ? '  see it: captree ps    stop it: captree down\n'
        : `  see it: captree ps --state ${display(paths.dir, io.cwd)}    stop it: captree down --state ${display(paths.dir, io.cwd)}\n`),
  );
  return 0;
}

function withoutNotify(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const { NOTIFY_SOCKET: _, ...rest } = env;
  return rest;
}

/** The file the detached daemon reads the dashboard token from (written 0600 if need be). */
function webTokenOf(stateDir: string, web: TcpOptions): string {
  const file = webTokenFile(stateDir);
  if (!fs.existsSync(file) || fs.readFileSync(file, 'utf8').trim() !== web.token)
    fs.writeFileSync(file, `${web.token}\n`, { mode: 0o600 });
  return file;
}

function readFrom(file: string, offset: number): string {
  try {
    const buf = fs.readFileSync(file);
    return buf.subarray(offset).toString('utf8');
  } catch {
    return '';
  }
}

async function foreground(
  tree: ManifestTree,
  stateDir: string,
  io: Io,
  tcp: TcpOptions | undefined,
  web: TcpOptions | undefined,
): Promise<number> {
  const asDaemon = io.env.CAPTREE_DAEMON === '1' && typeof process.send === 'function';
  const report = (m: DaemonMessage) => {
    if (asDaemon && process.connected) process.send?.(m, () => process.disconnect());
  };
  const p = palette(io.stdout, io.env);
  const tty = io.stdout.isTTY === true && !asDaemon;
  const name = tree.root.path;
  // Under systemd (captree unit): READY=1 once the tree is up, STOPPING=1 as it stops.
  const manager = asDaemon ? null : serviceManager(io.env);
  const tell = (fields: string[]) =>
    manager?.notify(fields).then((trouble) => {
      if (trouble) io.stderr.write(`captree: ${trouble}\n`);
    });
  let view: LiveView | null = null;
  let daemon: Daemon | undefined;
  const failures = new FailureWatch();
  const onEvent = (r: JournalRecord) => {
    failures.event(r);
    // Whatever stops the root (a signal, captree down, giving up): once.
    if (r.type === 'stopping' && r.path === name) void tell(['STOPPING=1', `STATUS=stopping ${name}`]);
    if (view) view.event(r);
    else io.stdout.write(`${eventLine(r, p)}\n`);
  };
  const where = display(stateDir, io.cwd);
  const header = (state: string) =>
    `captree: ${name} ${state} (state ${where}${state === 'stopped' ? '' : '; Ctrl-C to stop'})`;
  // The view exists before the daemon: the first events are emitted while it starts.
  if (tty)
    view = new LiveView(
      io.stdout,
      p,
      (limit) => (daemon ? snapshot(daemon.tree, limit) : []),
      header('starting'),
    );
  else io.stdout.write(`captree: starting ${name} (pid ${process.pid}, state ${where})\n`);
  try {
    daemon = await startDaemon({
      manifest: tree,
      stateDir,
      onEvent,
      ...(tcp ? { tcp } : {}),
      ...(web ? { web } : {}),
    });
  } catch (err) {
    view?.close();
    const message =
      err instanceof StateDirBusyError
        ? err.message
        : `cannot start ${name}: ${(err as Error).message ?? String(err)}`;
    report({ type: 'failed', message });
    throw new CliError(message);
  }
  const d = daemon;
  view?.changed();

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals === 1) {
      if (view) view.header = header('stopping; Ctrl-C again to kill');
      else io.stdout.write(`captree: ${signal}: stopping ${name}\n`);
      void d.stop();
    } else {
      if (!view) io.stdout.write(`captree: ${signal} again: killing ${name}\n`);
      void d.kill();
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  if (!asDaemon) process.on('SIGHUP', onSignal);
  // Output that can no longer be written never ends supervision by a crash. A terminal gone
  // (SSH or tmux died: EIO, EPIPE) is a hangup: the tree is stopped in order and nothing outlives
  // it. A detached daemon's output is daemon.log: on a full disk only its lines are lost.
  let outputLost = false;
  const onOutputError = () => {
    if (outputLost) return;
    outputLost = true;
    if (asDaemon || signals > 0) return;
    signals++;
    view?.close();
    view = null;
    void d.stop();
  };
  io.stdout.on('error', onOutputError);
  io.stderr.on('error', onOutputError);

  d.started.then(
    () => {
      report({ type: 'ready' });
      void tell(['READY=1', `STATUS=${name} is up`]);
      (globalThis as { gc?: () => void }).gc?.();
      const open = d.info().web && web && !asDaemon ? dashboardUrl(d.info().web as string, web.token) : null;
      if (view) view.header = `${header('up')}${open ? `\n  dashboard: ${open}` : ''}`;
      else
        io.stdout.write(
          `captree: ${name} is up; control socket ${display(d.paths.socket, io.cwd)}${d.info().tcp ? `, TCP ${d.info().tcp}` : ''}\n` +
            (open ? `  dashboard: ${open}\n` : ''),
        );
    },
    (err: unknown) => {
      const message = `${name} failed to start: ${(err as Error).message ?? String(err)}`;
      report({ type: 'failed', message });
      view?.close();
      view = null;
      io.stderr.write(`captree: ${message}\n`);
    },
  );
  const code = await d.finished;
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  process.off('SIGHUP', onSignal);
  if (view) {
    view.header = header('stopped');
    view.close();
  }
  if (code !== 0) io.stderr.write(await failures.report(stateDir));
  io.stdout.write(`captree: ${name} stopped${code === 0 ? '' : ' (with failures; see: captree events)'}\n`);
  return code;
}

/** The state dir is this user's alone (private-fs.ts): a clear error, nothing started, if not. */
function privateStateDir(dir: string): void {
  privateOpen(() => ensurePrivateDir(dir));
}

function privateOpen<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof UnsafeStateError) throw new CliError(err.message);
    throw err;
  }
}
