/** `captree events`: the journal of engine events, past (`--since`) and live (`-f`). */
import { existsSync } from 'node:fs';
import { type ControlClient, eachEvent } from '../../daemon/client.ts';
import { type JournalRecord, readJournal } from '../../daemon/journal.ts';
import {
  CliError,
  type Command,
  connect,
  findState,
  type Io,
  jsonOption,
  normalizePath,
  palette,
  remoteOptions,
  sinceValue,
  stateOption,
  UsageError,
  type Values,
} from '../cli.ts';
import { eventLine } from '../render.ts';

export const events: Command = {
  name: 'events',
  summary: 'print supervision events from the journal; -f to follow',
  usage:
    'captree events [-f] [-n N] [--since DURATION|ISO] [--path PREFIX] [--json] [--state DIR | --url URL --token-file FILE]',
  help: `
Prints the events of the tree's journal (starts, readiness, exits with their reason,
restarts, escalations, stops), oldest first, one per line: time, path, what happened.
--since keeps the events at or after a time: a duration back from now (30s, 5m, 2h) or an ISO
time. --path keeps the events about a path and everything below it. -n keeps only the last N
of them (read from the end of the journal, whatever its size). -f keeps printing new events
until the tree stops (with -f and no --since or -n, only new ones). Without -f it also works
after the tree stopped, from STATE/journal.jsonl. --json prints a JSON
array, or with -f one JSON object per line. With --url and a node's admission token, only
the events of that node's subtree are shown.

Example:
  captree events --since 10m --path /demo/db
  captree events -n 20
  captree events -f --json`,
  options: {
    follow: { type: 'boolean', short: 'f', description: 'keep printing new events' },
    since: { type: 'string', description: 'events at or after: 30s, 5m, 2h or an ISO time' },
    lines: { type: 'string', short: 'n', description: 'only the last N events' },
    path: { type: 'string', description: 'events about this path and below' },
    ...jsonOption,
    ...stateOption,
    ...remoteOptions,
  },
  positionals: [0, 0],
  async run({ values }, io) {
    const since = sinceValue(values);
    const prefix = typeof values.path === 'string' ? normalizePath(values.path) : undefined;
    if (typeof values.lines === 'string' && !/^\d+$/.test(values.lines))
      throw new UsageError(`-n ${values.lines}: expected a number of events`);
    const limit = typeof values.lines === 'string' ? Number(values.lines) : undefined;
    let client: ControlClient;
    try {
      ({ client } = await connect(values, io));
    } catch (err) {
      // After the tree stopped (or failed to start), the journal on disk still tells what happened.
      const paths = findState(values, io);
      if (values.follow || values.url || !(err instanceof CliError) || !existsSync(paths.journal)) throw err;
      const records = await readJournal(paths.journal, { since, path: prefix }, limit);
      print(records, values, io);
      return 0;
    }
    const query = new URLSearchParams();
    if (since !== undefined) query.set('since', String(since));
    if (prefix) query.set('path', prefix);
    if (limit !== undefined) query.set('limit', String(limit));
    const url = `/v1/events${query.size > 0 ? `?${query}` : ''}`;
    const p = palette(io.stdout, io.env);
    if (!values.follow) {
      print(await client.json<JournalRecord[]>(url), values, io);
      return 0;
    }
    const res = await client.open(url, { headers: { accept: 'text/event-stream' } });
    const stop = () => res.destroy();
    process.once('SIGINT', stop);
    await eachEvent(res, (data) => {
      const r = JSON.parse(data) as JournalRecord;
      io.stdout.write(values.json ? `${data}\n` : `${eventLine(r, p)}\n`);
    });
    process.off('SIGINT', stop);
    return 0;
  },
};

function print(records: JournalRecord[], values: Values, io: Io): void {
  const p = palette(io.stdout, io.env);
  if (values.json) io.stdout.write(`${JSON.stringify(records, null, 2)}\n`);
  else for (const r of records) io.stdout.write(`${eventLine(r, p)}\n`);
}
