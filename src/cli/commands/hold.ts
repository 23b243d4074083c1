/** `captree hold PATH` / `captree release PATH`: keep reconciliation away from a subtree, or let it back. */
import { type Command, connect, jsonOption, normalizePath, replyError, stateOption } from '../cli.ts';

function holdCommand(verb: 'hold' | 'release'): Command {
  return {
    name: verb,
    summary:
      verb === 'hold'
        ? 'hold a subtree from reconciliation: no apply may change it'
        : 'release a subtree held from reconciliation',
    usage:
      verb === 'hold'
        ? 'captree hold PATH [--reason TEXT] [--json] [--state DIR]'
        : 'captree release PATH [--json] [--state DIR]',
    help:
      verb === 'hold'
        ? `
Holds PATH and everything below it from reconciliation (as Flux's suspend): a plan that would
add, remove, update or restart anything there is refused with the hold as its reason, and
status turns what it would recommend there into reconcile_blocked (wait for release). The
children keep running and supervision goes on as before: only reconciliation stops. Durable
across daemon restarts until a clean down; journalled (reconcile_hold) with who asked ($USER)
and why.

Example:
  captree hold /shop/db --reason "migration running"`
        : `
Releases a hold made with 'captree hold': plans may change the subtree again. Journalled
(reconcile_release) with who asked.

Example:
  captree release /shop/db`,
    options: {
      ...(verb === 'hold'
        ? { reason: { type: 'string', description: 'why (shown in plans and status)' } }
        : {}),
      ...jsonOption,
      ...stateOption,
    },
    positionals: [1, 1],
    async run({ values, positionals }, io) {
      const path = normalizePath(positionals[0]!);
      const { client } = await connect(values, io);
      const by = io.env.USER ?? io.env.LOGNAME ?? 'unknown';
      const body =
        verb === 'hold'
          ? { path, by, reason: typeof values.reason === 'string' ? values.reason : '' }
          : { path, by };
      const reply = await client.request('POST', `/v1/reconcile/${verb}`, body);
      if (values.json) {
        io.stdout.write(`${JSON.stringify(reply.body, null, 2)}\n`);
        return reply.status === 200 ? 0 : 1;
      }
      if (reply.status !== 200) throw replyError(reply);
      io.stdout.write(verb === 'hold' ? `held ${path} from reconciliation\n` : `released ${path}\n`);
      return 0;
    },
  };
}

export const hold = holdCommand('hold');
export const release = holdCommand('release');
