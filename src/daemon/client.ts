/**
 * A client of the control API over the state dir's unix socket, or over TCP (`up --listen`) with
 * a bearer token, for the CLI and tests. Each call uses its own connection (no keep-alive), so a
 * CLI run never lingers on an open socket.
 */
import * as http from 'node:http';
import type { ApiError } from './types.ts';

/** The daemon answered with an error body (`status` ≥ 400). */
export class ApiResponseError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = 'ApiResponseError';
    this.status = status;
    this.code = code;
  }
}

/** Nobody is listening on the socket or the TCP address (no daemon, or a dead one). */
export class NotRunningError extends Error {
  readonly socket: string;
  constructor(socket: string, cause: unknown) {
    super(`nothing answers on ${socket}`, { cause });
    this.name = 'NotRunningError';
    this.socket = socket;
  }
}

export interface RequestOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: unknown;
}

/** Encodes a tree path (`/shop/db`) for the URL, segment by segment. */
export function urlPath(treePath: string): string {
  return treePath
    .split('/')
    .filter((s) => s !== '')
    .map(encodeURIComponent)
    .join('/');
}

/** The API on TCP: `http://HOST:PORT` and the bearer token to present. */
export interface RemoteTarget {
  url: string;
  token?: string;
}

/** Any status, the body parsed when it is JSON (null otherwise). */
export interface ApiReply {
  status: number;
  body: Record<string, unknown> | null;
}

export class ControlClient {
  /** The socket path, or the URL when remote (for messages). */
  readonly socket: string;
  readonly remote: RemoteTarget | null;
  readonly #base: http.RequestOptions;
  #prefix = '';
  #auth: Record<string, string> = {};

  constructor(target: string | RemoteTarget) {
    if (typeof target === 'string') {
      this.socket = target;
      this.remote = null;
      this.#base = { socketPath: target };
      return;
    }
    let url: URL;
    try {
      url = new URL(target.url);
    } catch {
      throw new Error(`${target.url}: not a URL (expected http://HOST:PORT)`);
    }
    if (url.protocol !== 'http:')
      throw new Error(`${target.url}: only http:// is served (put TLS in front, or use an SSH tunnel)`);
    this.socket = url.origin;
    this.remote = target;
    this.#base = { host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port || 80) };
    this.#prefix = url.pathname.replace(/\/+$/, '');
    if (target.token !== undefined) this.#auth = { authorization: `Bearer ${target.token}` };
  }

  /** One request whatever the status (an error body is kept whole); connection errors throw. */
  request(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<ApiReply> {
    return new Promise((resolve, reject) => {
      const text = body === undefined ? undefined : JSON.stringify(body);
      const req = http.request(
        {
          ...this.#base,
          path: this.#prefix + path,
          method,
          agent: false,
          headers: {
            accept: 'application/json',
            ...(text !== undefined ? { 'content-type': 'application/json' } : {}),
            ...this.#auth,
            ...headers,
          },
        },
        (res) => {
          readAll(res).then((t) => {
            let parsed: Record<string, unknown> | null = null;
            try {
              parsed = JSON.parse(t) as Record<string, unknown>;
            } catch {
              // not JSON: reported by status
            }
            resolve({ status: res.statusCode ?? 500, body: parsed });
          }, reject);
        },
      );
      req.on('error', (err: NodeJS.ErrnoException) => reject(this.#connectError(err)));
      req.end(text);
    });
  }

  #connectError(err: NodeJS.ErrnoException): Error {
    return err.code === 'ENOENT' || err.code === 'ECONNREFUSED' ? new NotRunningError(this.socket, err) : err;
  }

  /** Opens a request and resolves with the response once its headers are in; errors are thrown. */
  open(path: string, options: RequestOptions = {}): Promise<http.IncomingMessage> {
    return new Promise((resolve, reject) => {
      const body = options.body === undefined ? undefined : JSON.stringify(options.body);
      const req = http.request(
        {
          ...this.#base,
          path: this.#prefix + path,
          method: options.method ?? 'GET',
          agent: false,
          headers: {
            ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
            ...this.#auth,
            ...options.headers,
          },
        },
        (res) => {
          if ((res.statusCode ?? 500) < 400) return resolve(res);
          readAll(res).then((text) => {
            let parsed: ApiError | undefined;
            try {
              parsed = JSON.parse(text) as ApiError;
            } catch {
              // not JSON: reported as is below
            }
            reject(
              new ApiResponseError(
                res.statusCode ?? 500,
                parsed?.error?.code ?? 'http_error',
                parsed?.error?.message ?? (text.trim() || `HTTP ${res.statusCode}`),
              ),
            );
          }, reject);
        },
      );
      req.on('error', (err: NodeJS.ErrnoException) => reject(this.#connectError(err)));
      req.end(body);
    });
  }

  async json<T>(path: string, options: RequestOptions = {}): Promise<T> {
    const res = await this.open(path, {
      ...options,
      headers: { accept: 'application/json', ...options.headers },
    });
    return JSON.parse(await readAll(res)) as T;
  }

  async text(path: string, options: RequestOptions = {}): Promise<string> {
    return readAll(await this.open(path, options));
  }
}

export function readAll(res: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.on('error', reject);
    res.on('aborted', () => reject(new Error('the daemon closed the connection mid-response')));
  });
}

/** Calls `fn` for each complete line of a streamed response; resolves when the stream ends. */
export function eachLine(res: http.IncomingMessage, fn: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    let buffer = '';
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      buffer += chunk;
      for (let i = buffer.indexOf('\n'); i >= 0; i = buffer.indexOf('\n')) {
        fn(buffer.slice(0, i));
        buffer = buffer.slice(i + 1);
      }
    });
    res.on('end', () => {
      if (buffer !== '') fn(buffer);
      resolve();
    });
    res.on('error', reject);
    res.on('close', () => resolve());
  });
}

/** Server-sent events: calls `fn` with each `data:` payload; resolves when the stream ends. */
export function eachEvent(
  res: http.IncomingMessage,
  fn: (data: string, event: string) => void,
): Promise<void> {
  let data: string[] = [];
  let event = 'message';
  return eachLine(res, (line) => {
    if (line === '') {
      if (data.length > 0) fn(data.join('\n'), event);
      data = [];
      event = 'message';
    } else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
    else if (line.startsWith('event:')) event = line.slice(6).trim();
  });
}
