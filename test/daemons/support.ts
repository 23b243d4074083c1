/**
 * Driving a real Debian daemon through `captree up` as a user would, and checking it from the
 * host: a temporary directory (0755, so a `user:` child can reach what is granted to it) with a
 * uniquely named tree, `up --detach`, the control socket for state (polled with a deadline: the
 * test cannot subscribe to another process's tree cheaply), the budgets read back from cgroupfs,
 * kill -9 of the program or of the daemon, `captree logs`, and a `down` after which no cgroup and
 * no process of the tree is left. Every pid seen is killed by the after hook if a step failed.
 */
import assert from 'node:assert/strict';
import {
  accessSync,
  chmodSync,
  constants,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { isAlive, readPid, statePaths } from '../../src/daemon/index.ts';
import {
  alive,
  captree,
  cgroupsNamed,
  killAll,
  type Entry as PsEntry,
  removeCgroups,
} from '../cli/helpers.ts';
import { apiCall } from '../support/daemon.ts';
import { isRoot, skipOrFail } from '../support/host.ts';

export { freePort } from '../cli/helpers.ts';

/** One entry of `ps --json` (GET /v1/tree). */
export type Entry = PsEntry & { lastExit: string | null };

/** True when every program exists (absolute paths) and we are root; else skips, or fails under CAPTREE_STRICT=1. */
export function needPrograms(t: TestContext, programs: readonly string[]): boolean {
  if (!isRoot) {
    skipOrFail(t, 'needs root (cgroups, namespaces, user: children)');
    return false;
  }
  for (const program of programs) {
    try {
      accessSync(program, constants.X_OK);
    } catch {
      skipOrFail(t, `${program} is not installed (apt-get install the package .ci/run names)`);
      return false;
    }
  }
  return true;
}

/** A system user's uid and primary gid, from the passwd file. */
export function userIds(user: string): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${user}:`));
  assert.ok(line, `user ${user} exists (its Debian package creates it)`);
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

/** Limits of the cgroups `pid` is in, read back from cgroupfs (v1 or v2): cores, bytes, count; null = none. */
export function cgroupLimitsOf(pid: number): {
  cpu: number | null;
  memory: number | null;
  pids: number | null;
} {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n');
  const v1 = (controller: string): string | null => {
    for (const line of mounts) {
      const [left, right] = line.split(' - ');
      if (!left || !right) continue;
      const [fstype, , options] = right.split(' ');
      if (fstype === 'cgroup' && options?.split(',').includes(controller)) return left.split(' ')[4] ?? null;
    }
    return null;
  };
  const v2 = mounts
    .map((l) => l.split(' - '))
    .find(([, right]) => right?.startsWith('cgroup2 '))?.[0]
    ?.split(' ')[4];
  const groups = readFileSync(`/proc/${pid}/cgroup`, 'utf8').trim().split('\n');
  const dirOf = (controller: string): { dir: string; v2: boolean } | null => {
    for (const g of groups) {
      const [, controllers, path] = g.split(':');
      if (controllers?.split(',').includes(controller)) {
        const mount = v1(controller);
        if (mount && path !== undefined) return { dir: join(mount, path), v2: false };
      }
    }
    const unified = groups.find((g) => g.startsWith('0::'));
    if (!v2 || !unified) return null;
    const dir = join(v2, unified.slice(3));
    try {
      if (!readFileSync(join(dir, 'cgroup.controllers'), 'utf8').split(/\s+/).includes(controller))
        return null;
    } catch {
      return null;
    }
    return { dir, v2: true };
  };
  const read = (dir: string, file: string) => readFileSync(join(dir, file), 'utf8').trim();
  const num = (text: string) => (text === 'max' || text === '-1' ? null : Number(text));
  const cpuDir = dirOf('cpu');
  let cpu: number | null = null;
  if (cpuDir?.v2) {
    const [quota, period] = read(cpuDir.dir, 'cpu.max').split(' ');
    cpu = quota === 'max' ? null : Number(quota) / Number(period);
  } else if (cpuDir) {
    const quota = Number(read(cpuDir.dir, 'cpu.cfs_quota_us'));
    cpu = quota < 0 ? null : quota / Number(read(cpuDir.dir, 'cpu.cfs_period_us'));
  }
  const memDir = dirOf('memory');
  let memory: number | null = null;
  if (memDir) {
    memory = num(read(memDir.dir, memDir.v2 ? 'memory.max' : 'memory.limit_in_bytes'));
    // v1 says "no limit" with a huge page-aligned number.
    if (memory !== null && memory > 2 ** 62) memory = null;
  }
  const pidsDir = dirOf('pids');
  return { cpu, memory, pids: pidsDir ? num(read(pidsDir.dir, 'pids.max')) : null };
}

/**
 * Every pid in the cgroups of the tree (`marker`: its root cgroup's name) that `pid` is in: its
 * whole child (helpers, workers, a PID namespace's init). Hierarchies where `pid` sits outside
 * the tree's cgroups (the root of an unused controller) are skipped: they hold the whole host.
 */
export function groupPidsOf(pid: number, marker: string): number[] {
  const out = new Set<number>();
  let groups: string[] = [];
  try {
    groups = readFileSync(`/proc/${pid}/cgroup`, 'utf8').trim().split('\n');
  } catch {
    return [];
  }
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n');
  for (const line of mounts) {
    const [left, right] = line.split(' - ');
    if (!left || !right?.startsWith('cgroup')) continue;
    const point = left.split(' ')[4] ?? '';
    for (const g of groups) {
      const [, controllers, path] = g.split(':');
      const options = right.split(' ')[2]?.split(',') ?? [];
      const matches = right.startsWith('cgroup2 ')
        ? controllers === ''
        : controllers?.split(',').some((c) => options.includes(c));
      if (!matches || path === undefined || !path.includes(marker)) continue;
      try {
        for (const p of readFileSync(join(point, path, 'cgroup.procs'), 'utf8').split('\n'))
          if (p) out.add(Number(p));
      } catch {
        // Not this hierarchy.
      }
    }
  }
  return [...out];
}

/**
 * The host pid of the process in `pid`'s child whose pid in its own PID namespace is `nspid`
 * (what a confined program writes as `$$`); null if there is none.
 */
export function hostPidOf(pid: number, nspid: number, marker: string): number | null {
  for (const p of groupPidsOf(pid, marker)) {
    try {
      const ids = (/^NSpid:\s+(.*)$/m.exec(readFileSync(`/proc/${p}/status`, 'utf8'))?.[1] ?? '')
        .trim()
        .split(/\s+/);
      if (ids.length > 1 && Number(ids.at(-1)) === nspid) return p;
    } catch {
      // Gone.
    }
  }
  return null;
}

/** Waits for a condition on something we cannot subscribe to (another process), with a deadline. */
export async function until<T>(
  what: string,
  f: () => T | null | undefined | Promise<T | null | undefined>,
  ms = 30_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown = null;
  for (;;) {
    try {
      const v = await f();
      if (v !== null && v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${ms} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`,
      );
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** SIGKILLs `pid` (not our child: nothing to wait on) and waits until it is gone. */
export async function kill9(pid: number): Promise<void> {
  process.kill(pid, 'SIGKILL');
  await until(`pid ${pid} to be gone after SIGKILL`, () => !isAlive(pid), 10_000);
}

export interface TreeDir {
  dir: string;
  /** The tree's (unique) root name. */
  name: string;
  /** `/name/child`. */
  path(child: string): string;
  /** Every pid seen so far: killed by the after hook if the test did not get to `down`. */
  seen: Set<number>;
  /** `captree ARGS` in the directory; asserts exit 0 unless `ok` is false. */
  run(args: string[], ok?: boolean): Promise<{ code: number; stdout: string; stderr: string }>;
  /** `captree up --detach`. */
  up(): Promise<void>;
  /** The tree as `ps --json` has it, through the control socket. */
  tree(): Promise<Entry[]>;
  entry(child: string): Promise<Entry>;
  /** Polls the tree until `child`'s entry satisfies `ok`. */
  waitFor(child: string, ok: (e: Entry) => boolean, what: string, ms?: number): Promise<Entry>;
  /** Polls until `child` is ready with a pid (and that pid differs from `not`, if given). */
  ready(child: string, not?: number): Promise<Entry>;
  daemonPid(): number;
  /** `captree logs PATH` as text. */
  logs(child: string): Promise<string>;
  /** `captree down`, then: every pid seen gone, no cgroup of the tree left. */
  down(): Promise<void>;
}

/**
 * A temporary directory holding `captree.yaml` (from `yaml(name)`) and whatever `prepare` writes;
 * cleaned up after the test, whatever happened.
 */
export function treeDir(
  t: TestContext,
  prefix: string,
  yaml: (name: string, dir: string) => string,
  prepare?: (dir: string) => void,
): TreeDir {
  const dir = mkdtempSync(join(tmpdir(), `captree-${prefix}-`));
  chmodSync(dir, 0o755);
  const name = `${prefix}${process.pid}${Math.random().toString(36).slice(2, 6)}`;
  prepare?.(dir);
  writeFileSync(join(dir, 'captree.yaml'), yaml(name, dir));
  const seen = new Set<number>();
  const socket = statePaths(join(dir, '.captree')).socket;
  const td: TreeDir = {
    dir,
    name,
    seen,
    path: (child) => `/${name}/${child}`,
    async run(args, ok = true) {
      const r = await captree(args, dir);
      if (ok) assert.equal(r.code, 0, `captree ${args.join(' ')} exited ${r.code}:\n${r.stderr}${r.stdout}`);
      return r;
    },
    async up() {
      await td.run(['up', '--detach']);
      seen.add(td.daemonPid());
    },
    async tree() {
      const reply = await apiCall(socket, 'GET', '/v1/tree');
      assert.equal(reply.status, 200, JSON.stringify(reply.body));
      const entries = reply.body as Entry[];
      for (const e of entries) {
        if (e.pid === null) continue;
        seen.add(e.pid);
        for (const p of groupPidsOf(e.pid, `captree-${name}-`)) seen.add(p);
      }
      return entries;
    },
    async entry(child) {
      const e = (await td.tree()).find((x) => x.path === td.path(child));
      assert.ok(e, `${td.path(child)} is in the tree`);
      return e;
    },
    waitFor(child, ok, what, ms = 30_000) {
      return until(
        what,
        async () => {
          const e = await td.entry(child);
          return ok(e) ? e : null;
        },
        ms,
      );
    },
    ready(child, not) {
      return td.waitFor(
        child,
        (e) => e.state === 'ready' && e.pid !== null && e.pid !== not,
        `${td.path(child)} ready${not ? ` with a pid other than ${not}` : ''}`,
      );
    },
    daemonPid() {
      const pid = readPid(statePaths(join(dir, '.captree')));
      assert.ok(pid !== null, 'daemon.pid is written');
      return pid;
    },
    async logs(child) {
      return (await td.run(['logs', td.path(child)])).stdout;
    },
    async down() {
      await td.tree().catch(() => []);
      await td.run(['down']);
      assert.deepEqual(alive([...seen]), [], 'every process the tree ran is gone');
      assert.deepEqual(cgroupsNamed(`captree-${name}-`), [], 'no cgroup of the tree is left');
    },
  };
  t.after(async () => {
    const daemon = readPid(statePaths(join(dir, '.captree')));
    if (daemon !== null && isAlive(daemon)) await captree(['down'], dir);
    killAll([...seen].filter((p) => p > 1 && p !== process.pid));
    removeCgroups(`captree-${name}-`);
    rmSync(dir, { recursive: true, force: true });
  });
  return td;
}

export interface LifeChecks {
  budget: { cpu: number; memory: number; pids: number };
  /** Called once ready (after each start); may store data that `intact` checks after the re-adoption. */
  probe: () => Promise<void>;
  intact: () => Promise<void>;
  cleanLine: RegExp;
}

/**
 * The common life of one daemon under captree, checked from the host: ready, its budgets in
 * cgroupfs, `probe` answers; kill -9 of its main process → a new instance, ready, one restart;
 * kill -9 of the daemon, `up` again → the same pid re-adopted and `probe` (its data) intact;
 * `stop` → its own clean-shutdown line (`cleanLine`) in its log; `down` → nothing left.
 */
export async function daemonLife(t: TestContext, td: TreeDir, child: string, o: LifeChecks): Promise<void> {
  await td.up();
  const first = await td.ready(child);
  t.diagnostic(`${td.path(child)} ready, pid ${first.pid}`);
  assert.deepEqual(cgroupLimitsOf(first.pid as number), o.budget, 'its budget, as cgroupfs has it');
  await o.probe();

  await kill9(first.pid as number);
  const second = await td.ready(child, first.pid as number);
  assert.equal(second.restarts, 1, 'kill -9 of its main process: restarted once');
  await o.probe();

  const daemon = td.daemonPid();
  await kill9(daemon);
  assert.ok(isAlive(second.pid as number), 'the daemon survives its supervisor’s death');
  await td.up();
  const adopted = await td.waitFor(
    child,
    (e) => e.pid !== null && e.state !== 'starting',
    `${td.path(child)} adopted`,
  );
  assert.equal(adopted.pid, second.pid, 'the same pid, re-adopted (not killed and started afresh)');
  await o.intact();

  await td.run(['stop', td.path(child)]);
  const stopped = await td.waitFor(child, (e) => e.state === 'stopped', `${td.path(child)} stopped`);
  assert.equal(stopped.lastExit, 'stopped', 'a clean stop, not a SIGKILL at the deadline');
  assert.ok(!isAlive(second.pid as number));
  const logs = await td.logs(child);
  assert.match(
    logs,
    o.cleanLine,
    `its own clean-shutdown line, in:\n${logs.split('\n').slice(-15).join('\n')}`,
  );
  await td.down();
}

/** A service that says so when it starts and when SIGTERM stops it, and leaves its pid in `pidFile`. */
export function serviceScript(pidFile: string): string {
  return `#!/bin/sh
exec 2>&1
echo $$ > ${pidFile}
trap 'echo service stopping cleanly; exit 0' TERM
echo service up
while :; do sleep 0.05; done
`;
}

/** Writes `serviceScript` as `<serviceDir>/run` (executable), its pid file beside `serviceDir`. */
export function writeService(serviceDir: string): string {
  mkdirSync(serviceDir, { recursive: true });
  const pidFile = `${serviceDir}.pid`;
  writeFileSync(join(serviceDir, 'run'), serviceScript(pidFile));
  chmodSync(join(serviceDir, 'run'), 0o755);
  return pidFile;
}

/**
 * `probe` and `intact` for a supervisor of services (s6-svscan, runsvdir) whose service runs
 * `serviceScript`: each instance has a live service of its own; after the re-adoption it is the
 * same one, still running. The script writes its pid as its PID namespace has it; the host's is
 * found in the child's cgroup.
 */
export function supervisedService(
  td: TreeDir,
  child: string,
  pidFile: string,
): Pick<LifeChecks, 'probe' | 'intact'> {
  let service = 0;
  const servicePid = () =>
    until('the service’s pid file', async () => {
      const main = (await td.entry(child)).pid;
      const nspid = Number(readFileSync(pidFile, 'utf8'));
      return main && nspid ? hostPidOf(main, nspid, `captree-${td.name}-`) : null;
    });
  return {
    probe: async () => {
      service = await until('the service of this instance', async () => {
        const pid = await servicePid();
        return isAlive(pid) && pid !== service ? pid : null;
      });
    },
    intact: async () => {
      assert.equal(await servicePid(), service);
      assert.ok(isAlive(service), 'the supervised service survived the daemon’s kill -9');
    },
  };
}
