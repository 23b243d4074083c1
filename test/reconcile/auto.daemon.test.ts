/**
 * `reconcile: { mode: auto }` through a real daemon: a cgroup limit rewritten from the host is
 * written back by the daemon itself (read back from cgroupfs, nothing restarted), a second drift
 * inside the rate limit is left alone with `reconcile_blocked` saying why, and a hold is named
 * as the reason once in force. A subtree with its own `reconcile:` has its own budget: a child
 * failing for good (a `permanentExitCodes` exit) is started again by the daemon until that
 * budget is spent. Inside a deny window nothing is done, and the budget spent survives a
 * `kill -9` of the daemon and a new `up`.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { isAlive } from '../../src/daemon/index.ts';
import { journalOf, type LiveTree, liveTree, until } from './support.ts';

const yaml = `
name: @NAME@
reconcile: { mode: auto, maxActions: 1, per: 1h, checkEvery: 200ms }
requires: { cpu: 1, memory: 512Mi, pids: 128 }
children:
  - name: steady
    command: [sleep, '1000']
    requires: { cpu: 0.1, memory: 64Mi }
  - name: jobs
    reconcile: { maxActions: 2 }
    children:
      - name: flaky
        command: [sh, -c, 'sleep 0.2; exit 3']
        permanentExitCodes: [3]
  - name: frozen
    reconcile: { deny: [{ cron: '* * * * *', duration: 7d }] }
    requires: { cpu: 0.2, memory: 128Mi }
    children:
      - name: db
        command: [sleep, '1000']
        requires: { cpu: 0.1, memory: 64Mi }
`;

const MiB = 2 ** 20;

describe('reconcile mode auto (real daemon)', () => {
  let t: LiveTree;
  let root: string;
  let memoryFile: string;

  before(async () => {
    t = await liveTree('auto', yaml);
    root = `/${t.name}`;
    const file = t.cgroupPath(`${root}/steady`, 'memory.limit_in_bytes')
      ? 'memory.limit_in_bytes'
      : 'memory.max';
    const at = t.cgroupPath(`${root}/steady`, file);
    assert.ok(at, 'the memory group of steady');
    memoryFile = at;
  });
  after(async () => {
    if (process.env.KEEP) return;
    await t?.down();
  });

  const limitDriftEvents = (type: string) =>
    journalOf(t.dir, type).filter((r) => r.path === `${root}/steady` && r.drift === 'limit');

  it('a limit rewritten from the host is written back by the daemon, nothing restarts', async () => {
    const pid = (await t.pids())[`${root}/steady`];
    writeFileSync(memoryFile, String(48 * MiB));
    await until(
      'the daemon rewrote the limit',
      async () =>
        t.cgroupFile(`${root}/steady`, 'memory.limit_in_bytes') === String(64 * MiB) ||
        t.cgroupFile(`${root}/steady`, 'memory.max') === String(64 * MiB),
    );
    const required = limitDriftEvents('reconcile_required');
    assert.equal(required.length, 1);
    assert.match(String(required[0]?.message), /memory limit reads 50331648 bytes, granted 67108864 bytes/);
    const acted = await until('reconcile_auto journalled', async () => {
      const a = limitDriftEvents('reconcile_auto');
      return a.length > 0 ? a : null;
    });
    assert.deepEqual(
      acted.map((a) => [a.action, a.command, a.scope, a.error]),
      [['rewrite limit', `captree apply ${t.dir}/captree.yaml`, root, null]],
    );
    assert.equal((await t.pids())[`${root}/steady`], pid, 'nothing restarted');
  });

  it('a second drift inside the rate limit is not repaired; the journal says why', async () => {
    writeFileSync(memoryFile, String(40 * MiB));
    const blocked = await until('reconcile_blocked (rate limit)', async () =>
      limitDriftEvents('reconcile_blocked').find((r) => r.guard === 'rate_limit'),
    );
    assert.match(
      String(blocked.reason),
      new RegExp(
        `rate limit: 1 of 1 automatic action\\(s\\) per 1h in ${root} already taken; the next is allowed at `,
      ),
    );
    const first = limitDriftEvents('reconcile_auto')[0]?.decidedAt as number;
    assert.equal(blocked.retryAt, first + 3_600_000);
    assert.equal(
      t.cgroupFile(`${root}/steady`, memoryFile.endsWith('max') ? 'memory.max' : 'memory.limit_in_bytes'),
      String(40 * MiB),
    );
    assert.equal(limitDriftEvents('reconcile_auto').length, 1, 'one automatic action only');
    assert.equal(
      limitDriftEvents('reconcile_blocked').filter((r) => r.guard === 'rate_limit').length,
      1,
      'the refusal is journalled once',
    );
  });

  it('a hold in force is the reason given', async () => {
    const held = await t.run(['hold', `${root}/steady`, '--reason', 'maintenance']);
    assert.equal(held.code, 0, held.stderr + held.stdout);
    const blocked = await until('reconcile_blocked (held)', async () =>
      limitDriftEvents('reconcile_blocked').find((r) => r.guard === 'held'),
    );
    assert.equal(blocked.action, 'wait for release');
    assert.match(String(blocked.reason), /is held by .* \(maintenance\)/);
    assert.equal(limitDriftEvents('reconcile_auto').length, 1);
    // Read back many times since, the drift is still there and its refusal was journalled once.
    assert.equal(limitDriftEvents('reconcile_blocked').filter((r) => r.guard === 'rate_limit').length, 1);
  });

  it('a subtree with its own reconcile: has its own budget (a child failing for good started twice)', async () => {
    const flaky = `${root}/jobs/flaky`;
    const of = (type: string) => journalOf(t.dir, type).filter((r) => r.path === flaky);
    const blocked = await until('flaky: reconcile_blocked (rate limit)', async () =>
      of('reconcile_blocked').find((r) => r.guard === 'rate_limit'),
    );
    assert.match(String(blocked.reason), new RegExp(`2 of 2 automatic action\\(s\\) per 1h in ${root}/jobs`));
    const acted = of('reconcile_auto');
    assert.deepEqual(
      acted.map((a) => [a.action, a.command, a.scope, a.error]),
      [
        ['restart', `captree start ${flaky}`, `${root}/jobs`, null],
        ['restart', `captree start ${flaky}`, `${root}/jobs`, null],
      ],
    );
    // Started by the daemon each time: three starts in all (the first by `up`).
    await until('flaky stopped for good', async () => {
      const starts = journalOf(t.dir, 'started').filter((r) => r.path === flaky).length;
      return starts === 3;
    });
  });

  it('inside a deny window nothing is done; the journal names the window', async () => {
    const db = `${root}/frozen/db`;
    const at = t.cgroupPath(db, 'memory.limit_in_bytes') ?? t.cgroupPath(db, 'memory.max');
    assert.ok(at, 'the memory group of db');
    writeFileSync(at, String(48 * MiB));
    const blocked = await until('reconcile_blocked (denied)', async () =>
      journalOf(t.dir, 'reconcile_blocked').find((r) => r.path === db && r.guard === 'denied'),
    );
    assert.match(String(blocked.reason), /inside the deny window '\* \* \* \* \*' for 168h \(until /);
    assert.equal(readFileSync(at, 'utf8').trim(), String(48 * MiB));
    assert.equal(journalOf(t.dir, 'reconcile_auto').filter((r) => r.path === db).length, 0);
  });

  it('the rate limit outlives a daemon killed and started again', async () => {
    const released = await t.run(['release', `${root}/steady`]);
    assert.equal(released.code, 0, released.stderr + released.stdout);
    const daemon = t.daemonPid() as number;
    process.kill(daemon, 'SIGKILL');
    await until('the daemon to die', async () => !isAlive(daemon));
    const mark = journalOf(t.dir).length;
    const up = await t.run(['up', '--detach']);
    assert.equal(up.code, 0, up.stderr + up.stdout);
    writeFileSync(memoryFile, String(36 * MiB));
    const blocked = await until('reconcile_blocked (rate limit) from the new daemon', async () =>
      journalOf(t.dir)
        .slice(mark)
        .find(
          (r) =>
            r.type === 'reconcile_blocked' &&
            r.path === `${root}/steady` &&
            r.guard === 'rate_limit' &&
            String(r.message).includes(String(36 * MiB)),
        ),
    );
    assert.equal(blocked.retryAt, (limitDriftEvents('reconcile_auto')[0]?.decidedAt as number) + 3_600_000);
    assert.equal(readFileSync(memoryFile, 'utf8').trim(), String(36 * MiB));
    assert.equal(limitDriftEvents('reconcile_auto').length, 1);
  });
});

describe('reconcile mode switched by apply (real daemon)', () => {
  const plain = `
name: @NAME@
requires: { cpu: 1, memory: 512Mi, pids: 128 }
children:
  - name: steady
    command: [sleep, '1000']
    requires: { cpu: 0.1, memory: 64Mi }
`;
  let t: LiveTree;
  after(async () => {
    await t?.down();
  });

  it('recommend leaves drift to the operator; an apply to mode auto repairs it, nothing restarts', async () => {
    t = await liveTree('automode', plain);
    const root = `/${t.name}`;
    const at =
      t.cgroupPath(`${root}/steady`, 'memory.limit_in_bytes') ?? t.cgroupPath(`${root}/steady`, 'memory.max');
    assert.ok(at, 'the memory group of steady');
    writeFileSync(at, String(48 * MiB));
    const status = await t.run(['status', '--json']);
    const report = JSON.parse(status.stdout) as {
      recommendations: { path: string; drift: string; type: string }[];
    };
    assert.deepEqual(
      report.recommendations.filter((r) => r.drift === 'limit').map((r) => [r.path, r.type]),
      [[`${root}/steady`, 'reconcile_required']],
    );
    assert.equal(readFileSync(at, 'utf8').trim(), String(48 * MiB), 'recommend: nothing acts');

    const pid = (await t.pids())[`${root}/steady`];
    t.write(
      plain.replace(
        'requires: { cpu: 1,',
        'reconcile: { mode: auto, checkEvery: 200ms }\nrequires: { cpu: 1,',
      ),
    );
    const applied = await t.run(['apply', '--yes', '--json']);
    assert.equal(applied.code, 0, applied.stderr + applied.stdout);
    assert.deepEqual((JSON.parse(applied.stdout) as { restarted: string[] }).restarted, []);
    writeFileSync(at, String(40 * MiB));
    await until(
      'the daemon rewrote the limit',
      async () => readFileSync(at, 'utf8').trim() === String(64 * MiB),
    );
    const acted = await until('reconcile_auto journalled', async () => {
      const a = journalOf(t.dir, 'reconcile_auto').filter((r) => r.path === `${root}/steady`);
      return a.length > 0 ? a : null;
    });
    assert.deepEqual(
      acted.map((a) => [a.action, a.error]),
      [['rewrite limit', null]],
    );
    assert.equal((await t.pids())[`${root}/steady`], pid, 'nothing restarted');
  });
});
