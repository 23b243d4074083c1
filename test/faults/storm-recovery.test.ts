/**
 * The daemon is killed (-9) in the middle of a restart storm (children that exit as soon as they
 * start, restarted at once, no backoff), then `up` again, four times over: the recovery sweep kills only what
 * no daemon supervises, never a child the new daemon started itself (each orphan it names is
 * checked against the pids the new daemon journalled as started), the long-running children are
 * adopted, and a failed `up` (the tree already runs) leaves no temporary file.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { isAlive, readPid, statePaths } from '../../src/daemon/index.ts';
import { alive, captree, cgroupsNamed, eventually, killAll, psJson } from '../cli/helpers.ts';

const dirs: string[] = [];
const cleanup: number[] = [];

after(() => {
  killAll(cleanup.filter((p) => isAlive(p)));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

interface Rec {
  seq: number;
  type: string;
  path: string;
  pid?: number;
  why?: string;
}

function journal(dir: string): Rec[] {
  return readFileSync(join(dir, '.captree', 'journal.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Rec);
}

test('a daemon killed during a restart storm: the next one never kills a child it started', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'captree-storm-'));
  dirs.push(dir);
  const name = `st${process.pid}${Math.random().toString(36).slice(2, 6)}`;
  const stormers = Array.from(
    { length: 12 },
    (_, i) => `  - name: s${i}\n    command: [sh, -c, 'exit 1']\n    backoff: false\n`,
  ).join('');
  writeFileSync(
    join(dir, 'captree.yaml'),
    `name: ${name}\nintensity: 1000000\nperiod: 1s\nchildren:\n${stormers}  - name: steady\n    command: [sleep, infinity]\n  - name: steady2\n    command: [sleep, infinity]\n    requires: { net: none }\n`,
  );
  const paths = statePaths(join(dir, '.captree'));
  const first = await captree(['up', '--detach'], dir);
  assert.equal(first.code, 0, first.stderr);
  let daemon = readPid(paths);
  assert.ok(daemon !== null);
  cleanup.push(daemon);
  const steady = await eventually(async () => {
    const e = (await psJson(dir)).find((x) => x.path === `/${name}/steady`);
    return e?.pid ?? undefined;
  }, 'steady running');
  cleanup.push(steady);
  let orphansChecked = 0;
  for (let round = 0; round < 4; round++) {
    // Storming: enough restarts journalled since the last daemon started.
    const from = journal(dir).at(-1)?.seq ?? 0;
    await eventually(
      () =>
        journal(dir).filter((r) => r.seq > from && r.type === 'restarting').length >= 30 ? true : undefined,
      'a restart storm',
    );
    process.kill(daemon, 'SIGKILL');
    await eventually(() => (isAlive(daemon as number) ? undefined : true), 'the daemon gone');
    const mark = journal(dir).at(-1)?.seq ?? 0;
    const again = await captree(['up', '--detach'], dir);
    assert.equal(again.code, 0, again.stderr);
    daemon = readPid(paths);
    assert.ok(daemon !== null);
    cleanup.push(daemon);
    const recs = journal(dir).filter((r) => r.seq > mark);
    assert.ok(
      recs.some((r) => r.type === 'recovered'),
      'the new daemon recovered',
    );
    const ownPids = new Set(recs.filter((r) => r.type === 'started').map((r) => r.pid));
    for (const k of recs.filter((r) => r.type === 'orphan_killed')) {
      orphansChecked++;
      assert.ok(!ownPids.has(k.pid), `orphan ${k.pid} (${k.path}: ${k.why}) was started by the new daemon`);
    }
    // Nothing the new daemon started was SIGKILLed by anyone but itself.
    const killed = recs.filter(
      (r) => r.type === 'exited' && JSON.stringify(r).includes('SIGKILL') && r.path.startsWith(`/${name}/s`),
    );
    assert.deepEqual(killed, [], 'no storming child of the new daemon was killed');
    const now = (await psJson(dir)).find((x) => x.path === `/${name}/steady`);
    assert.equal(now?.pid, steady, 'the steady child is adopted, not restarted');
  }
  // `up` on a running tree fails and leaves no temporary file behind.
  const twice = await captree(['up', '--detach'], dir);
  assert.notEqual(twice.code, 0);
  // (The running daemon's own writes in flight, `<file>.<its pid>.<rand>.tmp`, are not leftovers.)
  const running = readPid(paths);
  assert.deepEqual(
    readdirSync(paths.dir).filter((f) => f.includes('.tmp') && !f.includes(`.${running}.`)),
    [],
  );
  const down = await captree(['down'], dir);
  assert.equal(down.code, 0, down.stderr);
  assert.deepEqual(alive([steady, daemon]), []);
  assert.deepEqual(cgroupsNamed(name), []);
  // Not an assertion on timing: the count only says how much the sweep had to do.
  console.log(`# ${orphansChecked} orphan(s) killed by recovery sweeps, none started by the new daemon`);
});
