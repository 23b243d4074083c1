/**
 * `kill -9` of the daemon at any moment loses nothing and leaves no orphan, through the real bin
 * as a user would run it: the launcher keeps the children while no daemon runs, the next `up`
 * re-adopts every child still running (same pids), accounts for those that exited, keeps the
 * ones an operator stopped stopped, kills what nothing supervises, and `down` still cleans up
 * everything. Steady state, a restart storm, a held stop and a child removed meanwhile.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isAlive, type JournalRecord, readPid, statePaths } from '../../src/daemon/index.ts';
import { launcherOf } from '../support/proc.ts';
import {
  alive,
  bin,
  captree,
  cgroupsNamed,
  demoCopy,
  type Entry,
  killAll,
  node,
  pidsOf,
  psJson,
  removeCgroups,
} from './helpers.ts';

// ---- helpers ---------------------------------------------------------------------------------

function daemonPidOf(dir: string): number {
  const pid = readPid(statePaths(join(dir, '.captree')));
  assert.ok(pid !== null, 'daemon.pid is written');
  return pid;
}

/** Fields of /proc/PID/stat after the command name (index 0 = state), or null if gone. */
function statFields(pid: number): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** Every process below `pid` (children, grandchildren, ...), from /proc. */
function descendantsOf(pid: number): number[] {
  const out: number[] = [];
  const walk = (p: number) => {
    let kids: number[] = [];
    try {
      kids = readFileSync(`/proc/${p}/task/${p}/children`, 'utf8')
        .trim()
        .split(/\s+/)
        .filter(Boolean)
        .map(Number);
    } catch {
      return;
    }
    for (const k of kids) {
      out.push(k);
      walk(k);
    }
  };
  walk(pid);
  return out;
}

function parentOf(pid: number): number | null {
  const f = statFields(pid);
  return f ? Number(f[1]) : null;
}

/** Start time in clock ticks since boot. */
function startTimeOf(pid: number): number | null {
  const f = statFields(pid);
  return f ? Number(f[19]) : null;
}

function captreePathOf(pid: number): string | null {
  try {
    for (const e of readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0'))
      if (e.startsWith('CAPTREE_PATH=')) return e.slice(13);
    return null;
  } catch {
    return null;
  }
}

/**
 * SIGKILL by pid, then wait for the process to be gone. It is not our child (the detached daemon
 * was re-parented), so there is nothing to subscribe to: bounded polling of /proc.
 */
async function kill9(pid: number): Promise<void> {
  process.kill(pid, 'SIGKILL');
  const deadline = Date.now() + 10_000;
  while (isAlive(pid)) {
    if (Date.now() > deadline) throw new Error(`pid ${pid} still alive 10 s after SIGKILL`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Waits until a process we cannot subscribe to is gone (bounded polling of /proc). */
async function gone(pids: number[], ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (alive(pids).length > 0) {
    if (Date.now() > deadline) throw new Error(`still alive: ${alive(pids).join(', ')}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Runs a following command (`events -f --json`, `logs -f --json`) and collects its JSON lines
 * until `done` holds for them.
 */
function follow<T>(dir: string, args: string[], done: (items: T[]) => boolean, ms = 30_000): Promise<T[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(node, [bin, ...args], {
      cwd: dir,
      env: { ...process.env, NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const items: T[] = [];
    let rest = '';
    const finish = (err?: Error) => {
      clearTimeout(timer);
      child.stdout.removeAllListeners('data');
      child.removeAllListeners('exit');
      child.kill('SIGKILL');
      if (err) reject(err);
      else resolve(items);
    };
    const timer = setTimeout(
      () =>
        finish(
          new Error(
            `${args.join(' ')}: timed out; last lines:\n${items
              .slice(-10)
              .map((i) => JSON.stringify(i))
              .join('\n')}`,
          ),
        ),
      ms,
    );
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      rest += chunk;
      const lines = rest.split('\n');
      rest = lines.pop() ?? '';
      for (const line of lines) if (line.trim()) items.push(JSON.parse(line) as T);
      if (done(items)) finish();
    });
    child.on('exit', () => finish(new Error(`${args.join(' ')} exited before the condition held`)));
  });
}

/**
 * Follows the journal from `since` until `done` holds for the records seen, so nothing between
 * the action and the subscription is missed.
 */
function awaitEvents(
  dir: string,
  since: string,
  done: (records: JournalRecord[]) => boolean,
): Promise<JournalRecord[]> {
  return follow(dir, ['events', '-f', '--json', '--since', since], done);
}

/** The worker's tick numbers in its log (it prints `worker: tick N, ...` once a second). */
function ticks(lines: { text: string }[]): number[] {
  return lines.flatMap((l) => {
    const m = /^worker: tick (\d+),/.exec(l.text);
    return m ? [Number(m[1])] : [];
  });
}

/** The tree's cgroup directories in the unified hierarchy, the root group first. */
function unifiedGroups(name: string): string[] {
  const roots = cgroupsNamed(name).filter((d) => d.startsWith('/sys/fs/cgroup/unified/'));
  const out: string[] = [];
  const walk = (dir: string) => {
    out.push(dir);
    for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) walk(join(dir, e.name));
  };
  for (const r of roots) walk(r);
  return out;
}

/** Every pid in the tree's unified cgroups, with the group it is in. */
function cgroupProcs(name: string): { pid: number; group: string }[] {
  const out: { pid: number; group: string }[] = [];
  for (const dir of unifiedGroups(name)) {
    let text = '';
    try {
      text = readFileSync(join(dir, 'cgroup.procs'), 'utf8');
    } catch {
      continue;
    }
    for (const l of text.split('\n')) if (l) out.push({ pid: Number(l), group: dir });
  }
  return out;
}

/** Whether `pid` is, right now, in one of the tree's unified cgroups (its `0::` line). */
function inTreeCgroup(pid: number, name: string): boolean {
  try {
    const unified = readFileSync(`/proc/${pid}/cgroup`, 'utf8')
      .split('\n')
      .find((l) => l.startsWith('0::'));
    const roots = cgroupsNamed(name).filter((d) => d.startsWith('/sys/fs/cgroup/unified/'));
    const at = `/sys/fs/cgroup/unified${unified?.slice(3) ?? ''}`;
    return roots.some((r) => at === r || at.startsWith(`${r}/`));
  } catch {
    return false;
  }
}

/** Every process on the host whose CAPTREE_PATH is in the tree `/name`. */
function processesOfTree(name: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const p = captreePathOf(Number(e));
    if (p === `/${name}` || p?.startsWith(`/${name}/`)) out.push(Number(e));
  }
  return out;
}

/** Removes cgroups a failed test left (deepest first); processes must be gone already. */

/** A test's hold on a tree: every pid it saw, for the last-resort cleanup. */
class Seen {
  readonly pids = new Set<number>();
  add(...pids: (number | null | undefined)[]): void {
    for (const p of pids) if (p) this.pids.add(p);
  }
  entries(entries: Entry[]): void {
    for (const e of entries) this.add(e.pid);
  }
  async cleanup(dir: string, name: string): Promise<void> {
    const daemon = readPid(statePaths(join(dir, '.captree')));
    if (daemon !== null && isAlive(daemon)) await captree(['down'], dir);
    killAll([...this.pids, ...processesOfTree(name)]);
    await gone([...this.pids]).catch(() => {});
    removeCgroups(name);
    rmSync(dir, { recursive: true, force: true });
  }
}

async function upDetached(dir: string): Promise<number> {
  const r = await captree(['up', '--detach'], dir);
  assert.equal(r.code, 0, `up --detach: ${r.stderr}`);
  return daemonPidOf(dir);
}

async function assertAllGone(dir: string, name: string, pids: Iterable<number>): Promise<void> {
  const r = await captree(['down'], dir);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(alive([...pids]), [], 'every process seen is gone');
  assert.deepEqual(processesOfTree(name), [], 'no process of the tree is left anywhere');
  assert.deepEqual(cgroupsNamed(name), [], 'no cgroup named after the tree is left');
}

// ---- steady state ----------------------------------------------------------------------------

describe('kill -9 of the daemon in steady state', () => {
  let dir: string;
  let name: string;
  const seen = new Seen();
  let before1: Record<string, number | null>;
  let launcher: number;

  before(async () => {
    ({ dir, name } = await demoCopy());
  });
  after(async () => {
    await seen.cleanup(dir, name);
  });

  test('the launcher keeps every child running while no daemon runs', async () => {
    const daemon = await upDetached(dir);
    seen.add(daemon);
    const entries = await psJson(dir);
    seen.entries(entries);
    before1 = pidsOf(entries);
    const children = entries.filter((e) => e.kind === 'process').map((e) => e.pid as number);
    assert.equal(children.length, 3);
    launcher = launcherOf(children[0]!) as number;
    seen.add(launcher);
    assert.ok(launcher !== null && launcher !== daemon, 'children are the launcher’s, not the daemon’s');

    await kill9(daemon);
    assert.deepEqual(alive(children), children, 'every child survived the daemon');
    assert.deepEqual(alive([launcher]), [launcher], 'the launcher survived its client');
    for (const pid of children) assert.equal(launcherOf(pid), launcher);
  });

  test('up again re-adopts the same pids; the journal says so', async () => {
    const since = new Date().toISOString();
    const daemon = await upDetached(dir);
    seen.add(daemon);
    const entries = await psJson(dir);
    seen.entries(entries);
    assert.deepEqual(pidsOf(entries), before1, 'the same pids, re-adopted');
    for (const e of entries) {
      assert.ok(['ready', 'running'].includes(e.state), `${e.path} is ${e.state}`);
      assert.equal(e.restarts, 0, 'restart counters start over');
    }
    const records = await awaitEvents(dir, since, (rs) => rs.some((r) => r.type === 'recovered'));
    const adopted = records.filter((r) => r.type === 'adopted');
    assert.deepEqual(
      adopted.map((r) => [r.path, r.type === 'adopted' ? r.pid : null]),
      entries.filter((e) => e.kind === 'process').map((e) => [e.path, e.pid]),
    );
    const recovered = records.find((r) => r.type === 'recovered');
    assert.ok(recovered?.type === 'recovered');
    assert.equal(recovered.launcherPid, launcher);
    assert.equal(recovered.found, 3);
    assert.equal(recovered.killed, 0);
    assert.ok(!records.some((r) => r.type === 'orphan_killed'));
  });

  test('the adopted worker’s log goes on: what it wrote while no daemon ran is not lost', async () => {
    const lines = await follow<{ text: string }>(
      dir,
      ['logs', `/${name}/worker`, '-f', '--json', '-n', '1000'],
      (ls) => (ticks(ls).at(-1) ?? 0) >= 4,
    );
    const seenTicks = ticks(lines);
    const last = seenTicks.at(-1) as number;
    assert.deepEqual(
      seenTicks,
      Array.from({ length: last }, (_, i) => i + 1),
      'every tick from 1 on, across the crash',
    );
  });

  test('a child killed after recovery is restarted by the new daemon, as rest_for_one says', async () => {
    const api = before1[`/${name}/api`] as number;
    const since = new Date().toISOString();
    process.kill(api, 'SIGKILL');
    await awaitEvents(dir, since, (rs) =>
      rs.some((r) => r.path === `/${name}/worker` && (r.type === 'ready' || r.type === 'started')),
    );
    const entries = await psJson(dir);
    seen.entries(entries);
    const now = pidsOf(entries);
    assert.equal(now[`/${name}/db`], before1[`/${name}/db`], 'db, before api, keeps its pid');
    assert.notEqual(now[`/${name}/api`], api);
    assert.notEqual(now[`/${name}/worker`], before1[`/${name}/worker`]);
    assert.deepEqual(alive([api, before1[`/${name}/worker`] as number]), []);
    assert.equal(entries.find((e) => e.path === `/${name}/api`)?.restarts, 1);
  });

  test('down stops every pid, the launcher and the cgroups', async () => {
    await assertAllGone(dir, name, [...seen.pids]);
    assert.deepEqual(alive([launcher]), []);
  });
});

// ---- restart storm ---------------------------------------------------------------------------

describe('kill -9 of the daemon during a restart storm', () => {
  let dir: string;
  let name: string;
  const seen = new Seen();
  let steady: number;
  let launcher: number;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'captree-storm-'));
    name = `cs${process.pid}${Math.random().toString(36).slice(2, 7)}`;
    // The storm child leaves a background process behind each time it crashes: an orphan if the
    // daemon dies before killing its group, and one that would outlive any sloppy recovery.
    writeFileSync(
      join(dir, 'captree.yaml'),
      `name: ${name}
strategy: one_for_one
intensity: 1000000
period: 1s
children:
  - name: steady
    command: [sleep, '3600']
  - name: storm
    command: [sh, -c, 'sleep 600 & sleep 0.02; exit 1']
    backoff: false
`,
    );
  });
  after(async () => {
    await seen.cleanup(dir, name);
  });

  test('the daemon dies mid-storm; up again re-adopts the steady child and leaves no orphan', async () => {
    const since0 = new Date().toISOString();
    const daemon = await upDetached(dir);
    seen.add(daemon);
    const first = await psJson(dir);
    seen.entries(first);
    steady = first.find((e) => e.path === `/${name}/steady`)?.pid as number;
    assert.ok(steady > 0);
    launcher = launcherOf(steady) as number;
    seen.add(launcher);
    // The storm is on: 20 crashes and restarts.
    await awaitEvents(
      dir,
      since0,
      (rs) => rs.filter((r) => r.type === 'restarting' && r.path === `/${name}/storm`).length >= 20,
    );
    await kill9(daemon);
    assert.deepEqual(alive([steady, launcher]), [steady, launcher], 'steady child and launcher survive');
    seen.add(...processesOfTree(name));

    const since1 = new Date().toISOString();
    const daemon2 = await upDetached(dir);
    seen.add(daemon2);
    const entries = await psJson(dir);
    seen.entries(entries);
    const byPath = pidsOf(entries);
    assert.equal(byPath[`/${name}/steady`], steady, 'the steady child is re-adopted');
    const storm = entries.find((e) => e.path === `/${name}/storm`);
    assert.ok(
      storm && ['starting', 'running', 'restarting'].includes(storm.state),
      `storm is ${storm?.state}`,
    );
    // Let the storm go on under the new daemon: anything of the old era still alive after a few
    // more crashes (each kills its group) is an orphan.
    const records = await awaitEvents(
      dir,
      since1,
      (rs) =>
        rs.some((r) => r.type === 'recovered') &&
        rs.filter((r) => r.type === 'restarting' && r.path === `/${name}/storm`).length >= 5,
    );
    const recovered = records.find((r) => r.type === 'recovered');
    assert.ok(recovered?.type === 'recovered');
    assert.equal(recovered.launcherPid, launcher, 'the same launcher');

    const now = pidsOf(await psJson(dir));
    const daemonStart = startTimeOf(daemon2) as number;
    const inGroups = cgroupProcs(name);
    const all = new Set([...inGroups.map((p) => p.pid), ...processesOfTree(name)]);
    seen.add(...all);
    for (const pid of all) {
      const path = captreePathOf(pid);
      if (path === null) {
        // A confined child's outer process and its PID namespace's init have the launcher's
        // environment: each has its program (with CAPTREE_PATH) below it, or is the launcher's
        // own child or grandchild mid-storm (its program not yet started, or already gone).
        const up1 = parentOf(pid);
        assert.ok(
          !isAlive(pid) ||
            descendantsOf(pid).some((d) => captreePathOf(d) !== null || !isAlive(d)) ||
            up1 === launcher ||
            (up1 !== null && parentOf(up1) === launcher),
          `pid ${pid} in the tree's cgroups has no CAPTREE_PATH, no program below it, and is not the launcher's`,
        );
        continue;
      }
      // The storm starts a new instance every few ms: one born after the cgroup snapshot is
      // checked against its own /proc/PID/cgroup, read now.
      assert.ok(
        inGroups.some((p) => p.pid === pid) || inTreeCgroup(pid, name) || !isAlive(pid),
        `pid ${pid} (${path}) runs outside the tree's cgroups`,
      );
      if (path === `/${name}/storm`) {
        const started = startTimeOf(pid);
        assert.ok(
          started === null || started >= daemonStart,
          `pid ${pid} of the storm child predates the new daemon: an orphan`,
        );
      } else {
        // ps shows the child's program; what the program forked runs below it.
        const shown = now[path];
        assert.ok(
          shown === pid || (shown !== null && shown !== undefined && descendantsOf(shown).includes(pid)),
          `pid ${pid} (${path}) is not the instance ps shows (${shown})`,
        );
      }
    }
  });

  test('down cleans everything', async () => {
    await assertAllGone(dir, name, [...seen.pids]);
    assert.deepEqual(alive([launcher]), []);
  });
});

// ---- durable state: held stop; a child removed meanwhile ------------------------------------

describe('what an operator changed survives a daemon crash', () => {
  let dir: string;
  let name: string;
  const seen = new Seen();

  before(async () => {
    ({ dir, name } = await demoCopy());
  });
  after(async () => {
    await seen.cleanup(dir, name);
  });

  test('stop PATH holds across kill -9: the child stays stopped and does not run', async () => {
    const daemon = await upDetached(dir);
    seen.add(daemon);
    const entries = await psJson(dir);
    seen.entries(entries);
    const worker = pidsOf(entries)[`/${name}/worker`] as number;
    const r = await captree(['stop', `/${name}/worker`], dir);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(alive([worker]), []);
    const state = JSON.parse(readFileSync(join(dir, '.captree/state.json'), 'utf8'));
    assert.deepEqual(state, { version: 1, held: [`/${name}/worker`] });

    await kill9(daemon);
    seen.add(await upDetached(dir));
    const after = await psJson(dir);
    seen.entries(after);
    const w = after.find((e) => e.path === `/${name}/worker`);
    assert.equal(w?.state, 'stopped');
    assert.equal(w?.pid, null);
    assert.deepEqual(
      processesOfTree(name).filter((p) => captreePathOf(p) === `/${name}/worker`),
      [],
      'no worker process runs',
    );
    assert.equal(pidsOf(after)[`/${name}/db`], pidsOf(entries)[`/${name}/db`], 'db re-adopted');

    const s = await captree(['start', `/${name}/worker`], dir);
    assert.equal(s.code, 0, s.stderr);
    seen.entries(await psJson(dir));
    assert.deepEqual(JSON.parse(readFileSync(join(dir, '.captree/state.json'), 'utf8')).held, []);
  });

  test('a child removed from the manifest while no daemon ran is killed as an orphan', async () => {
    const entries = await psJson(dir);
    seen.entries(entries);
    const worker = pidsOf(entries)[`/${name}/worker`] as number;
    assert.ok(worker > 0);
    await kill9(daemonPidOf(dir));
    const file = join(dir, 'captree.yaml');
    const text = readFileSync(file, 'utf8');
    writeFileSync(file, text.slice(0, text.indexOf('  - name: worker')));

    const since = new Date().toISOString();
    seen.add(await upDetached(dir));
    assert.deepEqual(alive([worker]), [], 'the removed child is gone once up returns');
    const records = await awaitEvents(dir, since, (rs) => rs.some((r) => r.type === 'recovered'));
    const killed = records.filter((r) => r.type === 'orphan_killed');
    // The child's own processes: the pid ps showed and, for a confined child, the processes of
    // its PID namespace below it (its init and its program).
    assert.deepEqual([...new Set(killed.map((r) => r.path))], [`/${name}/worker`]);
    assert.ok(killed.some((r) => r.type === 'orphan_killed' && r.pid === worker));
    assert.ok(killed.length <= 3, JSON.stringify(killed));
    assert.ok(!cgroupsNamed(name).some((d) => readdirSync(d).includes('worker')), 'its cgroup is removed');
    const after = await psJson(dir);
    assert.deepEqual(
      after.map((e) => e.path),
      [`/${name}`, `/${name}/db`, `/${name}/api`],
    );
  });

  test('a child held while it still ran (the daemon died mid-stop) is killed, not adopted', async () => {
    const api = pidsOf(await psJson(dir))[`/${name}/api`] as number;
    assert.ok(api > 0);
    await kill9(daemonPidOf(dir));
    // What `stop` writes before it stops the child: the daemon died in between.
    writeFileSync(join(dir, '.captree/state.json'), JSON.stringify({ version: 1, held: [`/${name}/api`] }));
    const since = new Date().toISOString();
    seen.add(await upDetached(dir));
    assert.deepEqual(alive([api]), []);
    const entries = await psJson(dir);
    seen.entries(entries);
    assert.equal(entries.find((e) => e.path === `/${name}/api`)?.state, 'stopped');
    const records = await awaitEvents(dir, since, (rs) => rs.some((r) => r.type === 'recovered'));
    const killed = records.filter((r) => r.type === 'orphan_killed');
    assert.deepEqual(
      [...new Set(killed.map((r) => (r.type === 'orphan_killed' ? `${r.path} ${r.why}` : '')))],
      [`/${name}/api its child is stopped`],
    );
    assert.ok(killed.some((r) => r.type === 'orphan_killed' && r.pid === api));
    assert.ok(killed.length <= 3, JSON.stringify(killed));
  });

  test('down cleans everything and forgets the held state', async () => {
    await assertAllGone(dir, name, [...seen.pids]);
    assert.throws(() => readFileSync(join(dir, '.captree/state.json')), /ENOENT/);
  });
});
