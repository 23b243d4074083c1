/**
 * Faults an operator's bad day brings, through the real bin: the terminal of a foreground `up`
 * dies (its tmux server is killed: SIGHUP, then EIO on every write), thousands of idle TCP
 * connections are opened to `--listen` by someone without a token, and the daemon is killed
 * (-9) while an admitted temporary job runs. Checked from the host side: nothing outlives its
 * supervision, a child still restarts, the temporary job never runs again.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { isAlive, readPid, statePaths } from '../../src/daemon/index.ts';
import { alive, bin, captree, cgroupsNamed, freePort, killAll, node, psJson } from '../cli/helpers.ts';

const dirs: string[] = [];
const cleanup: number[] = [];

function tree(children: string): { dir: string; name: string } {
  const dir = mkdtempSync(join(tmpdir(), 'captree-opfault-'));
  dirs.push(dir);
  const name = `of${process.pid}${Math.random().toString(36).slice(2, 6)}`;
  writeFileSync(join(dir, 'captree.yaml'), `name: ${name}\nchildren:\n${children}`);
  return { dir, name };
}

/** Resolves once `pid` is gone, polling /proc (a process that is not ours gives no event). */
async function gone(pid: number, ms = 20_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return false;
}

after(async () => {
  killAll(cleanup.filter((p) => isAlive(p)));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('operator faults', () => {
  test('a foreground up whose terminal dies stops the tree: no child, launcher or cgroup outlives it', async () => {
    const { dir, name } = tree(
      // `a` ignores SIGTERM, so the stop outlasts the terminal: the view writes while it stops.
      `  - name: a\n    command: [sh, -c, "trap '' TERM; while :; do sleep 1; done"]\n    shutdown: 1500ms\n  - name: b\n    command: [sleep, infinity]\n`,
    );
    const server = `ctof${process.pid}${Math.random().toString(36).slice(2, 6)}`;
    const tmux = (...args: string[]) =>
      new Promise<string>((resolve, reject) =>
        execFile('tmux', ['-L', server, ...args], { timeout: 20_000 }, (err, out, errOut) =>
          err ? reject(new Error(errOut || err.message)) : resolve(out),
        ),
      );
    try {
      await tmux('new-session', '-d', '-s', 'up', '-x', '100', '-y', '30', `cd ${dir} && ${node} ${bin} up`);
      // Up once ps answers with both children running.
      let entries: Awaited<ReturnType<typeof psJson>> = [];
      for (let i = 0; i < 400; i++) {
        entries = await psJson(dir).catch(() => []);
        if (entries.filter((e) => e.pid !== null && e.state === 'running').length === 2) break;
      }
      const pids = entries.flatMap((e) => (e.pid !== null ? [e.pid] : []));
      assert.equal(pids.length, 2, JSON.stringify(entries));
      const daemon = readPid(statePaths(join(dir, '.captree')));
      assert.ok(daemon !== null);
      cleanup.push(daemon, ...pids);
      await tmux('kill-server');
      assert.ok(await gone(daemon), 'the foreground up exits');
      assert.deepEqual(alive(pids), [], 'no child outlives it');
      assert.deepEqual(cgroupsNamed(name), [], 'no cgroup outlives it');
      const ps = await captree(['ps'], dir);
      assert.equal(ps.code, 1);
      assert.match(ps.stderr, /no running tree/);
    } finally {
      try {
        execFileSync('tmux', ['-L', server, 'kill-server'], { stdio: 'ignore' });
      } catch {
        // already gone
      }
    }
  });

  test('idle connections to --listen cannot starve supervision: a killed child is still restarted', async () => {
    const { dir, name } = tree('  - name: w\n    command: [sleep, infinity]\n');
    writeFileSync(join(dir, 'admin.token'), 'admin-token-for-the-test\n', { mode: 0o600 });
    const port = await freePort();
    const up = await captree(
      ['up', '--detach', '--listen', `127.0.0.1:${port}`, '--token-file', 'admin.token'],
      dir,
    );
    assert.equal(up.code, 0, up.stderr);
    const daemon = readPid(statePaths(join(dir, '.captree')));
    assert.ok(daemon !== null);
    cleanup.push(daemon);
    // The descriptors the daemon may hold, lowered so that a flood would exhaust them.
    execFileSync('prlimit', ['--pid', String(daemon), '--nofile=200:200']);
    const sockets: Socket[] = [];
    let refused = 0;
    await Promise.all(
      Array.from(
        { length: 400 },
        () =>
          new Promise<void>((resolve) => {
            const s = connect(port, '127.0.0.1');
            sockets.push(s);
            s.on('error', () => {
              refused++;
              resolve();
            });
            s.on('close', () => resolve());
            s.on('connect', () => setImmediate(resolve));
          }),
      ),
    );
    try {
      const before = (await psJson(dir)).find((e) => e.path === `/${name}/w`);
      assert.ok(before?.pid);
      cleanup.push(before.pid);
      process.kill(before.pid, 'SIGKILL');
      let after: number | null = null;
      for (let i = 0; i < 400 && (after === null || after === before.pid); i++)
        after = (await psJson(dir)).find((e) => e.path === `/${name}/w`)?.pid ?? null;
      assert.ok(after !== null && after !== before.pid, 'the child was restarted');
      cleanup.push(after);
      assert.ok(isAlive(daemon), 'the daemon lives');
      const held = sockets.filter((s) => !s.destroyed && s.readyState === 'open').length;
      assert.ok(held <= 16, `one peer holds at most 16 connections (held ${held}, refused ${refused})`);
    } finally {
      for (const s of sockets) s.destroy();
    }
    const down = await captree(['down'], dir);
    assert.equal(down.code, 0, down.stderr);
    assert.deepEqual(cgroupsNamed(name), []);
  });

  test('a temporary admitted job is never run again after a daemon kill -9', async () => {
    const { dir, name } = tree(
      '  - name: jobs\n    strategy: dynamic\n    admission: {}\n    children: []\n',
    );
    const count = join(dir, 'runs');
    writeFileSync(
      join(dir, 'job.yaml'),
      `name: job\ncommand: [sh, -c, 'echo ran >> ${count}; exec sleep infinity']\n`,
    );
    assert.equal((await captree(['up', '--detach'], dir)).code, 0);
    const first = readPid(statePaths(join(dir, '.captree')));
    assert.ok(first !== null);
    cleanup.push(first);
    const admit = await captree(['admit', `/${name}/jobs`, 'job.yaml'], dir);
    assert.equal(admit.code, 0, admit.stderr);
    const job = (await psJson(dir)).find((e) => e.path === `/${name}/jobs/job`);
    assert.ok(job?.pid);
    cleanup.push(job.pid);
    process.kill(first, 'SIGKILL');
    assert.ok(await gone(first));
    const again = await captree(['up', '--detach'], dir);
    assert.equal(again.code, 0, again.stderr);
    const second = readPid(statePaths(join(dir, '.captree')));
    assert.ok(second !== null);
    cleanup.push(second);
    const adopted = (await psJson(dir)).find((e) => e.path === `/${name}/jobs/job`);
    assert.equal(adopted?.pid, job.pid, 're-adopted, not restarted');
    // The job ends: as a temporary child it is gone for good.
    process.kill(job.pid, 'SIGKILL');
    let entries = await psJson(dir);
    for (let i = 0; i < 400 && entries.some((e) => e.path === `/${name}/jobs/job`); i++)
      entries = await psJson(dir);
    assert.equal(
      entries.some((e) => e.path === `/${name}/jobs/job`),
      false,
      'removed, not restarted',
    );
    assert.equal(readFileSync(count, 'utf8'), 'ran\n', 'it ran exactly once');
    const down = await captree(['down'], dir);
    assert.equal(down.code, 0, down.stderr);
    assert.deepEqual(cgroupsNamed(name), []);
  });
});
