/**
 * Wire format between the Node client and the C launcher (`native/launcher.c` documents the
 * request and event vocabulary in full).
 *
 * A frame is a u32 little-endian payload length followed by the payload: one type byte, then
 * fields `name=value`, each terminated by NUL; names may repeat (argv, env, ...). The output
 * event is the one exception: one `key=` field, then raw bytes to the end of the frame, so child
 * output is forwarded without escaping.
 */

export const MAX_FRAME = 16 * 1024 * 1024;

export const Req = {
  spawn: 'S',
  kill: 'K',
  listen: 'L',
  netns: 'N',
  closeListen: 'C',
  closeStream: 'c',
  list: 'l',
  ping: 'P',
  shutdown: 'Q',
} as const;
export type ReqType = (typeof Req)[keyof typeof Req];

export const Ev = {
  reply: 'R',
  hello: 'h',
  exited: 'x',
  ready: 'r',
  notify: 'n',
  main: 'm',
  output: 'o',
} as const;

export type Field = readonly [name: string, value: string | number];

/** A decoded frame: its type and fields (repeated names keep their order). */
export interface Frame {
  type: string;
  fields: Array<[string, string]>;
  /** Raw bytes of an output event. */
  data?: Buffer;
}

export function encodeFrame(type: ReqType, fields: readonly Field[]): Buffer {
  const parts: Buffer[] = [Buffer.alloc(4), Buffer.from(type, 'latin1')];
  for (const [name, value] of fields) {
    const text = `${name}=${value}`;
    // A NUL would silently split the field on the other side and change what the child sees.
    if (text.includes('\0')) throw new Error(`launcher: field ${name} contains a NUL byte`);
    parts.push(Buffer.from(`${text}\0`, 'utf8'));
  }
  const frame = Buffer.concat(parts);
  if (frame.length - 4 > MAX_FRAME) throw new Error('launcher: request too large');
  frame.writeUInt32LE(frame.length - 4, 0);
  return frame;
}

/** Incremental frame splitter: feed it socket chunks, get whole frames back. */
export class FrameDecoder {
  #pending: Buffer[] = [];
  #pendingLen = 0;

  push(chunk: Buffer): Frame[] {
    this.#pending.push(chunk);
    this.#pendingLen += chunk.length;
    if (this.#pendingLen < 4) return [];
    let buf = this.#pending.length === 1 ? this.#pending[0]! : Buffer.concat(this.#pending);
    const frames: Frame[] = [];
    let off = 0;
    while (buf.length - off >= 4) {
      const len = buf.readUInt32LE(off);
      if (len === 0 || len > MAX_FRAME + 65536) throw new Error(`launcher: bad frame length ${len}`);
      if (buf.length - off - 4 < len) break;
      frames.push(decodePayload(buf.subarray(off + 4, off + 4 + len)));
      off += 4 + len;
    }
    buf = buf.subarray(off);
    // Copy the remainder so a small tail does not pin a large chunk.
    this.#pending = buf.length ? [Buffer.from(buf)] : [];
    this.#pendingLen = buf.length;
    return frames;
  }
}

function decodePayload(payload: Buffer): Frame {
  const type = String.fromCharCode(payload[0]!);
  const fields: Array<[string, string]> = [];
  let off = 1;
  while (off < payload.length) {
    let end = payload.indexOf(0, off);
    if (end < 0) end = payload.length;
    const text = payload.toString('utf8', off, end);
    const eq = text.indexOf('=');
    if (eq >= 0) fields.push([text.slice(0, eq), text.slice(eq + 1)]);
    off = end + 1;
    if (type === Ev.output) return { type, fields, data: payload.subarray(off) };
  }
  return { type, fields };
}

export function fieldOf(frame: Frame, name: string): string | undefined {
  for (const [k, v] of frame.fields) if (k === name) return v;
  return undefined;
}

export function fieldsOf(frame: Frame, name: string): string[] {
  return frame.fields.filter(([k]) => k === name).map(([, v]) => v);
}
