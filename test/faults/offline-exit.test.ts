/**
 * An admitted temporary job ends while no daemon runs (the daemon was killed -9; the job finishes
 * before the next `up`): the next daemon does not run it again (the soak found it restored from
 * state.json and started a second time), it journals why it forgot it, and its budget is back.
 * A transient job that still runs is adopted as before.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { isAlive, readPid, statePaths } from '../../src/daemon/index.ts';
import { captree, cgroupsNamed, eventually, killAll, psJson } from '../cli/helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'captree-offexit-'));
const cleanup: number[] = [];
after(() => {
  killAll(cleanup.filter((p) => isAlive(p)));
  rmSync(dir, { recursive: true, force: true });
});

test('a temporary job that ended while no daemon ran is not run again', async () => {
  const name = `oe${process.pid}${Math.random().toString(36).slice(2, 6)}`;
  writeFileSync(
    join(dir, 'captree.yaml'),
    `name: ${name}\nchildren:\n  - name: jobs\n    strategy: dynamic\n    admission: {}\n    requires: { memory: 64Mi }\n    children: []\n`,
  );
  const runs = join(dir, 'runs');
  const go = join(dir, 'go');
  writeFileSync(
    join(dir, 'once.yaml'),
    `name: once\ncommand: [sh, -c, 'echo ran >> ${runs}; while [ ! -e ${go} ]; do sleep 0.05; done']\nrestart: temporary\nrequires: { memory: 64Mi }\n`,
  );
  writeFileSync(join(dir, 'keep.yaml'), 'name: keep\ncommand: [sleep, infinity]\nrestart: transient\n');
  assert.equal((await captree(['up', '--detach'], dir)).code, 0);
  const first = readPid(statePaths(join(dir, '.captree')));
  assert.ok(first !== null);
  cleanup.push(first);
  for (const spec of ['once.yaml', 'keep.yaml']) {
    const r = await captree(['admit', `/${name}/jobs`, spec], dir);
    assert.equal(r.code, 0, r.stderr);
  }
  const entries = await psJson(dir);
  const once = entries.find((e) => e.path === `/${name}/jobs/once`)?.pid;
  const keep = entries.find((e) => e.path === `/${name}/jobs/keep`)?.pid;
  assert.ok(once && keep);
  cleanup.push(once, keep);
  process.kill(first, 'SIGKILL');
  await eventually(() => (isAlive(first) ? undefined : true), 'the daemon gone');
  writeFileSync(go, '');
  await eventually(() => (isAlive(once) ? undefined : true), 'the job ended with no daemon');

  const again = await captree(['up', '--detach'], dir);
  assert.equal(again.code, 0, again.stderr);
  const second = readPid(statePaths(join(dir, '.captree')));
  assert.ok(second !== null);
  cleanup.push(second);
  const now = await psJson(dir);
  assert.equal(
    now.some((e) => e.path === `/${name}/jobs/once`),
    false,
    'not restored',
  );
  assert.equal(now.find((e) => e.path === `/${name}/jobs/keep`)?.pid, keep, 'the running one is adopted');
  assert.equal(readFileSync(runs, 'utf8'), 'ran\n', 'it ran exactly once');
  const events = JSON.parse((await captree(['events', '--json'], dir)).stdout) as {
    type: string;
    path: string;
    why?: string;
  }[];
  assert.ok(
    events.some(
      (r) => r.type === 'revoked' && r.path === `/${name}/jobs/once` && /no daemon ran/.test(r.why ?? ''),
    ),
    'its end is journalled',
  );
  // Its 64 MiB are back: the same job fits again (and runs once more, as a new admission).
  const readmit = await captree(['admit', `/${name}/jobs`, 'once.yaml'], dir);
  assert.equal(readmit.code, 0, readmit.stderr);
  const down = await captree(['down'], dir);
  assert.equal(down.code, 0, down.stderr);
  assert.deepEqual(cgroupsNamed(name), []);
});
