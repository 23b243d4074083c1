/**
 * Splits a child's byte stream into lines. Output from a child arrives in arbitrary chunks: a
 * line, or a UTF-8 character, may straddle two reads.
 *
 * Hazards: a child that never writes a newline would grow the pending buffer without bound, so a
 * line longer than `maxLineBytes` is cut and emitted in pieces (flagged `partial`); `\r\n` is
 * treated as one terminator, a lone `\r` is kept as data (progress bars overwrite, they do not end
 * lines).
 */
import { StringDecoder } from 'node:string_decoder';

export interface SplitLine {
  text: string;
  /** True when the line was cut at `maxLineBytes` or at end of stream without a newline. */
  partial: boolean;
}

export class LineSplitter {
  readonly maxLineBytes: number;
  #decoder = new StringDecoder('utf8');
  #pending = '';

  constructor(maxLineBytes = 64 * 1024) {
    if (!(maxLineBytes > 0)) throw new RangeError('maxLineBytes must be positive');
    this.maxLineBytes = maxLineBytes;
  }

  /** Feeds a chunk; returns the lines it completed, in order. */
  push(chunk: Buffer | string): SplitLine[] {
    this.#pending += typeof chunk === 'string' ? chunk : this.#decoder.write(chunk);
    const out: SplitLine[] = [];
    let start = 0;
    for (;;) {
      const nl = this.#pending.indexOf('\n', start);
      if (nl < 0) break;
      const end = nl > start && this.#pending.charCodeAt(nl - 1) === 13 ? nl - 1 : nl;
      this.#emit(this.#pending.slice(start, end), false, out);
      start = nl + 1;
    }
    this.#pending = this.#pending.slice(start);
    // Cut an over-long unterminated line; measured in UTF-16 units times 3 as a cheap upper bound
    // first, exact bytes only when it might matter.
    while (
      this.#pending.length * 3 > this.maxLineBytes &&
      Buffer.byteLength(this.#pending) > this.maxLineBytes
    ) {
      const cut = cutAtBytes(this.#pending, this.maxLineBytes);
      out.push({ text: this.#pending.slice(0, cut), partial: true });
      this.#pending = this.#pending.slice(cut);
    }
    return out;
  }

  /** Ends the stream: returns the unterminated tail, if any, as a partial line. */
  end(): SplitLine[] {
    this.#pending += this.#decoder.end();
    const out: SplitLine[] = [];
    if (this.#pending !== '') this.#emit(this.#pending, true, out);
    this.#pending = '';
    return out;
  }

  #emit(text: string, partial: boolean, out: SplitLine[]): void {
    while (Buffer.byteLength(text) > this.maxLineBytes) {
      const cut = cutAtBytes(text, this.maxLineBytes);
      out.push({ text: text.slice(0, cut), partial: true });
      text = text.slice(cut);
    }
    out.push({ text, partial });
  }
}

/** The largest string index whose prefix fits in `max` UTF-8 bytes, never splitting a pair. */
function cutAtBytes(s: string, max: number): number {
  let bytes = 0;
  let i = 0;
  while (i < s.length) {
    const c = s.codePointAt(i)!;
    const len = c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
    if (bytes + len > max) break;
    bytes += len;
    i += c > 0xffff ? 2 : 1;
  }
  return Math.max(i, 1);
}
