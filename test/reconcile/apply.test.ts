/**
 * `captree plan` and `captree apply` through the real bin against a real running tree (redis
 * and sleep under rest_for_one), a session of edits as an operator makes them. Every claim is
 * observed by pid (unchanged pid = not restarted) or read back from the cgroup files:
 * no-change and quantity-only applies restart nothing, a changed env restarts the child and the
 * children after it (and the node, whose intensity is 1, does not give up: planned restarts do
 * not count), a strategy changes in place, a changed `provides` restarts its consumer, children
 * are added and removed, a stale saved plan is refused, a tree that does not fit is refused.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { isAlive } from '../../src/daemon/index.ts';
import { freePort } from '../cli/helpers.ts';
import { changedPids, journalOf, type LiveTree, liveTree } from './support.ts';

let port = 0;
let port2 = 0;

function manifest(o: {
  strategy?: string;
  cacheMemory?: string;
  apiCpu?: number;
  mode?: string;
  cachePort?: number;
  workerCommand?: string;
  extra?: boolean;
  worker?: boolean;
}): string {
  const cachePort = o.cachePort ?? port;
  return `
name: @NAME@
strategy: ${o.strategy ?? 'rest_for_one'}
intensity: 1
period: 60s
requires: { cpu: 1, memory: 1Gi, pids: 256 }
children:
  - name: cache
    command: [redis-server, --port, '${cachePort}', --bind, 127.0.0.1, --save, '', --appendonly, 'no']
    ready: { tcp: 127.0.0.1:${cachePort} }
    requires: { cpu: 0.2, memory: ${o.cacheMemory ?? '128Mi'} }
    provides: { cache.redis: { tcp: 127.0.0.1:${cachePort}, kind: redis } }
  - name: api
    command: [sleep, '1000']
    env: { MODE: ${o.mode ?? 'a'} }
    requires: { cpu: ${o.apiCpu ?? 0.1}, memory: 64Mi, services: [cache.redis] }
${
  o.worker === false
    ? ''
    : `  - name: worker
    command: [sleep, '${o.workerCommand ?? '1001'}']
    requires: { cpu: 0.1, memory: 64Mi }
`
}${
  o.extra
    ? `  - name: extra
    command: [sleep, '1002']
    requires: { cpu: 0.1, memory: 32Mi }
`
    : ''
}`;
}

describe('plan and apply on a running tree', () => {
  let t: LiveTree;
  let root: string;
  before(async () => {
    port = await freePort();
    port2 = await freePort();
    t = await liveTree('apply', manifest({}));
    root = `/${t.name}`;
  });
  after(async () => {
    await t?.down();
  });

  it('a manifest with no change plans nothing (exit 0) and applies with 0 restarts', async () => {
    const pids = await t.pids();
    const plan = await t.run(['plan', '--json']);
    assert.equal(plan.code, 0, plan.stderr);
    const p = JSON.parse(plan.stdout);
    assert.equal(p.generation, 1);
    assert.equal(p.fits, true);
    assert.deepEqual(p.reasons, []);
    assert.ok(p.actions.every((a: { action: string }) => a.action === 'noop'));
    const apply = await t.run(['apply', '--json']);
    assert.equal(apply.code, 0, apply.stderr);
    assert.deepEqual(JSON.parse(apply.stdout).restarted, []);
    assert.deepEqual(changedPids(pids, await t.pids()), []);
  });

  it('cpu and memory changes are rewritten live: 0 restarts, the cgroup reads the new limits', async () => {
    const pids = await t.pids();
    t.write(manifest({ cacheMemory: '192Mi', apiCpu: 0.15 }));
    const plan = await t.run(['plan', '--json']);
    assert.equal(plan.code, 2, plan.stderr);
    const actions = JSON.parse(plan.stdout).actions.filter((a: { action: string }) => a.action !== 'noop');
    assert.deepEqual(
      actions.map((a: { path: string; action: string; because: string[]; restarts: string[] }) => [
        a.path,
        a.action,
        a.because,
        a.restarts,
      ]),
      [
        [`${root}/cache`, 'update', ['requires.memory'], []],
        [`${root}/api`, 'update', ['requires.cpu'], []],
      ],
    );
    const apply = await t.run(['apply']);
    assert.equal(apply.code, 0, apply.stderr + apply.stdout);
    assert.match(apply.stdout, /restarted nothing/);
    assert.deepEqual(changedPids(pids, await t.pids()), []);
    assert.equal(
      t.cgroupFile(`${root}/cache`, 'memory.limit_in_bytes') ?? t.cgroupFile(`${root}/cache`, 'memory.max'),
      String(192 * 2 ** 20),
    );
    const quota = t.cgroupFile(`${root}/api`, 'cpu.cfs_quota_us');
    const period = t.cgroupFile(`${root}/api`, 'cpu.cfs_period_us');
    if (quota !== null) assert.equal(Number(quota) / Number(period), 0.15);
    else assert.equal(t.cgroupFile(`${root}/api`, 'cpu.max'), '15000 100000');
    const ps = JSON.parse((await t.run(['ps', '--json'])).stdout) as {
      path: string;
      grant: { cpu: number; memory: number };
    }[];
    assert.equal(ps.find((e) => e.path === `${root}/api`)?.grant.cpu, 0.15);
    assert.equal((await t.run(['plan'])).code, 0, 'applied: nothing left to plan');
  });

  it('a changed env restarts the child and, by rest_for_one, the one after it; not counted against intensity 1', async () => {
    const pids = await t.pids();
    t.write(manifest({ cacheMemory: '192Mi', apiCpu: 0.15, mode: 'b' }));
    const plan = JSON.parse((await t.run(['plan', '--json'])).stdout);
    const api = plan.actions.find((a: { path: string }) => a.path === `${root}/api`);
    assert.deepEqual(api.because, ['env.MODE']);
    assert.deepEqual(api.restarts, [`${root}/api`, `${root}/worker`]);
    const apply = await t.run(['apply', '--yes', '--json']);
    assert.equal(apply.code, 0, apply.stderr + apply.stdout);
    const result = JSON.parse(apply.stdout);
    assert.equal(result.generation, plan.generation + 1);
    assert.deepEqual(result.differences, []);
    const now = await t.pids();
    assert.deepEqual(changedPids(pids, now), [`${root}/api`, `${root}/worker`]);
    assert.deepEqual(result.restarted, [`${root}/api`, `${root}/worker`]);
    assert.ok(!isAlive(pids[`${root}/api`] as number), 'the old api process is gone');
    assert.deepEqual(journalOf(t.dir, 'intensity_exceeded'), []);
    assert.deepEqual(journalOf(t.dir, 'escalated'), []);
    const steps = journalOf(t.dir, 'reconcile_step')
      .filter((r) => r.generation === result.generation)
      .map((r) => `${r.op} ${r.path}`);
    assert.deepEqual(steps, [
      `stop ${root}/worker`,
      `stop ${root}/api`,
      `revise ${root}/api`,
      `start ${root}/api`,
      `start ${root}/worker`,
    ]);
  });

  it('a strategy changes in place; under the new one_for_all a changed worker restarts everyone', async () => {
    const pids = await t.pids();
    t.write(
      manifest({
        cacheMemory: '192Mi',
        apiCpu: 0.15,
        mode: 'b',
        strategy: 'one_for_all',
        workerCommand: '1003',
      }),
    );
    const plan = JSON.parse((await t.run(['plan', '--json'])).stdout);
    assert.deepEqual(plan.actions.find((a: { path: string }) => a.path === root).because, ['strategy']);
    const apply = await t.run(['apply', '--yes', '--json']);
    assert.equal(apply.code, 0, apply.stderr + apply.stdout);
    assert.deepEqual(changedPids(pids, await t.pids()), [`${root}/api`, `${root}/cache`, `${root}/worker`]);
  });

  it('a changed provides restarts the provider and its consumer, and (one_for_one) nothing else', async () => {
    t.write(
      manifest({
        cacheMemory: '192Mi',
        apiCpu: 0.15,
        mode: 'b',
        strategy: 'one_for_one',
        workerCommand: '1003',
      }),
    );
    assert.equal((await t.run(['apply', '--yes'])).code, 0);
    const pids = await t.pids();
    t.write(
      manifest({
        cacheMemory: '192Mi',
        apiCpu: 0.15,
        mode: 'b',
        strategy: 'one_for_one',
        workerCommand: '1003',
        cachePort: port2,
      }),
    );
    const plan = JSON.parse((await t.run(['plan', '--json'])).stdout);
    const api = plan.actions.find((a: { path: string }) => a.path === `${root}/api`);
    assert.equal(api.action, 'restart');
    assert.ok(api.because.includes(`${root}/cache.provides`), api.because.join(', '));
    const apply = await t.run(['apply', '--yes', '--json']);
    assert.equal(apply.code, 0, apply.stderr + apply.stdout);
    assert.deepEqual(changedPids(pids, await t.pids()), [`${root}/api`, `${root}/cache`]);
  });

  it('children are added and removed in contract order; the removed one is gone', async () => {
    const pids = await t.pids();
    const opts = {
      cacheMemory: '192Mi',
      apiCpu: 0.15,
      mode: 'b',
      strategy: 'one_for_one',
      workerCommand: '1003',
      cachePort: port2,
    };
    t.write(manifest({ ...opts, worker: false, extra: true }));
    const apply = await t.run(['apply', '--yes', '--json']);
    assert.equal(apply.code, 0, apply.stderr + apply.stdout);
    const now = await t.pids();
    assert.equal(now[`${root}/worker`], undefined);
    assert.ok(now[`${root}/extra`], 'extra runs');
    assert.ok(!isAlive(pids[`${root}/worker`] as number), 'the worker process is gone');
    assert.deepEqual(changedPids(pids, now), []);
  });

  it('a saved plan is refused (nothing done) once the tree moved to another generation', async () => {
    const opts = {
      cacheMemory: '192Mi',
      apiCpu: 0.15,
      strategy: 'one_for_one',
      workerCommand: '1003',
      cachePort: port2,
      worker: false,
      extra: true,
    };
    t.write(manifest({ ...opts, mode: 'c' }));
    const saved = await t.run(['plan', '--json']);
    assert.equal(saved.code, 2);
    const { writeFileSync } = await import('node:fs');
    writeFileSync(`${t.dir}/plan.json`, saved.stdout);
    // Someone else applies first.
    assert.equal((await t.run(['apply', '--yes'])).code, 0);
    const pids = await t.pids();
    t.write(manifest({ ...opts, mode: 'c' }));
    const stale = await t.run(['apply', '--plan', 'plan.json', '--yes']);
    assert.equal(stale.code, 1);
    assert.match(
      stale.stderr,
      /refused, nothing was changed: the plan was made at generation \d+; the tree is at generation \d+ now/,
    );
    t.write(manifest({ ...opts, mode: 'd' }));
    const other = await t.run(['apply', '--plan', 'plan.json', '--yes']);
    assert.equal(other.code, 1);
    assert.match(other.stderr, /made from another manifest/);
    assert.deepEqual(changedPids(pids, await t.pids()), []);
    t.write(manifest({ ...opts, mode: 'c' }));
  });

  it('a manifest that does not fit is refused with every reason (exit 1), nothing changes', async () => {
    const pids = await t.pids();
    t.write(
      manifest({
        cacheMemory: '2Gi',
        apiCpu: 3,
        mode: 'z',
        strategy: 'one_for_one',
        cachePort: port2,
        worker: false,
        extra: true,
      }),
    );
    const plan = await t.run(['plan', '--json']);
    assert.equal(plan.code, 1);
    const p = JSON.parse(plan.stdout);
    assert.equal(p.fits, false);
    assert.deepEqual(
      p.reasons.map((r: { path: string; field: string }) => `${r.path} ${r.field}`),
      // cache does not fit, so its service cannot be routed to api either: every reason.
      [`${root}/cache requires.memory`, `${root}/api requires.cpu`, `${root}/api requires.services`],
    );
    const apply = await t.run(['apply', '--yes']);
    assert.equal(apply.code, 1);
    assert.deepEqual(changedPids(pids, await t.pids()), []);
  });

  it('a bad manifest: file:line:col, exit 1, nothing planned', async () => {
    t.write('name: @NAME@\nchildren:\n  - name: x\n    comand: [sleep, 1]\n');
    const plan = await t.run(['plan']);
    assert.equal(plan.code, 1);
    assert.match(plan.stderr, /^captree\.yaml:3:5: \/\w+\/x: needs `command`/);
  });
});
