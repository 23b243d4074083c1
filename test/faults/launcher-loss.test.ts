/**
 * The launcher is lost (`kill -9` from the host) under a running tree of the real bin: a new
 * launcher is started, every child that died with the old one runs again (new pids, in their own
 * cgroups, a listening socket served again), the restarts are journalled as `launcher_lost` and do
 * not count against the intensity (the root allows one restart in 5 s and has four children to
 * restart), and `down` leaves no process or cgroup behind.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { isAlive, readPid, statePaths } from '../../src/daemon/index.ts';
import {
  alive,
  captree,
  cgroupsNamed,
  type Entry,
  eventually,
  freePort,
  killAll,
  psJson,
} from '../cli/helpers.ts';

const dirs: string[] = [];
const cleanup: number[] = [];

after(() => {
  killAll(cleanup.filter((p) => isAlive(p)));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** The launcher a daemon started: its child process named `captree-launche(r)`. */
function launcherOf(daemon: number): number | undefined {
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'latin1');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === daemon && comm.startsWith('captree-launche')) return Number(name);
    } catch {
      // Gone meanwhile.
    }
  }
  return undefined;
}

/** The cgroup paths (per hierarchy) a process is in, or [] once it is gone. */
function cgroupsOf(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cgroup`, 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => l.slice(l.indexOf(':', l.indexOf(':') + 1) + 1));
  } catch {
    return [];
  }
}

/** Asks the child listening on `port` (loopback) for its line. */
function hello(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let text = '';
    s.setEncoding('utf8');
    s.on('data', (d) => {
      text += d;
    });
    s.on('end', () => resolve(text));
    s.on('error', reject);
  });
}

test('kill -9 of the launcher: a new one runs every child again, uncounted, and nothing leaks', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'captree-lloss-'));
  dirs.push(dir);
  const name = `ll${process.pid}${Math.random().toString(36).slice(2, 6)}`;
  const port = await freePort();
  const server = `import socket; s = socket.socket(fileno=3); [c.sendall(b"hello\\n") or c.close() for c, _ in iter(s.accept, None)]`;
  writeFileSync(
    join(dir, 'captree.yaml'),
    [
      `name: ${name}`,
      'intensity: 1',
      'period: 5s',
      'children:',
      '  - name: plain',
      '    command: [sleep, infinity]',
      '  - name: confined',
      '    command: [sleep, infinity]',
      '    requires: { net: none }',
      '  - name: web',
      `    command: [/usr/bin/python3, -c, '${server}']`,
      `    requires: { net: none, listen: { http: 127.0.0.1:${port} } }`,
      '  - name: inner',
      '    strategy: rest_for_one',
      '    intensity: 1',
      '    children:',
      '      - name: a',
      '        command: [sleep, infinity]',
      '      - name: b',
      '        command: [sleep, infinity]',
      '',
    ].join('\n'),
  );
  const up = await captree(['up', '--detach'], dir);
  assert.equal(up.code, 0, up.stderr);
  const daemon = readPid(statePaths(join(dir, '.captree')));
  assert.ok(daemon !== null);
  cleanup.push(daemon);
  const processes = (entries: Entry[]) => entries.filter((e) => e.kind === 'process');
  const running = (entries: Entry[]) =>
    processes(entries).every((e) => e.pid !== null && (e.state === 'running' || e.state === 'ready'));
  const before = await eventually(async () => {
    const entries = await psJson(dir);
    return processes(entries).length === 5 && running(entries) ? entries : undefined;
  }, 'every child running');
  const oldPids = processes(before).map((e) => e.pid as number);
  cleanup.push(...oldPids);
  assert.equal(await hello(port), 'hello\n');
  const launcher = launcherOf(daemon);
  assert.ok(launcher !== undefined, 'the daemon runs a launcher');
  cleanup.push(launcher);

  process.kill(launcher, 'SIGKILL');

  const again = await eventually(async () => {
    const entries = await psJson(dir);
    const now = processes(entries);
    return now.length === 5 && running(entries) && now.every((e) => !oldPids.includes(e.pid as number))
      ? entries
      : undefined;
  }, 'every child running again with a new pid');
  const newPids = processes(again).map((e) => e.pid as number);
  cleanup.push(...newPids);
  const replacement = launcherOf(daemon);
  assert.ok(replacement !== undefined && replacement !== launcher, 'a new launcher runs');
  cleanup.push(replacement);
  assert.ok(isAlive(daemon), 'the daemon lives');
  assert.deepEqual(alive(oldPids), [], 'nothing of the old instances is left');
  for (const e of processes(again)) {
    const rel = `${e.path.slice(1).split('/').slice(1).join('/')}`;
    const groups = cgroupsOf(e.pid as number);
    assert.ok(
      groups.some((g) => g.includes(`captree-${name}-`) && g.endsWith(`/${rel}`)),
      `${e.path} (pid ${e.pid}) runs in its own cgroup: ${groups.join(' ')}`,
    );
  }
  const root = again.find((e) => e.path === `/${name}`);
  assert.equal(root?.state, 'ready', 'the root did not give up');
  assert.equal(await hello(port), 'hello\n', 'the listening socket is served again');

  const events = await captree(['events', '--json'], dir);
  assert.equal(events.code, 0, events.stderr);
  const records = JSON.parse(events.stdout) as {
    type: string;
    path: string;
    pid?: number | null;
    cause?: string;
    ms?: number;
  }[];
  const lost = records.find((r) => r.type === 'launcher_lost');
  assert.equal(lost?.pid, launcher);
  assert.equal(records.find((r) => r.type === 'launcher_restarted')?.pid, replacement);
  const uncounted = records.filter((r) => r.type === 'restarting' && r.cause === 'launcher_lost');
  assert.ok(uncounted.length >= 4, `restarts journalled as launcher_lost: ${JSON.stringify(uncounted)}`);
  assert.equal(
    records.some((r) => r.type === 'intensity_exceeded'),
    false,
  );

  // The intensity is intact: the root still takes one crash of its own in its period.
  const plain = again.find((e) => e.path === `/${name}/plain`)?.pid as number;
  process.kill(plain, 'SIGKILL');
  const restarted = await eventually(async () => {
    const e = (await psJson(dir)).find((x) => x.path === `/${name}/plain`);
    return e?.pid && e.pid !== plain && e.state === 'running' ? e.pid : undefined;
  }, 'plain restarted after its own crash');
  cleanup.push(restarted);

  const down = await captree(['down'], dir);
  assert.equal(down.code, 0, down.stderr);
  assert.deepEqual(alive([...newPids, restarted, replacement, daemon]), [], 'nothing outlives down');
  assert.deepEqual(cgroupsNamed(name), [], 'no cgroup is left');
});
