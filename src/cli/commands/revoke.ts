/** `captree revoke PATH`: stops a child admitted at run time and returns its budget to its node. */
import { urlPath } from '../../daemon/client.ts';
import {
  type Command,
  connect,
  jsonOption,
  normalizePath,
  remoteOptions,
  replyError,
  stateOption,
} from '../cli.ts';
import { formatBytes } from '../render.ts';

export const revoke: Command = {
  name: 'revoke',
  summary: 'stop a child admitted at run time and return its budget',
  usage: 'captree revoke PATH [--json] [--state DIR | --url URL --token-file FILE]',
  help: `
Stops a child that 'captree admit' (or the admission API) put in the tree, per its shutdown
policy, removes it, and returns what it reserved (cpu, memory, pids) to its node: a following
admission can use it. Children written in the manifest are not revoked; stop them with
'captree stop'. Over TCP (--url), a node's admission token revokes under that node only.

Example:
  captree revoke /shop/dev/job`,
  options: { ...jsonOption, ...stateOption, ...remoteOptions },
  positionals: [1, 1],
  async run({ values, positionals }, io) {
    const path = normalizePath(positionals[0]!);
    const { client } = await connect(values, io);
    const reply = await client.request('DELETE', `/v1/children/${urlPath(path)}`);
    if (values.json) {
      io.stdout.write(`${JSON.stringify(reply.body ?? { status: reply.status }, null, 2)}\n`);
      return reply.status === 200 ? 0 : 1;
    }
    if (reply.status !== 200) throw replyError(reply);
    const r = (reply.body?.returned ?? {}) as { cpu?: number; memory?: number; pids?: number };
    io.stdout.write(
      `revoked ${path} (returned cpu ${r.cpu ?? 0}, memory ${formatBytes(r.memory ?? 0)}, pids ${r.pids ?? 0})\n`,
    );
    return 0;
  },
};
