/**
 * Unbounded growth: the journal rotates by size (N files kept) and is read backwards from its
 * newest record (`events -n`, `--since` stop early), `seq` goes on across rotations and daemon
 * restarts, and `daemon.log` is rotated by copy and truncation. The last test runs the real bin
 * with a storming child and a small journal size.
 */
import assert from 'node:assert/strict';
import {
  appendFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { journalLimits } from '../../src/daemon/daemon.ts';
import { rotateDaemonLog } from '../../src/daemon/daemon-log.ts';
import { isAlive, Journal, readJournal, readPid, statePaths } from '../../src/daemon/index.ts';
import { lastSeq } from '../../src/daemon/journal.ts';
import { linesBackward } from '../../src/daemon/journal-files.ts';
import { captree, cgroupsNamed, eventually, killAll } from '../cli/helpers.ts';

const dirs: string[] = [];
const cleanup: number[] = [];
after(() => {
  killAll(cleanup.filter((p) => isAlive(p)));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tmp(): string {
  const dir = mkdtempSync(join(tmpdir(), 'captree-jrot-'));
  dirs.push(dir);
  return dir;
}

const event = (i: number) => ({ type: 'started' as const, path: `/t/c${i % 7}`, at: i, pid: 1000 + i });

describe('journal rotation', () => {
  test('rotates at maxBytes, keeps `keep` files, numbers go on, readers see every file in order', async () => {
    const file = join(tmp(), 'journal.jsonl');
    let now = 1_000_000;
    const j = new Journal(file, { maxBytes: 8192, keep: 2, now: () => now++ });
    for (let i = 0; i < 600; i++) j.append(event(i));
    j.close();
    const names = readdirSync(join(file, '..')).sort();
    assert.deepEqual(names, ['journal.jsonl', 'journal.jsonl.1', 'journal.jsonl.2']);
    for (const name of names)
      assert.ok(statSync(join(file, '..', name)).size < 8192 + 256, `${name} is bounded`);
    const all = await readJournal(file);
    assert.ok(
      all.length > 0 && all.length < 600,
      `older records were dropped with the oldest file (${all.length})`,
    );
    assert.equal(all.at(-1)?.seq, 600);
    assert.deepEqual(
      all.map((r) => r.seq),
      all.map((_, i) => 600 - all.length + 1 + i),
      'consecutive, oldest first, across the files',
    );
    const last = await readJournal(file, {}, 20);
    assert.deepEqual(
      last.map((r) => r.seq),
      Array.from({ length: 20 }, (_, i) => 581 + i),
    );
    const since = await readJournal(file, { since: now - 10 });
    assert.deepEqual(
      since.map((r) => r.seq),
      Array.from({ length: 10 }, (_, i) => 591 + i),
    );
    const path = await readJournal(file, { path: '/t/c3' }, 2);
    assert.deepEqual(
      path.map((r) => r.path),
      ['/t/c3', '/t/c3'],
    );
    // A daemon that starts on a just-rotated (empty) file goes on from the rotated one.
    renameSync(join(file, '..', 'journal.jsonl.2'), join(file, '..', 'journal.jsonl.3'));
    renameSync(join(file, '..', 'journal.jsonl.1'), join(file, '..', 'journal.jsonl.2'));
    renameSync(file, `${file}.1`);
    writeFileSync(file, '');
    assert.equal(lastSeq(file), 600);
    const next = new Journal(file, { maxBytes: 8192, keep: 2 });
    assert.equal(next.append(event(600)).seq, 601);
    next.close();
  });

  test('reading backwards skips torn lines and finds lines across chunk boundaries', async () => {
    const file = join(tmp(), 'journal.jsonl');
    const lines = Array.from({ length: 3000 }, (_, i) =>
      JSON.stringify({ ...event(i), seq: i + 1, ts: i, time: '', pad: 'x'.repeat(i % 113) }),
    );
    writeFileSync(
      file,
      `${lines.slice(0, 1500).join('\n')}\n{"torn\n${lines.slice(1500).join('\n')}\n{"seq":`,
    );
    const got: string[] = [];
    for await (const line of linesBackward(file)) got.push(line);
    assert.equal(got.length, 3001, 'every line but the unfinished last one');
    const records = await readJournal(file);
    assert.deepEqual(
      records.map((r) => r.seq),
      lines.map((_, i) => i + 1),
    );
  });

  test('daemon.log is rotated by copy and truncation, keeping two', () => {
    const dir = tmp();
    const log = join(dir, 'daemon.log');
    writeFileSync(log, 'a'.repeat(100));
    assert.equal(rotateDaemonLog(log, 1000), false, 'below the size: left alone');
    appendFileSync(log, 'b'.repeat(1000));
    assert.equal(rotateDaemonLog(log, 1000), true);
    assert.equal(statSync(log).size, 0);
    appendFileSync(log, 'c'.repeat(1000));
    assert.equal(rotateDaemonLog(log, 1000), true);
    appendFileSync(log, 'd'.repeat(1000));
    assert.equal(rotateDaemonLog(log, 1000), true);
    assert.deepEqual(readdirSync(dir).sort(), ['daemon.log', 'daemon.log.1', 'daemon.log.2']);
    assert.match(readFileSync(`${log}.1`, 'utf8'), /^d+$/);
    assert.match(readFileSync(`${log}.2`, 'utf8'), /^c+$/);
    assert.equal(rotateDaemonLog(join(dir, 'missing.log'), 1), false, 'a missing file is no error');
  });

  test('rotation limits come from the environment', () => {
    assert.deepEqual(journalLimits({ CAPTREE_JOURNAL_MAX_SIZE: '512Ki', CAPTREE_JOURNAL_KEEP: '3' }), {
      maxBytes: 512 * 1024,
      keep: 3,
    });
    assert.deepEqual(journalLimits({ CAPTREE_JOURNAL_MAX_SIZE: 'lots' }), {});
  });
});

test('a storming tree under the real bin: the journal stays bounded, events -n reads its tail', async () => {
  const dir = tmp();
  const name = `jr${process.pid}${Math.random().toString(36).slice(2, 6)}`;
  writeFileSync(
    join(dir, 'captree.yaml'),
    `name: ${name}\nintensity: 1000000\nchildren:\n  - name: storm\n    command: [sh, -c, 'exit 1']\n    backoff: false\n`,
  );
  const env = { CAPTREE_JOURNAL_MAX_SIZE: '16Ki', CAPTREE_JOURNAL_KEEP: '2' };
  const up = await captree(['up', '--detach'], dir, env);
  assert.equal(up.code, 0, up.stderr);
  const paths = statePaths(join(dir, '.captree'));
  const daemon = readPid(paths);
  assert.ok(daemon !== null);
  cleanup.push(daemon);
  await eventually(() => (existsSync(`${paths.journal}.2`) ? true : undefined), 'two rotations', 30_000);
  const events = await captree(['events', '-n', '5', '--json'], dir);
  assert.equal(events.code, 0, events.stderr);
  const records = JSON.parse(events.stdout) as { seq: number }[];
  assert.equal(records.length, 5);
  const seqs = records.map((r) => r.seq);
  assert.deepEqual(
    seqs,
    seqs.map((_, i) => seqs[0]! + i),
    'the last five, in order',
  );
  const down = await captree(['down'], dir);
  assert.equal(down.code, 0, down.stderr);
  assert.equal(existsSync(`${paths.journal}.3`), false, 'no more than two rotated files');
  for (const f of [paths.journal, `${paths.journal}.1`, `${paths.journal}.2`])
    assert.ok(statSync(f).size < 16 * 1024 + 4096, `${f} is bounded`);
  // After the tree stopped, from the files: the same tail, seq still going up to the end.
  const offline = await captree(['events', '-n', '3', '--json'], dir);
  assert.equal(offline.code, 0, offline.stderr);
  const tail = JSON.parse(offline.stdout) as { seq: number; type: string }[];
  assert.equal(tail.length, 3);
  assert.equal(tail.at(-1)?.seq, lastSeq(paths.journal));
  assert.ok(tail.at(-1)!.seq > seqs.at(-1)!);
  assert.deepEqual(cgroupsNamed(name), []);
});
