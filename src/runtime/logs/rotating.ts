/**
 * A size-based rotating log file: `name.log` is written; when the next record would take it past
 * `maxBytes` it is renamed to `name.log.1` (older files shift to `.2` .. `.keep`, the oldest is
 * deleted) and a fresh `name.log` is started.
 *
 * Guarantees: records are written whole, in the order `write()` was called, each exactly once; a
 * record is never split across two files (a record larger than `maxBytes` gets a file of its own).
 * All file work happens in one drain loop, so concurrent producers cannot interleave with a
 * rotation. `write()` never blocks the event loop on disk.
 *
 * Hazards: the queue is unbounded (a disk slower than the child grows memory; `pendingBytes`
 * shows it); data is in the page cache, not fsynced, after `flush()`; a second writer on the same
 * file from another process would corrupt the rotation (one writer per file).
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';

/** Never through a symlink planted in the logs dir; readable by the owner's group at most. */
const APPEND = fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW;
const LOG_MODE = 0o640;
/** While writes fail (a full disk), one attempt per this many ms; records in between are dropped. */
const RETRY_MS = 1000;

/** A log that cannot be written drops records (and says so once), then resumes. */
export type LogTrouble =
  | { state: 'dropping'; error: string }
  | { state: 'resumed'; dropped: number; droppedBytes: number };

export interface RotatingOptions {
  /** Directory holding the files. */
  dir: string;
  /** Base name: files are `${name}.log`, `${name}.log.1`, ... */
  name: string;
  /** Rotate when `name.log` would exceed this size. Default 10 MiB. */
  maxBytes?: number;
  /** Rotated files to keep (`name.log.1` .. `name.log.keep`). Default 5, at least 1. */
  keep?: number;
  /** Told when writes start failing (records are then dropped) and when they work again. */
  onTrouble?: (t: LogTrouble) => void;
  now?: () => number;
}

export class RotatingFileWriter {
  readonly dir: string;
  readonly name: string;
  readonly maxBytes: number;
  readonly keep: number;
  #queue: Buffer[] = [];
  #queuedBytes = 0;
  #size = -1;
  #fh: fsp.FileHandle | null = null;
  #draining: Promise<void> | null = null;
  #error: unknown = null;
  #closed = false;
  #rotations = 0;
  /** How many rotated files exist (`.1` .. `.n`), so a rotation renames only those. */
  #rotated = 0;
  #onTrouble: ((t: LogTrouble) => void) | undefined;
  #now: () => number;
  /** Set while writes fail: when to try the file again, and what was dropped meanwhile. */
  #failing: { retryAt: number; dropped: number; droppedBytes: number } | null = null;
  #droppedTotal = 0;

  constructor(options: RotatingOptions) {
    this.dir = options.dir;
    this.name = options.name;
    this.maxBytes = options.maxBytes ?? 10 * 1024 * 1024;
    this.keep = options.keep ?? 5;
    this.#onTrouble = options.onTrouble;
    this.#now = options.now ?? Date.now;
    if (!(this.maxBytes > 0)) throw new RangeError('maxBytes must be positive');
    if (!(Number.isInteger(this.keep) && this.keep >= 1))
      throw new RangeError('keep must be an integer >= 1');
    if (/[/\0]/.test(this.name) || this.name === '' || this.name.startsWith('.')) {
      throw new RangeError(`invalid log name ${JSON.stringify(this.name)}`);
    }
  }

  /** `name.log` then `name.log.1` .. `name.log.keep`: newest first. */
  files(): string[] {
    const base = path.join(this.dir, `${this.name}.log`);
    return [base, ...Array.from({ length: this.keep }, (_, i) => `${base}.${i + 1}`)];
  }

  get pendingBytes(): number {
    return this.#queuedBytes;
  }

  get rotations(): number {
    return this.#rotations;
  }

  /** Records dropped because the file could not be written, since this writer was made. */
  get dropped(): number {
    return this.#droppedTotal;
  }

  /** Queues one record (it should end with `\n`). Throws after close or a write failure. */
  write(record: string | Buffer): void {
    if (this.#closed) throw new Error(`log ${this.name} is closed`);
    if (this.#error) throw this.#error;
    const buf = typeof record === 'string' ? Buffer.from(record) : record;
    const failing = this.#failing;
    if (failing && this.#now() < failing.retryAt) {
      failing.dropped++;
      failing.droppedBytes += buf.length;
      this.#droppedTotal++;
      return;
    }
    this.#queue.push(buf);
    this.#queuedBytes += buf.length;
    this.#kick();
  }

  /** Resolves when everything written so far is in the file (rejects on a write failure). */
  async flush(): Promise<void> {
    while (this.#draining) await this.#draining;
    if (this.#error) throw this.#error;
  }

  async close(): Promise<void> {
    this.#closed = true;
    try {
      await this.flush();
    } finally {
      await this.#fh?.close();
      this.#fh = null;
    }
  }

  #kick(): void {
    if (this.#draining) return;
    this.#draining = this.#drain().then(
      () => {
        this.#draining = null;
        // Records may have arrived after the loop saw an empty queue.
        if (this.#queue.length > 0 && !this.#error) this.#kick();
      },
      (e: unknown) => {
        this.#draining = null;
        if (!isWriteFailure(e)) {
          this.#error = e;
          return;
        }
        // A full disk or an I/O error: what is queued is dropped, the file is tried again later.
        const dropped = this.#queue.length;
        const bytes = this.#queuedBytes;
        this.#queue = [];
        this.#queuedBytes = 0;
        this.#droppedTotal += dropped;
        void this.#fh?.close().catch(() => {});
        this.#fh = null;
        if (this.#failing) {
          this.#failing.retryAt = this.#now() + RETRY_MS;
          this.#failing.dropped += dropped;
          this.#failing.droppedBytes += bytes;
        } else {
          this.#failing = { retryAt: this.#now() + RETRY_MS, dropped, droppedBytes: bytes };
          this.#onTrouble?.({ state: 'dropping', error: (e as Error).message });
        }
      },
    );
  }

  async #drain(): Promise<void> {
    if (!this.#fh) {
      await fsp.mkdir(this.dir, { recursive: true, mode: 0o750 });
      this.#fh = await fsp.open(this.files()[0]!, APPEND, LOG_MODE);
      this.#size = (await this.#fh.stat()).size;
      const files = this.files();
      this.#rotated = 0;
      while (this.#rotated < this.keep && fs.existsSync(files[this.#rotated + 1]!)) this.#rotated++;
    }
    while (this.#queue.length > 0) {
      // Take the longest prefix of the queue that fits in the current file.
      const batch: Buffer[] = [];
      let bytes = 0;
      while (this.#queue.length > 0) {
        const next = this.#queue[0]!;
        if (this.#size + bytes + next.length > this.maxBytes && (this.#size + bytes > 0 || batch.length > 0))
          break;
        batch.push(next);
        bytes += next.length;
        this.#queue.shift();
        if (this.#size + bytes >= this.maxBytes) break;
      }
      if (batch.length === 0) {
        await this.#rotate();
        continue;
      }
      const data = batch.length === 1 ? batch[0]! : Buffer.concat(batch, bytes);
      let off = 0;
      while (off < data.length) {
        const { bytesWritten } = await this.#fh!.write(data, off, data.length - off);
        off += bytesWritten;
      }
      this.#size += bytes;
      this.#queuedBytes -= bytes;
      if (this.#failing) {
        const { dropped, droppedBytes } = this.#failing;
        this.#failing = null;
        this.#onTrouble?.({ state: 'resumed', dropped, droppedBytes });
      }
    }
  }

  async #rotate(): Promise<void> {
    await this.#fh!.close();
    this.#fh = null;
    const files = this.files();
    if (this.#rotated >= this.keep) await fsp.rm(files[this.keep]!, { force: true });
    for (let i = Math.min(this.#rotated, this.keep - 1); i >= 0; i--) {
      try {
        await fsp.rename(files[i]!, files[i + 1]!);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
    }
    this.#fh = await fsp.open(files[0]!, APPEND, LOG_MODE);
    this.#size = 0;
    this.#rotations++;
    this.#rotated = Math.min(this.#rotated + 1, this.keep);
  }
}

/**
 * A file's identity: inode plus birth time, because filesystems such as ext4 hand a deleted file's
 * inode number to the next file created (here: the fresh `name.log` right after the oldest file
 * was deleted). Where the kernel reports no birth time the inode alone is used.
 */
function identity(st: fs.BigIntStats): string {
  return `${st.dev}:${st.ino}:${st.birthtimeNs}`;
}

/** Identity per path (null when absent), or null when the set is visibly mid-rotation. */
function scanSet(files: readonly string[]): (string | null)[] | null {
  const ids = files.map((f) => {
    try {
      return identity(fs.statSync(f, { bigint: true }));
    } catch {
      return null;
    }
  });
  // At rest the files present are a prefix (`name.log`, `.1` .. `.k`) of distinct files. A
  // rotation renames oldest first, so while it runs there is a hole, or a file seen twice.
  const present = ids.filter((i) => i !== null);
  const prefix = ids.indexOf(null) === -1 ? ids.length : ids.indexOf(null);
  if (present.length !== prefix || new Set(present).size !== present.length) return null;
  return ids;
}

async function settledScan(files: readonly string[]): Promise<(string | null)[]> {
  for (let attempt = 0; ; attempt++) {
    const ids = scanSet(files);
    if (ids) return ids;
    if (attempt >= 1000) throw new Error(`log files ${files[0]} never settle between rotations`);
    await new Promise((r) => setTimeout(r, attempt < 10 ? 0 : 1));
  }
}

/**
 * Reads every existing file of a rotated set (given newest first); contents come oldest first,
 * as one gap-free, duplicate-free stretch of the log.
 */
export async function readRotatedSet(files: readonly string[]): Promise<Buffer[]> {
  // A concurrent writer (in this process's thread pool or another process) renames files while
  // we open them, so paths are only hints: a scan that is not visibly mid-rotation names the
  // inodes of one moment, and each is then found wherever rotation has moved it and pinned by an
  // open descriptor. Rotated files never change again and the newest only grows, so the pinned
  // inodes hold everything up to that moment. Inodes deleted (past `keep`) before we pinned them
  // are the oldest: we drop them and anything older, which keeps the result contiguous.
  let current = await settledScan(files);
  const want = current.filter((id) => id !== null);
  const held: fsp.FileHandle[] = [];
  try {
    for (const id of want) {
      let fh: fsp.FileHandle | null = null;
      for (let tries = 0; tries < 100 && !fh; tries++) {
        // Try where the last scan put it; rescan only when rotation moved it.
        if (tries > 0) current = await settledScan(files);
        const pos = current.indexOf(id);
        if (pos < 0) break; // deleted by rotation
        const candidate = await fsp.open(files[pos]!, 'r').catch(() => null);
        if (candidate && identity(await candidate.stat({ bigint: true })) === id) fh = candidate;
        else await candidate?.close();
      }
      if (!fh) break;
      held.push(fh);
    }
    const contents = await Promise.all(held.map((fh) => fh.readFile()));
    return contents.reverse();
  } finally {
    await Promise.all(held.map((fh) => fh.close()));
  }
}

/** Failures of the disk rather than of the program: survived by dropping records. */
function isWriteFailure(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException)?.code;
  return (
    code === 'ENOSPC' ||
    code === 'EDQUOT' ||
    code === 'EIO' ||
    code === 'EFBIG' ||
    code === 'EROFS' ||
    code === 'EMFILE' ||
    code === 'ENFILE'
  );
}
