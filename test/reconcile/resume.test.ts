/**
 * `kill -9` of the daemon in the middle of an apply, then `up`: the same plan is finished and no
 * child is restarted twice. The apply is caught mid-way by a real readiness check (b is ready
 * only once a file exists), so the daemon dies with a restarted, b started but not ready, and c
 * stopped by the plan. After `up`: a and b keep the instance the plan gave them (same pids), c
 * is started once, and the journal says the resumed apply ended as planned.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isAlive } from '../../src/daemon/index.ts';
import { bin, node, psJson } from '../cli/helpers.ts';
import { journalOf, type LiveTree, liveTree, until } from './support.ts';

const yaml = (aCommand: string) => `
name: @NAME@
strategy: rest_for_one
requires: { cpu: 1, memory: 512Mi, pids: 128 }
children:
  - name: a
    command: [sleep, '${aCommand}']
    requires: { cpu: 0.1, memory: 32Mi }
  - name: b
    command: [sleep, '2001']
    ready: { exec: [test, -f, go], timeout: 120s }
    requires: { cpu: 0.1, memory: 32Mi }
  - name: c
    command: [sleep, '2002']
    requires: { cpu: 0.1, memory: 32Mi }
`;

describe('kill -9 of the daemon mid-apply, then up', () => {
  let t: LiveTree;
  before(async () => {
    t = await liveTree('resume', yaml('2000'), (dir) => writeFileSync(join(dir, 'go'), ''));
  });
  after(async () => {
    await t?.down();
  });

  it('finishes the same plan with no child restarted twice', async () => {
    const root = `/${t.name}`;
    // From now on b is ready only once `go` exists (in the tree's directory, its cwd).
    const before = await t.pids();
    rmSync(join(t.dir, 'go'));

    t.write(yaml('3000'));
    const plan = JSON.parse((await t.run(['plan', '--json'])).stdout);
    assert.deepEqual(plan.actions.find((a: { path: string }) => a.path === `${root}/a`).restarts, [
      `${root}/a`,
      `${root}/b`,
      `${root}/c`,
    ]);
    const applying = spawn(node, [bin, 'apply', '--yes'], {
      cwd: t.dir,
      stdio: 'ignore',
      env: { ...process.env, NO_COLOR: '1' },
    });
    const applyExit = new Promise((resolve) => applying.on('exit', resolve));
    // Caught mid-way: a restarted, b started (not ready: no `go`), c stopped by the plan.
    const mid = await until('the apply to wait for b', async () => {
      const ps = await psJson(t.dir);
      const of = (n: string) => ps.find((e) => e.path === `${root}/${n}`);
      const a = of('a');
      const b = of('b');
      return a?.pid &&
        a.pid !== before[`${root}/a`] &&
        b?.state === 'starting' &&
        b.pid &&
        b.pid !== before[`${root}/b`]
        ? { a: a.pid, b: b.pid, c: of('c')?.state }
        : null;
    });
    assert.equal(mid.c, 'stopped');
    const daemon = t.daemonPid() as number;
    process.kill(daemon, 'SIGKILL');
    await until('the daemon to die', async () => !isAlive(daemon));
    await applyExit;

    writeFileSync(join(t.dir, 'go'), '');
    const up = await t.run(['up', '--detach']);
    assert.equal(up.code, 0, up.stderr);
    const now = await t.pids();
    assert.equal(now[`${root}/a`], mid.a, 'a was not restarted again');
    assert.equal(now[`${root}/b`], mid.b, 'b was not restarted again');
    assert.ok(now[`${root}/c`] && now[`${root}/c`] !== before[`${root}/c`], 'c was started');
    // Each child had exactly two instances: the one before the apply and the one it gave it.
    for (const n of ['a', 'b', 'c']) {
      const pids = new Set(
        journalOf(t.dir, 'started')
          .filter((r) => r.path === `${root}/${n}` && typeof r.pid === 'number')
          .map((r) => r.pid),
      );
      assert.ok(
        pids.has(before[`${root}/${n}`]) && pids.has(now[`${root}/${n}`]),
        `${n}: ${[...pids].join(', ')}`,
      );
      assert.equal(pids.size, 2, `${n} instances: ${[...pids].join(', ')}`);
    }
    const resumed = journalOf(t.dir, 'reconcile_applied').at(-1);
    assert.equal(resumed?.resumed, true);
    assert.deepEqual(resumed?.differences, []);
    assert.deepEqual(resumed?.restarted, [`${root}/a`, `${root}/b`, `${root}/c`]);
    // The tree runs the applied manifest: nothing left to plan.
    assert.equal((await t.run(['plan'])).code, 0);
  });
});
