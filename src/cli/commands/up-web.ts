/**
 * `captree up --web HOST:PORT`: where the dashboard listens and the token that opens it. The
 * token is the admin token of `--token-file` when one is given; otherwise a fresh random one,
 * kept in STATE/web.token (0600) so a detached daemon and a later look can find it. The URL to
 * open carries it (`/ui/?token=...`), as Jupyter's does; the page trades it for a cookie.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { TcpOptions } from '../../daemon/index.ts';
import { type Io, tokenFromFile, UsageError, type Values } from '../cli.ts';

/** `HOST:PORT` (IPv6 as `[::1]:PORT`), or a usage error naming the flag. */
export function hostPort(flag: string, value: string): { host: string; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || port > 65535)
    throw new UsageError(`${flag} ${value}: expected HOST:PORT (127.0.0.1:7070, [::1]:7070, port 0 for any)`);
  return { host: (m[1] ?? m[2]) as string, port };
}

export function webTokenFile(stateDir: string): string {
  return path.join(stateDir, 'web.token');
}

/**
 * The dashboard's listener, or undefined without `--web`. `--web-token-file` is internal: the
 * detached daemon reads the token its foreground side chose.
 */
export function webOptions(values: Values, io: Io, stateDir: string): TcpOptions | undefined {
  const web = values.web;
  if (typeof web !== 'string') return undefined;
  const { host, port } = hostPort('--web', web);
  const internal = values['web-token-file'];
  if (typeof internal === 'string') {
    const token = fs.readFileSync(internal, 'utf8').trim();
    if (token === '') throw new UsageError(`--web-token-file ${internal} is empty`);
    return { host, port, token };
  }
  const given = tokenFromFile(values, io);
  if (given !== undefined) return { host, port, token: given };
  const token = randomBytes(24).toString('hex');
  fs.mkdirSync(stateDir, { recursive: true });
  const file = webTokenFile(stateDir);
  fs.writeFileSync(file, `${token}\n`, { mode: 0o600 });
  fs.chmodSync(file, 0o600);
  return { host, port, token };
}

/** The URL to open: the dashboard with its login token. */
export function dashboardUrl(base: string, token: string): string {
  return `${base}/ui/?token=${encodeURIComponent(token)}`;
}
