/**
 * Changes inside a nested node that does not restart: a child added, one removed, one
 * restarted (its own node's one_for_one scope), the node's intensity changed in place. Then the
 * node is restarted by an operator: it comes back with the desired children (its driver was
 * rebuilt), not the ones it was started with.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { psJson } from '../cli/helpers.ts';
import { changedPids, type LiveTree, liveTree } from './support.ts';

const yaml = (o: { qMode: string; extra: boolean; keepOld: boolean; intensity: number }) => `
name: @NAME@
strategy: one_for_one
requires: { cpu: 1, memory: 512Mi, pids: 128 }
children:
  - name: web
    command: [sleep, '999']
    requires: { cpu: 0.1, memory: 32Mi }
  - name: jobs
    intensity: ${o.intensity}
    requires: { cpu: 0.5, memory: 256Mi }
    children:
      - name: q
        command: [sleep, '1000']
        env: { MODE: ${o.qMode} }
        requires: { cpu: 0.1, memory: 32Mi }
${o.keepOld ? "      - { name: old, command: [sleep, '1001'], requires: { cpu: 0.1, memory: 32Mi } }\n" : ''}${o.extra ? "      - { name: extra, command: [sleep, '1002'], requires: { cpu: 0.1, memory: 32Mi } }\n" : ''}`;

describe('apply inside a nested node', () => {
  let t: LiveTree;
  let root: string;
  before(async () => {
    t = await liveTree('nested', yaml({ qMode: 'a', extra: false, keepOld: true, intensity: 1 }));
    root = `/${t.name}`;
  });
  after(async () => {
    await t?.down();
  });

  it('adds, removes and restarts children of a running node; the node and its siblings stay', async () => {
    const pids = await t.pids();
    t.write(yaml({ qMode: 'b', extra: true, keepOld: false, intensity: 4 }));
    const plan = JSON.parse((await t.run(['plan', '--json'])).stdout) as {
      actions: { path: string; action: string }[];
    };
    assert.deepEqual(
      plan.actions.filter((a) => a.action !== 'noop').map((a) => [a.path, a.action]),
      [
        [`${root}/jobs`, 'update'],
        [`${root}/jobs/q`, 'restart'],
        [`${root}/jobs/extra`, 'add'],
        [`${root}/jobs/old`, 'remove'],
      ],
    );
    const apply = await t.run(['apply', '--yes', '--json']);
    assert.equal(apply.code, 0, apply.stderr + apply.stdout);
    const now = await t.pids();
    assert.deepEqual(changedPids(pids, now), [`${root}/jobs/q`]);
    assert.equal(now[`${root}/jobs/old`], undefined);
    assert.ok(now[`${root}/jobs/extra`]);
    assert.equal(now[`${root}/web`], pids[`${root}/web`]);
  });

  it('restarted by an operator, the node comes back with the desired children', async () => {
    const restart = await t.run(['restart', `${root}/jobs`]);
    assert.equal(restart.code, 0, restart.stderr);
    const ps = await psJson(t.dir);
    const under = ps.filter((e) => e.path.startsWith(`${root}/jobs/`)).map((e) => [e.path, e.state]);
    assert.deepEqual(under, [
      [`${root}/jobs/q`, 'running'],
      [`${root}/jobs/extra`, 'running'],
    ]);
    assert.equal((await t.run(['plan'])).code, 0, 'nothing left to plan');
  });
});
