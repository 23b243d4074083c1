/**
 * The dashboard's side of the control API: its static files (shipped in the package under
 * `src/web/`, plain ES modules, no build step, nothing from a CDN) and its login.
 *
 * Login works as Jupyter's does: `captree up --web` prints `http://HOST:PORT/ui/?token=TOKEN`;
 * opening it sets the token as an HttpOnly, SameSite=Strict cookie and redirects to `/ui/`, so
 * the token leaves the address bar. The cookie opens reads only (GET): anything that changes the
 * tree still needs `Authorization: Bearer`, so a page elsewhere cannot act through a logged-in
 * browser. The static files themselves hold nothing secret and are served without a token.
 */
import { readFile } from 'node:fs/promises';
import type * as http from 'node:http';
import { join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';

/** `src/web/` from `src/daemon/` and from `dist/daemon/` alike (the package ships `src/web`). */
const root = fileURLToPath(new URL('../../src/web/', import.meta.url));

const types: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

export const COOKIE = 'captree_token';

/** `/` and `/ui/...`: the dashboard's files (no token needed). */
export function isStatic(pathname: string): boolean {
  return pathname === '/' || pathname === '/ui' || pathname.startsWith('/ui/');
}

/** The token in the request's cookie, if any. */
export function cookieToken(req: http.IncomingMessage): string | undefined {
  const header = req.headers.cookie;
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === COOKIE) return decodeURIComponent(part.slice(eq + 1).trim());
  }
  return undefined;
}

function plain(res: http.ServerResponse, status: number, text: string): void {
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

/**
 * Serves one static request. `checkToken` says whether a `?token=` may log in (null: it may;
 * else the reason it may not); served over the unix socket it is never asked.
 */
export async function serveStatic(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  url: URL,
  checkToken: (token: string) => string | null,
): Promise<void> {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('allow', 'GET, HEAD');
    return plain(res, 405, `${url.pathname} takes GET, not ${req.method}\n`);
  }
  const token = url.searchParams.get('token');
  if (token !== null) {
    const refused = checkToken(token);
    if (refused !== null) return plain(res, 403, `${refused}\n`);
    res.writeHead(303, {
      location: '/ui/',
      'set-cookie': `${COOKIE}=${encodeURIComponent(token)}; HttpOnly; SameSite=Strict; Path=/`,
      'cache-control': 'no-store',
    });
    return void res.end();
  }
  if (url.pathname === '/' || url.pathname === '/ui') {
    res.writeHead(303, { location: '/ui/' });
    return void res.end();
  }
  const rel = url.pathname === '/ui/' ? 'index.html' : url.pathname.slice('/ui/'.length);
  let name: string;
  try {
    name = normalize(decodeURIComponent(rel));
  } catch {
    return plain(res, 400, `malformed path ${url.pathname}\n`);
  }
  const ext = name.slice(name.lastIndexOf('.'));
  if (name.startsWith('..') || name.includes('/..') || name.startsWith('/') || !(ext in types)) {
    return plain(res, 404, `no dashboard file ${url.pathname}\n`);
  }
  let body: Buffer;
  try {
    body = await readFile(join(root, name));
  } catch {
    return plain(res, 404, `no dashboard file ${url.pathname}\n`);
  }
  res.writeHead(200, {
    'content-type': types[ext] as string,
    'content-length': body.length,
    'cache-control': 'no-cache',
    'x-content-type-options': 'nosniff',
    'content-security-policy': "default-src 'self'; img-src 'self' data:; style-src 'self'",
  });
  res.end(req.method === 'HEAD' ? undefined : body);
}
