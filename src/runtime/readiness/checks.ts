/**
 * Single-attempt health checks (one TCP connect, one HTTP GET, one command run), each bounded by a
 * timeout and an AbortSignal. Readiness retries them until a deadline; liveness runs them
 * periodically. A check resolves on success and rejects with an Error whose message is the
 * precise reason (`ECONNREFUSED`, `HTTP 503`, `exit 1: <stderr>`, `timed out after 500 ms`).
 *
 * Hazards: an exec check's command runs in its own process group and the whole group is
 * SIGKILLed on timeout or abort, so a hung check cannot pile up; the HTTP check reads and discards
 * the body (a probe must not leave sockets half-read) but caps it at 64 KiB.
 */
import { spawn } from 'node:child_process';
import * as http from 'node:http';
import * as net from 'node:net';

export type Check = (signal: AbortSignal) => Promise<void>;

function timeoutSignal(timeoutMs: number, signal?: AbortSignal): AbortSignal {
  const t = AbortSignal.timeout(timeoutMs);
  return signal ? AbortSignal.any([signal, t]) : t;
}

/** A check cut short by its own timeout (as opposed to failing on its own). */
export class CheckTimeout extends Error {
  constructor(timeoutMs: number) {
    super(`timed out after ${timeoutMs} ms`);
    this.name = 'CheckTimeout';
  }
}

function reasonOf(signal: AbortSignal, timeoutMs: number): Error {
  const r: unknown = signal.reason;
  if (r instanceof DOMException && r.name === 'TimeoutError') return new CheckTimeout(timeoutMs);
  return r instanceof Error ? r : new Error(String(r ?? 'aborted'));
}

export interface TcpTarget {
  host?: string;
  port: number;
}

/** One TCP connect; succeeds when the connection is accepted, then closes it. */
export function tcpCheck(target: TcpTarget, timeoutMs: number): Check {
  const host = target.host ?? '127.0.0.1';
  return (outer) =>
    new Promise((resolve, reject) => {
      const signal = timeoutSignal(timeoutMs, outer);
      if (signal.aborted) return reject(reasonOf(signal, timeoutMs));
      const sock = net.connect({ host, port: target.port });
      const done = (err?: Error) => {
        signal.removeEventListener('abort', onAbort);
        sock.destroy();
        if (err) reject(err);
        else resolve();
      };
      const onAbort = () => done(reasonOf(signal, timeoutMs));
      signal.addEventListener('abort', onAbort, { once: true });
      sock.once('connect', () => done());
      sock.once('error', (e: NodeJS.ErrnoException) => done(new Error(e.code ?? e.message)));
    });
}

export interface HttpTarget {
  url: string;
  headers?: Record<string, string>;
}

/** One HTTP GET; succeeds on a 2xx status. */
export function httpCheck(target: HttpTarget, timeoutMs: number): Check {
  const url = new URL(target.url);
  if (url.protocol !== 'http:')
    throw new RangeError(`http check supports http: URLs only, got ${url.protocol}`);
  return (outer) =>
    new Promise((resolve, reject) => {
      const signal = timeoutSignal(timeoutMs, outer);
      if (signal.aborted) return reject(reasonOf(signal, timeoutMs));
      let settled = false;
      const finish = (err?: Error) => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        req.destroy();
        if (err) reject(err);
        else resolve();
      };
      const onAbort = () => finish(reasonOf(signal, timeoutMs));
      const req = http.get(url, { headers: target.headers, agent: false }, (res) => {
        const status = res.statusCode ?? 0;
        let seen = 0;
        res.on('data', (d: Buffer) => {
          seen += d.length;
          if (seen > 64 * 1024) res.destroy();
        });
        res.on('error', () => {});
        if (status >= 200 && status < 300) finish();
        else finish(new Error(`HTTP ${status}${res.statusMessage ? ` ${res.statusMessage}` : ''}`));
      });
      req.on('error', (e: NodeJS.ErrnoException) => finish(new Error(e.code ?? e.message)));
      signal.addEventListener('abort', onAbort, { once: true });
    });
}

export interface ExecTarget {
  command: readonly string[];
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

/** Runs a command once; succeeds when it exits 0. */
export function execCheck(target: ExecTarget, timeoutMs: number): Check {
  const [file, ...args] = target.command;
  if (!file) throw new RangeError('exec check needs a command');
  return (outer) =>
    new Promise((resolve, reject) => {
      const signal = timeoutSignal(timeoutMs, outer);
      if (signal.aborted) return reject(reasonOf(signal, timeoutMs));
      const child = spawn(file, args, {
        cwd: target.cwd,
        env: target.env,
        detached: true,
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr.setEncoding('utf8').on('data', (d: string) => {
        stderr = (stderr + d).slice(-500);
      });
      let abortErr: Error | null = null;
      const killGroup = () => {
        try {
          if (child.pid) process.kill(-child.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      };
      const onAbort = () => {
        abortErr = reasonOf(signal, timeoutMs);
        killGroup();
      };
      // Leftovers the check backgrounded would hold stderr open and delay 'close' forever.
      child.once('exit', killGroup);
      signal.addEventListener('abort', onAbort, { once: true });
      child.once('error', (e: NodeJS.ErrnoException) => {
        signal.removeEventListener('abort', onAbort);
        reject(new Error(`cannot run ${file}: ${e.code ?? e.message}`));
      });
      child.once('close', (code, sig) => {
        signal.removeEventListener('abort', onAbort);
        if (abortErr) return reject(abortErr);
        if (code === 0) return resolve();
        const tail = stderr.trim().split('\n').at(-1) ?? '';
        reject(new Error(`${code !== null ? `exit ${code}` : `killed by ${sig}`}${tail ? `: ${tail}` : ''}`));
      });
    });
}
