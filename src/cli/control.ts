/** `captree start|stop|restart PATH`: one operation on one child, through the control API. */
import { urlPath } from '../daemon/client.ts';
import type { PsEntry } from '../daemon/types.ts';
import { type Command, connect, jsonOption, remoteOptions, resolvePath, stateOption } from './cli.ts';

type Verb = 'start' | 'stop' | 'restart';

const done: Record<Verb, string> = { start: 'started', stop: 'stopped', restart: 'restarted' };

const helps: Record<Verb, string> = {
  start: `
Starts a stopped child (one stopped with 'captree stop', or failed) and waits until it is up;
it counts as running again for its supervisor's strategy.

Example:
  captree start /demo/worker`,
  stop: `
Stops a child per its shutdown policy and keeps it stopped: its supervisor will not restart it,
nor will a restart of its siblings, until 'captree start'. A temporary child is removed.

Example:
  captree stop /demo/worker`,
  restart: `
Restarts a child as its supervisor's strategy would after a crash: with rest_for_one, the child
and every sibling listed after it; with one_for_all, all siblings. Waits until they are up.
An operator's restart does not count against the restart intensity.

Example:
  captree restart /demo/db`,
};

export function controlCommand(verb: Verb): Command {
  return {
    name: verb,
    summary: {
      start: 'start a stopped child',
      stop: 'stop a child and keep it stopped',
      restart: 'restart a child (and its siblings, per strategy)',
    }[verb],
    usage: `captree ${verb} PATH [--json] [--state DIR | --url URL --token-file FILE]`,
    help: helps[verb],
    options: { ...jsonOption, ...stateOption, ...remoteOptions },
    positionals: [1, 1],
    async run({ values, positionals }, io) {
      const { client } = await connect(values, io);
      const path = await resolvePath(client, positionals[0]!);
      // An error answer is an ApiResponseError: main prints its message, exit 1.
      const result = await client.json<{ path: string; action: Verb; child: PsEntry | null }>(
        `/v1/children/${urlPath(path)}/${verb}`,
        { method: 'POST' },
      );
      if (values.json) {
        io.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
        return 0;
      }
      const c = result.child;
      const detail = c ? ` (${c.state}${c.pid !== null ? `, pid ${c.pid}` : ''})` : '';
      io.stdout.write(`${done[verb]} ${path}${detail}\n`);
      return 0;
    },
  };
}
