/**
 * The journal: every engine event as one JSON line in `journal.jsonl`, stamped with wall-clock
 * time (the engine's clock is monotonic and means nothing after a restart). Append-only and
 * written synchronously, so the order on disk is the order of events; transitions that matter
 * after a crash (exits, restarts, escalations, stops, children added or removed) are fsynced
 * before the next event is handled, others ride on the next fsync or the page cache.
 */
import * as fs from 'node:fs';
import type { SupervisorEvent, SupervisorEventType } from '../core/index.ts';

export type JournalRecord = SupervisorEvent & {
  /** Position in this daemon run, from 1. */
  readonly seq: number;
  /** ms epoch. */
  readonly ts: number;
  /** ISO-8601 of `ts`. */
  readonly time: string;
};

const durable: ReadonlySet<SupervisorEventType> = new Set<SupervisorEventType>([
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

  constructor(file: string, options: { now?: () => number } = {}) {
    this.file = file;
    this.#fd = fs.openSync(file, 'a', 0o644);
    this.#now = options.now ?? Date.now;
  }

  append(event: SupervisorEvent): JournalRecord {
    const ts = this.#now();
    const record = { ...event, seq: ++this.#seq, ts, time: new Date(ts).toISOString() } as JournalRecord;
    if (this.#fd !== null) {
      fs.writeSync(this.#fd, `${JSON.stringify(record)}\n`);
      if (durable.has(event.type)) fs.fsyncSync(this.#fd);
    }
    for (const fn of this.#listeners) fn(record);
    return record;
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
