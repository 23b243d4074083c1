/** `captree ps`: the running tree at a glance, or as JSON for scripts. */
import type { DaemonInfo, JournalHealth, PsEntry } from '../../daemon/index.ts';
import { type Command, connect, jsonOption, palette, remoteOptions, stateOption } from '../cli.ts';
import { renderTable } from '../render.ts';

export const ps: Command = {
  name: 'ps',
  summary: 'show the running tree: state, pid, uptime, restarts, resources',
  usage: 'captree ps [--json] [--state DIR | --url URL --token-file FILE]',
  help: `
Shows every node and child of the running tree as an indented tree: kind, state, pid, uptime,
restarts, readiness, and cpu, memory (used/granted) and pids granted ('∞' = not limited,
'-' = not measured). With --json, prints an array with one object per node and child:
path, kind, state, pid, uptimeMs, restarts, ready, grant {cpu, memory, pids}, used {cpu, memory}.

Example:
  captree ps
  captree ps --json | jq '.[] | select(.state != "ready") | .path'
  captree ps --url http://127.0.0.1:7070 --token-file admin.token`,
  options: { ...jsonOption, ...stateOption, ...remoteOptions },
  positionals: [0, 0],
  async run({ values }, io) {
    const { client } = await connect(values, io);
    const entries = await client.json<PsEntry[]>('/v1/tree');
    if (values.json) {
      io.stdout.write(`${JSON.stringify(entries, null, 2)}\n`);
      return 0;
    }
    const lines = renderTable(entries, { palette: palette(io.stdout, io.env) });
    io.stdout.write(`${lines.join('\n')}\n`);
    const journal = (await client.json<DaemonInfo>('/v1/daemon').catch(() => null))?.journal;
    if (journal?.degraded) io.stderr.write(`captree: warning: ${journalWarning(journal)}\n`);
    return 0;
  },
};

/** What a degraded journal means for the operator. */
export function journalWarning(j: JournalHealth): string {
  const since = j.since === null ? '' : ` since ${new Date(j.since).toISOString()}`;
  return `the journal cannot be written${since} (${j.error ?? 'unknown error'}): ${j.unwritten} event(s) kept in memory only; free space in the state directory`;
}
