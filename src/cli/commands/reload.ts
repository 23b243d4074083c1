/** `captree reload PATH`: the child's declared `reload:` (a signal, or a command in its confinement). */
import { urlPath } from '../../daemon/client.ts';
import type { Reload } from '../../manifest/types.ts';
import { type Command, connect, jsonOption, remoteOptions, resolvePath, stateOption } from '../cli.ts';
import { clientHeader } from '../client-header.ts';

export const reload: Command = {
  name: 'reload',
  summary: 'ask a child to reload its configuration, as its reload: declares',
  usage: 'captree reload PATH [--json] [--state DIR | --url URL --token-file FILE]',
  help: `
Carries out the child's reload: from the manifest, without restarting it:
  reload: SIGHUP                    the signal goes to its main process (as captree signal does)
  reload: [nginx, -s, reload]       the command runs in the child's confinement: its namespaces
  reload: { exec: CMD, timeout: 5s }  (files, pids, network), cgroup, user and environment, with
                                    no capabilities; it must exit 0 within the timeout (30s)
The command's output goes to the child's log. Exit 0 once the signal is sent or the command
exited 0; exit 1 if none is declared or the command failed. The journal records each reload,
its outcome and who asked (captree events).

Example:
  captree reload web
  captree reload /shop/proxy --json`,
  options: { ...jsonOption, ...stateOption, ...remoteOptions },
  positionals: [1, 1],
  async run({ values, positionals }, io) {
    const { client } = await connect(values, io);
    const path = await resolvePath(client, positionals[0]!);
    const result = await client.json<{ path: string; reload: Reload; pid: number; result: string }>(
      `/v1/children/${urlPath(path)}/reload`,
      { method: 'POST', headers: clientHeader('reload') },
    );
    if (values.json) io.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    else io.stdout.write(`reloaded ${result.path}: ${result.result} (pid ${result.pid})\n`);
    return 0;
  },
};
