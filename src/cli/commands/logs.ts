/**
 * `captree logs [PATH]`: captured stdout and stderr, past and live. Without PATH, every process
 * child, each line prefixed with its path as `docker compose logs` does. Once the tree has
 * stopped (or failed to start) the files in the state directory are read directly.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { ControlClient } from '../../daemon/client.ts';
import { eachLine, urlPath } from '../../daemon/client.ts';
import { liveOwner } from '../../daemon/state.ts';
import { readLogSince } from '../../runtime/logs/capture.ts';
import { formatRecord, type LogRecord } from '../../runtime/logs/format.ts';
import {
  CliError,
  type Command,
  connect,
  display,
  findState,
  type Io,
  jsonOption,
  normalizePath,
  type Palette,
  palette,
  remoteOptions,
  resolvePath,
  sinceValue,
  stateOption,
  UsageError,
  type Values,
} from '../cli.ts';
import { closest } from '../suggest.ts';

interface Tagged extends LogRecord {
  path: string;
}

export const logs: Command = {
  name: 'logs',
  summary: 'print the output of every child, or of one; -f to follow',
  usage:
    'captree logs [PATH] [-f] [--since DURATION|ISO] [-n LINES] [--json] [--state DIR | --url URL --token-file FILE]',
  help: `
Prints captured output, oldest first, one record per line: time, stream (out, err, or sys for
captree's own notes such as exits), text. Without PATH, every process child's output merged,
each line prefixed with the child's path ("api    | ..."). PATH may be a unique child name
(worker) instead of a full path (/demo/worker). Output survives restarts and rotation (the last
files are kept), and stays readable once the tree has stopped or failed to start (read from
the state directory). --since keeps records at or after a time (30s, 5m, 2h, or an ISO time);
-n keeps the last LINES of each child. -f keeps printing new output until interrupted or the
tree stops. --json prints one JSON object per line: {ts, time, stream, partial, text, path}.

Example:
  captree logs
  captree logs api --since 5m
  captree logs -f -n 20 /demo/worker`,
  options: {
    follow: { type: 'boolean', short: 'f', description: 'keep printing new output' },
    since: { type: 'string', description: 'records at or after: 30s, 5m, 2h or an ISO time' },
    lines: { type: 'string', short: 'n', description: 'only the last LINES records (of each child)' },
    ...jsonOption,
    ...stateOption,
    ...remoteOptions,
  },
  positionals: [0, 1],
  async run({ values, positionals }, io) {
    const since = sinceValue(values);
    if (typeof values.lines === 'string' && !/^\d+$/.test(values.lines))
      throw new UsageError(`-n ${values.lines}: expected a number of lines`);
    const limit = typeof values.lines === 'string' ? Number(values.lines) : undefined;
    let client: ControlClient;
    try {
      ({ client } = await connect(values, io));
    } catch (err) {
      const paths = findState(values, io);
      if (!(err instanceof CliError) || typeof values.url === 'string' || liveOwner(paths) !== null)
        throw err;
      return offline(paths.dir, positionals[0], since, limit, values, io, err);
    }
    const p = palette(io.stdout, io.env);
    if (positionals[0] !== undefined) {
      const path = await resolvePath(client, positionals[0]);
      return stream(client, [path], since, limit, values, io, p, false);
    }
    const tree = await client.json<{ path: string; kind: string }[]>('/v1/tree');
    const processes = tree.filter((e) => e.kind === 'process').map((e) => e.path);
    if (processes.length === 0) throw new CliError('no process child in this tree has logs');
    return stream(client, processes, since, limit, values, io, p, true);
  },
};

function query(since: number | undefined, limit: number | undefined, follow: boolean): string {
  const q = new URLSearchParams();
  if (since !== undefined) q.set('since', String(since));
  if (limit !== undefined) q.set('limit', String(limit));
  if (follow) q.set('follow', '1');
  return q.size > 0 ? `?${q}` : '';
}

async function stream(
  client: ControlClient,
  paths: string[],
  since: number | undefined,
  limit: number | undefined,
  values: Values,
  io: Io,
  p: Palette,
  prefixed: boolean,
): Promise<number> {
  const follow = values.follow === true;
  const print = printer(paths, values, io, p, prefixed);
  const responses = await Promise.all(
    paths.map((path) =>
      client.open(`/v1/logs/${urlPath(path)}${query(since, limit, follow)}`, {
        headers: { accept: 'application/x-ndjson' },
      }),
    ),
  );
  const stop = () => {
    for (const res of responses) res.destroy();
  };
  process.once('SIGINT', stop);
  if (follow) {
    // Live: each child's lines as they come (each child's history first).
    await Promise.all(responses.map((res) => eachLine(res, (line) => print(JSON.parse(line) as Tagged))));
  } else {
    const all: Tagged[] = [];
    await Promise.all(responses.map((res) => eachLine(res, (line) => all.push(JSON.parse(line) as Tagged))));
    for (const r of all.sort((a, b) => a.ts - b.ts)) print(r);
  }
  process.off('SIGINT', stop);
  return 0;
}

const colours = (p: Palette) => [p.cyan, p.yellow, p.green, p.red, p.bold];

/** One record as a line: verbatim for one child, `db   | …` (compose style) for several. */
function printer(
  paths: string[],
  values: Values,
  io: Io,
  p: Palette,
  prefixed: boolean,
): (r: Tagged) => void {
  const short = (path: string) => path.split('/').slice(2).join('/') || path;
  const width = Math.max(...paths.map((x) => short(x).length));
  const colourOf = new Map(paths.map((x, i) => [x, colours(p)[i % 5]!]));
  return (r) => {
    if (values.json) {
      const { ts, stream, partial, text, path } = r;
      io.stdout.write(
        `${JSON.stringify({ ts, time: new Date(ts).toISOString(), stream, partial, text, path })}\n`,
      );
      return;
    }
    const line = formatRecord(r);
    if (!prefixed) io.stdout.write(line);
    else io.stdout.write(`${(colourOf.get(r.path) ?? p.cyan)(`${short(r.path).padEnd(width)} |`)} ${line}`);
  };
}

/** The tree is not running: its log files are still in the state directory. */
async function offline(
  stateDir: string,
  given: string | undefined,
  since: number | undefined,
  limit: number | undefined,
  values: Values,
  io: Io,
  notRunning: CliError,
): Promise<number> {
  const dir = join(stateDir, 'logs');
  let names: string[];
  try {
    names = readdirSync(dir)
      .filter((f) => f.endsWith('.log'))
      .map((f) => f.slice(0, -'.log'.length));
  } catch {
    throw notRunning;
  }
  const all = names.map((n) => `/${n.replaceAll('.', '/')}`).sort();
  let paths = all;
  if (given !== undefined) {
    const wanted = normalizePath(given);
    const match = all.filter((x) => x === wanted || x.endsWith(wanted));
    if (match.length === 0)
      throw new CliError(
        `no log of ${wanted} in ${display(dir, io.cwd)}${nearest(wanted, all)} (the tree is not running)`,
      );
    if (match.length > 1) throw new UsageError(`'${given}' is ambiguous: ${match.join(', ')}`);
    paths = match;
  }
  io.stderr.write(`captree: the tree is not running; its logs, from ${display(dir, io.cwd)}:\n`);
  const print = printer(paths, values, io, palette(io.stdout, io.env), given === undefined);
  const records: Tagged[] = [];
  for (const path of paths) {
    const found = await readLogSince(dir, path.slice(1).replaceAll('/', '.'), since ?? 0, {
      ...(limit === undefined ? {} : { limit }),
    });
    for (const r of found) records.push({ ...r, path });
  }
  for (const r of records.sort((a, b) => a.ts - b.ts)) print(r);
  return 0;
}

/** ` (did you mean /demo/worker?)` for `/wrker`: by the last segment, as for a running tree. */
function nearest(wanted: string, paths: string[]): string {
  const byName = new Map(paths.map((p) => [p.split('/').at(-1)!, p]));
  const name = closest(wanted.split('/').at(-1)!, byName.keys());
  return name === undefined ? '' : ` (did you mean ${byName.get(name)}?)`;
}
