/**
 * The wire format between `captree shell` and `ptyrelay` (documented in full in
 * `native/ptyrelay.c` and `docs/shell.md`): frames of a u32 little-endian length of what follows,
 * one type byte, then the payload.
 *
 * client → relay: `w` rows u16 LE + cols u16 LE (must come first), `d` input bytes.
 * relay → client: `s` pid u32 LE (program started), `d` terminal output, `x` kind u8 (0 exited,
 * 1 signalled) + value u8 (last frame), `e` UTF-8 text (the relay failed; last frame).
 */

/** Largest frame the relay accepts; input is split below this. */
export const MAX_INPUT_FRAME = 64 * 1024;
/** Largest frame this side accepts (the relay sends at most 64 KiB of output per frame). */
const MAX_FRAME = 1 << 20;

export type RelayFrame =
  | { type: 'started'; pid: number }
  | { type: 'data'; data: Buffer }
  | { type: 'exit'; code: number | null; signal: number | null }
  | { type: 'error'; message: string }
  | { type: 'unknown'; byte: number };

function frame(type: string, payload: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + payload.length);
  out.writeUInt32LE(payload.length + 1, 0);
  out.write(type, 4, 'latin1');
  payload.copy(out, 5);
  return out;
}

export function sizeFrame(rows: number, cols: number): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt16LE(Math.max(0, Math.min(0xffff, rows | 0)), 0);
  p.writeUInt16LE(Math.max(0, Math.min(0xffff, cols | 0)), 2);
  return frame('w', p);
}

/** Input as one or more `d` frames. */
export function dataFrames(data: Buffer): Buffer {
  if (data.length <= MAX_INPUT_FRAME) return frame('d', data);
  const parts: Buffer[] = [];
  for (let off = 0; off < data.length; off += MAX_INPUT_FRAME)
    parts.push(frame('d', data.subarray(off, off + MAX_INPUT_FRAME)));
  return Buffer.concat(parts);
}

/** The exit code a shell would report: the code, or 128 + the signal's number. */
export function exitCodeOf(exit: { code: number | null; signal: number | null }): number {
  return exit.code ?? 128 + (exit.signal ?? 0);
}

/** Incremental splitter for what the relay sends. */
export class RelayDecoder {
  #buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): RelayFrame[] {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    const frames: RelayFrame[] = [];
    let off = 0;
    while (this.#buf.length - off >= 5) {
      const len = this.#buf.readUInt32LE(off);
      if (len === 0 || len > MAX_FRAME) throw new Error(`ptyrelay: bad frame length ${len}`);
      if (this.#buf.length - off - 4 < len) break;
      const type = this.#buf[off + 4]!;
      const p = this.#buf.subarray(off + 5, off + 4 + len);
      off += 4 + len;
      frames.push(decode(type, p));
    }
    this.#buf = off === this.#buf.length ? Buffer.alloc(0) : Buffer.from(this.#buf.subarray(off));
    return frames;
  }
}

function decode(type: number, p: Buffer): RelayFrame {
  switch (String.fromCharCode(type)) {
    case 's':
      return { type: 'started', pid: p.length >= 4 ? p.readUInt32LE(0) : 0 };
    case 'd':
      return { type: 'data', data: Buffer.from(p) };
    case 'x':
      return p[0] === 1
        ? { type: 'exit', code: null, signal: p[1] ?? 0 }
        : { type: 'exit', code: p[1] ?? 0, signal: null };
    case 'e':
      return { type: 'error', message: p.toString('utf8') };
    default:
      return { type: 'unknown', byte: type };
  }
}
