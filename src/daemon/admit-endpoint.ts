/**
 * The admission endpoints of the control API (see `dynamic-children.ts` for the semantics):
 *
 * - `POST /v1/nodes/{node}/children` with `{ requestId, spec }` (optionally
 *   `Authorization: Bearer TOKEN`) → `201 { requestId, path, node, grant, capabilities }`, or
 *   `400` (malformed request), `403` (token missing, forged or out of scope), `404` (no such
 *   node), `409` (closed to admission, not running, `maxChildren` reached, name taken, request id
 *   reused for another request), `413` (body over 1 MiB), `422` (invalid spec, over `maxGrant`,
 *   not enough budget or capabilities: `reasons` lists every one as `{ path, field, message }`).
 * - `DELETE /v1/children/{path}` → `200 { path, requestId, returned }`: the admitted child is
 *   stopped and its budget returned; `404` unknown, `409` not admitted at run time.
 */
import type * as http from 'node:http';
import { type Answer, type DynamicChildren, pausedAnswer } from './dynamic-children.ts';
import { bearerToken, sendJson } from './http-util.ts';

const MAX_BODY = 1 << 20;

export interface AdmissionEndpoint {
  /** `trusted`: the caller holds the whole tree (TCP admin token); no node token is asked for. */
  admit(req: http.IncomingMessage, res: http.ServerResponse, node: string, trusted?: boolean): Promise<void>;
  revoke(res: http.ServerResponse, path: string): Promise<void>;
}

/** Told every answer to an admission request (metrics.ts counts them). */
export type AnswerListener = (node: string, status: number, body: unknown) => void;

function readBody(req: http.IncomingMessage): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) over = true;
      else chunks.push(c);
    });
    req.on('end', () => resolve(over ? null : Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

export function admissionEndpoint(children: DynamicChildren, onAnswer?: AnswerListener): AdmissionEndpoint {
  return {
    async admit(req, res, node, trusted = false) {
      const send = (r: http.ServerResponse, answer: Answer) => {
        onAnswer?.(node, answer.status, answer.body);
        sendJson(r, answer.status, answer.body);
      };
      const text = await readBody(req);
      if (text === null)
        return send(res, {
          status: 413,
          body: { error: { code: 'too_large', message: `a request body is at most ${MAX_BODY} bytes` } },
        });
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch (err) {
        return send(res, {
          status: 400,
          body: { error: { code: 'bad_json', message: `the body is not JSON: ${(err as Error).message}` } },
        });
      }
      const token = bearerToken(req);
      if (token === null)
        return send(res, {
          status: 403,
          body: { error: { code: 'bad_authorization', message: 'expected Authorization: Bearer TOKEN' } },
        });
      send(res, await children.admit(node, body, token, trusted));
    },
    async revoke(res, path) {
      const paused = children.pausedBy?.();
      const answer = paused ? pausedAnswer(paused) : await children.revoke(path);
      sendJson(res, answer.status, answer.body);
    },
  };
}
