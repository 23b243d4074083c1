/** `captree ps`: the running tree at a glance, or as JSON for scripts. */
import type { DaemonInfo, JournalHealth, PsEntry } from '../../daemon/index.ts';
import { childDetail, renderDetail } from '../child-detail.ts';
import {
  type Command,
  connect,
  jsonOption,
  palette,
  remoteOptions,
  resolvePath,
  stateOption,
} from '../cli.ts';
import { formatBytes, renderTable } from '../render.ts';

export const ps: Command = {
  name: 'ps',
  summary: 'show the running tree: state, pid, uptime, restarts, resources',
  usage: 'captree ps [PATH] [--json] [--state DIR | --url URL --token-file FILE]',
  help: `
Shows every node and child of the running tree as an indented tree: kind, state, pid, uptime,
restarts, readiness, and cpu, memory (used/granted) and pids granted ('∞' = not limited,
'-' = not measured). With --json, prints an array with one object per node and child:
path, kind, state, pid, uptimeMs, restarts, ready, grant {cpu, memory, pids}, used {cpu, memory}.
With PATH (or a unique child name), that one node or child in detail, as systemctl status
shows a unit: state and since when, pid, restarts by reason, its grant against what its cgroup
uses now (cpu time and throttling, memory, pids), its last exits with their reasons and its
last 10 log lines. With --json, one object: the entry above plus since, counters,
restartsByReason, intensity, children, exits [{time, type, expected, reason}] and
logs [{time, stream, text}].

Example:
  captree ps
  captree ps db
  captree ps --json | jq '.[] | select(.state != "ready") | .path'
  captree ps --url http://127.0.0.1:7070 --token-file admin.token`,
  options: { ...jsonOption, ...stateOption, ...remoteOptions },
  positionals: [0, 1],
  async run({ values, positionals }, io) {
    const { client } = await connect(values, io);
    if (positionals[0] !== undefined) {
      const detail = await childDetail(client, await resolvePath(client, positionals[0]));
      io.stdout.write(
        values.json
          ? `${JSON.stringify(detail, null, 2)}\n`
          : renderDetail(detail, palette(io.stdout, io.env)),
      );
      return 0;
    }
    const entries = await client.json<PsEntry[]>('/v1/tree');
    if (values.json) {
      io.stdout.write(`${JSON.stringify(entries, null, 2)}\n`);
      return 0;
    }
    const lines = renderTable(entries, { palette: palette(io.stdout, io.env) });
    io.stdout.write(`${lines.join('\n')}\n`);
    for (const line of driftLines(entries)) io.stderr.write(`captree: warning: ${line}\n`);
    const journal = (await client.json<DaemonInfo>('/v1/daemon').catch(() => null))?.journal;
    if (journal?.degraded) io.stderr.write(`captree: warning: ${journalWarning(journal)}\n`);
    return 0;
  },
};

/** Limits rewritten behind captree's back: what the grant says, what the cgroup holds, and the fix. */
export function driftLines(entries: readonly PsEntry[]): string[] {
  const shown = (q: string, v: number | null) =>
    v === null
      ? 'unlimited'
      : q === 'memory'
        ? formatBytes(v)
        : q === 'cpu'
          ? `${+v.toFixed(3)} cores`
          : String(v);
  return entries.flatMap((e) =>
    (e.drift ?? []).map(
      (d) =>
        `limit drift: ${e.path} is granted ${d.quantity} ${shown(d.quantity, d.granted)}, its cgroup holds ${shown(d.quantity, d.enforced)} (restore it: captree restart ${e.path})`,
    ),
  );
}

/** What a degraded journal means for the operator. */
export function journalWarning(j: JournalHealth): string {
  const since = j.since === null ? '' : ` since ${new Date(j.since).toISOString()}`;
  return `the journal cannot be written${since} (${j.error ?? 'unknown error'}): ${j.unwritten} event(s) kept in memory only; free space in the state directory`;
}
