/**
 * The launcher's spawner (native/launcher.c, "spawners"): on a hybrid host, after a child's first
 * start, a task in the child's v1 groups (not its cgroup2 group) forks the restarts, so they need
 * no cgroup.procs write. These tests show it serves the restarts and never counts as the child:
 * not in the group's pids, not in its usage, not keeping it non-empty, not hit by a stop, gone
 * with the group, and absent where a pids limit would count it or a memory limit's OOM killer
 * could pick it.
 *
 * Every wait is on a supervisor event or a condition polled with a deadline; no timing is asserted.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type TestContext, test } from 'node:test';
import { Supervisor, type SupervisorEvent } from '../../src/core/index.ts';
import { HostRuntime } from '../../src/runtime/host-runtime.ts';
import { processDriver, processOptions } from '../../src/runtime/process-driver.ts';
import { isRoot, skipOrFail, uniqueName } from '../support/host.ts';

// Spawners are opt-in (native/launcher.c, spawners_wanted): the launchers this file starts inherit it.
process.env.CAPTREE_SPAWNERS = '1';

function read(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}
const procsOf = (dir: string) => read(path.join(dir, 'cgroup.procs')).split('\n').filter(Boolean).map(Number);
const comm = (pid: number) => read(`/proc/${pid}/comm`).trim();
const switches = (pid: number) =>
  [...read(`/proc/${pid}/status`).matchAll(/^(?:non)?voluntary_ctxt_switches:\s+(\d+)/gm)].reduce(
    (s, m) => s + Number(m[1]),
    0,
  );
const childrenOf = (pid: number) =>
  read(`/proc/${pid}/task/${pid}/children`).trim().split(/\s+/).filter(Boolean).map(Number);

async function until<T>(get: () => T | undefined | null | false, what: string, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = get();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

interface Setup {
  runtime: HostRuntime;
  sup: Supervisor;
  events: SupervisorEvent[];
  /** The cgroup dirs of the child: v1 ones and the cgroup2 one. */
  v1: string[];
  v2: string;
}

async function setup(t: TestContext, limits?: { pids?: number; memory?: number }): Promise<Setup | null> {
  if (!isRoot) {
    skipOrFail(t, 'needs root (cgroups)');
    return null;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'captree-spawner-'));
  const name = uniqueName('spawner');
  const runtime = await HostRuntime.open({ stateDir: path.join(dir, 'state'), name });
  t.after(async () => {
    await runtime.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  if (runtime.root.driver !== 'v1' && runtime.root.driver !== 'hybrid') {
    skipOrFail(
      t,
      `cgroup driver ${runtime.root.driver}: spawners are for v1 controllers with a cgroup2 hierarchy`,
    );
    return null;
  }
  const sup = new Supervisor({
    name,
    intensity: 1000,
    period: 60_000,
    children: [
      {
        id: 'c0',
        backoff: false,
        driver: processDriver(
          runtime,
          processOptions(['sleep', 'infinity'], {
            cwd: '/',
            logs: { maxSize: 1 << 20, keep: 1 },
            ...(limits ? { limits } : {}),
          }),
        ),
      },
    ],
  });
  const events: SupervisorEvent[] = [];
  sup.subscribe((e) => events.push(e));
  t.after(() => sup.stop().catch(() => {}));
  await sup.start();
  const group = runtime.groupFor(`${runtime.rootPath}/c0`);
  const v2 = group.dirs.find((d) => d.includes('/unified/'));
  if (!v2) {
    skipOrFail(t, 'no cgroup2 hierarchy beside the v1 controllers (v1 only): no spawners there');
    return null;
  }
  return { runtime, sup, events, v1: group.dirs.filter((d) => d !== v2), v2 };
}

const startedPids = (events: SupervisorEvent[]) =>
  events.flatMap((e) => (e.type === 'started' && e.pid !== null ? [e.pid] : []));

test('spawner: a restart is forked by a task in the v1 groups, and the program lands in every group', async (t) => {
  const s = await setup(t);
  if (!s) return;
  const launcher = s.runtime.launcher.pid;
  const spawner = await until(
    () => childrenOf(launcher).find((p) => comm(p) === 'captree-spawner'),
    'a spawner under the launcher',
  );
  // In every v1 group of the child, not in its cgroup2 group.
  await until(() => s.v1.every((d) => procsOf(d).includes(spawner)), 'the spawner to join the v1 groups');
  assert.ok(!procsOf(s.v2).includes(spawner), 'the spawner is not in the cgroup2 group');
  const group = s.runtime.groupFor(`${s.runtime.rootPath}/c0`);
  assert.ok(!group.pids().includes(spawner), 'group.pids() does not list the spawner');

  const first = startedPids(s.events)[0]!;
  const before = switches(spawner);
  process.kill(first, 'SIGKILL');
  const second = await until(
    () => startedPids(s.events).find((p) => p !== first),
    'the replacement to start',
  );
  // The spawner woke to fork it, and it is in every group, v1 and cgroup2, with no write.
  assert.ok(switches(spawner) > before, 'the spawner ran for the restart');
  const replacement = await until(
    () => procsOf(s.v2).find((p) => p === second || childrenOf(second).includes(p)) ?? null,
    'the replacement in the cgroup2 group',
  );
  for (const d of s.v1) assert.ok(procsOf(d).includes(replacement), `the replacement is in ${d}`);
  assert.equal(childrenOf(launcher).includes(second), true, "the replacement is the launcher's child");
  // Usage counts the program's processes only.
  const usage = group.usage();
  assert.equal(usage.pids, procsOf(s.v2).length, 'pids usage leaves the spawner out');

  // A stop empties the group (the spawner does not keep it populated) and spares the spawner.
  await s.sup.stop();
  assert.equal(group.isEmpty(), true, 'the group is empty after the stop');
  assert.deepEqual(group.pids(), []);
  assert.equal(comm(spawner), 'captree-spawner', 'the spawner outlives a stop of its child');

  // Removing the group retires the spawner.
  await group.remove();
  for (const d of [...s.v1, s.v2]) assert.equal(fs.existsSync(d), false, `${d} is gone`);
  await until(() => comm(spawner) !== 'captree-spawner', 'the spawner to exit with its group');
});

test('spawner: none for a child whose pids are limited (it would take one of them)', async (t) => {
  const s = await setup(t, { pids: 8 });
  if (!s) return;
  const launcher = s.runtime.launcher.pid;
  const first = startedPids(s.events)[0]!;
  process.kill(first, 'SIGKILL');
  await until(() => startedPids(s.events).find((p) => p !== first), 'the replacement to start');
  const strangers = s.v1.flatMap(procsOf).filter((p) => !procsOf(s.v2).includes(p));
  assert.deepEqual(strangers, [], 'nothing but the child in its v1 groups');
  assert.equal(
    childrenOf(launcher).some((p) => comm(p) === 'captree-spawner'),
    false,
    'no spawner under the launcher',
  );
});

test('spawner: none for a child whose memory is limited (its OOM killer could pick it, and the launcher with it)', async (t) => {
  const s = await setup(t, { memory: 64 * 2 ** 20 });
  if (!s) return;
  const launcher = s.runtime.launcher.pid;
  const first = startedPids(s.events)[0]!;
  process.kill(first, 'SIGKILL');
  await until(() => startedPids(s.events).find((p) => p !== first), 'the replacement to start');
  const strangers = s.v1.flatMap(procsOf).filter((p) => !procsOf(s.v2).includes(p));
  assert.deepEqual(strangers, [], 'nothing but the child in its v1 groups');
  assert.equal(
    childrenOf(launcher).some((p) => comm(p) === 'captree-spawner'),
    false,
    'no spawner under the launcher',
  );
});
