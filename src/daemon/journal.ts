/**
 * The journal: every engine event as one JSON line in `journal.jsonl`, stamped with wall-clock
 * time (the engine's clock is monotonic and means nothing after a restart). Append-only and
 * written synchronously, so the order on disk is the order of events; transitions that matter
 * after a crash (exits, restarts, escalations, stops, children added or removed) start an fsync
 * at once, off the event loop, and every durable event that arrives while one runs is covered by
 * the next (group commit). A synchronous fsync per event cost 1–2 ms of blocked event loop each:
 * stopping 1,000 children spent more time in fsync than in stopping them. Acknowledgements that
 * must be durable before they are sent (admissions) are made durable in state.json, not here.
 */
import * as fs from 'node:fs';
import type { SupervisorEvent } from '../core/index.ts';
import type { ChannelEvent } from './channel.ts';
import { openAppend, openRead } from './private-fs.ts';

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
      /** A gone run-time child's cgroups could not be removed (they stay until `down`). */
      readonly type: 'cleanup_failed';
      readonly path: string;
      readonly at: number;
      readonly why: string;
    };

/** `channel` and `grant_changed`: the parent–child channel and renegotiation (channel.ts). */
export type JournalEvent = SupervisorEvent | DaemonEvent | ChannelEvent;

export type JournalRecord = JournalEvent & {
  /** Position in this daemon run, from 1. */
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

export class Journal {
  readonly file: string;
  #fd: number | null;
  #seq = 0;
  #now: () => number;
  #listeners = new Set<(r: JournalRecord) => void>();
  #syncing = false;
  #syncAgain = false;

  constructor(file: string, options: { now?: () => number } = {}) {
    this.file = file;
    this.#fd = openAppend(file);
    this.#now = options.now ?? Date.now;
  }

  append(event: JournalEvent): JournalRecord {
    const ts = this.#now();
    const record = { ...event, seq: ++this.#seq, ts, time: new Date(ts).toISOString() } as JournalRecord;
    if (this.#fd !== null) {
      fs.writeSync(this.#fd, `${JSON.stringify(record)}\n`);
      if (durable.has(event.type)) this.#sync();
    }
    for (const fn of this.#listeners) fn(record);
    return record;
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
    fs.fsync(fd, () => {
      this.#syncing = false;
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
    fs.fsyncSync(this.#fd);
    fs.closeSync(this.#fd);
    this.#fd = null;
  }
}

/**
 * The path of each of `pids` by the last `started` record naming it within the journal's first
 * `end` bytes (the records an earlier daemon wrote), reading at most the last `window` bytes.
 */
export function pathsOfPids(
  file: string,
  pids: ReadonlySet<number>,
  end: number,
  window = 8 << 20,
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

/** Records of a journal file matching `filter`, oldest first; a torn last line is skipped. */
export async function readJournal(file: string, filter: JournalFilter = {}): Promise<JournalRecord[]> {
  let text: string;
  try {
    text = await fs.promises.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const out: JournalRecord[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let r: JournalRecord;
    try {
      r = JSON.parse(line) as JournalRecord;
    } catch {
      continue;
    }
    if (matches(filter, r)) out.push(r);
  }
  return out;
}
