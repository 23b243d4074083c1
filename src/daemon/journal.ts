/**
 * The journal: every engine event as one JSON line in `journal.jsonl`, stamped with wall-clock
 * time (the engine's clock is monotonic and means nothing after a restart). Append-only and
 * written synchronously, so the order on disk is the order of events; transitions that matter
 * after a crash (exits, restarts, escalations, stops, children added or removed) start an fsync
 * at once, off the event loop, and every durable event that arrives while one runs is covered by
 * the next (group commit). A synchronous fsync per event cost 1–2 ms of blocked event loop each:
 * stopping 1,000 children spent more time in fsync than in stopping them. Acknowledgements that
 * must be durable before they are sent (admissions) are made durable in state.json, not here.
 *
 * Size-bounded: once the file passes `maxBytes` (default 4 MiB) it is renamed `journal.jsonl.1`
 * (older ones shift up to `.keep`, default 4; the oldest goes) and a new file starts, so the
 * journal holds at most about (keep + 1) × maxBytes. Readers go backwards from the newest record
 * across the files (journal-files.ts) and stop once they have what they asked for.
 */
import * as fs from 'node:fs';
import type { SupervisorEvent } from '../core/index.ts';
import type { ChannelEvent } from './channel.ts';
import { journalFiles, journalLinesBackward } from './journal-files.ts';
import { openAppend, openRead } from './private-fs.ts';
import type { ReconcileEvent } from './reconcile.ts';

/**
 * What the daemon itself records about recovery after an earlier daemon died (the engine knows
 * nothing of it): the launcher that kept the children, children that exited while no daemon ran,
 * and processes killed because nothing supervised them. `at` is the engine's clock, as for
 * engine events.
 */
export type DaemonEvent =
  | {
      /** On the root, after the tree started and the orphans were swept. */
      readonly type: 'recovered';
      readonly path: string;
      readonly at: number;
      readonly launcherPid: number;
      /** Live children the launcher still held, adopted unless killed as orphans. */
      readonly found: number;
      readonly exited: number;
      readonly killed: number;
    }
  | {
      readonly type: 'exited_offline';
      readonly path: string;
      readonly at: number;
      readonly pid: number;
      readonly code: number | null;
      readonly signal: string | null;
    }
  | {
      readonly type: 'orphan_killed';
      readonly path: string;
      readonly at: number;
      readonly pid: number;
      readonly why: string;
    }
  | {
      /** A child admitted at run time (`POST /v1/nodes/{node}/children`), its grant carved. */
      readonly type: 'admitted';
      readonly path: string;
      readonly at: number;
      readonly requestId: string;
      /** Reserved cores, bytes, count (0 = shares the node's remainder). */
      readonly grant: { readonly cpu: number; readonly memory: number; readonly pids: number };
    }
  | {
      /** An admitted child gone and its budget returned: revoked, exited for good, or not restorable. */
      readonly type: 'revoked';
      readonly path: string;
      readonly at: number;
      readonly requestId: string;
      readonly why: string;
      readonly returned: { readonly cpu: number; readonly memory: number; readonly pids: number };
    }
  | {
      /** A child's log file cannot be written (a full disk): its records are dropped from now on. */
      readonly type: 'log_dropping';
      readonly path: string;
      readonly at: number;
      readonly error: string;
    }
  | {
      /** The log file can be written again; `dropped` records were lost meanwhile. */
      readonly type: 'log_resumed';
      readonly path: string;
      readonly at: number;
      readonly dropped: number;
      readonly droppedBytes: number;
    }
  | {
      /** `captree signal`: `signal` sent to the child's main process (host pid `pid`). */
      readonly type: 'signalled';
      readonly path: string;
      readonly at: number;
      readonly signal: string;
      readonly pid: number;
      /** Who asked (signal-endpoint.ts): the control socket or a TCP token, and the client. */
      readonly by: string;
    }
  | {
      /** `captree reload`: the child's declared `reload:` carried out (`how`), and its outcome. */
      readonly type: 'reloaded';
      readonly path: string;
      readonly at: number;
      /** `SIGHUP`, or the command as one line. */
      readonly how: string;
      readonly pid: number;
      readonly by: string;
      readonly ok: boolean;
      /** `sent SIGHUP`, `nginx exited with code 0`, or why it failed. */
      readonly result: string;
    }
  | {
      /** The launcher died (`kill -9`, OOM): its children die with it and a new one is started. */
      readonly type: 'launcher_lost';
      readonly path: string;
      readonly at: number;
      readonly pid: number;
      readonly error: string;
    }
  | {
      /**
       * A new launcher runs after a loss (`pid`), started `ms` after it; or (`pid` null) none could
       * be started (`error`) and children that need one fail to start.
       */
      readonly type: 'launcher_restarted';
      readonly path: string;
      readonly at: number;
      readonly pid: number | null;
      readonly ms: number;
      readonly error?: string;
    }
  | {
      /** A gone run-time child's cgroups could not be removed (they stay until `down`). */
      readonly type: 'cleanup_failed';
      readonly path: string;
      readonly at: number;
      readonly why: string;
    };

/** `channel` and `grant_changed`: the parent–child channel and renegotiation (channel.ts). */
/** `reconcile_*`: applying a manifest and drift seen in the events (reconcile.ts). */
export type JournalEvent = SupervisorEvent | DaemonEvent | ChannelEvent | ReconcileEvent;

export type JournalRecord = JournalEvent & {
  /** Position in the journal, from 1, going on across daemon restarts. */
  readonly seq: number;
  /** ms epoch. */
  readonly ts: number;
  /** ISO-8601 of `ts`. */
  readonly time: string;
};

const durable: ReadonlySet<JournalEvent['type']> = new Set<JournalEvent['type']>([
  'adopted',
  'recovered',
  'exited_offline',
  'orphan_killed',
  'launcher_lost',
  'launcher_restarted',
  'grant_changed',
  'admitted',
  'revoked',
  'exited',
  'start_failed',
  'restarting',
  'permanent_failure',
  'intensity_exceeded',
  'escalated',
  'stopped',
  'child_added',
  'child_deleted',
  'reconcile_apply',
  'reconcile_applied',
  'reconcile_auto',
]);

export interface JournalFilter {
  /** ms epoch: keep records at or after it. */
  since?: number;
  /** Keep records about this path or below it. */
  path?: string;
}

/** `/a/b` matches `/a/b` and `/a/b/c`, not `/a/bc`. */
export function pathMatches(prefix: string | undefined, path: string): boolean {
  if (!prefix || prefix === '/') return true;
  const p = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  return path === p || path.startsWith(`${p}/`);
}

export function matches(filter: JournalFilter, r: JournalRecord): boolean {
  return (filter.since === undefined || r.ts >= filter.since) && pathMatches(filter.path, r.path);
}

/** What the journal could not write (a full disk, an I/O error): `ps` and `doctor` say so. */
export interface JournalHealth {
  /** The records are only in memory (the last `RING` of them) since `since`. */
  degraded: boolean;
  /** ms epoch of the first failed write, or null. */
  since: number | null;
  error: string | null;
  /** Records not written to the file (kept in memory, newest `RING`). */
  unwritten: number;
}

/** Records kept in memory while the file cannot be written. */
const RING = 1000;

export interface JournalOptions {
  now?: () => number;
  /** Size at which the file is rotated; default 4 MiB (`CAPTREE_JOURNAL_MAX_SIZE` for a daemon). */
  maxBytes?: number;
  /** Rotated files kept; default 4 (`CAPTREE_JOURNAL_KEEP`). */
  keep?: number;
}

export const JOURNAL_MAX_BYTES = 4 << 20;
export const JOURNAL_KEEP = 4;

export class Journal {
  readonly file: string;
  #fd: number | null;
  #seq: number;
  #now: () => number;
  #listeners = new Set<(r: JournalRecord) => void>();
  #syncing = false;
  #syncAgain = false;
  #health: JournalHealth = { degraded: false, since: null, error: null, unwritten: 0 };
  #ring: JournalRecord[] = [];
  readonly #maxBytes: number;
  readonly #keep: number;
  /** Bytes in the current file. */
  #size = 0;

  constructor(file: string, options: JournalOptions = {}) {
    this.file = file;
    // Numbers go on from the last record an earlier daemon wrote: SSE ids stay monotonic.
    this.#seq = lastSeq(file);
    this.#fd = openAppend(file);
    this.#size = fs.fstatSync(this.#fd).size;
    this.#now = options.now ?? Date.now;
    this.#maxBytes = Math.max(4096, options.maxBytes ?? JOURNAL_MAX_BYTES);
    this.#keep = Math.max(1, Math.floor(options.keep ?? JOURNAL_KEEP));
  }

  get health(): JournalHealth {
    return { ...this.#health };
  }

  /** The records kept in memory while the file could not be written, oldest first. */
  unwrittenRecords(): readonly JournalRecord[] {
    return this.#ring;
  }

  /** Never throws: a write that fails degrades to memory, the next one tries the file again. */
  append(event: JournalEvent): JournalRecord {
    const ts = this.#now();
    const record = { ...event, seq: ++this.#seq, ts, time: new Date(ts).toISOString() } as JournalRecord;
    if (this.#fd !== null) {
      try {
        // After a failed write the file may end mid-line: the torn line is ended first, so
        // this record stays readable on a line of its own.
        const line = Buffer.from(`${this.#health.degraded ? '\n' : ''}${JSON.stringify(record)}\n`);
        const written = fs.writeSync(this.#fd, line);
        this.#size += written;
        // A nearly full disk takes part of a line without an error: a torn line, ended by the next.
        if (written < line.length)
          throw new Error(`ENOSPC: no space left on device (wrote ${written} of ${line.length} bytes)`);
        if (this.#health.degraded) this.#health = { ...this.#health, degraded: false };
        if (this.#size >= this.#maxBytes) this.#rotate();
        else if (durable.has(event.type)) this.#sync();
      } catch (err) {
        this.#failed(err, record);
      }
    }
    for (const fn of this.#listeners) {
      try {
        fn(record);
      } catch {
        // A subscriber's fault (a client gone mid-write) is its own: the journal goes on.
        this.#listeners.delete(fn);
      }
    }
    return record;
  }

  #failed(err: unknown, record: JournalRecord): void {
    const h = this.#health;
    this.#health = {
      degraded: true,
      since: h.degraded ? h.since : record.ts,
      error: (err as Error).message,
      unwritten: h.unwritten + 1,
    };
    this.#ring.push(record);
    if (this.#ring.length > RING) this.#ring.shift();
  }

  /**
   * The full file becomes `.1` (older ones shift, the oldest goes) and a new one starts. Made
   * durable first, synchronously (once per `maxBytes`): an fsync in flight on the old descriptor
   * then only finds it closed, which is no failure of the new file.
   */
  #rotate(): void {
    const fd = this.#fd;
    if (fd === null) return;
    try {
      fs.fsyncSync(fd);
      for (let i = this.#keep - 1; i >= 1; i--) {
        const from = `${this.file}.${i}`;
        if (fs.existsSync(from)) fs.renameSync(from, `${this.file}.${i + 1}`);
      }
      fs.renameSync(this.file, `${this.file}.1`);
      const next = openAppend(this.file);
      this.#fd = next;
      this.#size = 0;
      this.#syncAgain = false;
      fs.close(fd, () => {});
    } catch (err) {
      // Not rotated (a full disk, say): the file grows on, the next record tries again.
      this.#health = { ...this.#health, error: `rotation failed: ${(err as Error).message}` };
    }
  }

  /** One fsync in flight at a time; whatever was written meanwhile rides on the next one. */
  #sync(): void {
    if (this.#syncing) {
      this.#syncAgain = true;
      return;
    }
    const fd = this.#fd;
    if (fd === null) return;
    this.#syncing = true;
    fs.fsync(fd, (err) => {
      this.#syncing = false;
      // The descriptor was rotated away (and made durable before it was): nothing failed.
      if (err && this.#fd !== fd) err = null;
      if (this.#syncAgain && this.#fd !== fd && this.#fd !== null) {
        this.#syncAgain = false;
        this.#sync();
        return;
      }
      if (err && !this.#health.degraded)
        this.#health = {
          degraded: true,
          since: this.#now(),
          error: err.message,
          unwritten: this.#health.unwritten,
        };
      if (this.#syncAgain && this.#fd === fd) {
        this.#syncAgain = false;
        this.#sync();
      }
    });
  }

  /** Live records from now on; returns an unsubscribe function. */
  subscribe(fn: (r: JournalRecord) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  close(): void {
    if (this.#fd === null) return;
    const fd = this.#fd;
    this.#fd = null;
    try {
      fs.fsyncSync(fd);
    } catch {
      // Nothing more can be done for the last records on a failing disk.
    }
    fs.closeSync(fd);
  }
}

/** The `seq` of the journal's last complete record (0 when there is none), in the rotated files too. */
export function lastSeq(file: string, window = 64 << 10): number {
  for (const f of journalFiles(file)) {
    const seq = lastSeqOf(f, window);
    if (seq > 0) return seq;
  }
  return 0;
}

function lastSeqOf(file: string, window: number): number {
  const fd = openRead(file);
  if (fd === null) return 0;
  try {
    const size = fs.fstatSync(fd).size;
    const start = Math.max(0, size - window);
    const buf = Buffer.alloc(size - start);
    fs.readSync(fd, buf, 0, buf.length, start);
    const lines = buf.toString('utf8').split('\n');
    for (let i = lines.length - 1; i >= 0; i--) {
      const line = lines[i]!;
      if (!line.startsWith('{')) continue;
      try {
        const seq = (JSON.parse(line) as { seq?: unknown }).seq;
        if (typeof seq === 'number' && Number.isSafeInteger(seq)) return seq;
      } catch {
        // A torn last line (a crash mid-write): the one before it counts.
      }
    }
    return 0;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The path of each of `pids` by the last `started` record naming it within the journal's first
 * `end` bytes (the records an earlier daemon wrote), reading at most the last `window` bytes;
 * then in the last rotated file, for those not found (the earlier daemon may just have rotated).
 */
export function pathsOfPids(
  file: string,
  pids: ReadonlySet<number>,
  end: number,
  window = 8 << 20,
): Map<number, string> {
  const out = pathsOfPidsIn(file, pids, end, window);
  const missing = new Set([...pids].filter((pid) => !out.has(pid)));
  if (missing.size > 0 && fs.existsSync(`${file}.1`)) {
    const older = pathsOfPidsIn(`${file}.1`, missing, fs.statSync(`${file}.1`).size, window);
    for (const [pid, path] of older) out.set(pid, path);
  }
  return out;
}

function pathsOfPidsIn(
  file: string,
  pids: ReadonlySet<number>,
  end: number,
  window: number,
): Map<number, string> {
  const out = new Map<number, string>();
  if (pids.size === 0 || end <= 0) return out;
  let fd: number;
  try {
    const opened = openRead(file);
    if (opened === null) return out;
    fd = opened;
  } catch {
    return out;
  }
  try {
    const start = Math.max(0, end - window);
    const buf = Buffer.alloc(end - start);
    const n = fs.readSync(fd, buf, 0, buf.length, start);
    for (const line of buf.subarray(0, n).toString('utf8').split('\n')) {
      if (!line.includes('"type":"started"')) continue;
      try {
        const r = JSON.parse(line) as { type: string; pid?: unknown; path?: unknown };
        if (typeof r.pid === 'number' && typeof r.path === 'string' && pids.has(r.pid))
          out.set(r.pid, r.path);
      } catch {
        // A torn line (the first one of the window, or the last one written).
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return out;
}

/**
 * Records of a journal (its file and the rotated ones) matching `filter`, oldest first; with
 * `limit`, only the last `limit` of them. Read backwards from the newest record: it stops at the
 * first record older than `since`, or once it has `limit`, so a recent window costs the same
 * whatever the journal's size. Torn lines are skipped.
 */
export async function readJournal(
  file: string,
  filter: JournalFilter = {},
  limit?: number,
): Promise<JournalRecord[]> {
  const out: JournalRecord[] = [];
  if (limit !== undefined && limit <= 0) return out;
  for await (const line of journalLinesBackward(file)) {
    let r: JournalRecord;
    try {
      r = JSON.parse(line) as JournalRecord;
    } catch {
      continue;
    }
    if (filter.since !== undefined && r.ts < filter.since) break;
    if (!matches(filter, r)) continue;
    out.push(r);
    if (limit !== undefined && out.length >= limit) break;
  }
  return out.reverse();
}
