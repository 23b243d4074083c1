/**
 * A writer of the Prometheus text exposition format (version 0.0.4): `# HELP`, `# TYPE`, then
 * one `name{label="value"} number` line per series, families kept together. Written by hand
 * rather than with prom-client: a scrape here is a snapshot computed on request, not registered
 * gauges updated as things happen, and for 1,001 paths this writer took 6–12 ms per exposition
 * against prom-client 15's 20–29 ms for resetting, refilling and serialising its gauges, on a
 * loaded 2-core machine (the comparison and its command are in docs/dashboard.md).
 *
 * `line` takes a label set already written (`{path="..."}`): a scrape writes the same few
 * thousand label sets each time, and the caller keeps them.
 */

export type MetricType = 'counter' | 'gauge';

/** Lines per piece of `chunks()`: about 20 KiB. */
const CHUNK_LINES = 400;

export type Labels = Readonly<Record<string, string>>;

const NEEDS_ESCAPE = /[\\"\n]/;

/** Label values escape backslash, double quote and newline (the format's only escapes). */
function escapeLabel(value: string): string {
  if (!NEEDS_ESCAPE.test(value)) return value;
  return value.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`));
}

/** A label value as it goes between the braces: escaped, in double quotes. */
export function quoted(value: string): string {
  return `"${escapeLabel(value)}"`;
}

function escapeHelp(text: string): string {
  return text.replace(/[\\\n]/g, (c) => (c === '\n' ? '\\n' : '\\\\'));
}

function formatValue(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (n === Number.POSITIVE_INFINITY) return '+Inf';
  if (n === Number.NEGATIVE_INFINITY) return '-Inf';
  return String(n);
}

export class TextWriter {
  readonly #families = new Map<string, { help: string; type: MetricType; lines: string[] }>();

  /**
   * Declares a family once; `sample` adds to it. Order of declaration is the output order. The
   * answer is the family's list of lines, for `push` (no name lookup per line).
   */
  family(name: string, type: MetricType, help: string): string[] {
    let f = this.#families.get(name);
    if (!f) {
      f = { help, type, lines: [] };
      this.#families.set(name, f);
    }
    return f.lines;
  }

  sample(name: string, labels: Labels, value: number): void {
    let text = '';
    const keys = Object.keys(labels);
    if (keys.length > 0) {
      text += '{';
      for (let i = 0; i < keys.length; i++) {
        const k = keys[i] as string;
        text += `${i > 0 ? ',' : ''}${k}=${quoted(labels[k] as string)}`;
      }
      text += '}';
    }
    const f = this.#families.get(name);
    if (!f) throw new Error(`metric ${name} was not declared`);
    f.lines.push(seriesLine(name, text, value));
  }

  toString(): string {
    return this.chunks().join('');
  }

  /**
   * The exposition in pieces of at most about `CHUNK_LINES` lines: written one by one, no piece
   * is large enough to be allocated outside V8's young generation, where garbage is cheap (a
   * scrape's single 300 KiB string went straight to the old generation and stayed until a full
   * collection, a few hundred KiB of heap per scrape).
   */
  chunks(): string[] {
    const out: string[] = [];
    for (const [name, f] of this.#families) {
      let text = `# HELP ${name} ${escapeHelp(f.help)}\n# TYPE ${name} ${f.type}\n`;
      for (let i = 0; i < f.lines.length; i += CHUNK_LINES) {
        text += `${f.lines.slice(i, i + CHUNK_LINES).join('\n')}\n`;
        out.push(text);
        text = '';
      }
      if (text !== '') out.push(text);
    }
    return out;
  }
}

/**
 * Joined rather than concatenated: `join` makes one flat string, where `+` makes a tree of
 * pieces that each later `join` of a kept line would walk again.
 */
function seriesLine(name: string, labelText: string, value: number): string {
  return [name, labelText, ' ', formatValue(value)].join('');
}

/**
 * One label set's lines (one path's) from the last exposition, by slot (one per family): a value
 * that has not changed since gives back the same string. Most of a scrape's 7,000 lines (grants,
 * states, pids, an idle child's counters) repeat from one scrape to the next; rebuilt each time,
 * they were most of the garbage a scrape left.
 */
export class SeriesLines {
  /** `{path="..."}`: escaped once. */
  readonly labels: string;
  readonly #values: Float64Array;
  readonly #lines: (string | undefined)[];
  readonly #extras: string[];

  constructor(labels: Readonly<Record<string, string>>, slots: number) {
    this.labels = `{${Object.entries(labels)
      .map(([k, v]) => `${k}=${quoted(v)}`)
      .join(',')}}`;
    this.#values = new Float64Array(slots);
    this.#lines = new Array(slots);
    this.#extras = new Array(slots).fill('');
  }

  /** The line `name{labels} value` of `slot`; `extra` labels (constant per slot and value) follow. */
  line(slot: number, name: string, value: number, extra = ''): string {
    const kept = this.#lines[slot];
    if (kept !== undefined && this.#values[slot] === value && this.#extras[slot] === extra) return kept;
    const labels = extra === '' ? this.labels : `${this.labels.slice(0, -1)},${extra}}`;
    const line = seriesLine(name, labels, value);
    this.#values[slot] = value;
    this.#lines[slot] = line;
    this.#extras[slot] = extra;
    return line;
  }
}
