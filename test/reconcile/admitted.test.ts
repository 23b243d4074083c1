/**
 * Children admitted at run time (`captree admit`) are not in the manifest: a plan keeps and
 * shows them, counts them when it re-admits the tree (a node shrunk below what they hold is
 * refused: "would squeeze admitted child"), and an apply leaves them running (same pid).
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { psJson } from '../cli/helpers.ts';
import { changedPids, type LiveTree, liveTree, until } from './support.ts';

const yaml = (devCpu: number, webCommand = '999') => `
name: @NAME@
requires: { cpu: 1, memory: 512Mi, pids: 128 }
children:
  - name: web
    command: [sleep, '${webCommand}']
    requires: { cpu: 0.1, memory: 32Mi }
  - name: dev
    strategy: dynamic
    admission: {}
    requires: { cpu: ${devCpu}, memory: 256Mi }
    children: []
`;

describe('plan and apply keep children admitted at run time', () => {
  let t: LiveTree;
  let job: string;
  before(async () => {
    t = await liveTree('admitted', yaml(0.5));
    job = `/${t.name}/dev/job`;
    writeFileSync(
      join(t.dir, 'job.yaml'),
      "name: job\ncommand: [sleep, '1000']\nrequires: { cpu: 0.3, memory: 64Mi }\n",
    );
    const admit = await t.run(['admit', `/${t.name}/dev`, 'job.yaml']);
    assert.equal(admit.code, 0, admit.stderr + admit.stdout);
  });
  after(async () => {
    await t?.down();
  });

  it('shows the admitted child as kept, and refuses a node shrunk below it', async () => {
    const same = JSON.parse((await t.run(['plan', '--json'])).stdout);
    assert.deepEqual(
      same.actions
        .filter((a: { admitted?: boolean }) => a.admitted)
        .map((a: { path: string; action: string }) => [a.path, a.action]),
      [[job, 'noop']],
    );
    t.write(yaml(0.2));
    const squeezed = await t.run(['plan', '--json']);
    assert.equal(squeezed.code, 1);
    const reasons = JSON.parse(squeezed.stdout).reasons as { path: string; message: string }[];
    assert.equal(reasons[0]?.path, job);
    assert.match(reasons[0]?.message ?? '', new RegExp(`^would squeeze admitted child ${job}: `));
    assert.equal((await t.run(['apply', '--yes'])).code, 1, 'refused');
  });

  it('an apply around it leaves it running, and its budget counted', async () => {
    const pids = await t.pids();
    t.write(yaml(0.4, '998'));
    const apply = await t.run(['apply', '--yes', '--json']);
    assert.equal(apply.code, 0, apply.stderr + apply.stdout);
    const now = await t.pids();
    assert.deepEqual(changedPids(pids, now), [`/${t.name}/web`]);
    assert.equal(now[job], pids[job]);
    const plan = JSON.parse((await t.run(['plan', '--json'])).stdout);
    assert.deepEqual(plan.actions.find((a: { path: string }) => a.path === job).admitted, true);
  });
});

describe('while an apply runs, admissions wait', () => {
  // web takes ~6 s to stop (its own TERM trap), so the apply that restarts it is under way that long.
  const slow = (v: string) => `
name: @NAME@
requires: { cpu: 1, memory: 512Mi, pids: 128 }
children:
  - name: web
    command: [sh, -c, 'trap "sleep 6; exit 0" TERM; echo ${v}; while :; do sleep 0.2; done']
    requires: { cpu: 0.1, memory: 32Mi }
  - name: dev
    strategy: dynamic
    admission: {}
    requires: { cpu: 0.5, memory: 256Mi }
    children: []
`;
  let t: LiveTree;
  before(async () => {
    t = await liveTree('admitwait', slow('v1'));
    writeFileSync(join(t.dir, 'job.yaml'), "name: job\ncommand: [sleep, '1000']\nrequires: { cpu: 0.2 }\n");
  });
  after(async () => {
    await t?.down();
  });

  it('an admission during an apply is refused (409, nothing changed); after it, it is admitted', async () => {
    t.write(slow('v2'));
    const apply = t.run(['apply', '--yes', '--json']);
    // The apply is under way once it stops web (which takes its time): admit then.
    await until('the apply stopping web', async () => {
      const web = (await psJson(t.dir)).find((e) => e.path === `/${t.name}/web`);
      return web?.state === 'stopping';
    });
    const during = await t.run(['admit', `/${t.name}/dev`, 'job.yaml', '--json']);
    assert.equal(during.code, 1, during.stdout);
    const refused = during.stdout + during.stderr;
    assert.match(refused, /apply_in_progress|apply of a changed manifest is under way/);
    assert.equal((await apply).code, 0);
    assert.equal((await t.pids())[`/${t.name}/dev/job`], undefined, 'the refused admission left nothing');
    const admit = await t.run(['admit', `/${t.name}/dev`, 'job.yaml']);
    assert.equal(admit.code, 0, admit.stderr + admit.stdout);
  });
});
