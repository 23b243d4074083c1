/**
 * Per-child log capture: the child's stdout and stderr are split into lines, stamped, written to
 * a rotating file and kept in a bounded in-memory tail. `readLogSince` reads the files back.
 *
 * Hazards: timestamps are forced non-decreasing per child (a wall-clock step back would otherwise
 * break "since" queries); a stream that is never closed keeps its unterminated last line pending
 * until `close()`.
 */
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { formatRecord, type LogRecord, parseRecord, type StreamTag } from './format.ts';
import { LineSplitter } from './lines.ts';
import { type LogTrouble, RotatingFileWriter, readRotatedSet } from './rotating.ts';
import { BoundedTail } from './tail.ts';

export interface ChildLogOptions {
  dir: string;
  name: string;
  maxBytes?: number;
  keep?: number;
  maxLineBytes?: number;
  tailLines?: number;
  tailBytes?: number;
  /** Injected clock (ms epoch) for tests. */
  now?: () => number;
  /** The file cannot be written (records dropped), or can again. */
  onTrouble?: (t: LogTrouble) => void;
}

export class ChildLog {
  readonly writer: RotatingFileWriter;
  readonly tail: BoundedTail;
  #splitters = new Map<string, LineSplitter>();
  #maxLineBytes: number;
  #now: () => number;
  #lastTs = 0;
  #listeners = new Set<(r: LogRecord) => void>();
  #streamsOpen = new Set<Promise<void>>();

  constructor(options: ChildLogOptions) {
    this.writer = new RotatingFileWriter({
      ...options,
      onTrouble: (t) => {
        // Said in the log itself once it can be written again, so a reader sees the gap.
        if (t.state === 'resumed')
          this.note(
            `captree: ${t.dropped} log record(s) (${t.droppedBytes} bytes) were dropped: the file could not be written`,
          );
        options.onTrouble?.(t);
      },
    });
    this.tail = new BoundedTail({ maxLines: options.tailLines, maxBytes: options.tailBytes });
    this.#maxLineBytes = options.maxLineBytes ?? 64 * 1024;
    this.#now = options.now ?? Date.now;
  }

  /** Captures a stream under `tag` until it ends; the promise settles when its last line is written. */
  attach(stream: Readable, tag: StreamTag): Promise<void> {
    const done = new Promise<void>((resolve) => {
      stream.on('data', (chunk: Buffer | string) => this.push(tag, chunk));
      const finish = () => {
        this.end(tag);
        resolve();
      };
      stream.once('end', finish);
      stream.once('error', finish);
    });
    this.#streamsOpen.add(done);
    done.finally(() => this.#streamsOpen.delete(done));
    return done;
  }

  /** Feeds raw bytes of one stream. */
  push(tag: StreamTag, chunk: Buffer | string): void {
    for (const l of this.#splitter(tag).push(chunk)) this.#record(tag, l.text, l.partial);
  }

  /** Ends one stream: its unterminated last line, if any, becomes a partial record. */
  end(tag: StreamTag): void {
    const s = this.#splitters.get(tag);
    if (!s) return;
    for (const l of s.end()) this.#record(tag, l.text, l.partial);
    this.#splitters.delete(tag);
  }

  /** A note from captree itself (exit status, restarts), stored as `sys`. */
  note(text: string): void {
    for (const line of text.split('\n')) this.#record('sys', line, false);
  }

  /** Follows new records (for `captree logs -f`); returns an unsubscribe function. */
  onRecord(fn: (r: LogRecord) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  flush(): Promise<void> {
    return this.writer.flush();
  }

  async close(): Promise<void> {
    await Promise.all([...this.#streamsOpen]);
    for (const tag of [...this.#splitters.keys()]) this.end(tag as StreamTag);
    await this.writer.close();
  }

  #splitter(tag: string): LineSplitter {
    let s = this.#splitters.get(tag);
    if (!s) {
      s = new LineSplitter(this.#maxLineBytes);
      this.#splitters.set(tag, s);
    }
    return s;
  }

  #record(stream: StreamTag, text: string, partial: boolean): void {
    const ts = Math.max(this.#now(), this.#lastTs);
    this.#lastTs = ts;
    const r: LogRecord = { ts, stream, partial, text };
    this.writer.write(formatRecord(r));
    this.tail.push(r);
    for (const fn of this.#listeners) fn(r);
  }
}

export interface ReadSinceOptions {
  /** Rotated files to look at; must match the writer's `keep`. Default 5. */
  keep?: number;
  streams?: readonly StreamTag[];
  /** Keep only the newest `limit` records. */
  limit?: number;
}

/** Records of `dir/name.log*` with a timestamp at or after `since` (ms epoch), oldest first. */
export async function readLogSince(
  dir: string,
  name: string,
  since: number,
  options: ReadSinceOptions = {},
): Promise<LogRecord[]> {
  const base = path.join(dir, `${name}.log`);
  const files = [base, ...Array.from({ length: options.keep ?? 5 }, (_, i) => `${base}.${i + 1}`)];
  const out: LogRecord[] = [];
  for (const buf of await readRotatedSet(files)) {
    const text = buf.toString('utf8');
    for (const line of text.split('\n')) {
      if (line === '') continue;
      const r = parseRecord(line);
      if (!r || r.ts < since) continue;
      if (options.streams && !options.streams.includes(r.stream)) continue;
      out.push(r);
    }
  }
  return options.limit !== undefined ? out.slice(Math.max(0, out.length - options.limit)) : out;
}
