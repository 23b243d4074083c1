/** Loopback helpers for tests: a free port, a GET, a bare connect. Everything is on 127.0.0.1. */
import { type RequestOptions, request } from 'node:http';
import { connect, createServer } from 'node:net';

/** A port nothing listens on right now (bound then released). */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** GET / on 127.0.0.1:`port` and the whole body; `extra` is merged into the request options. */
export function httpGet(port: number, extra: RequestOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/', ...extra }, (res) => {
      let body = '';
      res.on('data', (d) => {
        body += d;
      });
      res.on('end', () => resolve(body));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Connects from this process to 127.0.0.1:`port`: 'connected', or the error's code. */
export function hostConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.on('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}
