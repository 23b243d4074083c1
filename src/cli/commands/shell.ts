/**
 * `captree shell NODE [-- COMMAND...]`: an interactive shell admitted into NODE as a child, so
 * it runs inside that node's confinement (cgroup, network, filesystem view) with what NODE's
 * admission template grants and nothing NODE was not granted. See docs/shell.md.
 *
 * 1. Listen on a unix socket under the state dir (`shells/<name>.sock`, mode 0600).
 * 2. `POST /v1/nodes/NODE/children` a temporary child `shell-<user>-<n>` whose command is
 *    `ptyrelay SOCKET -- <login shell>`; the node's template is merged under it by the daemon.
 * 3. The relay, started inside the child, connects back; this side puts the terminal in raw
 *    mode and relays (input, window size, output) until the relay reports the shell's exit.
 * 4. Restore the terminal, `DELETE /v1/children/PATH` (its budget returns to NODE), exit with
 *    the shell's exit code (128 + signal when it was killed).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { type ApiReply, urlPath } from '../../daemon/client.ts';
import { ptyrelayBinary } from '../../runtime/pty/build.ts';
import { RelayListener, relaySession, type SessionEnd } from '../../runtime/pty/session.ts';
import { CliError, type Command, connect, display, jsonOption, normalizePath, stateOption } from '../cli.ts';

/** The reasons of an error reply, one per line. */
function reasonsOf(reply: ApiReply): string[] {
  const body = reply.body ?? {};
  const reasons = body.reasons;
  if (Array.isArray(reasons) && reasons.length > 0) {
    return reasons.map((r: { path?: string; field?: string; message?: string }) => {
      const subject = [r.path, r.field].filter((p) => p).join(' ');
      return `${subject ? `${subject}: ` : ''}${r.message ?? ''}`;
    });
  }
  const error = body.error as { message?: string } | undefined;
  return (error?.message ?? `HTTP ${reply.status}`).split('\n');
}

function errorCode(reply: ApiReply): string {
  return ((reply.body?.error as { code?: string } | undefined)?.code ?? '') as string;
}

/** The user's login shell: $SHELL, else passwd's, else /bin/sh. */
function loginShell(env: NodeJS.ProcessEnv): string {
  if (env.SHELL?.startsWith('/')) return env.SHELL;
  try {
    const uid = process.getuid?.();
    for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const f = line.split(':');
      if (f[2] === String(uid) && f[6]?.startsWith('/')) return f[6];
    }
  } catch {
    // no passwd
  }
  return '/bin/sh';
}

/** A child name part from the user name: letters, digits, `_.-` only. */
function userPart(): string {
  let name = 'user';
  try {
    name = userInfo().username;
  } catch {
    // no passwd entry
  }
  return name.replace(/[^A-Za-z0-9_.-]/g, '_').replace(/^[^A-Za-z0-9]+/, '') || 'user';
}

/**
 * A directory of this session's own (the relay's socket, and the views the relay hides
 * directories with): under the state dir, or a private temp dir if the socket path would be too
 * long for a unix socket address. Removed after the session.
 */
function sessionDir(stateDir: string, name: string): string {
  const parent = join(stateDir, 'shells');
  // Unique: another `captree shell` may be trying the same name right now. The client's pid
  // is in the name so that a session whose client was killed (-9) is swept by the next one.
  const dir = join(parent, `${name}.${process.pid}.${randomBytes(4).toString('hex')}`);
  if (Buffer.byteLength(join(dir, 'relay.sock')) > 100) return mkdtempSync(join(tmpdir(), 'captree-shell-'));
  mkdirSync(parent, { recursive: true, mode: 0o700 });
  sweepSessions(parent);
  mkdirSync(dir, { mode: 0o700 });
  return dir;
}

/** Removes the session dirs of clients that no longer run (`<name>.<pid>.<rand>`). */
export function sweepSessions(parent: string): void {
  let entries: string[];
  try {
    entries = readdirSync(parent);
  } catch {
    return;
  }
  for (const entry of entries) {
    const pid = Number(/\.(\d+)\.[0-9a-f]{8}$/.exec(entry)?.[1]);
    if (!Number.isInteger(pid) || pid <= 0 || alive(pid)) continue;
    rmSync(join(parent, entry), { recursive: true, force: true });
  }
}

/** Running: it exists and is not a zombie waiting for a parent that may never reap it. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

const ACCEPT_TIMEOUT_MS = 15_000;

export const shell: Command = {
  name: 'shell',
  summary: "an interactive shell confined by a node's grant",
  usage: 'captree shell NODE [--cpu N] [--memory SIZE] [--json] [--state DIR] [-- COMMAND [ARG...]]',
  help: `
Asks NODE (which must declare 'admission:') for a shell: a temporary child named
shell-<user>-<n>, merged with NODE's admission template, so the shell runs in NODE's cgroup,
network and filesystem view with what the template grants (e.g. a network, a read-only view
of the project) and nothing NODE was not granted (no secrets, no internet unless granted).
Your terminal is in raw mode while the shell runs: Ctrl-C, Ctrl-Z and Ctrl-D go to the shell.
Exiting the shell returns its budget to NODE; 'captree shell' exits with the shell's code.
When NODE has no room left, every reason is printed, one per line, and the exit code is 1.
With --json, a refusal is printed as the API's JSON error instead.

Example:
  captree shell /devbox/shells
  captree shell /devbox/shells --cpu 0.5 -- make test`,
  options: {
    cpu: { type: 'string', description: 'cores to reserve (default: the template’s)' },
    memory: { type: 'string', description: 'memory to reserve, e.g. 256Mi (default: the template’s)' },
    ...jsonOption,
    ...stateOption,
  },
  positionals: [1, Number.POSITIVE_INFINITY],
  async run({ values, positionals }, io) {
    const node = normalizePath(positionals[0]!);
    const command = positionals.length > 1 ? positionals.slice(1) : [loginShell(io.env), '-l'];
    const { client, paths } = await connect(values, io);
    const relay = await ptyrelayBinary();
    const stdin = process.stdin;
    const stdout = process.stdout;

    const requires: Record<string, string | number> = {};
    if (typeof values.cpu === 'string')
      requires.cpu = /^\d+(\.\d+)?$/.test(values.cpu) ? Number(values.cpu) : values.cpu;
    if (typeof values.memory === 'string') requires.memory = values.memory;
    const env: Record<string, string> = { TERM: io.env.TERM || 'xterm-256color' };
    for (const name of ['COLORTERM', 'LANG', 'LC_ALL']) {
      const v = io.env[name];
      if (v) env[name] = v;
    }
    const user = userPart();

    // The next free shell-<user>-<n>; a name taken meanwhile (another shell) moves on to n+1.
    const tree = await client.request('GET', '/v1/tree');
    const prefix = `${node}/shell-${user}-`;
    let n = 1;
    for (const e of (Array.isArray(tree.body) ? tree.body : []) as { path: string }[]) {
      if (e.path.startsWith(prefix)) n = Math.max(n, Number(e.path.slice(prefix.length)) + 1 || n);
    }

    let listener: RelayListener | null = null;
    let session = '';
    const cleanup = () => rmSync(session, { recursive: true, force: true });
    let path = '';
    for (let attempt = 0; ; attempt++) {
      const name = `shell-${user}-${n}`;
      session = sessionDir(paths.dir, name);
      listener = await RelayListener.listen(join(session, 'relay.sock'));
      const spec = {
        name,
        // The launcher confines the shell as it does every child (PID and mount namespaces, the
        // state dir covered, cgroupfs and, without `root`, the host's files read-only, no
        // capabilities). The relay's own user namespace would add nothing but a false `nobody`
        // (an unmapped uid that still owns root's files): the shell is who `id` says it is.
        command: [relay, '--no-isolate', listener.path, '--', ...command],
        restart: 'temporary',
        env,
        ...(Object.keys(requires).length > 0 ? { requires } : {}),
      };
      let reply: ApiReply;
      try {
        reply = await client.request('POST', `/v1/nodes/${urlPath(node)}/children`, {
          requestId: `shell-${randomUUID()}`,
          spec,
        });
      } catch (err) {
        listener.close();
        cleanup();
        throw err;
      }
      if (reply.status === 201) {
        path = typeof reply.body?.path === 'string' ? reply.body.path : `${node}/${name}`;
        break;
      }
      listener.close();
      cleanup();
      if (errorCode(reply) === 'duplicate_name' && attempt < 20) {
        n++;
        continue;
      }
      if (values.json) {
        io.stdout.write(`${JSON.stringify(reply.body ?? { status: reply.status }, null, 2)}\n`);
        return 1;
      }
      const reasons = reasonsOf(reply);
      const head = `no shell in ${node}:`;
      if (reasons.length === 1) throw new CliError(`${head} ${reasons[0]}`);
      io.stderr.write(`captree: ${head}\n${reasons.map((r) => `captree:   ${r}\n`).join('')}`);
      return 1;
    }

    const revoke = async () => {
      const r = await client.request('DELETE', `/v1/children/${urlPath(path)}`).catch(() => null);
      // 404: the temporary child already ended and gave its budget back on its own.
      return r === null || r.status < 300 || r.status === 404;
    };

    let socket: import('node:net').Socket;
    try {
      socket = await listener.accept(ACCEPT_TIMEOUT_MS);
    } catch (err) {
      listener.close();
      await revoke();
      cleanup();
      throw new CliError(
        `the shell ${path} did not connect back (${(err as Error).message}); see: captree logs ${path}`,
      );
    }
    listener.close();

    // Signals to this process (its terminal closed, a kill) end the session like a hangup.
    let signalled: NodeJS.Signals | null = null;
    const onSignal = (sig: NodeJS.Signals) => {
      signalled = sig;
      socket.destroy();
    };
    const signals: NodeJS.Signals[] = ['SIGHUP', 'SIGTERM', 'SIGINT'];
    for (const s of signals) process.on(s, onSignal);
    let end: SessionEnd;
    try {
      end = await relaySession(socket, { input: stdin, output: stdout });
    } finally {
      for (const s of signals) process.off(s, onSignal);
    }
    socket.end();
    const revoked = await revoke();
    socket.destroy();
    cleanup();
    if (!revoked)
      io.stderr.write(`captree: could not revoke ${path}; remove it with: captree revoke ${path}\n`);
    if (signalled) return 128 + ({ SIGHUP: 1, SIGINT: 2, SIGTERM: 15 } as Record<string, number>)[signalled]!;
    if (end.kind === 'exit') return end.exitCode;
    if (end.kind === 'error') throw new CliError(`the shell ${path} failed: ${end.message}`);
    throw new CliError(
      `lost the connection to the shell ${path} (see: captree logs ${path}, ${display(paths.log, io.cwd)})`,
    );
  },
};
