/**
 * The control API: HTTP/1.1 + JSON on the state dir's unix socket (`control.sock`), versioned
 * under `/v1`. Access control is the socket file's permissions: whoever may connect may operate
 * the tree, as with the Docker socket. Documented in `docs/api.openapi.yaml`.
 *
 * Optionally the same API is also served on TCP (`captree up --listen HOST:PORT --token-file
 * FILE`), where every request must carry `Authorization: Bearer TOKEN` (else `401`):
 * - the admin token (the `--token-file`'s content) may do anything the socket may;
 * - a node's admission token (its `admission.tokens`) may admit into, revoke under and read
 *   (`GET /v1/tree`, `/v1/events`, `/v1/logs`, filtered to) that node's subtree, nothing else:
 *   a token for `/site/dev` gets `403 out_of_scope` at `/site/prod` and `403 admin_only` for
 *   start/stop/restart, `down` and `/v1/daemon`;
 * - any other token: `403 token_rejected`.
 *
 * Every error is `{error: {code, message}}` with a status that says whose fault it is: 400 bad
 * request, 404 unknown path, 409 wrong state. Child paths sit in the URL as they are written
 * (`/v1/children/shop/db/restart`), so the last segment is the verb and the rest is the path.
 */
import { timingSafeEqual } from 'node:crypto';
import * as fs from 'node:fs/promises';
import type * as http from 'node:http';
import { SupervisorError } from '../core/index.ts';
import { formatRecord, type LogRecord, parseRecord, readLogSince } from '../runtime/logs/index.ts';
import type { AdmissionEndpoint } from './admit-endpoint.ts';
import { bearerToken, digest, sendJson } from './http-util.ts';
import { IdleCollector } from './idle-collect.ts';
import { type Journal, type JournalFilter, type JournalRecord, matches, readJournal } from './journal.ts';
import { type Metrics, statsWindow } from './metrics.ts';
import { sendMetrics, sendStats } from './metrics-reply.ts';
import type { ReconcileEndpoint } from './reconcile-endpoint.ts';
import { deadlineServer } from './request-deadline.ts';
import { requester, type SignalEndpoint } from './signal-endpoint.ts';
import { snapshot } from './snapshot.ts';
import { parseSince } from './time.ts';
import type { DaemonInfo, RunningTree } from './types.ts';
import { cookieToken, isStatic, serveStatic } from './web.ts';

export interface ControlOptions {
  tree: RunningTree;
  journal: Journal;
  info(): DaemonInfo;
  /** Stops the tree in order; resolves once every process is gone. */
  down(): Promise<void>;
  /** Run-time admission (`admit-endpoint.ts`); absent: the routes answer 409. */
  admission?: AdmissionEndpoint;
  /** The nodes whose `admission.tokens` hold `token` (TCP only); absent: none do. */
  scopesOf?(token: string): string[];
  /** `signal` and `reload` of a child (signal-endpoint.ts); absent: those answer 409. */
  signals?: SignalEndpoint;
  /** `GET /metrics`, `/v1/stats`, `/v1/admissions` (metrics.ts); absent: those answer 404. */
  metrics?: Metrics;
  /** `/v1/reconcile` (reconcile-endpoint.ts); absent: 404. */
  reconcile?: ReconcileEndpoint;
}

/** Who is asking: the unix socket's owner, or a TCP caller by the token it presented. */
export type Access =
  | { kind: 'local' }
  | { kind: 'admin' }
  /** A node's admission token: `nodes` (and below) only. */
  | { kind: 'scoped'; nodes: string[] };

export interface TcpOptions {
  host: string;
  /** 0: any free port (see `ControlServer.tcpAddress`). */
  port: number;
  /** The admin token: the whole tree. */
  token: string;
}

export class ApiFailure extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = 'ApiFailure';
    this.status = status;
    this.code = code;
  }
}

const supervisorStatus: Record<string, number> = {
  not_found: 404,
  already_present: 409,
  running: 409,
  not_running: 409,
  max_children: 409,
  start_failed: 500,
};

/** `path` is `node` or below it. */
function within(path: string, node: string): boolean {
  return path === node || path.startsWith(`${node}/`);
}

function scopeList(nodes: string[]): string {
  return nodes.join(', ');
}

/** Throws the 403 unless `path` lies in a scoped caller's subtree. */
function inScope(access: Access, path: string): void {
  if (access.kind !== 'scoped' || access.nodes.some((n) => within(path, n))) return;
  throw new ApiFailure(
    403,
    'out_of_scope',
    `the token presented is an admission token for ${scopeList(access.nodes)}: it opens that subtree only, not ${path}`,
  );
}

/** Throws the 403 for a scoped caller: this takes the admin token (or the control socket). */
function adminOnly(access: Access, method: string, pathname: string): void {
  if (access.kind !== 'scoped') return;
  throw new ApiFailure(
    403,
    'admin_only',
    `${method} ${pathname} needs the admin token; an admission token (here for ${scopeList(access.nodes)}) may only admit, revoke and read (GET) under its node`,
  );
}

function sendError(res: http.ServerResponse, err: unknown): void {
  let failure: ApiFailure;
  if (err instanceof ApiFailure) failure = err;
  else if (err instanceof SupervisorError)
    failure = new ApiFailure(supervisorStatus[err.code] ?? 500, err.code, err.message);
  else failure = new ApiFailure(500, 'internal', (err as Error)?.message ?? String(err));
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (failure.status === 401) res.setHeader('www-authenticate', 'Bearer realm="captree"');
  sendJson(res, failure.status, { error: { code: failure.code, message: failure.message } });
}

/**
 * File records and those the journal kept in memory only (it could not write them: a full disk),
 * in `seq` order: what happened is told even when it could not be written down.
 */
function withUnwritten(
  records: JournalRecord[],
  journal: Journal,
  filter: JournalFilter,
  visible: (r: JournalRecord) => boolean,
): JournalRecord[] {
  const unwritten = journal.unwrittenRecords().filter((r) => matches(filter, r) && visible(r));
  if (unwritten.length === 0) return records;
  const seqs = new Set(records.map((r) => r.seq));
  return [...records, ...unwritten.filter((r) => !seqs.has(r.seq))].sort((a, b) => a.seq - b.seq);
}

/** The last `n` of `records` (all of them when `n` is undefined). */
function lastOf<T>(records: T[], n: number | undefined): T[] {
  return n === undefined ? records : n === 0 ? [] : records.slice(-n);
}

/** `limit=N`: only the last N records. */
function limitParam(url: URL): number | undefined {
  const raw = url.searchParams.get('limit');
  if (raw === null) return undefined;
  if (!/^\d+$/.test(raw))
    throw new ApiFailure(400, 'bad_limit', `limit=${raw}: expected a number of records`);
  return Number(raw);
}

function sinceParam(url: URL): number | undefined {
  const raw = url.searchParams.get('since');
  if (raw === null || raw === '') return undefined;
  const since = parseSince(raw);
  if (since === undefined) {
    throw new ApiFailure(
      400,
      'bad_since',
      `since=${raw}: expected ms epoch, ISO-8601 time or a duration (5m)`,
    );
  }
  return since;
}

/** `/shop/db` from the URL segments after a prefix; decoded, validated. */
function treePath(segments: string[]): string {
  const parts = segments.map((s) => {
    try {
      return decodeURIComponent(s);
    } catch {
      throw new ApiFailure(400, 'bad_path', `malformed path segment: ${s}`);
    }
  });
  if (parts.length === 0 || parts.some((p) => p === '' || p === '.' || p === '..' || p.includes('/'))) {
    throw new ApiFailure(400, 'bad_path', `not a tree path: /${parts.join('/')}`);
  }
  return `/${parts.join('/')}`;
}

const verbs = ['start', 'stop', 'restart'] as const;
type Verb = (typeof verbs)[number];

export interface ControlServer {
  readonly server: http.Server;
  /** Serves on a unix socket, replacing a stale socket file; only the owner may connect. */
  listen(socketPath: string): Promise<void>;
  /** Also serves on TCP, every request authenticated by a bearer token; resolves with the URL. */
  listenTcp(options: TcpOptions, role?: 'api' | 'web'): Promise<string>;
  /** `http://HOST:PORT` while serving on TCP, else null. */
  tcpAddress(): string | null;
  /** Ends live streams, stops accepting, resolves once in-flight requests are answered. */
  close(): Promise<void>;
}

export function createControlServer(options: ControlOptions): ControlServer {
  const { tree, journal } = options;
  let downing: Promise<void> | null = null;
  // Live streams never go idle on their own; shutdown must end them or close() would wait for ever.
  const streams = new Set<http.ServerResponse>();
  const stream = (res: http.ServerResponse) => {
    streams.add(res);
    res.on('close', () => streams.delete(res));
  };

  async function child(res: http.ServerResponse, path: string, verb: Verb): Promise<void> {
    const found = tree.locate(path);
    if (!found) {
      if (path === tree.supervisor.path) {
        throw new ApiFailure(409, 'root', `${path} is the root; stop the whole tree with: captree down`);
      }
      throw new ApiFailure(404, 'not_found', `no child ${path} in this tree (see: captree ps)`);
    }
    const { supervisor, id } = found;
    if (verb === 'start') await supervisor.startChild(id);
    else if (verb === 'stop') await supervisor.stopChild(id);
    else await supervisor.restartChild(id);
    const entry = snapshot(tree).find((e) => e.path === path) ?? null;
    sendJson(res, 200, { path, action: verb, child: entry });
  }

  async function events(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    url: URL,
    access: Access,
  ): Promise<void> {
    const filter: JournalFilter = { since: sinceParam(url), path: url.searchParams.get('path') ?? undefined };
    // A scoped caller sees its subtrees' events; asking for a path that meets none of them is a 403.
    const scope = access.kind === 'scoped' ? access.nodes : null;
    if (
      scope &&
      filter.path !== undefined &&
      !scope.some((n) => within(filter.path!, n) || within(n, filter.path!))
    )
      inScope(access, filter.path);
    const visible = (r: JournalRecord) => scope === null || scope.some((n) => within(r.path, n));
    const live = (req.headers.accept ?? '').includes('text/event-stream');
    if (!live) {
      const limit = limitParam(url);
      // With a limit, the last `limit` this caller may see: filtered while reading, not after.
      const fromFile =
        scope === null
          ? await readJournal(journal.file, filter, limit)
          : lastOf((await readJournal(journal.file, filter)).filter(visible), limit);
      sendJson(res, 200, lastOf(withUnwritten(fromFile, journal, filter, visible), limit));
      return;
    }
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-store',
      connection: 'keep-alive',
    });
    const send = (r: JournalRecord) =>
      res.write(`id: ${r.seq}\nevent: ${r.type}\ndata: ${JSON.stringify(r)}\n\n`);
    // Subscribe before reading history and drop duplicates by (ts, seq), so nothing falls between.
    const pending: JournalRecord[] = [];
    let replaying = true;
    const unsubscribe = journal.subscribe((r) => {
      if (!pathOk(filter, r) || !visible(r)) return;
      if (replaying) pending.push(r);
      else send(r);
    });
    res.on('close', unsubscribe);
    stream(res);
    const last = limitParam(url);
    const history =
      filter.since === undefined && last === undefined
        ? []
        : lastOf(
            (await readJournal(journal.file, filter, scope === null ? last : undefined)).filter(visible),
            last,
          );
    const seen = new Set(history.map((r) => `${r.ts}:${r.seq}:${r.type}:${r.path}`));
    for (const r of history) send(r);
    for (const r of pending) if (!seen.has(`${r.ts}:${r.seq}:${r.type}:${r.path}`)) send(r);
    replaying = false;
    res.write(': live\n\n');
  }

  async function logs(req: http.IncomingMessage, res: http.ServerResponse, url: URL, path: string) {
    const files = tree.logFiles(path);
    if (!files) {
      const known = tree.supervisor.tree().some((e) => e.path === path);
      throw known
        ? new ApiFailure(409, 'no_logs', `${path} has no log of its own (only processes have logs)`)
        : new ApiFailure(404, 'not_found', `no child ${path} in this tree (see: captree ps)`);
    }
    const since = sinceParam(url) ?? 0;
    const limitRaw = url.searchParams.get('limit');
    const limit = limitRaw === null ? undefined : Number(limitRaw);
    if (limit !== undefined && !(Number.isInteger(limit) && limit >= 0)) {
      throw new ApiFailure(400, 'bad_limit', `limit=${limitRaw}: expected an integer ≥ 0`);
    }
    const follow = url.searchParams.get('follow') === '1' || url.searchParams.get('follow') === 'true';
    const ndjson = (req.headers.accept ?? '').includes('application/x-ndjson');
    const encode = (r: LogRecord) =>
      ndjson ? `${JSON.stringify({ ...r, time: new Date(r.ts).toISOString(), path })}\n` : formatRecord(r);
    const pending: LogRecord[] = [];
    let replaying = true;
    let unsubscribe = () => {};
    if (follow) {
      unsubscribe = tree.onLog(path, (line) => {
        const r = toRecord(line);
        if (replaying) pending.push(r);
        else res.write(encode(r));
      });
      res.on('close', unsubscribe);
      stream(res);
    }
    let history: LogRecord[];
    try {
      history = await readLogSince(files.dir, files.name, since, limit === undefined ? {} : { limit });
    } catch (err) {
      unsubscribe();
      throw err;
    }
    res.writeHead(200, {
      'content-type': ndjson ? 'application/x-ndjson' : 'text/plain; charset=utf-8',
      'cache-control': 'no-store',
    });
    for (const r of history) res.write(encode(r));
    if (!follow) {
      res.end();
      return;
    }
    const last = history.at(-1)?.ts ?? 0;
    const tail = new Set(history.filter((r) => r.ts === last).map((r) => formatRecord(r)));
    for (const r of pending)
      if (r.ts > last || (r.ts === last && !tail.has(formatRecord(r)))) res.write(encode(r));
    replaying = false;
  }

  /** `/metrics`, `/v1/stats`, `/v1/admissions`: figures read now (see metrics.ts). */
  function observe(
    res: http.ServerResponse,
    url: URL,
    access: Access,
    method: string,
    what: 'metrics' | 'stats' | 'admissions',
  ): void {
    if (method !== 'GET' && method !== 'HEAD')
      throw new ApiFailure(405, 'method_not_allowed', `${url.pathname} takes GET, not ${method}`);
    const metrics = options.metrics;
    if (!metrics) throw new ApiFailure(404, 'unknown_route', `${url.pathname}: this daemon keeps no metrics`);
    if (what === 'metrics') adminOnly(access, method, url.pathname);
    const parsed = what === 'stats' ? statsWindow(url.searchParams) : { window: {}, error: null };
    if (parsed.error !== null) throw new ApiFailure(400, 'bad_param', `${url.pathname}: ${parsed.error}`);
    const window = parsed.window;
    for (const key of url.searchParams.keys())
      if (key !== 'path' && !(what === 'stats' && key in window))
        throw new ApiFailure(
          400,
          'bad_param',
          what === 'stats'
            ? `${url.pathname} takes ?path=, match=, sort=, offset= and limit=, not ${key}`
            : `${url.pathname} takes only ?path=/tree/path, not ${key}`,
        );
    const raw = url.searchParams.get('path');
    const under = raw === null ? null : treePath(raw.split('/').filter((s) => s !== ''));
    if (under !== null) {
      inScope(access, under);
      if (!tree.supervisor.tree().some((e) => e.path === under))
        throw new ApiFailure(404, 'not_found', `no node or child ${under} in this tree (see: captree ps)`);
    }
    const keep =
      under === null && access.kind !== 'scoped'
        ? undefined
        : (path: string) =>
            (under === null || within(path, under)) &&
            (access.kind !== 'scoped' || access.nodes.some((n) => within(path, n)));
    if (what === 'admissions') {
      sendJson(res, 200, {
        counts: metrics.admissions().filter((a) => keep?.(a.node) ?? true),
        refusals: metrics.refusals().filter((r) => keep?.(r.node) ?? true),
      });
      return;
    }
    const stats = metrics.stats({ ...window, keep, rates: what === 'stats' });
    if (what === 'stats') sendStats(res, stats, method === 'HEAD');
    else sendMetrics(res, stats, method === 'HEAD');
  }

  const signals = (): SignalEndpoint => {
    if (!options.signals)
      throw new ApiFailure(409, 'signals_unavailable', 'this tree cannot signal its children');
    return options.signals;
  };

  const admission = (): AdmissionEndpoint => {
    if (!options.admission)
      throw new ApiFailure(409, 'admission_unavailable', 'this tree cannot admit children at run time');
    return options.admission;
  };

  async function route(req: http.IncomingMessage, res: http.ServerResponse, access: Access): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://captree');
    const segments = url.pathname.split('/').filter((s) => s !== '');
    const method = req.method ?? 'GET';
    if (url.pathname === '/metrics') return observe(res, url, access, method, 'metrics');
    if (segments[0] !== 'v1') {
      throw new ApiFailure(404, 'unknown_route', `${method} ${url.pathname}: this API lives under /v1`);
    }
    const [, resource, ...rest] = segments;
    const expect = (m: string) => {
      if (method !== m)
        throw new ApiFailure(405, 'method_not_allowed', `${url.pathname} takes ${m}, not ${method}`);
    };
    switch (resource) {
      case 'daemon':
        if (rest.length === 0) {
          expect('GET');
          adminOnly(access, method, url.pathname);
          return sendJson(res, 200, options.info());
        }
        break;
      case 'tree':
        if (rest.length === 0) {
          expect('GET');
          const entries = snapshot(tree);
          if (access.kind !== 'scoped') return sendJson(res, 200, entries);
          return sendJson(
            res,
            200,
            entries.filter((e) => access.nodes.some((n) => within(e.path, n))),
          );
        }
        break;
      case 'nodes':
        if (rest.length >= 2 && rest.at(-1) === 'children') {
          expect('POST');
          const node = treePath(rest.slice(0, -1));
          inScope(access, node);
          // The admin token holds the whole tree: it admits without a node's token.
          return admission().admit(req, res, node, access.kind === 'admin');
        }
        break;
      case 'children': {
        if (method === 'DELETE' && rest.length >= 1) {
          const path = treePath(rest);
          inScope(access, path);
          return admission().revoke(res, path);
        }
        const verb = rest.at(-1) as Verb | undefined;
        if (rest.length >= 2 && (rest.at(-1) === 'signal' || rest.at(-1) === 'reload')) {
          expect('POST');
          adminOnly(access, method, url.pathname);
          const path = treePath(rest.slice(0, -1));
          const by = requester(req, access);
          if (rest.at(-1) === 'signal') return signals().signal(req, res, path, by);
          return signals().reload(res, path, by);
        }
        if (rest.length >= 2 && verb && verbs.includes(verb)) {
          expect('POST');
          adminOnly(access, method, url.pathname);
          return child(res, treePath(rest.slice(0, -1)), verb);
        }
        throw new ApiFailure(
          404,
          'unknown_route',
          `expected /v1/children/{path}/(start|stop|restart|signal|reload)`,
        );
      }
      case 'events':
        if (rest.length === 0) {
          expect('GET');
          return events(req, res, url, access);
        }
        break;
      case 'stats':
      case 'admissions':
        if (rest.length === 0) return observe(res, url, access, method, resource);
        break;
      case 'logs': {
        expect('GET');
        const path = treePath(rest);
        inScope(access, path);
        return logs(req, res, url, path);
      }
      case 'reconcile':
        adminOnly(access, method, url.pathname);
        if (!options.reconcile)
          throw new ApiFailure(404, 'unknown_route', `${url.pathname}: this tree cannot be reconciled`);
        return options.reconcile.handle(req, res, rest, method);
      case 'down':
        if (rest.length === 0) {
          expect('POST');
          adminOnly(access, method, url.pathname);
          // Streamed: the first line acknowledges, the last arrives once every process is gone.
          res.writeHead(202, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
          res.write(`${JSON.stringify({ state: 'stopping', pid: process.pid })}\n`);
          downing ??= options.down();
          await downing;
          res.end(`${JSON.stringify({ state: 'stopped' })}\n`);
          return;
        }
        break;
    }
    throw new ApiFailure(404, 'unknown_route', `${method} ${url.pathname} is not part of the API`);
  }

  /** A TCP caller's access, by its bearer token; throws the 401 or 403. */
  function authenticate(req: http.IncomingMessage, admin: Buffer): Access {
    let token = bearerToken(req);
    // The dashboard's cookie (web.ts) opens reads only: a cross-site form cannot act through it.
    const cookie = cookieToken(req);
    if (token === undefined && cookie !== undefined) {
      if (req.method !== 'GET' && req.method !== 'HEAD')
        throw new ApiFailure(
          403,
          'cookie_read_only',
          `${req.method} needs Authorization: Bearer TOKEN; the dashboard's login cookie opens reads only`,
        );
      token = cookie;
    }
    return accessOf(token, admin);
  }

  function accessOf(token: string | null | undefined, admin: Buffer): Access {
    if (token === undefined)
      throw new ApiFailure(
        401,
        'token_required',
        'the TCP control API needs Authorization: Bearer TOKEN (the admin token given to captree up --token-file, or a node admission token)',
      );
    if (token === null)
      throw new ApiFailure(401, 'bad_authorization', 'expected Authorization: Bearer TOKEN');
    if (timingSafeEqual(digest(token), admin)) return { kind: 'admin' };
    const nodes = options.scopesOf?.(token) ?? [];
    if (nodes.length > 0) return { kind: 'scoped', nodes };
    throw new ApiFailure(
      403,
      'token_rejected',
      "the token presented is neither this daemon's admin token nor the admission token of any node",
    );
  }

  // Once closing, a connection is dropped as soon as its last response is out: a keep-alive
  // socket would otherwise hold `server.close()` (and the daemon's exit) for seconds.
  let inFlight = 0;
  let closing = false;
  const tcp: http.Server[] = [];
  const servers = () => [server, ...tcp];
  const handler =
    (access: (req: http.IncomingMessage) => Access, admin: Buffer | null) =>
    (req: http.IncomingMessage, res: http.ServerResponse) => {
      inFlight++;
      res.once('close', () => {
        inFlight--;
        if (closing && inFlight === 0) for (const s of servers()) s.closeAllConnections();
      });
      const url = new URL(req.url ?? '/', 'http://captree');
      if (isStatic(url.pathname)) {
        const check = (token: string): string | null => {
          if (admin === null) return null;
          try {
            accessOf(token, admin);
            return null;
          } catch (err) {
            return (err as Error).message;
          }
        };
        serveStatic(req, res, url, check).catch((err: unknown) => sendError(res, err));
        return;
      }
      new Promise<Access>((resolve) => resolve(access(req)))
        .then((a) => route(req, res, a))
        .catch((err: unknown) => sendError(res, err));
    };
  const idle = new IdleCollector();
  const server = deadlineServer(
    UNIX_REQUEST_TIMEOUT_MS,
    handler(() => ({ kind: 'local' }), null),
    idle,
  );
  bound(server, UNIX_MAX_CONNECTIONS, null);
  const addressOf = (s: http.Server | undefined): string | null => {
    const a = s?.address();
    if (!a || typeof a !== 'object') return null;
    return `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  };
  // The `--listen` server, not the dashboard's (`--web`): `GET /v1/daemon`'s `tcp`.
  let api: http.Server | undefined;
  const tcpAddress = (): string | null => addressOf(api);
  return {
    server,
    async listenTcp({ host, port, token }, role = 'api') {
      if (token.trim() === '') throw new Error('the admin token is empty');
      const admin = digest(token);
      const s = deadlineServer(
        TCP_HEADERS_TIMEOUT_MS,
        handler((req) => authenticate(req, admin), admin),
        idle,
      );
      bound(s, TCP_MAX_CONNECTIONS, TCP_MAX_PER_PEER);
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(port, host, () => {
          s.off('error', reject);
          resolve();
        });
      });
      tcp.push(s);
      if (role === 'api') api = s;
      return addressOf(s) as string;
    },
    tcpAddress,
    async listen(socketPath) {
      await fs.rm(socketPath, { force: true });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(socketPath, () => {
          server.off('error', reject);
          resolve();
        });
      });
      await fs.chmod(socketPath, 0o600);
    },
    async close() {
      closing = true;
      idle.close();
      for (const res of streams) res.end();
      await Promise.all(
        servers().map(
          (s) =>
            new Promise<void>((resolve) => {
              if (!s.listening) return resolve();
              s.close(() => resolve());
              if (inFlight === 0) s.closeAllConnections();
              else s.closeIdleConnections();
            }),
        ),
      );
    },
  };
}

function pathOk(filter: JournalFilter, r: JournalRecord): boolean {
  return matches({ path: filter.path }, r);
}

/** Live lines come either as stored records or as bare text. */
function toRecord(line: string): LogRecord {
  const text = line.endsWith('\n') ? line.slice(0, -1) : line;
  return parseRecord(text) ?? { ts: Date.now(), stream: 'out', partial: false, text };
}

/**
 * Descriptors are the supervisor's to keep: anyone who can reach `--listen` could otherwise hold
 * thousands of idle connections (no token is needed to connect) until the next child exit fails
 * with EMFILE. So the API holds at most this many connections, a TCP peer at most a few, and a TCP
 * connection that has not sent its request (token included) in 10 s is closed.
 */
const TCP_MAX_CONNECTIONS = 256;
const TCP_MAX_PER_PEER = 16;
const TCP_HEADERS_TIMEOUT_MS = 10_000;
/**
 * Node's default `headersTimeout`, which the control socket had before request-deadline.ts; the
 * body now comes within it too (Node's `requestTimeout` was 300 s; the API's bodies are small).
 */
const UNIX_REQUEST_TIMEOUT_MS = 60_000;
/** The control socket is 0600 (its owner only), but a runaway script must not exhaust fds either. */
const UNIX_MAX_CONNECTIONS = 512;

function bound(server: http.Server, total: number, perPeer: number | null): void {
  server.maxConnections = total;
  if (perPeer === null) return;
  const peers = new Map<string, number>();
  server.on('connection', (socket) => {
    const peer = socket.remoteAddress ?? '';
    const n = (peers.get(peer) ?? 0) + 1;
    if (n > perPeer) {
      socket.destroy();
      return;
    }
    peers.set(peer, n);
    socket.once('close', () => {
      const left = (peers.get(peer) ?? 1) - 1;
      if (left <= 0) peers.delete(peer);
      else peers.set(peer, left);
    });
  });
}
