/** `captree signal PATH SIGNAL`: one signal to a child's main process, through the control API. */
import { urlPath } from '../../daemon/client.ts';
import { SIGNAL_NAMES, signalNamed } from '../../daemon/signals.ts';
import {
  type Command,
  connect,
  jsonOption,
  remoteOptions,
  resolvePath,
  stateOption,
  UsageError,
} from '../cli.ts';
import { clientHeader } from '../client-header.ts';
import { didYouMean } from '../suggest.ts';

export const signal: Command = {
  name: 'signal',
  summary: "send a signal to a child's main process",
  usage: 'captree signal PATH SIGNAL [--json] [--state DIR | --url URL --token-file FILE]',
  help: `
Sends SIGNAL (SIGHUP, HUP, hup or a number) to the child's main process: the program its
command started, as kill PID would, not the processes it forked (a daemon that passes a signal
on to its workers does so itself) and not captree's helpers around a confined child. The child
keeps running and its supervisor is not involved: a signal that makes it exit is a crash like
any other. The journal records the signal, the pid and who asked (captree events).
To ask a child to reload its configuration the way it declares (reload: in the manifest), use
captree reload PATH.

Example:
  captree signal web SIGHUP
  captree signal /shop/worker USR1`,
  options: { ...jsonOption, ...stateOption, ...remoteOptions },
  positionals: [2, 2],
  async run({ values, positionals }, io) {
    const [given, name] = positionals as [string, string];
    const sig = signalNamed(name);
    if (sig === null) {
      const upper = name.toUpperCase().startsWith('SIG') ? name.toUpperCase() : `SIG${name.toUpperCase()}`;
      throw new UsageError(
        `unknown signal ${name}${didYouMean(upper, SIGNAL_NAMES)}: expected a name like SIGHUP, HUP or a number (see: kill -l)`,
      );
    }
    const { client } = await connect(values, io);
    const path = await resolvePath(client, given);
    const result = await client.json<{ path: string; signal: string; pid: number }>(
      `/v1/children/${urlPath(path)}/signal`,
      { method: 'POST', body: { signal: sig }, headers: clientHeader('signal') },
    );
    if (values.json) io.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    else io.stdout.write(`sent ${result.signal} to ${result.path} (pid ${result.pid})\n`);
    return 0;
  },
};
