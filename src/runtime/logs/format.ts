/**
 * The on-disk line format of captured logs, one record per line:
 *
 *     2025-01-31T12:34:56.789Z out hello world
 *     2025-01-31T12:34:56.790Z err+ a line cut at maxLineBytes continues in the next record
 *
 * An ISO-8601 UTC timestamp with milliseconds (fixed width, so files sort and grep well), a space,
 * the stream tag (`out`, `err`, or `sys` for captree's own notes about the child), `+` appended
 * when the record is partial (cut or unterminated), a space, and the text verbatim. The text
 * never contains `\n` (the splitter removed it), so a record is exactly one line.
 *
 * Hazard: the timestamp is when captree read the bytes, not when the child wrote them; a child
 * that buffers its stdout shows up late and in bursts.
 */

export type StreamTag = 'out' | 'err' | 'sys';

export interface LogRecord {
  /** Milliseconds since the epoch. */
  ts: number;
  stream: StreamTag;
  partial: boolean;
  text: string;
}

export function formatRecord(r: LogRecord): string {
  return `${new Date(r.ts).toISOString()} ${r.stream}${r.partial ? '+' : ''} ${r.text}\n`;
}

const RECORD_RE = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (out|err|sys)(\+?) (.*)$/s;

/** Parses one line (without its newline); null when it is not a record. */
export function parseRecord(line: string): LogRecord | null {
  const m = RECORD_RE.exec(line);
  if (!m) return null;
  return { ts: Date.parse(m[1]!), stream: m[2] as StreamTag, partial: m[3] === '+', text: m[4]! };
}
