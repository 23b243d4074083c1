/**
 * The reconciliation endpoints of the control API (admin only: they see and change the whole
 * tree); semantics in `reconcile.ts`, documented in docs/api.openapi.yaml.
 *
 * - `GET /v1/reconcile` → `200` the snapshot (`captree status --json` is it, assessed).
 * - `POST /v1/reconcile/plan` with `{ tree }` (a parsed manifest) → `200` the plan.
 * - `POST /v1/reconcile/hold` with `{ path, reason?, by? }` → `200 { held }`; `POST
 *   /v1/reconcile/release` with `{ path, by? }` → `200 { released }` or `404 not_held`.
 * - `POST /v1/reconcile/apply` with `{ tree, generation?, base?, target? }` → `200`
 *   `application/x-ndjson`: one `{ step, op, path, error }` line per step as it is done, then
 *   `{ result }`. Refused before anything is done: `409 stale_plan | plan_mismatch |
 *   apply_in_progress`, `422 does_not_fit` (with `reasons`), `400` for a malformed body.
 */
import type * as http from 'node:http';
import type { ManifestTree } from '../manifest/index.ts';
import { sendJson } from './http-util.ts';
import { ReconcileError, type Reconciler } from './reconcile.ts';

const MAX_BODY = 64 << 20;

export interface ReconcileEndpoint {
  handle(req: http.IncomingMessage, res: http.ServerResponse, rest: string[], method: string): Promise<void>;
}

function fail(
  res: http.ServerResponse,
  status: number,
  code: string,
  message: string,
  extra: object = {},
): void {
  sendJson(res, status, { error: { code, message }, ...extra });
}

async function body(req: http.IncomingMessage): Promise<Record<string, unknown> | string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > MAX_BODY) return `a request body is at most ${MAX_BODY} bytes`;
    chunks.push(c);
  }
  try {
    const parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
      return 'expected a JSON object';
    return parsed as Record<string, unknown>;
  } catch (err) {
    return `the body is not JSON: ${(err as Error).message}`;
  }
}

/** A parsed manifest as the CLI sends it: checked for shape only (the CLI's loader validated it). */
function treeOf(value: unknown): ManifestTree | string {
  const t = value as Partial<ManifestTree> | null;
  if (!t || typeof t !== 'object' || typeof t.file !== 'string' || typeof t.dir !== 'string')
    return 'tree must be a parsed manifest { file, dir, root }';
  const root = t.root as { kind?: unknown; path?: unknown; children?: unknown } | undefined;
  if (root?.kind !== 'node' || typeof root.path !== 'string' || !Array.isArray(root.children))
    return 'tree.root must be a node';
  return t as ManifestTree;
}

function optionalNumber(v: unknown): number | undefined {
  return typeof v === 'number' ? v : undefined;
}

function optionalString(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

export function reconcileEndpoint(reconciler: Reconciler): ReconcileEndpoint {
  return {
    async handle(req, res, rest, method) {
      const route = rest.join('/');
      if (route === '' && method === 'GET') return sendJson(res, 200, reconciler.snapshot());
      if (!['plan', 'apply', 'hold', 'release'].includes(route) || method !== 'POST') {
        return fail(
          res,
          404,
          'unknown_route',
          `${method} /v1/reconcile/${route}: expected GET /v1/reconcile or POST /v1/reconcile/(plan|apply|hold|release)`,
        );
      }
      const b = await body(req);
      if (typeof b === 'string') return fail(res, 400, 'bad_request', b);
      if (route === 'hold' || route === 'release') {
        const path = optionalString(b.path);
        if (!path?.startsWith('/'))
          return fail(res, 400, 'bad_request', 'path must be a tree path (/shop/db)');
        const by = optionalString(b.by) ?? 'unknown';
        try {
          if (route === 'hold')
            return sendJson(res, 200, { held: reconciler.hold(path, by, optionalString(b.reason) ?? '') });
          return reconciler.release(path, by)
            ? sendJson(res, 200, { released: path })
            : fail(res, 404, 'not_held', `${path} is not held (see: captree status)`);
        } catch (err) {
          if (err instanceof ReconcileError) return fail(res, err.status, err.code, err.message);
          throw err;
        }
      }
      const tree = treeOf(b.tree);
      if (typeof tree === 'string') return fail(res, 400, 'bad_request', tree);
      if (route === 'plan') return sendJson(res, 200, reconciler.plan(tree));
      let streaming = false;
      const start = () => {
        if (streaming) return;
        streaming = true;
        res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
      };
      try {
        const result = await reconciler.apply(
          tree,
          {
            generation: optionalNumber(b.generation),
            base: optionalString(b.base),
            target: optionalString(b.target),
          },
          (step, s, error) => {
            start();
            res.write(`${JSON.stringify({ step, op: s.op, path: s.path, error })}\n`);
          },
        );
        start();
        res.end(`${JSON.stringify({ result })}\n`);
      } catch (err) {
        if (streaming) {
          res.end(`${JSON.stringify({ error: { code: 'internal', message: (err as Error).message } })}\n`);
          return;
        }
        if (err instanceof ReconcileError)
          return fail(
            res,
            err.status,
            err.code,
            err.message,
            err.reasons.length > 0 ? { reasons: err.reasons } : {},
          );
        throw err;
      }
    },
  };
}
