/**
 * The live summary of `captree up` on a terminal: a compact tree and the last few events,
 * redrawn in place. Events redraw at once (throttled to about ten per second, so a crash loop
 * cannot flood the terminal); the cpu and memory figures are refreshed once a second, the rate
 * of `captree top`, so they never freeze while nothing happens.
 */
import type { JournalRecord, PsEntry } from '../daemon/index.ts';
import type { Palette } from './cli.ts';
import { eventLine, plain, renderTable } from './render.ts';

const frameMs = 100;
const refreshMs = 1000;
const recentEvents = 6;

export class LiveView {
  readonly #out: NodeJS.WriteStream;
  readonly #palette: Palette;
  /** The first `limit` rows in tree order (only those are measured). */
  readonly #rows: (limit: number) => PsEntry[];
  #header: string;
  #recent: JournalRecord[] = [];
  #drawn = 0;
  #timer: NodeJS.Timeout | null = null;
  #lastDraw = 0;
  #closed = false;
  readonly #refresh: NodeJS.Timeout;

  constructor(out: NodeJS.WriteStream, palette: Palette, rows: (limit: number) => PsEntry[], header: string) {
    this.#out = out;
    this.#palette = palette;
    this.#rows = rows;
    this.#header = header;
    this.#out.write('\x1b[?25l');
    this.#refresh = setInterval(() => this.changed(), refreshMs);
    this.#refresh.unref();
  }

  set header(text: string) {
    this.#header = text;
    this.changed();
  }

  event(r: JournalRecord): void {
    this.#recent.push(r);
    if (this.#recent.length > recentEvents) this.#recent.shift();
    this.changed();
  }

  changed(): void {
    if (this.#timer || this.#closed) return;
    const wait = Math.max(0, frameMs - (Date.now() - this.#lastDraw));
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#draw();
    }, wait);
  }

  /** Draws the final frame and gives the terminal back (cursor shown, below the view). */
  close(): void {
    if (this.#closed) return;
    clearInterval(this.#refresh);
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#draw();
    this.#closed = true;
    this.#out.write('\x1b[?25h');
  }

  #frame(p: Palette, rows: PsEntry[]): string[] {
    return [
      ...this.#header.split('\n').map((l) => p.bold(l)),
      ...renderTable(rows, { palette: p, uptime: false }),
      '',
      ...this.#recent.map((r) => eventLine(r, p)),
    ];
  }

  #draw(): void {
    if (this.#closed) return;
    this.#lastDraw = Date.now();
    // A pty without a size (script(1), some CI) reports 0: assume a common terminal.
    const columns = this.#out.columns || 120;
    const rows = this.#out.rows || 40;
    // Rows past the terminal's height are never shown: a 1,000-child tree is not measured whole
    // each second for the 30 lines that fit.
    const table = this.#rows(Math.max(1, rows - this.#header.split('\n').length - 1));
    let lines = this.#frame(this.#palette, table);
    const plainLines = this.#frame(plain, table);
    // A wrapped line would break the cursor arithmetic: fall back to plain text cut to width.
    if (plainLines.some((l) => l.length > columns)) lines = plainLines.map((l) => l.slice(0, columns));
    if (lines.length > rows - 1) lines = lines.slice(0, rows - 1);
    const up = this.#drawn > 0 ? `\x1b[${this.#drawn}F` : '';
    this.#out.write(`${up}\x1b[J${lines.join('\n')}\n`);
    this.#drawn = lines.length;
  }
}
