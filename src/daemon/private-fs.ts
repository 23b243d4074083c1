/**
 * The state directory is the daemon's alone. Every file in it is opened here: never through a
 * symlink (`O_NOFOLLOW`), never a file another user owns or one with a second name (a hard link
 * planted by someone who could write the directory), created 0600. The directory itself must be
 * owned by the invoking user and writable by nobody else, or nothing starts.
 *
 * Why: the daemon runs as root. A state directory others can write lets them plant
 * `journal.jsonl -> /etc/passwd` (the daemon appends to it) or a `state.json` whose commands the
 * next `up` runs as root.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

const { O_NOFOLLOW, O_CREAT, O_EXCL, O_WRONLY, O_RDONLY, O_APPEND, O_DIRECTORY } = fs.constants;

export class UnsafeStateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnsafeStateError';
  }
}

function uid(): number {
  return process.geteuid?.() ?? 0;
}

function owner(st: fs.Stats): string {
  return st.uid === 0 ? 'root' : `uid ${st.uid}`;
}

/**
 * Creates `dir` (0700) if missing; else checks it is a real directory (not a symlink), owned by
 * this user and not writable by group or others. Throws `UnsafeStateError` saying how to fix it.
 */
export function ensurePrivateDir(dir: string): void {
  try {
    fs.mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    else if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const st = fs.lstatSync(dir);
  if (st.isSymbolicLink())
    throw new UnsafeStateError(
      `the state directory ${dir} is a symbolic link; use a real directory (--state DIR)`,
    );
  if (!st.isDirectory()) throw new UnsafeStateError(`the state directory ${dir} is not a directory`);
  if (st.uid !== uid())
    throw new UnsafeStateError(
      `the state directory ${dir} is owned by ${owner(st)}, not by you (uid ${uid()}); use a directory of your own (--state DIR)`,
    );
  if ((st.mode & 0o022) !== 0)
    throw new UnsafeStateError(
      `the state directory ${dir} is writable by ${st.mode & 0o020 ? 'its group' : 'others'} (mode ${(st.mode & 0o777).toString(8)}); run: chmod go-w ${dir}`,
    );
}

/** Checks an open descriptor: a regular file of ours with one name. Closes it and throws if not. */
function checked(fd: number, file: string): number {
  const st = fs.fstatSync(fd);
  let problem: string | null = null;
  if (!st.isFile()) problem = 'is not a regular file';
  else if (st.uid !== uid()) problem = `is owned by ${owner(st)}, not by you`;
  else if (st.nlink > 1) problem = `has ${st.nlink} names (a hard link to it exists elsewhere)`;
  if (problem === null) return fd;
  fs.closeSync(fd);
  throw new UnsafeStateError(`${file} ${problem}; refusing to use it (remove it to start afresh)`);
}

function open(file: string, flags: number, mode = 0o600): number {
  try {
    return checked(fs.openSync(file, flags | O_NOFOLLOW, mode), file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOOP')
      throw new UnsafeStateError(
        `${file} is a symbolic link; refusing to follow it (remove it to start afresh)`,
      );
    throw err;
  }
}

/** Opens for appending, creating it 0600 (or `mode`). */
export function openAppend(file: string, mode = 0o600): number {
  return open(file, O_WRONLY | O_APPEND | O_CREAT, mode);
}

/** Opens for reading; `null` when it does not exist. */
export function openRead(file: string): number | null {
  try {
    return open(file, O_RDONLY);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** The whole file as text; `null` when it does not exist. */
export function readPrivate(file: string): string | null {
  const fd = openRead(file);
  if (fd === null) return null;
  try {
    return fs.readFileSync(fd, 'utf8');
  } finally {
    fs.closeSync(fd);
  }
}

/** Creates `file` exclusively (fails with EEXIST when it exists, symlinks included). */
export function createExclusive(file: string, mode = 0o600): number {
  return open(file, O_WRONLY | O_CREAT | O_EXCL, mode);
}

/**
 * Replaces `file` whole and durably: a fresh temporary file (exclusive, so no planted name is
 * written through), fsync, rename, fsync of the directory. A crash leaves the old or the new
 * version; a failure removes the temporary file.
 */
export function writeAtomic(file: string, data: string, mode = 0o600): void {
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2, 8)}.tmp`;
  let fd: number | null = null;
  try {
    fd = createExclusive(tmp, mode);
    // A nearly full disk takes part of a write without an error: what is short is written again
    // (and then fails), never renamed into place truncated.
    const bytes = Buffer.from(data);
    for (let off = 0; off < bytes.length; ) off += fs.writeSync(fd, bytes, off);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = null;
    fs.renameSync(tmp, file);
  } catch (err) {
    if (fd !== null) fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  const dir = fs.openSync(path.dirname(file), O_RDONLY | O_DIRECTORY);
  try {
    fs.fsyncSync(dir);
  } finally {
    fs.closeSync(dir);
  }
}
