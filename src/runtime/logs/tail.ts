/**
 * A bounded in-memory tail of the most recent log records, for `captree logs` without touching
 * disk and for crash reports ("last lines before exit").
 *
 * Hazard: bounds are on records and on text bytes together; a single record bigger than
 * `maxBytes` is still kept (alone), so the tail is never empty right after output.
 */
import type { LogRecord } from './format.ts';

export class BoundedTail {
  readonly maxLines: number;
  readonly maxBytes: number;
  #items: LogRecord[] = [];
  #head = 0;
  #bytes = 0;

  constructor(options: { maxLines?: number; maxBytes?: number } = {}) {
    this.maxLines = options.maxLines ?? 1000;
    this.maxBytes = options.maxBytes ?? 256 * 1024;
    if (!(this.maxLines >= 1)) throw new RangeError('maxLines must be >= 1');
  }

  push(r: LogRecord): void {
    this.#items.push(r);
    this.#bytes += Buffer.byteLength(r.text);
    while (this.length > 1 && (this.length > this.maxLines || this.#bytes > this.maxBytes)) {
      this.#bytes -= Buffer.byteLength(this.#items[this.#head]!.text);
      this.#items[this.#head++] = undefined as unknown as LogRecord;
    }
    // Compact now and then so the array does not grow with everything ever pushed.
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
  }

  get length(): number {
    return this.#items.length - this.#head;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** Records oldest first; `since` (ms epoch) keeps those at or after it. */
  records(since?: number): LogRecord[] {
    const all = this.#items.slice(this.#head);
    return since === undefined ? all : all.filter((r) => r.ts >= since);
  }
}
