/**
 * The state directory is the daemon's alone, through the real CLI (`captree up --detach`): a
 * directory another user owns or can write, a symlink planted as one of its files, or a state
 * file another user wrote is refused with exit 1 and a clear message, nothing is started, and
 * the planted symlink's target is byte-identical afterwards. What the daemon creates is 0600
 * (logs 0640 at most, the directory 0700).
 */
import assert from 'node:assert/strict';
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, beforeEach, describe, test } from 'node:test';
import { readPid, statePaths } from '../../src/daemon/index.ts';
import { alive, captree, cgroupsNamed, killAll, psJson } from '../cli/helpers.ts';

/** Another local user: Debian's `nobody`. */
const nobody = Number(/^nobody:[^:]*:(\d+):/m.exec(readFileSync('/etc/passwd', 'utf8'))?.[1]);

describe('the state directory is the daemon’s alone (captree up --detach)', () => {
  let dir = '';
  let name = '';
  let state = '';
  const targets: string[] = [];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'captree-statedir-'));
    name = `sd${process.pid}${Math.random().toString(36).slice(2, 6)}`;
    state = join(dir, '.captree');
    writeFileSync(
      join(dir, 'captree.yaml'),
      `name: ${name}\nchildren:\n  - name: idle\n    command: [sleep, infinity]\n`,
    );
  });

  afterEach(async () => {
    const pid = existsSync(state) ? readPid(statePaths(state)) : null;
    if (pid !== null && alive([pid]).length > 0) {
      const pids = (await psJson(dir).catch(() => [])).flatMap((e) => (e.pid ? [e.pid] : []));
      const r = await captree(['down'], dir);
      if (r.code !== 0) killAll([pid, ...pids]);
    }
    assert.deepEqual(cgroupsNamed(name), [], 'no cgroup of the tree is left');
    rmSync(dir, { recursive: true, force: true });
  });

  after(() => {
    for (const t of targets) rmSync(t, { force: true });
  });

  /** `up` refuses: exit 1, the message, no daemon, no cgroup. */
  async function refused(message: RegExp): Promise<void> {
    const r = await captree(['up', '--detach'], dir);
    assert.equal(r.code, 1, `${r.stdout}${r.stderr}`);
    assert.match(r.stderr, message);
    assert.equal(existsSync(join(state, 'daemon.pid')) && readPid(statePaths(state)) !== null, false);
    assert.deepEqual(cgroupsNamed(name), [], 'nothing was started');
  }

  /** A file outside the state dir that a planted symlink points at. */
  function target(): { file: string; bytes: Buffer } {
    const file = join(tmpdir(), `captree-target-${process.pid}-${Math.random().toString(36).slice(2)}`);
    writeFileSync(file, 'root-owned content\n', { mode: 0o644 });
    targets.push(file);
    return { file, bytes: readFileSync(file) };
  }

  test('a state dir writable by group or others is refused', async () => {
    mkdirSync(state);
    chmodSync(state, 0o777);
    await refused(/state directory .* is writable by (its group|others) \(mode 777\); run: chmod go-w/);
    chmodSync(state, 0o770);
    await refused(/writable by its group/);
  });

  test('a state dir owned by another user is refused', async () => {
    assert.ok(nobody > 0, 'this host has a nobody user');
    mkdirSync(state, { mode: 0o700 });
    chownSync(state, nobody, nobody);
    await refused(/state directory .* is owned by uid \d+, not by you/);
  });

  test('a symlink planted as journal.jsonl or daemon.log is not followed; its target is unchanged', async () => {
    for (const file of ['journal.jsonl', 'daemon.log', 'state.json']) {
      rmSync(state, { recursive: true, force: true });
      mkdirSync(state, { mode: 0o700 });
      const t = target();
      symlinkSync(t.file, join(state, file));
      const r = await captree(['up', '--detach'], dir);
      assert.equal(r.code, 1, `${file}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, /symbolic link|refusing/, file);
      assert.deepEqual(readFileSync(t.file), t.bytes, `${file}: the target is byte-identical`);
      assert.deepEqual(cgroupsNamed(name), [], `${file}: nothing was started`);
    }
    // A pid file is taken over when its daemon is gone: the planted link is replaced, not followed.
    rmSync(state, { recursive: true, force: true });
    mkdirSync(state, { mode: 0o700 });
    const t = target();
    symlinkSync(t.file, join(state, 'daemon.pid'));
    const r = await captree(['up', '--detach'], dir);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(readFileSync(t.file), t.bytes, 'daemon.pid: the target is byte-identical');
    assert.ok(lstatSync(join(state, 'daemon.pid')).isFile(), 'the pid file is a file of its own');
  });

  test('a state.json written by another user is refused (its commands would run as root)', async () => {
    mkdirSync(state, { mode: 0o700 });
    writeFileSync(join(state, 'state.json'), JSON.stringify({ version: 1, held: [] }), { mode: 0o600 });
    chownSync(join(state, 'state.json'), nobody, nobody);
    await refused(/state\.json is owned by uid \d+, not by you; refusing to use it/);
  });

  test('what the daemon creates is private: dir 0700, files 0600, logs 0640 at most', async () => {
    writeFileSync(
      join(dir, 'captree.yaml'),
      `name: ${name}\nchildren:\n  - name: talker\n    command: [sh, -c, 'echo hello; exec sleep infinity']\n`,
    );
    const r = await captree(['up', '--detach'], dir);
    assert.equal(r.code, 0, r.stderr);
    // The log file is opened at the child's first line: asked until `captree logs` shows it.
    let shown = '';
    for (let i = 0; i < 100 && !shown.includes('hello'); i++)
      shown = (await captree(['logs', `/${name}/talker`], dir)).stdout;
    assert.match(shown, /hello/);
    assert.equal(statSync(state).mode & 0o777, 0o700);
    for (const file of ['journal.jsonl', 'daemon.log', 'daemon.pid'])
      assert.equal(statSync(join(state, file)).mode & 0o777, 0o600, file);
    const logs = readdirSync(join(state, 'logs'));
    assert.ok(logs.length > 0);
    for (const file of logs) assert.equal(statSync(join(state, 'logs', file)).mode & 0o137, 0, file);
    assert.equal(existsSync(join(state, 'tree.json')), false, 'the handed-over tree is removed');
    assert.deepEqual(
      readdirSync(state).filter((f) => f.endsWith('.tmp')),
      [],
      'no temporary file is left',
    );
  });
});
