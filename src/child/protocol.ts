/**
 * The parent–child channel protocol, version 1 (docs/protocol.md): newline-delimited JSON over a
 * private unix stream socket, every message `{"v":1,"type":...}`. Shared by the daemon side
 * (src/daemon/channel.ts) and the child library (src/child/index.ts). Pure: no I/O.
 */

export const PROTOCOL_VERSION = 1;
/** A line longer than this many UTF-8 bytes (newline excluded) is a protocol error (the connection is closed). */
export const MAX_LINE = 64 * 1024;
/** The most cores a request or release may name: beyond any host, so a larger number is a mistake. */
export const MAX_CPU = 1_000_000;
/** A `status` text is kept (and journaled) up to this many characters. */
export const MAX_STATUS = 512;

/** Quantities in user units: cores, bytes, count. `null`: nothing reserved (shared with the parent). */
export interface GrantQuantities {
  cpu: number | null;
  memory: number | null;
  pids: number | null;
}

/** Amounts to add (`request`) or give back (`release`): cores, bytes, count; each > 0. */
export interface Delta {
  cpu?: number;
  memory?: number;
  pids?: number;
}

export type ChildMessage =
  | { v: 1; type: 'hello'; pid?: number; token?: string }
  | { v: 1; type: 'ready' }
  | { v: 1; type: 'status'; text: string }
  | ({ v: 1; type: 'request'; id?: string } & Delta)
  | ({ v: 1; type: 'release'; id?: string } & Delta)
  | { v: 1; type: 'expose'; service: string; endpoint: unknown };

export type ParentMessage =
  | ({ v: 1; type: 'grant'; id?: string } & GrantQuantities)
  | { v: 1; type: 'reclaim'; cpu?: number; memory?: number; pids?: number; deadlineMs: number }
  | { v: 1; type: 'shutdown'; deadlineMs: number | null }
  | { v: 1; type: 'denied'; id?: string; re?: string; reasons: string[] };

export type ChildMessageType = ChildMessage['type'];
export type ParentMessageType = ParentMessage['type'];

export function encode(message: ChildMessage | ParentMessage): string {
  return `${JSON.stringify(message)}\n`;
}

const deltaKeys = ['cpu', 'memory', 'pids'] as const;

/** Validates a child's message; a string says what is wrong with it. */
export function parseChildMessage(line: string): ChildMessage | string {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    return 'not JSON';
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return 'not a JSON object';
  const m = raw as Record<string, unknown>;
  if (m.v !== PROTOCOL_VERSION)
    return `unsupported protocol version ${JSON.stringify(m.v)} (this parent speaks 1)`;
  switch (m.type) {
    case 'hello':
      if (m.pid !== undefined && !Number.isSafeInteger(m.pid)) return 'hello: pid must be an integer';
      if (m.token !== undefined && typeof m.token !== 'string') return 'hello: token must be a string';
      return m as ChildMessage;
    case 'ready':
      return m as ChildMessage;
    case 'status':
      if (typeof m.text !== 'string') return 'status: text must be a string';
      return m as ChildMessage;
    case 'request':
    case 'release': {
      if (m.id !== undefined && typeof m.id !== 'string') return `${m.type}: id must be a string`;
      let any = false;
      for (const k of deltaKeys) {
        const x = m[k];
        if (x === undefined) continue;
        if (typeof x !== 'number' || !Number.isFinite(x) || x <= 0)
          return `${m.type}: ${k} must be a positive number`;
        if (k === 'cpu' && x > MAX_CPU)
          return `${m.type}: cpu ${x} cores is more than any host holds (at most ${MAX_CPU})`;
        if (k !== 'cpu' && x > Number.MAX_SAFE_INTEGER)
          return `${m.type}: ${k} ${x} is more than any host holds (at most ${Number.MAX_SAFE_INTEGER})`;
        if (k !== 'cpu' && !Number.isSafeInteger(x)) return `${m.type}: ${k} must be an integer`;
        any = true;
      }
      if (!any) return `${m.type}: give at least one of cpu, memory, pids`;
      return m as ChildMessage;
    }
    case 'expose':
      if (typeof m.service !== 'string' || m.service === '') return 'expose: service must be a name';
      return m as ChildMessage;
    default:
      return `unknown message type ${JSON.stringify(m.type)}`;
  }
}

/** The `id` of a line that failed validation, if it has a string one (so a `denied` answer can carry it). */
export function idOf(line: string): string | undefined {
  try {
    const raw = JSON.parse(line) as { id?: unknown } | null;
    return raw !== null && typeof raw === 'object' && typeof raw.id === 'string' ? raw.id : undefined;
  } catch {
    return undefined;
  }
}

/** UTF-8 length of `s`, counted only as far as needed to compare with `max`. */
function overLimit(s: string, max: number): boolean {
  // A UTF-16 unit is 1 to 3 UTF-8 bytes: decide cheaply when possible.
  if (s.length > max) return true;
  if (s.length * 3 <= max) return false;
  return Buffer.byteLength(s, 'utf8') > max;
}

/** Splits a byte stream into lines; `onLine` gets each complete line, `onOverflow` a too-long one. */
export class LineSplitter {
  #buf = '';
  readonly #onLine: (line: string) => void;
  readonly #onOverflow: () => void;

  constructor(onLine: (line: string) => void, onOverflow: () => void) {
    this.#onLine = onLine;
    this.#onOverflow = onOverflow;
  }

  #overflowed = false;

  /** After an overflow nothing more is delivered (the connection is to be closed). */
  push(chunk: string): void {
    if (this.#overflowed) return;
    this.#buf += chunk;
    for (;;) {
      const nl = this.#buf.indexOf('\n');
      if (nl < 0) break;
      const line = this.#buf.slice(0, nl);
      this.#buf = this.#buf.slice(nl + 1);
      // Every line is checked, not only the unfinished tail: a long line can arrive whole.
      if (overLimit(line, MAX_LINE)) {
        this.#overflow();
        return;
      }
      if (line.trim() !== '') this.#onLine(line);
    }
    if (overLimit(this.#buf, MAX_LINE)) this.#overflow();
  }

  #overflow(): void {
    this.#overflowed = true;
    this.#buf = '';
    this.#onOverflow();
  }
}
