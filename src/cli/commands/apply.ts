/** `captree apply [FILE]`: carries a plan out on the running tree, with the fewest restarts. */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { createInterface } from 'node:readline/promises';
import { ApiResponseError, eachLine } from '../../daemon/client.ts';
import { type Plan, specDigest } from '../../reconcile/index.ts';
import { CliError, type Command, type Io, jsonOption, palette, stateOption } from '../cli.ts';
import { connectFor, loadDesired, renderPlan } from '../desired.ts';

interface ApplyResult {
  generation: number;
  restarted: string[];
  planned: string[];
  differences: string[];
  repaired: string[];
  errors: { step: number; op: string; path: string; message: string }[];
}

export const apply: Command = {
  name: 'apply',
  summary: 'apply a changed manifest to the running tree, restarting only what must',
  usage: 'captree apply [FILE] [--plan PLAN.json] [--yes] [--json] [--state DIR]',
  help: `
Plans the manifest (default: captree.yaml) against the running tree, as 'captree plan' shows
it, and carries the plan out: quantities are rewritten live, engine fields and node flags
change in place, what must restart is stopped (consumers first) and started again (providers
first, each ready before the next), new children are added and gone ones removed, in contract
order. Planned restarts do not count against any restart intensity. A manifest with no change,
or whose only changes are cpu, memory and pids, restarts nothing. Limits read back as
different from their grant are written again.
On a terminal it shows the plan and asks first; with --yes, or without a terminal, it applies
at once. With --plan PLAN.json (saved from 'captree plan --json') it applies that plan only if
the tree is still at the plan's generation and FILE is the manifest it was made from; else it
refuses and changes nothing. Every step is journalled: if the daemon is killed in the middle,
the next 'captree up' finishes the same plan without restarting any child twice.
Prints what was restarted and whether it matches the plan. Exit status: 0 done as planned, 1
refused, failed or different from the plan. With --json: {generation, restarted, planned,
differences, repaired, errors}.

Example:
  captree apply
  captree apply --yes staging.yaml
  captree plan --json > plan.json && captree apply --plan plan.json`,
  options: {
    plan: { type: 'string', description: 'apply this saved plan (captree plan --json) if still current' },
    yes: { type: 'boolean', short: 'y', description: 'do not ask, even on a terminal' },
    ...jsonOption,
    ...stateOption,
  },
  positionals: [0, 1],
  async run({ values, positionals }, io) {
    const { tree, shown } = await loadDesired(positionals[0], io);
    const { client } = await connectFor(values, io, shown);
    let expect: { generation: number; base: string; target: string };
    let shownPlan: Plan | null = null;
    if (typeof values.plan === 'string') {
      const saved = readPlan(values.plan, io);
      if (saved.target !== specDigest(tree))
        throw new CliError(
          `${values.plan} was made from another manifest than ${shown} (it changed since, or it is another file): plan again`,
        );
      expect = { generation: saved.generation, base: saved.base, target: saved.target };
      shownPlan = saved;
    } else {
      shownPlan = await client.json<Plan>('/v1/reconcile/plan', { method: 'POST', body: { tree } });
      expect = { generation: shownPlan.generation, base: shownPlan.base, target: shownPlan.target };
    }
    const p = palette(io.stdout, io.env);
    if (!values.json) io.stdout.write(renderPlan(shownPlan, shown, p));
    if (!shownPlan.fits) return 1;
    const changes = shownPlan.actions.some((a) => a.action !== 'noop');
    if (changes && !values.yes && !values.json && io.stdout.isTTY && process.stdin.isTTY) {
      if (!(await confirm(io))) {
        io.stdout.write('Nothing was changed.\n');
        return 1;
      }
    }
    let result: ApplyResult | null = null;
    let failure: string | null = null;
    try {
      const res = await client.open('/v1/reconcile/apply', { method: 'POST', body: { tree, ...expect } });
      await eachLine(res, (line) => {
        const m = JSON.parse(line) as
          | { step: number; op: string; path: string; error: string | null }
          | { result: ApplyResult }
          | { error: { message: string } };
        if ('result' in m) result = m.result;
        else if ('step' in m) {
          if (!values.json)
            io.stdout.write(`  ${m.op.padEnd(7)} ${m.path}${m.error ? p.red(`  failed: ${m.error}`) : ''}\n`);
        } else failure = m.error.message;
      });
    } catch (err) {
      if (err instanceof ApiResponseError) throw new CliError(`refused, nothing was changed: ${err.message}`);
      throw err;
    }
    if (failure !== null) throw new CliError(`the apply stopped: ${failure} (see: captree events)`);
    const r = result as ApplyResult | null;
    if (!r) throw new CliError('the daemon ended the apply without a result (see: captree events)');
    if (values.json) {
      io.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
      return r.differences.length > 0 ? 1 : 0;
    }
    for (const path of r.repaired)
      io.stdout.write(`  limits  ${path} rewritten (they differed from its grant)\n`);
    if (!changes) {
      io.stdout.write(`Nothing to apply: generation ${r.generation} stays.\n`);
      return 0;
    }
    io.stdout.write(
      `Applied: generation ${r.generation}; restarted ${r.restarted.length > 0 ? r.restarted.join(', ') : 'nothing'}.\n`,
    );
    if (r.differences.length === 0) {
      io.stdout.write('As planned.\n');
      return 0;
    }
    io.stderr.write(`Different from the plan:\n${r.differences.map((d) => `  ${d}\n`).join('')}`);
    return 1;
  },
};

function readPlan(file: string, io: Io): Plan {
  let plan: Partial<Plan>;
  try {
    plan = JSON.parse(readFileSync(path.resolve(io.cwd, file), 'utf8')) as Partial<Plan>;
  } catch (err) {
    throw new CliError(`--plan ${file}: ${(err as Error).message}`);
  }
  if (typeof plan.generation !== 'number' || typeof plan.base !== 'string' || typeof plan.target !== 'string')
    throw new CliError(`--plan ${file}: not a saved plan (expected what captree plan --json prints)`);
  return plan as Plan;
}

async function confirm(io: Io): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: io.stdout });
  try {
    const answer = await rl.question('Apply this plan? Only "yes" goes on: ');
    return answer.trim() === 'yes';
  } finally {
    rl.close();
  }
}
