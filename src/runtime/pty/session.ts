/**
 * The client end of a `ptyrelay` connection: a unix socket the relay (running inside the shell
 * child) connects to, and the relay between it and the user's terminal: raw mode, input and
 * window-size frames out, output in, until the relay reports the program's exit.
 */
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { dataFrames, exitCodeOf, RelayDecoder, sizeFrame } from './protocol.ts';

export type SessionEnd =
  | { kind: 'exit'; code: number | null; signal: number | null; exitCode: number }
  | { kind: 'error'; message: string }
  | { kind: 'lost' };

/** A listening socket for exactly one relay connection. */
export class RelayListener {
  readonly path: string;
  readonly #server: net.Server;
  #connection: Promise<net.Socket>;

  private constructor(path: string, server: net.Server, connection: Promise<net.Socket>) {
    this.path = path;
    this.#server = server;
    this.#connection = connection;
  }

  /** Listens at `path` (its directory created 0700; a stale file replaced). */
  static async listen(path: string): Promise<RelayListener> {
    const dir = path.slice(0, path.lastIndexOf('/'));
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    rmSync(path, { force: true });
    const server = net.createServer({ pauseOnConnect: true });
    let accept!: (s: net.Socket) => void;
    const connection = new Promise<net.Socket>((resolve) => {
      accept = resolve;
    });
    server.on('connection', (socket) => {
      // One relay only: the first; a second connection is refused by closing it.
      server.close();
      accept(socket);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    chmodSync(path, 0o600);
    return new RelayListener(path, server, connection);
  }

  /** The relay's connection, or a rejection after `timeoutMs` or when `signal` aborts. */
  accept(timeoutMs: number, signal?: AbortSignal): Promise<net.Socket> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no connection within ${timeoutMs} ms`)), timeoutMs);
      const onAbort = () => {
        clearTimeout(timer);
        reject(signal?.reason ?? new Error('aborted'));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#connection.then((s) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        resolve(s);
      });
    });
  }

  /** Stops listening and removes the socket file (an accepted connection stays open). */
  close(): void {
    if (this.#server.listening) this.#server.close();
    rmSync(this.path, { force: true });
  }
}

export interface Terminal {
  readonly input: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?(mode: boolean): unknown };
  readonly output: NodeJS.WritableStream & { rows?: number; columns?: number; isTTY?: boolean };
}

/**
 * Relays `socket` to and from `term` until the program ends. With a TTY as input, it is in raw
 * mode meanwhile (so Ctrl-C, Ctrl-Z, Ctrl-D reach the shell's terminal, not this process) and is
 * restored before this resolves. `onStarted` gets the program's pid (as the relay sees it).
 */
export function relaySession(
  socket: net.Socket,
  term: Terminal,
  onStarted?: (pid: number) => void,
): Promise<SessionEnd> {
  const { input, output } = term;
  const raw = input.isTTY === true && typeof input.setRawMode === 'function';
  const decoder = new RelayDecoder();
  const sendSize = () => {
    if (!socket.destroyed) socket.write(sizeFrame(output.rows ?? 24, output.columns ?? 80));
  };
  return new Promise<SessionEnd>((resolve) => {
    let done = false;
    const finish = (end: SessionEnd) => {
      if (done) return;
      done = true;
      input.off('data', onInput);
      input.off('end', onInputEnd);
      output.off('resize', sendSize);
      if (raw) input.setRawMode?.(false);
      input.pause();
      socket.off('data', onData);
      resolve(end);
    };
    const onInput = (chunk: Buffer | string) => {
      if (!socket.destroyed) socket.write(dataFrames(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk)));
    };
    // Input from a pipe that ends: the shell reads EOF (Ctrl-D), as it would typed.
    const onInputEnd = () => onInput(Buffer.from([4]));
    const onData = (chunk: Buffer) => {
      let frames: ReturnType<RelayDecoder['push']>;
      try {
        frames = decoder.push(chunk);
      } catch (err) {
        finish({ kind: 'error', message: (err as Error).message });
        socket.destroy();
        return;
      }
      for (const f of frames) {
        if (f.type === 'data') {
          if (!output.write(f.data)) {
            socket.pause();
            output.once('drain', () => socket.resume());
          }
        } else if (f.type === 'started') onStarted?.(f.pid);
        else if (f.type === 'exit')
          finish({ kind: 'exit', code: f.code, signal: f.signal, exitCode: exitCodeOf(f) });
        else if (f.type === 'error') finish({ kind: 'error', message: f.message });
      }
    };
    socket.on('data', onData);
    socket.on('close', () => finish({ kind: 'lost' }));
    socket.on('error', () => {});
    sendSize();
    output.on('resize', sendSize);
    if (raw) input.setRawMode?.(true);
    input.on('data', onInput);
    input.on('end', onInputEnd);
    input.resume();
    socket.resume();
  });
}
