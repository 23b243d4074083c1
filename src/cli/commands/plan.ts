/** `captree plan [FILE]`: what applying a manifest to the running tree would do; changes nothing. */
import type { Plan } from '../../reconcile/index.ts';
import { type Command, jsonOption, palette, stateOption } from '../cli.ts';
import { connectFor, loadDesired, renderPlan } from '../desired.ts';

export const plan: Command = {
  name: 'plan',
  summary: 'show what applying a manifest to the running tree would change (and restart)',
  usage: 'captree plan [FILE] [--json] [--state DIR]',
  help: `
Compares the manifest (default: captree.yaml) with the running tree and prints, per child,
what applying it would do: + add, - remove, ~ update in place (a cgroup limit rewritten, an
engine field changed: no restart), ± restart, with the fields that cause it and every path the
restart takes along (rest_for_one: the children after it; one_for_all: all of them; a node:
its subtree; a changed grant, e.g. a provider's new address: its consumers). Then the
capabilities children gain or lose and each node's budget before → after. The whole new tree
is admitted again, children admitted at run time and renegotiated grants included: a manifest
that does not fit is refused with every reason. Changes nothing.
Exit status: 0 no changes, 2 changes planned, 1 error (a bad manifest, no running tree, or it
does not fit). With --json: {generation, base, target, fits, reasons, actions: [{path, action:
noop|update|restart|add|remove, because: [field paths], restarts: [paths], detail}],
capabilities, budget, steps, summary}; save it for 'captree apply --plan'.
The tree is found in the state directory beside FILE (as 'up' puts it), or --state DIR.

Example:
  captree plan
  captree plan --json > plan.json && captree apply --plan plan.json`,
  options: { ...jsonOption, ...stateOption },
  positionals: [0, 1],
  async run({ values, positionals }, io) {
    const { tree, shown } = await loadDesired(positionals[0], io);
    const { client } = await connectFor(values, io, shown);
    const result = await client.json<Plan>('/v1/reconcile/plan', { method: 'POST', body: { tree } });
    if (values.json) io.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    else io.stdout.write(renderPlan(result, shown, palette(io.stdout, io.env)));
    if (!result.fits) return 1;
    if (!values.json && result.actions.some((a) => a.action !== 'noop'))
      io.stdout.write(`Apply it with: captree apply${positionals[0] ? ` ${shown}` : ''}\n`);
    return result.actions.some((a) => a.action !== 'noop') ? 2 : 0;
  },
};
