/**
 * One full garbage collection once every client of the control API has been gone a while.
 *
 * V8's memory reducer does this on its own, by polling: on an idle daemon its 8 s timer fired
 * for ever (measured with strace: a wake-up every 8.1 s with no client connected, none with
 * `--no-memory-reducer`). The detached daemon runs without it (cli/commands/up.ts) and
 * collects here instead, on an event: when the last connection closes, one timer; a new
 * connection disarms it. A scrape or a dashboard leaves its garbage in the heap until then,
 * which is what the reducer's collection gave back. Without `--expose-gc` (a foreground or
 * in-process daemon, which keeps the reducer) nothing is armed.
 */
import type * as net from 'node:net';

export const IDLE_COLLECT_MS = 30_000;

type Collect = (options?: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void;

/**
 * A memory-reducing collection, as the reducer's: a plain `gc()` frees the garbage but V8 keeps
 * the pages pooled (measured: 180 MB resident before and after); `last-resort` gives them back.
 */
const REDUCE = { type: 'major', execution: 'sync', flavor: 'last-resort' } as const;

export class IdleCollector {
  readonly #delayMs: number;
  readonly #gc: Collect | undefined;
  #open = 0;
  #timer: NodeJS.Timeout | null = null;
  #collections = 0;

  constructor(delayMs = IDLE_COLLECT_MS, gc = (globalThis as { gc?: Collect }).gc) {
    this.#delayMs = delayMs;
    this.#gc = gc;
  }

  watch(server: net.Server): void {
    if (!this.#gc) return;
    server.on('connection', (socket: net.Socket) => {
      this.#open++;
      this.#disarm();
      socket.once('close', () => {
        if (--this.#open === 0) this.#arm();
      });
    });
  }

  /** Collections made so far (for tests). */
  get collections(): number {
    return this.#collections;
  }

  close(): void {
    this.#disarm();
  }

  #arm(): void {
    this.#disarm();
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#collections++;
      this.#gc?.(REDUCE);
    }, this.#delayMs);
    this.#timer.unref();
  }

  #disarm(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }
}
