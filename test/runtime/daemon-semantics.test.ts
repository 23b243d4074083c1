/**
 * What an unmodified daemon needs of its supervisor, on real processes in real cgroups and PID
 * namespaces (built from a manifest, as `captree up` does): the main process's own exit wins over
 * a helper's OOM kill; `stop` reaches every process of the child, in any session, and gives them
 * the grace period (`killMode: control-group`), or only the main process (`mixed`); a daemon that
 * forks into the background is followed by its `pidFile` (or as the oldest process left), shown
 * by its pid, and its death is the child's exit.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import type { ExitReason, SupervisorEvent } from '../../src/core/index.ts';
import type { RunningTree } from '../../src/daemon/build-tree.ts';
import { rootOr } from '../support/host.ts';
import { cleanupsAfter, cmd, upTree } from '../support/tree.ts';

const needRoot = rootOr('needs root (cgroups, PID namespaces)');
const cleanups = cleanupsAfter();

/** The next supervisor event matching `match` (or one seen since `from`), within `ms`. */
function nextEvent(
  tree: RunningTree,
  match: (e: SupervisorEvent) => boolean,
  what: string,
  ms = 10_000,
): Promise<SupervisorEvent> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
    }, ms);
    const off = tree.supervisor.subscribe((e) => {
      if (!match(e)) return;
      clearTimeout(timer);
      off();
      resolve(e);
    });
  });
}

function exitOf(e: SupervisorEvent): ExitReason {
  assert.ok(e.type === 'exited' || e.type === 'stopped', `${e.type} is an exit`);
  return e.reason;
}

function pidOf(tree: RunningTree, id: string): number {
  const pid = tree.supervisor.child(id)?.pid;
  assert.ok(typeof pid === 'number', `${id} has a pid`);
  return pid;
}

/** Gone, or a zombie about to be reaped. */
function gone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return /^[ZX]$/.test(stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3));
  } catch {
    return true;
  }
}

/** The host pid of the process of `tree`'s child `id` whose pid in its own namespace is `nspid`. */
function hostPid(tree: RunningTree, id: string, nspid: number): number | null {
  for (const pid of tree.runtime.groupFor(`${tree.supervisor.path}/${id}`).pids()) {
    const line = /^NSpid:\s+(.*)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? '';
    const ids = line.trim().split(/\s+/).map(Number);
    if (ids.length > 1 && ids.at(-1) === nspid) return pid;
  }
  return null;
}

/** Polls a file we cannot subscribe to (written by a process in the child) until `ok` holds. */
async function fileSays(file: string, ok: (text: string) => boolean, ms = 10_000): Promise<string> {
  const deadline = Date.now() + ms;
  for (;;) {
    const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
    if (ok(text)) return text;
    if (Date.now() > deadline) throw new Error(`${file} still says ${JSON.stringify(text)} after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('a helper OOM-killed in the child cgroup does not override how the main process ended', () => {
  test('exit 0 stays normal (transient: not restarted), exit 125 stays permanent', async (t) => {
    if (!needRoot(t)) return;
    // The helper doubles a shell string until the 32 MiB limit's OOM killer ends it; the main
    // shell waits for it, then exits on its own terms.
    // (`$$` is a literal `$` in a manifest.)
    const hog = 'sh -c "a=x; while :; do a=\\$$a\\$$a; done"';
    const run = await upTree(
      `name: @NAME@
children:
  - name: fine
    restart: transient
    command: ${cmd('sh', '-c', `${hog}; echo helper ended; sleep 0.2; exit 0`)}
    requires: { memory: 32Mi }
  - name: done
    restart: permanent
    command: ${cmd('sh', '-c', `${hog}; exit 125`)}
    requires: { memory: 32Mi }
`,
      { cleanups, tmpPrefix: 'captree-oom-', name: 'oom' },
    );
    const fine = exitOf(await run.exited(`/${run.root}/fine`));
    const done = exitOf(await run.exited(`/${run.root}/done`));
    t.diagnostic(JSON.stringify({ fine, done }));
    assert.deepEqual(fine, { kind: 'normal' });
    assert.equal(done.kind, 'permanent_failure');
    assert.match(run.out(`/${run.root}/fine`), /helper ended/);
    // The kernel did OOM-kill in both groups: the counter the driver reads rose.
    for (const id of ['fine', 'done'])
      assert.ok(
        run.tree.runtime.groupFor(`/${run.root}/${id}`).oomKills() > 0,
        `${id}: an OOM kill happened`,
      );
    // The driver's note is written to the log after the exit is reported: wait for it.
    const note = /killed for lack of memory; the main process ended on its own \(exit code 0\)/;
    await until(() =>
      note.test(readFileSync(`${run.stateDir}/logs/${run.root}.fine.log`, 'utf8')) ? true : null,
    );
    assert.match(readFileSync(`${run.stateDir}/logs/${run.root}.fine.log`, 'utf8'), note);
    await until(() => (run.tree.supervisor.child('done')?.state === 'failed' ? true : null));
    assert.equal(
      run.tree.supervisor.child('fine')?.state,
      'stopped',
      'a transient normal exit is not restarted',
    );
    assert.equal(run.tree.supervisor.child('fine')?.restarts, 0);
  });
});

describe('stop reaches every process of the child (killMode)', () => {
  /**
   * A main process that dies at once on SIGTERM, and a helper in a session and process group of
   * its own that takes 300 ms to shut down cleanly.
   */
  const script = (file: string) =>
    `setsid sh -c 'trap "echo term >> ${file}; sleep 0.3; echo clean >> ${file}; exit 0" TERM; echo up >> ${file}; while :; do sleep 0.05; done' & exec sleep infinity`;

  for (const { mode, what, helper } of [
    {
      mode: 'control-group',
      what: 'control-group (default): the helper in another session gets SIGTERM and its grace; the stop is clean',
      helper: 'up\nterm\nclean\n',
    },
    {
      mode: 'mixed',
      what: 'mixed: only the main process gets SIGTERM; the rest is SIGKILLed once it is gone',
      helper: 'up\n',
    },
  ])
    test(what, async (t) => {
      if (!needRoot(t)) return;
      const run = await upTree(
        `name: @NAME@
children:
  - name: svc
    shutdown: 5s
    killMode: ${mode}
    command: ${cmd('sh', '-c', script('@DIR@/helper'))}
`,
        { cleanups, tmpPrefix: 'captree-kill-', name: `kill${mode.slice(0, 2)}` },
      );
      await fileSays(`${run.dir}/helper`, (s) => s.includes('up'));
      const group = run.tree.runtime.groupFor(`/${run.root}/svc`);
      const pids = group.pids();
      const stopped = nextEvent(
        run.tree,
        (e) => e.type === 'stopped' && e.path === `/${run.root}/svc`,
        'svc stopped',
      );
      await run.tree.supervisor.stopChild('svc');
      assert.deepEqual(exitOf(await stopped), { kind: 'shutdown' }, 'stopped, not killed at the deadline');
      assert.equal(readFileSync(`${run.dir}/helper`, 'utf8'), helper, 'what the helper saw');
      assert.ok(group.isEmpty());
      for (const pid of pids) assert.ok(gone(pid), `pid ${pid} is gone`);
    });
});

describe('a daemon that forks into the background', () => {
  /** An older helper first (so "the oldest left" is not the daemon), then the daemon, then exit 0. */
  const forking = (pidFile: string) =>
    `sleep infinity & setsid sh -c 'sleep 0.2; echo $$$$ > ${pidFile}.tmp; mv ${pidFile}.tmp ${pidFile}; exec sleep infinity' </dev/null >/dev/null 2>&1 & exit 0`;

  test('pidFile: its pid is shown, kill -9 of it is a crash and restarts it (transient)', async (t) => {
    if (!needRoot(t)) return;
    const run = await upTree(
      `name: @NAME@
children:
  - name: d
    restart: transient
    backoff: false
    pidFile: d.pid
    command: ${cmd('sh', '-c', forking('@DIR@/d.pid'))}
`,
      { cleanups, tmpPrefix: 'captree-fork-', name: 'forkpf' },
    );
    const nspid = Number(await fileSays(`${run.dir}/d.pid`, (s) => /^\d+\n$/.test(s)));
    const daemon = await until(() => hostPid(run.tree, 'd', nspid));
    await until(() => (pidOf(run.tree, 'd') === daemon ? true : null));
    const exited = nextEvent(run.tree, (e) => e.type === 'exited' && e.path === `/${run.root}/d`, 'd exited');
    const restarted = nextEvent(
      run.tree,
      (e) => e.type === 'started' && e.path === `/${run.root}/d`,
      'd restarted',
    );
    process.kill(daemon, 'SIGKILL');
    const reason = exitOf(await exited);
    assert.equal(reason.kind, 'crashed');
    assert.equal(
      reason.kind === 'crashed' && reason.signal,
      'SIGKILL',
      'the daemon’s own death, not the starter’s exit 0',
    );
    await restarted;
    assert.equal(run.tree.supervisor.child('d')?.restarts, 1);
  });

  test('without pidFile: the oldest process left is followed, and its exit 0 is a normal exit', async (t) => {
    if (!needRoot(t)) return;
    const run = await upTree(
      `name: @NAME@
children:
  - name: d
    restart: transient
    command: ${cmd('sh', '-c', `sleep 0.1 & setsid sleep infinity & exit 0`)}
`,
      { cleanups, tmpPrefix: 'captree-fork-', name: 'forkold' },
    );
    const exited = nextEvent(run.tree, (e) => e.type === 'exited' && e.path === `/${run.root}/d`, 'd exited');
    // `sleep 0.1` is the oldest: followed, it exits 0, and the child with it (the rest killed).
    assert.deepEqual(exitOf(await exited), { kind: 'normal' });
    assert.ok(run.tree.runtime.groupFor(`/${run.root}/d`).isEmpty(), 'what it left is gone too');
  });
});

/** Polls a condition on /proc (not something we can subscribe to) for up to 10 s. */
async function until<T>(f: () => T | null): Promise<T> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const v = f();
    if (v !== null) return v;
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}
