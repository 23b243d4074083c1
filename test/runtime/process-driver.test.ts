/**
 * The OS-process driver through the real engine: real programs (test/runtime/fixtures) spawned by
 * the launcher into real cgroups, supervised by a `Supervisor`. Containment (fork bomb, OOM,
 * double-forking daemon), stop and kill deadlines, exit classification, every readiness kind
 * (each shown not ready before its gate opens), watchdog and liveness, the child's environment,
 * and log capture across rotation and restarts.
 *
 * Nothing sleeps for an outcome: every wait is on a supervisor event, a launcher event or a log
 * record, bounded by `within()` so a missing event fails the test instead of hanging it.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type TestContext, test } from 'node:test';
import type { ChildSpec, ExitReason, SupervisorEvent, SupervisorSpec } from '../../src/core/index.ts';
import { Supervisor } from '../../src/core/index.ts';
import { HostRuntime, logName } from '../../src/runtime/host-runtime.ts';
import type { NotifyEvent } from '../../src/runtime/launcher/client.ts';
import { type LogRecord, readLogSince } from '../../src/runtime/logs/index.ts';
import { type ProcessOptions, processDriver, processOptions } from '../../src/runtime/process-driver.ts';
import { skipOrFail, uniqueName } from '../support/host.ts';
import { freePort } from '../support/net.ts';

const fixtures = path.join(import.meta.dirname, 'fixtures');
const fixture = (name: string) => path.join(fixtures, name);

/** The real interpreter behind `python3` on PATH (not a pyenv shim), or null. */
const python = (() => {
  try {
    return execFileSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim();
  } catch {
    return null;
  }
})();

function onPath(program: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const file = path.join(dir, program);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      return file;
    } catch {}
  }
  return null;
}

function needPython(t: TestContext): string | null {
  if (python === null) skipOrFail(t, 'python3 is not installed');
  return python;
}

/** Rejects with a message naming `what` unless `promise` settles within `ms`. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Every supervisor event, and waits for the next one matching a predicate. */
class Recorder {
  readonly events: SupervisorEvent[] = [];
  #waiters: {
    from: number;
    match: (e: SupervisorEvent) => boolean;
    resolve: (e: SupervisorEvent) => void;
  }[] = [];

  constructor(sup: Supervisor) {
    sup.subscribe((e) => {
      this.events.push(e);
      const index = this.events.length - 1;
      this.#waiters = this.#waiters.filter((w) => {
        if (index < w.from || !w.match(e)) return true;
        w.resolve(e);
        return false;
      });
    });
  }

  /** The first event at or after index `from` (default: any so far) matching `match`. */
  wait(match: (e: SupervisorEvent) => boolean, what: string, ms = 5000, from = 0): Promise<SupervisorEvent> {
    const seen = this.events.slice(from).find(match);
    if (seen) return Promise.resolve(seen);
    return within(new Promise((resolve) => this.#waiters.push({ from, match, resolve })), ms, what);
  }

  of(type: SupervisorEvent['type'], childPath: string): SupervisorEvent[] {
    return this.events.filter((e) => e.type === type && e.path === childPath);
  }
}

type Ev<T extends SupervisorEvent['type']> = Extract<SupervisorEvent, { type: T }>;

interface Harness {
  runtime: HostRuntime;
  sup: Supervisor;
  rec: Recorder;
  dir: string;
  path(id: string): string;
  exited(id: string, what?: string, ms?: number, from?: number): Promise<ExitReason>;
  started(id: string, from?: number, ms?: number): Promise<number>;
  /** Resolves with the first record of the child's log (so far or to come) whose text matches. */
  logLine(id: string, pattern: RegExp, ms?: number): Promise<LogRecord>;
  /** Every record of the child's log files, oldest first. */
  readLog(id: string, keep?: number): Promise<LogRecord[]>;
}

/**
 * A runtime in a fresh state directory and a supervisor over `children(runtime, dir)`, torn down
 * after the test: supervisor stopped, cgroups removed, launcher closed, directory deleted.
 */
async function harness(
  t: TestContext,
  prefix: string,
  children: (runtime: HostRuntime, dir: string) => ChildSpec[],
  spec: Partial<SupervisorSpec> = {},
): Promise<Harness> {
  const name = uniqueName(prefix);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${name}-`));
  const runtime = await HostRuntime.open({ stateDir: dir, name });
  const sup = new Supervisor({
    name,
    intensity: 100,
    period: 1000,
    ...spec,
    children: children(runtime, dir),
  });
  t.after(async () => {
    await sup.stop();
    await runtime.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const rec = new Recorder(sup);
  const childPath = (id: string) => `${sup.path}/${id}`;
  return {
    runtime,
    sup,
    rec,
    dir,
    path: childPath,
    async exited(id, what = `${id} to exit`, ms = 5000, from = 0) {
      const e = await rec.wait((e) => e.type === 'exited' && e.path === childPath(id), what, ms, from);
      return (e as Ev<'exited'>).reason;
    },
    async started(id, from = 0, ms = 5000) {
      const e = await rec.wait(
        (e) => e.type === 'started' && e.path === childPath(id),
        `${id} to start`,
        ms,
        from,
      );
      return (e as Ev<'started'>).pid as number;
    },
    async logLine(id, pattern, ms = 5000) {
      await rec.wait((e) => e.type === 'started' && e.path === childPath(id), `${id} to start`, ms);
      const log = runtime.existingLog(childPath(id));
      assert.ok(log, `${id} has a log`);
      const seen = log.tail.records().find((r) => pattern.test(r.text));
      if (seen) return seen;
      let off = () => {};
      return within(
        new Promise<LogRecord>((resolve) => {
          off = log.onRecord((r) => {
            if (pattern.test(r.text)) resolve(r);
          });
        }),
        ms,
        `a line matching ${pattern} in ${id}'s log`,
      ).finally(() => off());
    },
    async readLog(id, keep = 5) {
      const log = runtime.existingLog(childPath(id));
      assert.ok(log, `${id} has a log`);
      await log.flush();
      return readLogSince(runtime.logsDir, logName(childPath(id)), 0, { keep });
    },
  };
}

/** Process options with test defaults; `command` as given. */
function proc(command: string[], o: Partial<ProcessOptions> = {}): ProcessOptions {
  return processOptions(command, { cwd: '/', logs: { maxSize: 1 << 20, keep: 5 }, ...o });
}

/** Gone, or a zombie about to be reaped: it runs no more code. */
function isGone(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state === 'Z' || state === 'X';
  } catch {
    return true;
  }
}

function readKeyed(file: string, key: string): number | null {
  const line = fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${key} `));
  return line === undefined ? null : Number(line.slice(key.length + 1));
}

// ---- containment ------------------------------------------------------------------------------

test('a fork bomb is contained by limits.pids and stop leaves nothing', async (t) => {
  const py = needPython(t);
  if (!py) return;
  const h = await harness(t, 'forkbomb', (rt) => [
    { id: 'bomb', driver: processDriver(rt, proc([py, fixture('forkbomb.py')], { limits: { pids: 16 } })) },
  ]);
  const group = h.runtime.groupFor(h.path('bomb'));
  if (group.usage().pids === null) skipOrFail(t, 'no pids accounting on this host');
  let peak = 0;
  const sample = setInterval(() => {
    peak = Math.max(peak, group.usage().pids ?? 0);
  }, 1);
  try {
    await h.sup.start();
    const line = await h.logLine('bomb', /fork failed after \d+ forks/);
    t.diagnostic(line.text);
    assert.match(line.text, /EAGAIN/);
    const pids = group.pids();
    peak = Math.max(peak, group.usage().pids ?? 0, pids.length);
    assert.ok(peak <= 16, `pids peaked at ${peak}, above the limit of 16`);
    assert.ok(pids.length >= 2 && pids.length <= 16, `${pids.length} processes in the group`);
    const pidsDir = group.dirs.find((d) => d.includes('/pids/')) ?? group.dirs.at(-1)!;
    const events = path.join(pidsDir, 'pids.events');
    if (fs.existsSync(events))
      assert.ok((readKeyed(events, 'max') ?? 0) > 0, 'pids.events counts refused forks');
    t.diagnostic(`peak ${peak} pids; ${pids.length} processes when contained`);
    await within(h.sup.stop(), 5000, 'the supervisor to stop');
    assert.deepEqual(await h.exited('bomb'), { kind: 'shutdown' });
    assert.ok(group.isEmpty(), 'the group is empty after stop');
    assert.deepEqual(group.pids(), []);
    for (const pid of pids) assert.ok(isGone(pid), `pid ${pid} is gone`);
  } finally {
    clearInterval(sample);
  }
});

test('a memory hog under limits.memory is OOM-killed: crashed with oom', async (t) => {
  const py = needPython(t);
  if (!py) return;
  const h = await harness(t, 'memhog', (rt) => [
    {
      id: 'hog',
      restart: 'temporary',
      driver: processDriver(rt, proc([py, fixture('memhog.py')], { limits: { memory: 64 * 1024 * 1024 } })),
    },
  ]);
  await h.sup.start();
  const reason = await h.exited('hog', 'the hog to be OOM-killed', 10_000);
  t.diagnostic(JSON.stringify(reason));
  assert.equal(reason.kind, 'crashed');
  assert.equal(reason.kind === 'crashed' && reason.oom, true);
  assert.equal(reason.kind === 'crashed' && reason.signal, 'SIGKILL');
  const held = (await h.readLog('hog')).filter((r) => r.stream === 'out').at(-1)?.text ?? '';
  t.diagnostic(`last line before the kill: ${held}`);
  assert.ok(Number(/holding (\d+) MiB/.exec(held)?.[1]) < 64, 'killed before holding 64 MiB');
});

test('a double-forking daemon stays supervised after its main process exits 0; stop kills it', async (t) => {
  const py = needPython(t);
  if (!py) return;
  let pidfile = '';
  const h = await harness(t, 'daemon', (rt, dir) => {
    pidfile = path.join(dir, 'daemon.pid');
    return [{ id: 'd', driver: processDriver(rt, proc([py, fixture('daemon.py'), pidfile])) }];
  });
  const mainExited = new Promise<number>((resolve) => {
    h.runtime.launcher.on('exited', (e) => resolve(e.pid));
  });
  await h.sup.start();
  const main = await h.started('d');
  assert.equal(await within(mainExited, 5000, 'the main process to exit'), main);
  await h.logLine('d', /main process exited 0; still supervising/);
  const daemon = Number(fs.readFileSync(pidfile, 'utf8'));
  const group = h.runtime.groupFor(h.path('d'));
  assert.ok(isGone(main), 'the main process is gone');
  assert.ok(!isGone(daemon), 'the daemon runs');
  assert.notEqual(daemon, main);
  assert.equal(h.sup.child('d')?.state, 'running', 'still supervised after the main pid exited');
  assert.ok(!group.isEmpty(), 'its cgroup still holds the daemon');
  assert.ok(group.pids().includes(daemon), 'the daemon is in the child cgroup');
  assert.equal(h.rec.of('exited', h.path('d')).length, 0, 'no exit reported while the daemon runs');
  await within(h.sup.stop(), 5000, 'the supervisor to stop');
  assert.deepEqual(await h.exited('d'), { kind: 'shutdown' });
  assert.ok(isGone(daemon), 'stop killed the daemon');
  assert.ok(group.isEmpty(), 'the group is empty');
});

// ---- stopping and exit classification ----------------------------------------------------------

test('a process ignoring SIGTERM is killed at the shutdown deadline', async (t) => {
  const h = await harness(t, 'noterm', (rt) => [
    {
      id: 'stubborn',
      shutdown: 300,
      driver: processDriver(
        rt,
        proc(['/bin/sh', '-c', 'trap "" TERM; echo >&3; exec sleep 3600'], {
          ready: { type: 'notify', fd: 3, timeout: 5000 },
        }),
      ),
    },
  ]);
  await h.sup.start();
  const pid = await h.started('stubborn');
  const t0 = performance.now();
  await within(h.sup.stop(), 5000, 'the supervisor to stop');
  const took = performance.now() - t0;
  const stopping = h.rec.of('stopping', h.path('stubborn'))[0]!;
  const exited = h.rec.of('exited', h.path('stubborn'))[0] as Ev<'exited'>;
  t.diagnostic(
    `stop took ${took.toFixed(0)} ms (${(exited.at - stopping.at).toFixed(0)} ms by the engine's clock)`,
  );
  assert.deepEqual(exited.reason, { kind: 'killed' });
  assert.ok(exited.at - stopping.at >= 300, 'not killed before the deadline');
  assert.ok(took >= 300 && took < 2000, `stop took ${took} ms`);
  assert.ok(isGone(pid));
});

test('exit classification: 0 normal, 3 crashed, 125 permanent failure, kill -9 crashed and restarted', async (t) => {
  const h = await harness(t, 'exits', (rt) => [
    { id: 'zero', restart: 'transient', driver: processDriver(rt, proc(['/bin/sh', '-c', 'exit 0'])) },
    { id: 'three', restart: 'temporary', driver: processDriver(rt, proc(['/bin/sh', '-c', 'exit 3'])) },
    { id: 'perm', driver: processDriver(rt, proc(['/bin/sh', '-c', 'exit 125'])) },
    { id: 'victim', driver: processDriver(rt, proc(['/bin/sleep', '3600'])) },
  ]);
  await h.sup.start();
  assert.deepEqual(await h.exited('zero'), { kind: 'normal' });
  assert.deepEqual(await h.exited('three'), { kind: 'crashed', message: 'exit code 3', code: 3 });
  const perm = await h.exited('perm');
  assert.equal(perm.kind, 'permanent_failure');
  assert.equal(perm.kind === 'permanent_failure' && perm.code, 125);
  await h.rec.wait((e) => e.type === 'permanent_failure' && e.path === h.path('perm'), 'perm to be failed');
  assert.equal(h.sup.child('perm')?.state, 'failed');

  const first = await h.started('victim');
  const from = h.rec.events.length;
  process.kill(first, 'SIGKILL');
  const reason = await h.exited('victim', 'the victim to exit', 5000, from);
  assert.equal(reason.kind, 'crashed');
  assert.equal(reason.kind === 'crashed' && reason.signal, 'SIGKILL');
  assert.notEqual(reason.kind === 'crashed' && reason.oom, true, 'an outside SIGKILL is not an OOM kill');
  const second = await h.started('victim', from);
  assert.notEqual(second, first, 'restarted as a new process');
  assert.equal(h.sup.child('victim')?.pid, second);
  assert.equal(h.sup.child('victim')?.restarts, 1);

  // Only the killed child was restarted.
  for (const id of ['zero', 'three', 'perm']) assert.equal(h.rec.of('restarting', h.path(id)).length, 0, id);
  assert.equal(h.sup.child('zero')?.state, 'stopped');
  assert.equal(h.sup.child('three'), undefined, 'a temporary child is gone after its exit');
});

// ---- readiness --------------------------------------------------------------------------------

interface Gated {
  /** The line the child logs once it runs but must not be ready yet. */
  waiting: RegExp;
  command: (gate: string, port: number) => string[];
  ready: (gate: string, port: number) => ProcessOptions['ready'];
}

/**
 * Starts a child whose readiness depends on a file the test creates: it must run, not be ready,
 * and become ready (declared) only after the file exists.
 */
async function gatedReadiness(t: TestContext, kind: string, g: Gated): Promise<void> {
  const port = await freePort();
  let gate = '';
  const h = await harness(t, `ready-${kind}`, (rt, dir) => {
    gate = path.join(dir, 'gate');
    return [
      { id: 'svc', driver: processDriver(rt, proc(g.command(gate, port), { ready: g.ready(gate, port) })) },
    ];
  });
  const starting = h.sup.start();
  starting.catch(() => {});
  await h.logLine('svc', g.waiting);
  assert.equal(h.rec.of('ready', h.path('svc')).length, 0, `${kind}: not ready before the gate opens`);
  assert.equal(h.sup.child('svc')?.state, 'starting');
  const openedAt = h.sup.clock.now();
  fs.writeFileSync(gate, '');
  await within(starting, 5000, `${kind} readiness`);
  const ready = h.rec.of('ready', h.path('svc'))[0] as Ev<'ready'>;
  assert.equal(ready.declared, true);
  assert.ok(ready.at >= openedAt, `${kind}: ready only after the gate opened`);
  assert.equal(h.sup.child('svc')?.state, 'ready');
  t.diagnostic(`${kind}: ready ${(ready.at - openedAt).toFixed(1)} ms after the gate opened`);
}

const waitGate = (gate: string, then: string) =>
  `echo waiting for gate; while [ ! -e '${gate}' ]; do sleep 0.01; done; ${then}`;

test('readiness: notify fd', (t) =>
  gatedReadiness(t, 'notify', {
    waiting: /waiting for gate/,
    command: (gate) => ['/bin/sh', '-c', waitGate(gate, 'echo >&3; exec sleep 3600')],
    ready: () => ({ type: 'notify', fd: 3, timeout: 5000 }),
  }));

test('readiness: sd_notify READY=1 from python', async (t) => {
  const py = needPython(t);
  if (!py) return;
  await gatedReadiness(t, 'sd_notify', {
    waiting: /waiting for gate/,
    command: (gate) => [py, fixture('sd-notify.py'), 'ready', gate],
    ready: () => ({ type: 'sd_notify', timeout: 5000 }),
  });
});

test('readiness: systemd-notify --ready', async (t) => {
  const tool = onPath('systemd-notify');
  if (!tool) {
    t.skip('systemd-notify is not installed (optional: the python sd_notify test covers the protocol)');
    return;
  }
  await gatedReadiness(t, 'systemd-notify', {
    waiting: /waiting for gate/,
    command: (gate) => ['/bin/sh', '-c', waitGate(gate, `${tool} --ready; exec sleep 3600`)],
    ready: () => ({ type: 'sd_notify', timeout: 5000 }),
  });
});

test('readiness: tcp, a server listening late', async (t) => {
  const py = needPython(t);
  if (!py) return;
  await gatedReadiness(t, 'tcp', {
    waiting: /waiting for gate/,
    command: (gate, port) => [py, fixture('tcp-server.py'), String(port), gate, 'late'],
    ready: (_, port) => ({ type: 'tcp', host: '127.0.0.1', port, timeout: 5000 }),
  });
});

test('readiness: http, 2xx on /health (a 503 is not ready)', async (t) => {
  const py = needPython(t);
  if (!py) return;
  await gatedReadiness(t, 'http', {
    // The server is up and has already answered a probe with 503.
    waiting: /GET \/health 503/,
    command: (gate, port) => [py, fixture('http-health.py'), String(port), gate],
    ready: (_, port) => ({ type: 'http', url: `http://127.0.0.1:${port}/health`, timeout: 5000 }),
  });
});

test('readiness: exec (test -f FILE)', (t) =>
  gatedReadiness(t, 'exec', {
    waiting: /waiting for gate/,
    command: () => ['/bin/sh', '-c', 'echo waiting for gate; exec sleep 3600'],
    ready: (gate) => ({ type: 'exec', command: ['test', '-f', gate], timeout: 5000 }),
  }));

test('readiness: log regex', (t) =>
  gatedReadiness(t, 'log', {
    waiting: /waiting for gate/,
    command: (gate) => [
      '/bin/sh',
      '-c',
      waitGate(gate, 'echo "server listening on port 8080"; exec sleep 3600'),
    ],
    ready: () => ({ type: 'log', pattern: 'listening on port \\d+', timeout: 5000 }),
  }));

test('readiness timeout: start fails with "not ready" and the process is killed', async (t) => {
  const h = await harness(t, 'notready', (rt) => [
    {
      id: 'mute',
      driver: processDriver(
        rt,
        proc(['/bin/sleep', '3600'], { ready: { type: 'notify', fd: 3, timeout: 300 } }),
      ),
    },
  ]);
  const t0 = performance.now();
  await assert.rejects(within(h.sup.start(), 5000, 'start to fail'), (err: Error) => {
    t.diagnostic(err.message);
    assert.match(err.message, /not ready/);
    return true;
  });
  assert.ok(performance.now() - t0 >= 300, 'not before the timeout');
  const failed = h.rec.of('start_failed', h.path('mute'))[0] as Ev<'start_failed'>;
  assert.equal(failed.reason.kind, 'crashed');
  assert.match(failed.reason.kind === 'crashed' ? failed.reason.message : '', /not ready within 300 ms/);
  assert.ok(isGone(await h.started('mute')));
  assert.ok(h.runtime.groupFor(h.path('mute')).isEmpty());
});

test('readiness timeout stops like any stop: the stop signal and the grace first (a clean shutdown)', async (t) => {
  const h = await harness(t, 'notready-clean', (rt) => [
    {
      id: 'db',
      driver: processDriver(
        rt,
        proc(['/bin/sh', '-c', 'trap "echo clean shutdown; exit 0" TERM; while :; do sleep 0.05; done'], {
          ready: { type: 'notify', fd: 3, timeout: 300 },
          shutdown: 5000,
          noNewPrivs: true,
        }),
      ),
    },
  ]);
  await assert.rejects(within(h.sup.start(), 5000, 'start to fail'), /not ready within 300 ms/);
  const failed = h.rec.of('start_failed', h.path('db'))[0] as Ev<'start_failed'>;
  assert.match(failed.reason.kind === 'crashed' ? failed.reason.message : '', /not ready within 300 ms/);
  const lines = (await h.readLog('db')).map((r) => r.text);
  assert.ok(lines.includes('clean shutdown'), `its own clean shutdown ran:\n${lines.join('\n')}`);
  assert.ok(!lines.some((l) => /killing it/.test(l)), 'no SIGKILL was needed');
  assert.ok(h.runtime.groupFor(h.path('db')).isEmpty());
});

test('readiness timeout: a process ignoring the stop signal is SIGKILLed after its grace', async (t) => {
  const h = await harness(t, 'notready-stuck', (rt) => [
    {
      id: 'stuck',
      driver: processDriver(
        rt,
        proc(['/bin/sh', '-c', 'trap "echo TERM ignored" TERM; while :; do sleep 0.05; done'], {
          ready: { type: 'notify', fd: 3, timeout: 300 },
          shutdown: 200,
        }),
      ),
    },
  ]);
  await assert.rejects(within(h.sup.start(), 5000, 'start to fail'), /not ready within 300 ms/);
  const lines = (await h.readLog('stuck')).map((r) => r.text);
  const asked = lines.indexOf('TERM ignored');
  const killed = lines.findIndex((l) => /still running 200 ms after SIGTERM; killing it/.test(l));
  assert.ok(asked >= 0 && killed > asked, `SIGTERM, then SIGKILL after the grace:\n${lines.join('\n')}`);
  assert.ok(h.runtime.groupFor(h.path('stuck')).isEmpty());
});

// ---- watchdog and liveness ----------------------------------------------------------------------

test('watchdog: a child that stops sending WATCHDOG=1 is crashed for it', async (t) => {
  const py = needPython(t);
  if (!py) return;
  const h = await harness(t, 'watchdog', (rt) => [
    {
      id: 'wd',
      restart: 'temporary',
      driver: processDriver(
        rt,
        proc([py, fixture('sd-notify.py'), 'watchdog', '2', '100'], { watchdog: 300 }),
      ),
    },
  ]);
  const kicks: number[] = [];
  const onNotify = (n: NotifyEvent) => {
    if (n.fields.WATCHDOG === '1') kicks.push(performance.now());
  };
  h.runtime.launcher.on('notify', onNotify);
  t.after(() => h.runtime.launcher.off('notify', onNotify));
  await h.sup.start();
  const reason = await h.exited('wd', 'the watchdog to fire');
  const at = performance.now();
  t.diagnostic(JSON.stringify(reason));
  assert.equal(reason.kind, 'crashed');
  assert.match(reason.kind === 'crashed' ? reason.message : '', /watchdog/);
  assert.equal(kicks.length, 2, 'both kicks arrived');
  assert.ok(at - kicks[1]! >= 290, `fired ${(at - kicks[1]!).toFixed(0)} ms after the last kick`);
});

test('liveness: a tcp check against a port that closes crashes the child', async (t) => {
  const py = needPython(t);
  if (!py) return;
  const port = await freePort();
  let gate = '';
  const h = await harness(t, 'liveness', (rt, dir) => {
    gate = path.join(dir, 'gate');
    return [
      {
        id: 'srv',
        restart: 'temporary',
        driver: processDriver(
          rt,
          proc([py, fixture('tcp-server.py'), String(port), gate, 'close'], {
            ready: { type: 'notify', fd: 3, timeout: 5000 },
            liveness: { type: 'tcp', host: '127.0.0.1', port, interval: 100, timeout: 200, failures: 2 },
          }),
        ),
      },
    ];
  });
  await h.sup.start();
  await h.logLine('srv', /connection accepted/); // a liveness probe succeeded
  assert.equal(h.rec.of('exited', h.path('srv')).length, 0, 'healthy while the port is open');
  fs.writeFileSync(gate, '');
  const reason = await h.exited('srv', 'the liveness check to fail');
  t.diagnostic(JSON.stringify(reason));
  assert.equal(reason.kind, 'crashed');
  assert.match(reason.kind === 'crashed' ? reason.message : '', /liveness/);
});

// ---- environment ------------------------------------------------------------------------------

test('environment: PATH/LANG/TZ/HOME + env + CAPTREE_PATH only, unless inherited by name', async (t) => {
  const saved = { secret: process.env.CAPTREE_TEST_SECRET, shared: process.env.CAPTREE_TEST_SHARED };
  process.env.CAPTREE_TEST_SECRET = 'must-not-leak';
  process.env.CAPTREE_TEST_SHARED = 'inherited';
  t.after(() => {
    for (const [name, value] of [
      ['CAPTREE_TEST_SECRET', saved.secret],
      ['CAPTREE_TEST_SHARED', saved.shared],
    ] as const) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  });
  const h = await harness(t, 'env', (rt) => [
    {
      id: 'plain',
      restart: 'temporary',
      driver: processDriver(rt, proc(['/usr/bin/env'], { env: { GIVEN: 'yes', LANG: 'C.UTF-8' } })),
    },
    {
      id: 'inherit',
      restart: 'temporary',
      driver: processDriver(rt, proc(['/usr/bin/env'], { inheritEnv: ['CAPTREE_TEST_SHARED'] })),
    },
  ]);
  await h.sup.start();
  await h.exited('plain');
  await h.exited('inherit');
  const envOf = async (id: string) =>
    Object.fromEntries(
      (await h.readLog(id))
        .filter((r) => r.stream === 'out')
        .map((r) => [r.text.slice(0, r.text.indexOf('=')), r.text.slice(r.text.indexOf('=') + 1)]),
    );
  const base: Record<string, string> = {};
  for (const name of ['PATH', 'LANG', 'TZ', 'HOME']) {
    const value = process.env[name];
    if (value !== undefined) base[name] = value;
  }
  assert.deepEqual(await envOf('plain'), {
    ...base,
    GIVEN: 'yes',
    LANG: 'C.UTF-8',
    CAPTREE_PATH: h.path('plain'),
  });
  assert.deepEqual(await envOf('inherit'), {
    ...base,
    CAPTREE_TEST_SHARED: 'inherited',
    CAPTREE_PATH: h.path('inherit'),
  });
});

// ---- logs -------------------------------------------------------------------------------------

test('logs: stdout and stderr land in the child log under logsDir', async (t) => {
  const h = await harness(t, 'logs', (rt) => [
    {
      id: 'talk',
      restart: 'temporary',
      driver: processDriver(rt, proc(['/bin/sh', '-c', 'echo to stdout; echo to stderr >&2; exit 0'])),
    },
  ]);
  await h.sup.start();
  await h.exited('talk');
  const records = (await h.readLog('talk')).map((r) => [r.stream, r.text]);
  const file = path.join(h.runtime.logsDir, `${logName(h.path('talk'))}.log`);
  assert.ok(fs.existsSync(file), `${file} exists`);
  // Two pipes: their relative order is not preserved, each stream's own order is.
  assert.deepEqual(records.filter(([s]) => s !== 'sys').sort(), [
    ['err', 'to stderr'],
    ['out', 'to stdout'],
  ]);
  assert.deepEqual(records.at(-1), ['sys', 'exited: exited normally']);
});

test('logs: 20,000 lines survive rotation at 64 KiB, none lost or reordered', async (t) => {
  const lines = 20_000;
  const h = await harness(t, 'rotate', (rt) => [
    {
      id: 'seq',
      restart: 'temporary',
      driver: processDriver(
        rt,
        proc(['/usr/bin/seq', '1', String(lines)], { logs: { maxSize: 64 * 1024, keep: 50 } }),
      ),
    },
  ]);
  await h.sup.start();
  await h.exited('seq');
  const log = h.runtime.existingLog(h.path('seq'))!;
  const out = (await h.readLog('seq', 50)).filter((r) => r.stream === 'out').map((r) => r.text);
  assert.equal(out.length, lines, 'every line captured exactly once');
  for (let i = 0; i < lines; i++) {
    if (out[i] !== String(i + 1)) assert.fail(`line ${i + 1} is ${JSON.stringify(out[i])}`);
  }
  const files = log.writer.files().filter((f) => fs.existsSync(f));
  t.diagnostic(`${log.writer.rotations} rotations, ${files.length} files`);
  assert.ok(log.writer.rotations >= 5, 'the log rotated');
  for (const f of files) assert.ok(fs.statSync(f).size <= 64 * 1024, `${f} within maxSize`);
});

test('logs: output written just before a crash is kept across the restart', async (t) => {
  let counter = '';
  const h = await harness(t, 'crashlog', (rt, dir) => {
    counter = path.join(dir, 'count');
    const script = [
      `n=$(cat '${counter}' 2>/dev/null || echo 0); n=$((n + 1)); echo $n > '${counter}'`,
      'if [ $n -eq 1 ]; then seq -f "first %g" 1 3000; echo "first: last words" >&2; exit 1; fi',
      'echo "instance $n up"; exec sleep 3600',
    ].join('\n');
    return [{ id: 'c', driver: processDriver(rt, proc(['/bin/sh', '-c', script])) }];
  });
  await h.sup.start();
  const reason = await h.exited('c');
  assert.deepEqual(reason, { kind: 'crashed', message: 'exit code 1', code: 1 });
  await h.logLine('c', /instance 2 up/);
  const records = await h.readLog('c');
  const texts = records.map((r) => `${r.stream} ${r.text}`);
  const first = texts.filter((x) => x.startsWith('out first '));
  assert.equal(first.length, 3000, 'every line of the crashed instance');
  assert.deepEqual(first.slice(-2), ['out first 2999', 'out first 3000']);
  const lastWords = texts.indexOf('err first: last words');
  const exitNote = texts.findIndex((x) => /^sys exited: exit code 1\b/.test(x));
  const second = texts.indexOf('out instance 2 up');
  assert.ok(lastWords >= 0, 'stderr of the crashed instance');
  assert.ok(
    exitNote > texts.lastIndexOf('out first 3000') && exitNote > lastWords,
    'exit noted after its output',
  );
  assert.ok(second > exitNote, 'the replacement logs after the exit note');
});
