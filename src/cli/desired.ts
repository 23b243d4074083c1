/**
 * What `plan`, `apply`, `status` and `reconcile` share: the desired manifest read and checked
 * (errors with file:line:col, nothing sent anywhere), the running tree found beside it, and the
 * rendering of plans and status reports for people.
 */
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { stateDirFor } from '../daemon/state.ts';
import { formatErrors, loadManifest, type ManifestTree } from '../manifest/index.ts';
import type { Action, Plan, Snapshot, StatusReport } from '../reconcile/index.ts';
import { CliError, type Connection, connect, type Io, type Palette, type Values } from './cli.ts';
import { formatBytes } from './render.ts';

/** The manifest `FILE` (default captree.yaml) parsed; its errors printed and exit 1 if any. */
export async function loadDesired(
  given: string | undefined,
  io: Io,
): Promise<{ tree: ManifestTree; shown: string }> {
  const shown = given ?? 'captree.yaml';
  const file = path.resolve(io.cwd, shown);
  if (!existsSync(file)) throw new CliError(`no manifest at ${shown} (create one, or name it: FILE)`);
  const parsed = await loadManifest(io.cwd === process.cwd() ? shown : file);
  if (!parsed.ok) {
    io.stderr.write(`${formatErrors(parsed.errors)}\n`);
    throw new CliError(`${parsed.errors.length} error(s) in ${shown}; nothing was planned or changed`);
  }
  return { tree: parsed.tree, shown };
}

/** The running tree of `FILE`: `--state DIR`, else the state dir beside the manifest (as `up` uses). */
export function connectFor(values: Values, io: Io, file: string | undefined): Promise<Connection> {
  if (typeof values.state === 'string' || typeof values.url === 'string' || file === undefined)
    return connect(values, io);
  return connect({ ...values, state: stateDirFor(path.resolve(io.cwd, file)) }, io);
}

/** A snapshot file (`captree status --json`), checked for the fields planning reads. */
export function readSnapshot(file: string, io: Io): Snapshot {
  let data: unknown;
  try {
    data = JSON.parse(readFileSync(path.resolve(io.cwd, file), 'utf8'));
  } catch (err) {
    throw new CliError(`--actual ${file}: ${(err as Error).message}`);
  }
  const s = data as Partial<Snapshot>;
  if (s?.version !== 1 || typeof s.generation !== 'number' || !s.actual?.tree || !s.actual.children)
    throw new CliError(
      `--actual ${file}: not a snapshot (expected what captree status --json prints: version 1, actual, observed)`,
    );
  return {
    version: 1,
    generation: s.generation,
    base: s.base ?? '',
    actual: s.actual,
    observed: s.observed ?? {},
    applying: s.applying ?? null,
  };
}

const SYMBOL: Record<Action['action'], string> = {
  noop: ' ',
  update: '~',
  restart: '±',
  add: '+',
  remove: '-',
};

/** The plan as terraform shows one: symbols, grouped per node, the restart set spelled out. */
export function renderPlan(plan: Plan, file: string, p: Palette): string {
  const lines: string[] = [];
  const colour = (a: Action['action'], s: string) =>
    a === 'add'
      ? p.green(s)
      : a === 'remove'
        ? p.red(s)
        : a === 'restart'
          ? p.yellow(s)
          : a === 'update'
            ? p.cyan(s)
            : s;
  const changed = plan.actions.filter((a) => a.action !== 'noop');
  const root = plan.actions[0]?.path ?? '';
  lines.push(`captree plan: ${root} (generation ${plan.generation}) against ${file}`);
  if (!plan.fits) {
    lines.push('', p.red(`${file} does not fit the running tree:`));
    for (const r of plan.reasons) lines.push(`  ${r.path}${r.field ? ` ${r.field}` : ''}: ${r.message}`);
    return `${lines.join('\n')}\n`;
  }
  if (changed.length === 0) {
    lines.push('', 'No changes: the running tree is what the manifest says.');
    return `${lines.join('\n')}\n`;
  }
  let node = '';
  for (const a of changed) {
    const parent = a.path === root ? root : a.path.slice(0, a.path.lastIndexOf('/'));
    if (parent !== node) {
      node = parent;
      lines.push('', p.bold(node));
    }
    const name = a.path === root ? '(node itself)' : a.path.slice(parent.length + 1);
    const head = `  ${colour(a.action, SYMBOL[a.action])} ${name.padEnd(16)} ${colour(a.action, a.action)}${a.admitted ? ' (admitted at run time)' : ''}`;
    lines.push(head);
    for (const d of a.detail) lines.push(`        ${p.dim(d)}`);
    if (a.via) lines.push(`        ${p.dim(`because ${a.because.join(', ')} (${a.via})`)}`);
    if (a.action === 'restart' && a.restarts.length > 1)
      lines.push(`        restarts: ${a.restarts.join(', ')}`);
  }
  if (plan.capabilities.length > 0) {
    lines.push('', p.bold('capabilities'));
    for (const c of plan.capabilities) {
      const parts = [...c.gained.map((g) => `+${c.kind} ${g}`), ...c.lost.map((l) => `-${c.kind} ${l}`)];
      lines.push(`  ${c.path}: ${parts.join(', ')}`);
    }
  }
  if (plan.budget.length > 0) {
    lines.push('', p.bold('budget'));
    for (const b of plan.budget) {
      const f = (v: number) => (b.quantity === 'memory' ? formatBytes(v) : String(v));
      lines.push(
        `  ${b.path} ${b.quantity}: holds ${f(b.before.reserved)} → ${f(b.after.reserved)}, children ${f(b.before.children)} → ${f(b.after.children)}, slack ${f(b.slack)}`,
      );
    }
  }
  const s = plan.summary;
  lines.push(
    '',
    `Plan: ${s.add} to add, ${s.remove} to remove, ${s.update} to update in place, ${s.restart} to restart (${s.restarted} path${s.restarted === 1 ? '' : 's'} restarted), ${s.noop} unchanged.`,
  );
  return `${lines.join('\n')}\n`;
}

/** `captree status` for people: the node tree with its status, the drift, what to do. */
export function renderStatus(report: StatusReport, p: Palette): string {
  const lines: string[] = [];
  const tone = (s: string) =>
    s === 'nominal' ? p.green(s) : s === 'degraded' ? p.yellow(s) : s === 'unstable' ? p.red(s) : p.cyan(s);
  const root = report.nodes[0]?.path ?? '';
  const depth = (path: string) => path.split('/').length - root.split('/').length;
  lines.push(`generation ${report.generation}: ${tone(report.summary)}`);
  for (const n of report.nodes)
    lines.push(
      `  ${'  '.repeat(depth(n.path))}${n.path.padEnd(24)} ${tone(n.status)}${n.drift > 0 ? p.dim(` (${n.drift} drift)`) : ''}`,
    );
  if (report.drift.length > 0) {
    lines.push('', p.bold('drift'));
    for (const d of report.drift) lines.push(`  ${d.path}  ${d.kind}: ${d.message}`);
  }
  if (report.recommendations.length > 0) {
    lines.push('', p.bold('recommendations'));
    for (const r of report.recommendations) {
      const kind = r.type.replace('reconcile_', '');
      lines.push(`  ${kind.padEnd(11)} ${r.path}  ${r.action}: ${r.command}`);
      lines.push(
        `  ${''.padEnd(11)} ${p.dim(`${r.reason}; restarts: ${r.blastRadius.length > 0 ? r.blastRadius.join(', ') : 'nothing'}`)}`,
      );
    }
  }
  return `${lines.join('\n')}\n`;
}
