/**
 * `captree signal` and `captree reload` in the control API:
 *
 * - `POST /v1/children/{path}/signal` with `{ signal: "SIGHUP" }` (a name, with or without
 *   `SIG`, or a number) → `200 { path, signal, pid }`: the signal was sent to the child's main
 *   process, the program its `command` started (`pid` on the host), not to what it forked and
 *   not to the launcher's helpers around a confined child (runtime/main-process.ts).
 * - `POST /v1/children/{path}/reload` → `200 { path, reload, pid, result }`: the child's
 *   `reload:` carried out: its signal sent to the main process as above, or its command run in
 *   the child's confinement (runtime/run-in-child.ts) and exited 0 within its timeout.
 *
 * Errors: `400 bad_signal` (unknown name), `404 not_found`, `409 not_a_process` (a node, a task),
 * `409 not_running`, `409 no_main_process` (it exited 0 leaving daemons behind), `409
 * no_reload` (none declared), `422 reload_failed` (the command failed or timed out; its output
 * is in the child's log). Each request that reached a child is journaled (`signalled`,
 * `reloaded`) with who asked.
 */
import type * as http from 'node:http';
import type { Reload } from '../manifest/index.ts';
import { mainProcess } from '../runtime/main-process.ts';
import { describeRun } from '../runtime/run-in-child.ts';
import { sendJson } from './http-util.ts';
import type { DaemonEvent } from './journal.ts';
import { ApiFailure } from './server.ts';
import { SIGNAL_NAMES, signalNamed } from './signals.ts';
import type { RunningTree } from './types.ts';

const MAX_BODY = 4096;

export interface SignalEndpoint {
  signal(req: http.IncomingMessage, res: http.ServerResponse, path: string, by: string): Promise<void>;
  reload(res: http.ServerResponse, path: string, by: string): Promise<void>;
}

type Record = (event: DaemonEvent) => void;

/**
 * Who asked, for the journal. Only the socket's owner can connect to it (0600), so "the control
 * socket" names a user; what the client adds (`X-Captree-Client`: command, user, pid) is as it
 * says. Over TCP only the admin token may signal (and the peer's address is known).
 */
export function requester(req: http.IncomingMessage, access: { kind: string }): string {
  const raw = req.headers['x-captree-client'];
  const client = ((Array.isArray(raw) ? raw[0] : raw) ?? '').replace(/[^\x20-\x7e]/g, '').slice(0, 160);
  const via =
    access.kind === 'local'
      ? `the control socket (uid ${process.getuid?.() ?? '?'})`
      : `the admin token from ${req.socket.remoteAddress}:${req.socket.remotePort}`;
  return client === '' ? via : `${via}, ${client}`;
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= MAX_BODY) chunks.push(c);
    });
    req.on('end', () => {
      if (size > MAX_BODY)
        reject(new ApiFailure(413, 'too_large', `a request body is at most ${MAX_BODY} bytes`));
      else resolve(Buffer.concat(chunks).toString('utf8'));
    });
    req.on('error', reject);
  });
}

async function signalOf(req: http.IncomingMessage): Promise<NodeJS.Signals> {
  let body: unknown;
  try {
    body = JSON.parse((await readBody(req)) || 'null');
  } catch (err) {
    throw new ApiFailure(400, 'bad_json', `the body is not JSON: ${(err as Error).message}`);
  }
  const given = (body as { signal?: unknown } | null)?.signal;
  if (typeof given !== 'string' && typeof given !== 'number')
    throw new ApiFailure(400, 'bad_signal', 'expected a body { "signal": "SIGHUP" }');
  const signal = signalNamed(String(given));
  if (signal === null)
    throw new ApiFailure(
      400,
      'bad_signal',
      `unknown signal ${String(given)}: expected a name like SIGHUP or a number (one of ${SIGNAL_NAMES.join(', ')})`,
    );
  return signal;
}

export function signalEndpoint(tree: RunningTree, record: Record): SignalEndpoint {
  const now = () => tree.supervisor.clock.now();

  /** The running process child at `path` and its main process's host pid, or the error. */
  function target(path: string): { main: number } {
    const entry = tree.supervisor.tree().find((e) => e.path === path);
    if (!entry) throw new ApiFailure(404, 'not_found', `no child ${path} in this tree (see: captree ps)`);
    if (entry.kind !== 'process')
      throw new ApiFailure(
        409,
        'not_a_process',
        `${path} is a ${entry.kind}: only a process child has a main process to signal`,
      );
    if (entry.pid === null)
      throw new ApiFailure(
        409,
        'not_running',
        `${path} is ${entry.state}, no process runs (start it with: captree start ${path})`,
      );
    const main = mainProcess(entry.pid);
    if (main === null)
      throw new ApiFailure(
        409,
        'no_main_process',
        `${path}: its main process has exited (what it left running is still supervised); nothing to signal`,
      );
    return { main };
  }

  function send(path: string, main: number, signal: NodeJS.Signals): void {
    try {
      process.kill(main, signal);
    } catch (err) {
      throw new ApiFailure(409, 'not_running', `${path}: pid ${main} is gone (${(err as Error).message})`);
    }
  }

  return {
    async signal(req, res, path, by) {
      const signal = await signalOf(req);
      const { main } = target(path);
      send(path, main, signal);
      record({ type: 'signalled', path, at: now(), signal, pid: main, by });
      sendJson(res, 200, { path, signal, pid: main });
    },

    async reload(res, path, by) {
      const declared: Reload | null = tree.reloadOf?.(path) ?? null;
      const { main } = target(path);
      if (declared === null)
        throw new ApiFailure(
          409,
          'no_reload',
          `${path} declares no reload: add reload: SIGHUP (a signal) or reload: [COMMAND, ...] to it in the manifest, or send a signal with: captree signal ${path} SIGNAL`,
        );
      if (declared.type === 'signal') {
        send(path, main, declared.signal);
        const result = `sent ${declared.signal}`;
        record({ type: 'reloaded', path, at: now(), how: declared.signal, pid: main, by, ok: true, result });
        sendJson(res, 200, { path, reload: declared, pid: main, result });
        return;
      }
      const how = declared.command.join(' ');
      if (!tree.runInChild)
        throw new ApiFailure(409, 'not_a_process', `${path}: this tree cannot run commands in its children`);
      const startedAt = new Date().toISOString();
      let result: string;
      let ok = false;
      try {
        const run = await tree.runInChild(
          path,
          main,
          declared.command,
          declared.timeout,
          `reload: running ${how} (asked by ${by})`,
        );
        ok = run.code === 0;
        result = describeRun(declared.command, run, declared.timeout);
      } catch (err) {
        result = `could not run ${how}: ${(err as Error).message}`;
      }
      record({ type: 'reloaded', path, at: now(), how, pid: main, by, ok, result });
      if (!ok)
        throw new ApiFailure(
          422,
          'reload_failed',
          `${path}: reload failed: ${result} (its output: captree logs ${path} --since ${startedAt})`,
        );
      sendJson(res, 200, { path, reload: declared, pid: main, result });
    },
  };
}
