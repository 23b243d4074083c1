/** `captree logs PATH`: a process child's captured stdout and stderr, past and live. */
import { eachLine, urlPath } from '../../daemon/client.ts';
import {
  type Command,
  connect,
  jsonOption,
  normalizePath,
  remoteOptions,
  sinceValue,
  stateOption,
  UsageError,
} from '../cli.ts';

export const logs: Command = {
  name: 'logs',
  summary: "print a process child's output; -f to follow",
  usage:
    'captree logs PATH [-f] [--since DURATION|ISO] [-n LINES] [--json] [--state DIR | --url URL --token-file FILE]',
  help: `
Prints the captured output of a process child, oldest first, one record per line:
time, stream (out, err, or sys for captree's own notes such as exits), text. Output survives
restarts and rotation (the last files are kept). --since keeps records at or after a time
(30s, 5m, 2h, or an ISO time); -n keeps the last LINES. -f keeps printing new output until
interrupted or the tree stops. --json prints one JSON object per line: {ts, time, stream,
partial, text, path}.

Example:
  captree logs /demo/api --since 5m
  captree logs -f /demo/worker`,
  options: {
    follow: { type: 'boolean', short: 'f', description: 'keep printing new output' },
    since: { type: 'string', description: 'records at or after: 30s, 5m, 2h or an ISO time' },
    lines: { type: 'string', short: 'n', description: 'only the last LINES records' },
    ...jsonOption,
    ...stateOption,
    ...remoteOptions,
  },
  positionals: [1, 1],
  async run({ values, positionals }, io) {
    const path = normalizePath(positionals[0]!);
    const since = sinceValue(values);
    const query = new URLSearchParams();
    if (since !== undefined) query.set('since', String(since));
    if (typeof values.lines === 'string') {
      if (!/^\d+$/.test(values.lines)) throw new UsageError(`-n ${values.lines}: expected a number of lines`);
      query.set('limit', values.lines);
    }
    if (values.follow) query.set('follow', '1');
    const { client } = await connect(values, io);
    // An error answer (no such child) is an ApiResponseError: main prints its message, exit 1.
    const res = await client.open(`/v1/logs/${urlPath(path)}${query.size > 0 ? `?${query}` : ''}`, {
      headers: { accept: values.json ? 'application/x-ndjson' : 'text/plain' },
    });
    const stop = () => res.destroy();
    process.once('SIGINT', stop);
    await eachLine(res, (line) => io.stdout.write(`${line}\n`));
    process.off('SIGINT', stop);
    return 0;
  },
};
