/** `captree status [PATH]`: nominal, degraded, unstable or reconciling, with the drift and what to do. */
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { planAgainst } from '../../daemon/reconcile-plan.ts';
import { loadManifest } from '../../manifest/index.ts';
import { assess, type Plan, type Snapshot } from '../../reconcile/index.ts';
import { type Command, jsonOption, normalizePath, palette, stateOption } from '../cli.ts';
import { connectFor, renderStatus } from '../desired.ts';

export const status: Command = {
  name: 'status',
  summary: 'show drift from the desired state and what to do about it',
  usage: 'captree status [PATH] [--json] [--file FILE] [--state DIR]',
  help: `
Assesses the running tree against what it should be and prints, per node, rolled up the tree:
nominal (as desired), degraded (drift to reconcile), unstable (a failure, a node that gave up,
or a reconciliation that is blocked), or reconciling (an apply is under way). Then the drift
seen in the events (missing, failed, unhealthy, limit drift, pending manifest changes,
incidents such as repeated OOM kills or restarts inside a node's intensity window) and one
recommendation each: reconcile_required, reconcile_recommended or reconcile_blocked, with the
exact command and its blast radius (what it would restart). The manifest the tree was started
from (or --file FILE) is planned against it for pending changes. With PATH, only that subtree.
With --json, prints the report and the snapshot it was made from: 'captree reconcile --desired
FILE --actual SNAPSHOT.json' makes the same decision from files.
Under 'reconcile: { mode: auto }' the daemon does what is required itself, within its
guardrails (rate limit, allow/deny windows, holds); see 'captree events' for what it did
(reconcile_auto) or did not and why (reconcile_blocked).

Example:
  captree status
  captree status /shop/dev --json`,
  options: {
    file: {
      type: 'string',
      description: 'the desired manifest (default: the one the tree was started from)',
    },
    ...jsonOption,
    ...stateOption,
  },
  positionals: [0, 1],
  async run({ values, positionals }, io) {
    const under = positionals[0] === undefined ? undefined : normalizePath(positionals[0]);
    const given = typeof values.file === 'string' ? values.file : undefined;
    const { client } = await connectFor(values, io, given);
    const snapshot = await client.json<Snapshot>('/v1/reconcile');
    const file = given ?? manifestOf(snapshot, io);
    let plan: Plan | undefined;
    if (file && existsSync(path.resolve(io.cwd, file))) {
      const parsed = await loadManifest(path.resolve(io.cwd, file));
      if (parsed.ok) plan = planAgainst(parsed.tree, snapshot.actual);
    }
    const report = assess(snapshot, {
      ...(plan ? { plan } : {}),
      ...(file ? { file } : {}),
      ...(under ? { under } : {}),
    });
    if (values.json) {
      io.stdout.write(
        `${JSON.stringify({ ...report, ...snapshot, generation: report.generation }, null, 2)}\n`,
      );
      return 0;
    }
    io.stdout.write(renderStatus(report, palette(io.stdout, io.env)));
    return 0;
  },
};

/** The manifest the tree was started or last applied from, as the user would name it from here. */
function manifestOf(snapshot: Snapshot, io: Io): string | undefined {
  const tree = snapshot.actual.tree;
  if (!tree.file) return undefined;
  const file = path.join(tree.dir, path.basename(tree.file));
  const rel = path.relative(io.cwd, file);
  return rel.startsWith('..') ? file : rel;
}

type Io = Parameters<Command['run']>[1];
