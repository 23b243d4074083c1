/**
 * The journal's files on disk and how they are read: `journal.jsonl` (written), then
 * `journal.jsonl.1` .. `journal.jsonl.<keep>` (rotated, older as the number grows). Readers go
 * from the newest record backwards, a chunk at a time, and stop as soon as they have what they
 * asked for (the last N records, those since a time): `captree events -n 20` reads a few KiB
 * whatever the journal's size.
 *
 * Records are appended in time order, so a reader looking for those `since` a time stops at the
 * first older one (a wall clock stepped back by more than the gap may hide a few records then).
 */
import * as fs from 'node:fs';
import { promisify } from 'node:util';
import { openRead } from './private-fs.ts';

const read = promisify(fs.read);

/** Bytes read per step backwards. */
const CHUNK = 64 << 10;

/** `file`, then its rotated files `file.1` .. that exist (a gap ends the list): newest first. */
export function journalFiles(file: string, keep = 64): string[] {
  const out = [file];
  for (let i = 1; i <= keep; i++) {
    const rotated = `${file}.${i}`;
    if (!fs.existsSync(rotated)) break;
    out.push(rotated);
  }
  return out;
}

/** The complete lines of `file`, last first (a torn last line is skipped); nothing if it does not exist. */
export async function* linesBackward(file: string): AsyncGenerator<string> {
  let fd: number | null;
  try {
    fd = openRead(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (fd === null) return;
  try {
    let pos = fs.fstatSync(fd).size;
    // The bytes after the chunk read last, up to and including the first newline seen in them:
    // a line whose start lies further back.
    let carry = Buffer.alloc(0);
    let trimmed = false;
    while (pos > 0) {
      const len = Math.min(CHUNK, pos);
      pos -= len;
      const buf = Buffer.alloc(len);
      const { bytesRead } = await read(fd, buf, 0, len, pos);
      let data =
        carry.length > 0 ? Buffer.concat([buf.subarray(0, bytesRead), carry]) : buf.subarray(0, bytesRead);
      if (!trimmed) {
        // What follows the file's last newline was never finished (a crash mid-write): no record.
        const nl = data.lastIndexOf(10);
        if (nl < 0) {
          carry = Buffer.alloc(0);
          continue;
        }
        data = data.subarray(0, nl + 1);
        trimmed = true;
      }
      // data ends with a newline; every line after its first newline is complete.
      let lineEnd = data.length - 1;
      let nl = data.lastIndexOf(10, lineEnd - 1);
      while (nl >= 0) {
        const line = data.subarray(nl + 1, lineEnd).toString('utf8');
        if (line !== '') yield line;
        lineEnd = nl;
        nl = lineEnd > 0 ? data.lastIndexOf(10, lineEnd - 1) : -1;
      }
      carry = Buffer.from(data.subarray(0, lineEnd + 1));
    }
    if (trimmed) {
      const line = carry.subarray(0, carry.length - 1).toString('utf8');
      if (line !== '') yield line;
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** The complete lines of every journal file of `file`, newest record first. */
export async function* journalLinesBackward(file: string): AsyncGenerator<string> {
  for (const f of journalFiles(file)) yield* linesBackward(f);
}
