/**
 * Fault: the log filesystem fills up. A real child writes fast into a ChildLog on a 1 MiB tmpfs;
 * the writer must drop and count records instead of throwing, keep whole records in the file,
 * and resume (with a note saying how much was lost) once space is freed.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { ChildLog, parseRecord, readLogSince, type WriterFault } from '../../src/runtime/logs/index.ts';
import { rootOr, uniqueName } from '../support/host.ts';

const needRoot = rootOr('mounting a tmpfs needs root');
let dir: string;
let mounted = false;

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), `${uniqueName('fulldisk')}-`));
});
after(() => {
  if (mounted) execFileSync('umount', [dir]);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('a full disk drops log records with a count, never throws, and logging resumes when space returns', async (t) => {
  if (!needRoot(t)) return;
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir]);
  mounted = true;
  // Filler takes most of the space so the log hits ENOSPC quickly; removing it frees the disk.
  const filler = path.join(dir, 'filler');
  fs.writeFileSync(filler, Buffer.alloc(900 * 1024));

  const faults: WriterFault[] = [];
  const log = new ChildLog({
    dir,
    name: 'noisy',
    maxBytes: 10 * 1024 * 1024,
    onFault: (f) => faults.push(f),
  });
  log.push('out', 'before the disk filled\n');
  await log.flush();
  const sawDrop = new Promise<void>((resolve) => {
    const check = setInterval(() => {
      if (faults.some((f) => f.kind === 'dropped')) {
        clearInterval(check);
        resolve();
      }
    }, 5);
  });
  // A real process that writes 1 KiB lines until told to stop.
  const child = spawn(
    'sh',
    ['-c', 'line=$(head -c 1000 /dev/zero | tr "\\0" x); while :; do echo "$line"; done'],
    {
      stdio: ['ignore', 'pipe', 'ignore'],
    },
  );
  const captured = log.attach(child.stdout, 'out');
  await sawDrop;
  child.kill('SIGKILL');
  await once(child, 'exit');
  await captured;
  await log.flush(); // must not reject: the failure was survived

  assert.ok(log.writer.dropped > 0, 'records were dropped and counted');
  assert.equal(log.writer.lastError, 'ENOSPC');
  const dropped = faults.find((f) => f.kind === 'dropped');
  assert.ok(dropped && dropped.kind === 'dropped' && dropped.error === 'ENOSPC');

  // Every line in the file is a whole record: the half-written batch was cut back.
  const text = fs.readFileSync(path.join(dir, 'noisy.log'), 'utf8');
  assert.ok(text.length > 0 && text.endsWith('\n'));
  for (const line of text.slice(0, -1).split('\n'))
    assert.ok(parseRecord(line), `whole record: ${line.slice(0, 40)}`);

  // Space returns: the next record is written, preceded by a note of the loss.
  fs.rmSync(filler);
  log.push('out', 'after the disk was freed\n');
  await log.flush();
  await log.close();
  assert.ok(faults.some((f) => f.kind === 'resumed'));
  const records = await readLogSince(dir, 'noisy', 0);
  const texts = records.map((r) => r.text);
  const note = texts.findIndex((x) => /log records \(\d+ bytes\) dropped so far: ENOSPC/.test(x));
  assert.ok(note >= 0, 'a sys note says how much was dropped');
  assert.equal(records[note]!.stream, 'sys');
  assert.ok(texts.indexOf('after the disk was freed') >= 0, 'logging resumed');
});
