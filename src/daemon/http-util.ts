/** What the control API's handlers share: JSON answers and bearer tokens (server, admission). */
import { createHash } from 'node:crypto';
import type * as http from 'node:http';

/** One JSON answer, newline-terminated, with its length. */
export function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

/** The bearer token of a request: undefined without one, null when the header is malformed. */
export function bearerToken(req: http.IncomingMessage): string | undefined | null {
  const header = req.headers.authorization;
  if (header === undefined) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m ? (m[1] as string) : null;
}

/** SHA-256 of a token (or any text): tokens are compared as digests, in constant time. */
export function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}
