/** `captree reconcile --desired FILE --actual SNAPSHOT.json`: the decision as a pure function of files. */
import { planAgainst } from '../../daemon/reconcile-plan.ts';
import { assess, hasChanges } from '../../reconcile/index.ts';
import { type Command, jsonOption, normalizePath, palette, UsageError } from '../cli.ts';
import { loadDesired, readSnapshot, renderPlan, renderStatus } from '../desired.ts';

export const reconcile: Command = {
  name: 'reconcile',
  summary: 'plan, drift and recommendations from a manifest and a snapshot file (no daemon)',
  usage: 'captree reconcile --desired FILE --actual SNAPSHOT.json [PATH] [--json]',
  help: `
Makes the decisions of 'captree plan' and 'captree status' without a running tree: FILE is the
desired manifest, SNAPSHOT.json what 'captree status --json' printed (the actual tree and what
its events told). Prints the plan, the drift and the recommendations; the same files give the
same output, byte for byte, so a decision can be reviewed, diffed and replayed. Nothing is
changed and no daemon is asked. Exit status: 0 nothing to do, 2 something to reconcile (a
change or a recommendation), 1 error. With --json: {generation, status: {summary, nodes,
drift, recommendations}, plan}.

Example:
  captree status --json > snapshot.json
  captree reconcile --desired captree.yaml --actual snapshot.json --json`,
  options: {
    desired: { type: 'string', description: 'the desired manifest' },
    actual: { type: 'string', description: "a snapshot: what 'captree status --json' prints" },
    ...jsonOption,
  },
  positionals: [0, 1],
  async run({ values, positionals }, io) {
    if (typeof values.desired !== 'string' || typeof values.actual !== 'string')
      throw new UsageError('--desired FILE and --actual SNAPSHOT.json are both needed');
    const under = positionals[0] === undefined ? undefined : normalizePath(positionals[0]);
    const { tree, shown } = await loadDesired(values.desired, io);
    const snapshot = readSnapshot(values.actual, io);
    const plan = planAgainst(tree, snapshot.actual);
    const status = assess(snapshot, { plan, file: shown, ...(under ? { under } : {}) });
    const todo = hasChanges(plan) || status.recommendations.length > 0;
    if (values.json) {
      io.stdout.write(`${JSON.stringify({ generation: snapshot.generation, status, plan }, null, 2)}\n`);
    } else {
      const p = palette(io.stdout, io.env);
      io.stdout.write(`${renderStatus(status, p)}\n${renderPlan(plan, shown, p)}`);
    }
    if (!plan.fits) return 1;
    return todo ? 2 : 0;
  },
};
