/**
 * `captree hold PATH` keeps reconciliation away from a subtree (the children run on): a plan
 * that would change anything there is refused with the hold as its reason and nothing is
 * applied; `captree release PATH` lets the same apply through. Both are journalled with who asked.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { changedPids, journalOf, type LiveTree, liveTree } from './support.ts';

const yaml = (mode: string) => `
name: @NAME@
requires: { cpu: 1, memory: 256Mi, pids: 64 }
children:
  - name: db
    command: [sleep, '1000']
    env: { MODE: ${mode} }
    requires: { cpu: 0.1, memory: 32Mi }
  - name: web
    command: [sleep, '1001']
    requires: { cpu: 0.1, memory: 32Mi }
`;

describe('hold and release', () => {
  let t: LiveTree;
  before(async () => {
    t = await liveTree('hold', yaml('a'));
  });
  after(async () => {
    await t?.down();
  });

  it('a held subtree refuses the plan; released, the same apply goes through', async () => {
    const db = `/${t.name}/db`;
    const held = await t.run(['hold', db, '--reason', 'migration']);
    assert.equal(held.code, 0, held.stderr);
    const pids = await t.pids();
    t.write(yaml('b'));
    const plan = await t.run(['plan', '--json']);
    assert.equal(plan.code, 1);
    const reasons = JSON.parse(plan.stdout).reasons as { path: string; message: string }[];
    assert.match(
      reasons[0]?.message ?? '',
      new RegExp(`held by \\S+ \\(migration\\); release it with: captree release ${db}`),
    );
    assert.equal((await t.run(['apply', '--yes'])).code, 1);
    assert.deepEqual(changedPids(pids, await t.pids()), []);
    assert.equal((await t.run(['release', db])).code, 0);
    const apply = await t.run(['apply', '--yes', '--json']);
    assert.equal(apply.code, 0, apply.stderr + apply.stdout);
    assert.deepEqual(changedPids(pids, await t.pids()), [db]);
    const events = [...journalOf(t.dir, 'reconcile_hold'), ...journalOf(t.dir, 'reconcile_release')];
    assert.deepEqual(
      events.map((e) => [e.type, e.path, typeof e.by]),
      [
        ['reconcile_hold', db, 'string'],
        ['reconcile_release', db, 'string'],
      ],
    );
    assert.equal((await t.run(['release', db])).code, 1, 'not held any more');
  });
});
