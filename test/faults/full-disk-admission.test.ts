/**
 * Admissions on a full disk (the state directory a 16 MiB tmpfs, filled to the last byte), through
 * the real bin, as the soak found them: a revocation that cannot be recorded is refused, not
 * acknowledged while the child goes on (it was, and the child was then restarted); an admitted
 * child that ends keeps the admission bookkeeping alive (its state.json write threw inside an
 * engine listener, which was detached) and state.json forgets it once space returns.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { isAlive, readPid, statePaths } from '../../src/daemon/index.ts';
import { captree, cgroupsNamed, eventually, killAll, psJson } from '../cli/helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'captree-fdadmit-'));
const state = join(dir, '.captree');
let mounted = false;
const cleanup: number[] = [];

after(() => {
  killAll(cleanup.filter((p) => isAlive(p)));
  if (mounted) execFileSync('umount', ['-l', state]);
  rmSync(dir, { recursive: true, force: true });
});

/** The admitted children state.json records (what a restarted daemon would restore). */
function admittedOnDisk(): string[] {
  const data = JSON.parse(readFileSync(join(state, 'state.json'), 'utf8')) as {
    admission?: { admitted?: { path: string }[] };
  };
  return (data.admission?.admitted ?? []).map((r) => r.path);
}

test('a full disk: a revoke is refused, not half done; an ended admission is forgotten once space returns', async () => {
  mkdirSync(state, { mode: 0o700 });
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16m,mode=0700', 'tmpfs', state]);
  mounted = true;
  const name = `fa${process.pid}${Math.random().toString(36).slice(2, 6)}`;
  writeFileSync(
    join(dir, 'captree.yaml'),
    `name: ${name}\nchildren:\n  - name: jobs\n    strategy: dynamic\n    admission: {}\n    requires: { memory: 256Mi }\n    children: []\n`,
  );
  const go = join(dir, 'go');
  writeFileSync(join(dir, 'keep.yaml'), 'name: keep\ncommand: [sleep, infinity]\nrestart: transient\n');
  writeFileSync(
    join(dir, 'once.yaml'),
    `name: once\ncommand: [sh, -c, 'while [ ! -e ${go} ]; do sleep 0.05; done']\nrestart: temporary\n`,
  );
  const up = await captree(['up', '--detach'], dir);
  assert.equal(up.code, 0, up.stderr);
  const daemon = readPid(statePaths(state));
  assert.ok(daemon !== null);
  cleanup.push(daemon);
  for (const spec of ['keep.yaml', 'once.yaml']) {
    const r = await captree(['admit', `/${name}/jobs`, spec], dir);
    assert.equal(r.code, 0, r.stderr);
  }
  const keep = (await psJson(dir)).find((e) => e.path === `/${name}/jobs/keep`)?.pid;
  assert.ok(keep);
  cleanup.push(keep);

  const filler = join(state, 'filler');
  try {
    execFileSync('dd', ['if=/dev/zero', `of=${filler}`, 'bs=64k'], { stdio: 'ignore' });
  } catch {
    // dd ends with ENOSPC: full, as wanted.
  }
  const refused = await captree(['revoke', `/${name}/jobs/keep`], dir);
  assert.notEqual(refused.code, 0, 'not acknowledged');
  assert.match(refused.stderr, /could not be stopped.*(ENOSPC|no space)/i);
  const still = await psJson(dir);
  assert.equal(
    still.find((e) => e.path === `/${name}/jobs/keep`)?.pid,
    keep,
    'still running, the same process',
  );

  // The temporary child ends while nothing can be written.
  writeFileSync(go, '');
  await eventually(
    async () => ((await psJson(dir)).some((e) => e.path === `/${name}/jobs/once`) ? undefined : true),
    'the temporary child gone',
  );
  const events = await captree(['events', '--json'], dir);
  assert.equal(events.code, 0, events.stderr);
  const records = JSON.parse(events.stdout) as { type: string; path: string; why?: string }[];
  assert.equal(
    records.some((r) => r.type === 'listener_failed'),
    false,
    'no engine listener was detached',
  );
  assert.ok(
    records.some((r) => r.type === 'revoked' && r.path === `/${name}/jobs/once` && r.why === 'exited'),
    'its end is told (from memory: the journal could not write it)',
  );
  assert.ok(admittedOnDisk().includes(`/${name}/jobs/once`), 'not yet on disk');

  rmSync(filler);
  await eventually(
    () => (admittedOnDisk().includes(`/${name}/jobs/once`) ? undefined : true),
    'state.json forgets it once space returns',
  );
  const revoked = await captree(['revoke', `/${name}/jobs/keep`], dir);
  assert.equal(revoked.code, 0, revoked.stderr);
  assert.equal(
    (await psJson(dir)).some((e) => e.path === `/${name}/jobs/keep`),
    false,
  );
  assert.equal(isAlive(keep), false);
  const down = await captree(['down'], dir);
  assert.equal(down.code, 0, down.stderr);
  assert.deepEqual(cgroupsNamed(name), []);
});
