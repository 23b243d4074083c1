/**
 * What every command shares: the command shape, argument parsing with usage errors (exit 2),
 * failures (exit 1, one actionable line on stderr), finding the running tree's state dir, and
 * colour (only on a TTY, never with NO_COLOR).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { type ParseArgsOptionDescriptor, parseArgs } from 'node:util';
// The daemon's modules one by one, not its index: a command must not load the whole daemon.
import { type ApiReply, ControlClient, NotRunningError } from '../daemon/client.ts';
import { liveOwner, STATE_DIR_NAME, type StatePaths, statePaths } from '../daemon/state.ts';
import { parseSince } from '../daemon/time.ts';
import type { DaemonInfo } from '../daemon/types.ts';
import { closest, didYouMean } from './suggest.ts';

/** `hidden`: accepted, but not listed by `--help` (internal plumbing). */
export type Option = ParseArgsOptionDescriptor & { description?: string; hidden?: boolean };
export type Options = Record<string, Option>;
export type Values = Record<string, string | boolean | string[] | boolean[] | undefined>;

export interface Io {
  readonly stdout: NodeJS.WriteStream;
  readonly stderr: NodeJS.WriteStream;
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string;
}

export interface Parsed {
  readonly values: Values;
  readonly positionals: string[];
}

export interface Command {
  readonly name: string;
  /** One line for `captree --help`. */
  readonly summary: string;
  /** `captree ps [--json] [--state DIR]` */
  readonly usage: string;
  /** The body of `--help`: what it does, options, an example. */
  readonly help: string;
  readonly options: Options;
  /** Allowed number of positionals [min, max]. */
  readonly positionals: readonly [number, number];
  run(args: Parsed, io: Io): Promise<number>;
}

/** A mistake in how the command was called: exit 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** A failure the user can act on: exit 1 with `captree: <message>`. */
export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}

export const stateOption: Options = {
  state: { type: 'string', description: 'state directory of the tree (default: ./.captree)' },
};
export const jsonOption: Options = { json: { type: 'boolean', description: 'machine-readable output' } };
/** Talking to a tree on TCP (`captree up --listen`) instead of through its state dir. */
export const remoteOptions: Options = {
  url: {
    type: 'string',
    description: 'the control API on TCP (http://HOST:PORT, see up --listen) instead of the state dir',
  },
  'token-file': {
    type: 'string',
    description:
      "file whose content is the bearer token (with --url: the admin token or a node's admission token)",
  },
};

/** The content of `--token-file`, trimmed; undefined without one. */
export function tokenFromFile(values: Values, io: Io): string | undefined {
  const file = values['token-file'];
  if (typeof file !== 'string') return undefined;
  let token: string;
  try {
    token = readFileSync(path.resolve(io.cwd, file), 'utf8').trim();
  } catch (err) {
    throw new UsageError(`--token-file: ${(err as Error).message}`);
  }
  if (token === '') throw new UsageError(`--token-file ${file}: the file is empty`);
  return token;
}

export function parseCommand(cmd: Command, argv: string[]): Parsed & { help: boolean } {
  const known = { ...cmd.options, help: { type: 'boolean', short: 'h' } } as Options;
  checkFlags(argv, known);
  let parsed: { values: Values; positionals: string[] };
  try {
    parsed = parseArgs({
      args: argv,
      options: Object.fromEntries(
        Object.entries({ ...cmd.options, help: { type: 'boolean', short: 'h' } } as Options).map(
          ([name, { description: _, hidden: __, ...o }]) => [name, o],
        ),
      ),
      allowPositionals: true,
      strict: true,
    }) as { values: Values; positionals: string[] };
  } catch (err) {
    throw new UsageError(ourWords(err as Error & { code?: string }));
  }
  const help = parsed.values.help === true;
  if (!help) {
    const [min, max] = cmd.positionals;
    const n = parsed.positionals.length;
    if (n < min) throw new UsageError(`missing argument: usage: ${cmd.usage}`);
    if (n > max)
      throw new UsageError(`unexpected argument '${parsed.positionals[max]}': usage: ${cmd.usage}`);
  }
  return { ...parsed, help };
}

/** Unknown flags in our words with the nearest known one, before Node's parser sees them. */
function checkFlags(argv: string[], known: Options): void {
  const longs = Object.keys(known).map((n) => `--${n}`);
  const shorts = new Map(Object.entries(known).flatMap(([n, o]) => (o.short ? [[`-${o.short}`, n]] : [])));
  for (const arg of argv) {
    if (arg === '--') return;
    if (arg.startsWith('--')) {
      const flag = arg.split('=')[0]!;
      if (!longs.includes(flag)) throw new UsageError(`unknown option ${flag}${didYouMean(flag, longs)}`);
    } else if (/^-[^-\d]/.test(arg)) {
      for (const ch of arg.slice(1)) {
        if (!shorts.has(`-${ch}`))
          throw new UsageError(`unknown option -${ch}${didYouMean(`--${ch}`, longs)}`);
        if (known[shorts.get(`-${ch}`)!]!.type === 'string') break;
      }
    }
  }
}

/** Node's parseArgs messages quote its own syntax ("Option '--state <value>' argument missing"). */
function ourWords(err: Error & { code?: string }): string {
  const first = err.message.split('\n')[0] ?? String(err);
  const flag = /'(-[-\w]+)/.exec(first)?.[1];
  if (err.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && flag) {
    return first.includes('argument missing') ? `${flag} needs a value` : `${flag} takes no value`;
  }
  if (err.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') return 'unexpected argument';
  return first.replace(/^Option /, 'option ');
}

export function helpText(cmd: Command): string {
  const lines = [`Usage: ${cmd.usage}`, '', cmd.help.trim(), '', 'Options:'];
  const entries = Object.entries({ ...cmd.options, help: { type: 'boolean', short: 'h' } } as Options).filter(
    ([, o]) => !o.hidden,
  );
  const rows = entries.map(([name, o]) => {
    const flag = `${o.short ? `-${o.short}, ` : '    '}--${name}${o.type === 'string' ? ' VALUE' : ''}`;
    const description = name === 'help' ? 'show this help' : (o.description ?? '');
    return [flag, description] as const;
  });
  const width = Math.max(...rows.map(([f]) => f.length));
  for (const [flag, description] of rows) lines.push(`  ${flag.padEnd(width)}  ${description}`);
  return `${lines.join('\n')}\n`;
}

/** A path shown relative to the current directory when it is below it: `./.captree`. */
export function display(p: string, cwd: string): string {
  const rel = path.relative(cwd, p);
  if (rel === '') return '.';
  return rel.startsWith('..') || path.isAbsolute(rel) ? p : `./${rel}`;
}

/** The state dir a command other than `up` talks to: `--state DIR` or `./.captree`. */
export function findState(values: Values, io: Io): StatePaths {
  const dir = typeof values.state === 'string' ? values.state : STATE_DIR_NAME;
  return statePaths(path.resolve(io.cwd, dir));
}

/** A connection to the running tree: the daemon's info is null for an admission token (not admin). */
export interface Connection {
  client: ControlClient;
  paths: StatePaths;
  info: DaemonInfo | null;
}

/** A client for the running tree, or a one-line explanation of why there is none. */
export async function connect(values: Values, io: Io): Promise<Connection> {
  if (typeof values.url === 'string') return connectRemote(values.url, values, io);
  const paths = findState(values, io);
  const client = new ControlClient(paths.socket);
  let info: DaemonInfo;
  try {
    info = await client.json<DaemonInfo>('/v1/daemon');
  } catch (err) {
    if (err instanceof NotRunningError) throw notRunning(paths, io);
    throw err;
  }
  return { client, paths, info };
}

/**
 * `--url`: a client on TCP with the `--token-file` token. An admission token is refused
 * `/v1/daemon` (admin only), which still proves the daemon is there and knows the token.
 */
async function connectRemote(url: string, values: Values, io: Io): Promise<Connection> {
  if (typeof values.state === 'string') throw new UsageError('--url and --state exclude each other');
  const token = tokenFromFile(values, io);
  let client: ControlClient;
  try {
    client = new ControlClient({ url, ...(token === undefined ? {} : { token }) });
  } catch (err) {
    throw new UsageError(`--url ${(err as Error).message}`);
  }
  let reply: Awaited<ReturnType<ControlClient['request']>>;
  try {
    reply = await client.request('GET', '/v1/daemon');
  } catch (err) {
    if (err instanceof NotRunningError)
      throw new CliError(`nothing answers at ${client.socket} (is the tree up with: captree up --listen?)`);
    throw new CliError(`cannot reach ${client.socket}: ${(err as Error).message}`);
  }
  const code = (reply.body?.error as { code?: string; message?: string } | undefined)?.code;
  if (reply.status === 401)
    throw new CliError(
      `${client.socket} asks for a token: --token-file FILE (the admin token, or a node's admission token)`,
    );
  if (reply.status !== 200 && !(reply.status === 403 && code === 'admin_only')) {
    const message = (reply.body?.error as { message?: string } | undefined)?.message;
    throw new CliError(`${client.socket}: ${message ?? `HTTP ${reply.status}`}`);
  }
  const info = reply.status === 200 ? (reply.body as unknown as DaemonInfo) : null;
  // No state dir here: its paths are the daemon's (admin) or placeholders (admission token).
  return { client, paths: statePaths(info?.stateDir ?? path.resolve(io.cwd, STATE_DIR_NAME)), info };
}

/** An error answer of `client.request` as a failure: its message, or its HTTP status. */
export function replyError(reply: ApiReply): CliError {
  const error = reply.body?.error as { message?: string } | undefined;
  return new CliError(error?.message ?? `the daemon answered HTTP ${reply.status}`);
}

export function notRunning(paths: StatePaths, io: Io): CliError {
  const dir = display(paths.dir, io.cwd);
  const owner = existsSync(paths.pidFile) ? liveOwner(paths) : null;
  if (owner !== null) {
    return new CliError(
      `daemon pid ${owner} owns ${dir} but does not answer on control.sock (see ${display(paths.log, io.cwd)}; stop it with: kill ${owner})`,
    );
  }
  const elsewhere = typeof io.env.CAPTREE_NO_SEARCH === 'string' ? [] : runningBelow(io.cwd);
  if (elsewhere.length > 0) {
    const where = elsewhere.map((d) => `--state ${display(d, io.cwd).replace(/^\.\//, '')}`).join(' or ');
    return new CliError(`no running tree in ${dir}; one is running below: add ${where}`);
  }
  return new CliError(`no running tree in ${dir} (start one with: captree up)`);
}

const skipDirs = new Set(['node_modules', '.git', STATE_DIR_NAME, 'dist']);

/**
 * State dirs of live daemons below `cwd` (a few levels, the usual `captree up sub/captree.yaml`
 * from a project root): `ps` run where `up` was run then says where the tree is.
 */
export function runningBelow(cwd: string, depth = 3): string[] {
  const found: string[] = [];
  const walk = (dir: string, left: number) => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      const sub = path.join(dir, e.name);
      if (e.name === STATE_DIR_NAME) {
        if (dir !== cwd && liveOwner(statePaths(sub)) !== null) found.push(sub);
      } else if (left > 0 && !skipDirs.has(e.name) && !e.name.startsWith('.')) walk(sub, left - 1);
    }
  };
  walk(cwd, depth);
  return found.sort();
}

/** `/demo/db` from `/demo/db`, `demo/db` or `demo/db/`. */
export function normalizePath(p: string): string {
  const parts = p.split('/').filter((s) => s !== '');
  if (parts.length === 0) throw new UsageError(`not a tree path: '${p}' (e.g. /demo/db)`);
  return `/${parts.join('/')}`;
}

/**
 * The tree path a user meant: an exact path, or a unique child name or path suffix (`worker`,
 * `api/db`) as in `docker compose logs worker`; else an error with the nearest path.
 */
export async function resolvePath(client: ControlClient, given: string): Promise<string> {
  const wanted = normalizePath(given);
  const paths = (await client.json<{ path: string }[]>('/v1/tree')).map((e) => e.path);
  if (paths.includes(wanted)) return wanted;
  const matches = paths.filter((p) => p.endsWith(wanted));
  if (matches.length === 1) return matches[0]!;
  if (matches.length > 1) throw new UsageError(`'${given}' is ambiguous: ${matches.join(', ')}`);
  const names = new Map(paths.map((p) => [p.split('/').at(-1)!, p]));
  const near = closestPath(wanted, names);
  // A full path the listing lacks, with nothing near it: the listing may be a token's subtree
  // only, so the daemon answers (not found, or out of this token's scope) in its own words.
  if (near === undefined && given.startsWith('/')) return wanted;
  return Promise.reject(
    new CliError(
      `no child ${wanted} in this tree${near ? ` (did you mean ${near}?)` : ''} (see: captree ps)`,
    ),
  );
}

function closestPath(wanted: string, names: Map<string, string>): string | undefined {
  const name = closest(wanted.split('/').at(-1)!, names.keys());
  return name === undefined ? undefined : names.get(name);
}

export interface Palette {
  readonly enabled: boolean;
  bold(s: string): string;
  dim(s: string): string;
  red(s: string): string;
  green(s: string): string;
  yellow(s: string): string;
  cyan(s: string): string;
}

/** Colour only on a TTY and never with NO_COLOR (https://no-color.org) or TERM=dumb. */
export function palette(stream: NodeJS.WriteStream, env: NodeJS.ProcessEnv): Palette {
  const enabled = stream.isTTY === true && !env.NO_COLOR && env.TERM !== 'dumb';
  const wrap = (open: number, close: number) => (s: string) =>
    enabled ? `\x1b[${open}m${s}\x1b[${close}m` : s;
  return {
    enabled,
    bold: wrap(1, 22),
    dim: wrap(2, 22),
    red: wrap(31, 39),
    green: wrap(32, 39),
    yellow: wrap(33, 39),
    cyan: wrap(36, 39),
  };
}

/** Parses `--since` on the client, so a duration means "before now" on this machine's clock. */
export function sinceValue(values: Values): number | undefined {
  return typeof values.since === 'string' ? parseSinceOrThrow(values.since) : undefined;
}

function parseSinceOrThrow(text: string): number {
  const since = parseSince(text);
  if (since === undefined) {
    throw new UsageError(
      `--since ${text}: expected a duration (30s, 5m, 2h) or an ISO time (2025-01-31T12:00:00Z)`,
    );
  }
  return since;
}
