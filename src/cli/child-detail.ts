/**
 * `captree ps PATH`: one node or child in detail, as `systemctl status` shows a unit: its state
 * and since when, its pid, restarts by reason, its grant against what its cgroup uses now (cpu
 * time and throttling, memory, pids), its last exits with their reasons, and its last log lines.
 * Everything comes from the control API (`/v1/tree`, `/v1/stats`, `/v1/events`, `/v1/logs`).
 */
import { describeExit, type ExitReason } from '../core/index.ts';
import { type ControlClient, eachLine, urlPath } from '../daemon/client.ts';
import type { JournalRecord, PsEntry } from '../daemon/index.ts';
import type { PathStats } from '../daemon/metrics.ts';
import { formatDuration } from '../daemon/time.ts';
import type { Palette } from './cli.ts';
import { formatBytes } from './render.ts';

const EXITS = 5;
const LOG_LINES = 10;

export interface Exit {
  time: string;
  /** `exited` (with `expected`: a stop or a clean exit the restart type accepts) or `start_failed`. */
  type: string;
  expected: boolean;
  reason: string;
}

export interface LogLine {
  time: string;
  stream: string;
  text: string;
}

/** What `ps PATH --json` prints: the `ps --json` entry plus the detail. */
export interface Detail extends PsEntry {
  /** ms epoch of the current instance's start; null when not running. */
  since: number | null;
  /** The kernel's counters of its cgroup now (seconds, bytes, count); null without a cgroup. */
  counters: PathStats['counters'];
  restartsByReason: Record<string, number>;
  /** Nodes: restarts in the current window against the intensity. */
  intensity: PathStats['intensity'];
  /** Its direct children, for a node: path, kind, state. */
  children: { path: string; kind: string; state: string }[];
  exits: Exit[];
  logs: LogLine[];
}

function isExit(r: JournalRecord): r is JournalRecord & { reason: ExitReason } {
  return r.type === 'exited' || r.type === 'start_failed' || r.type === 'permanent_failure';
}

export async function childDetail(client: ControlClient, path: string): Promise<Detail> {
  const tree = await client.json<PsEntry[]>('/v1/tree');
  const entry = tree.find((e) => e.path === path);
  if (!entry) throw new Error(`no child ${path} in this tree (see: captree ps)`);
  const query = `?path=${encodeURIComponent(path)}`;
  const stats = await client
    .json<{ paths: PathStats[] }>(`/v1/stats${query}&limit=1`)
    .then((s) => s.paths.find((p) => p.path === path) ?? null)
    .catch(() => null);
  const journal = await client.json<JournalRecord[]>(`/v1/events${query}`).catch(() => []);
  const exits = journal
    .filter((r) => r.path === path && isExit(r))
    .slice(-EXITS)
    .map((r) => {
      const e = r as JournalRecord & { reason: ExitReason; expected?: boolean };
      return { time: e.time, type: e.type, expected: e.expected === true, reason: describeExit(e.reason) };
    });
  const logs: LogLine[] = [];
  if (entry.kind === 'process') {
    const res = await client.open(`/v1/logs/${urlPath(path)}?limit=${LOG_LINES}`, {
      headers: { accept: 'application/x-ndjson' },
    });
    await eachLine(res, (line) => {
      const r = JSON.parse(line) as { time: string; stream: string; text: string };
      logs.push({ time: r.time, stream: r.stream, text: r.text });
    });
  }
  const depth = path.split('/').length;
  return {
    ...entry,
    since: entry.uptimeMs === null ? null : Date.now() - entry.uptimeMs,
    counters: stats?.counters ?? null,
    restartsByReason: stats?.restartsByReason ?? {},
    intensity: stats?.intensity ?? null,
    children: tree
      .filter((e) => e.path.startsWith(`${path}/`) && e.path.split('/').length === depth + 1)
      .map((e) => ({ path: e.path, kind: e.kind, state: e.state })),
    exits,
    logs,
  };
}

function seconds(s: number): string {
  return s < 10 ? `${s.toFixed(3).replace(/\.?0+$/, '')}s` : formatDuration(s * 1000);
}

function ofGrant(used: string, grant: string | null, ratio: number | null): string {
  if (grant === null) return `${used} (no limit of its own)`;
  return `${used} of ${grant}${ratio === null ? '' : ` (${Math.round(ratio * 100)}%)`}`;
}

/** The text of `ps PATH`: aligned `Label: value` lines, then exits and log lines. */
export function renderDetail(d: Detail, p: Palette): string {
  const c = d.counters;
  const g = d.grant;
  const rows: [string, string][] = [];
  const since =
    d.since === null
      ? ''
      : ` since ${new Date(d.since).toISOString()} (${formatDuration(Date.now() - d.since)} ago)`;
  const ready = d.kind === 'node' || d.ready ? '' : ', not ready';
  rows.push(['State', `${d.state}${ready}${since}`]);
  if (d.kind !== 'node') rows.push(['PID', d.pid === null ? '-' : String(d.pid)]);
  const reasons = Object.entries(d.restartsByReason)
    .map(([k, n]) => `${k}: ${n}`)
    .join(', ');
  rows.push(['Restarts', `${d.restarts}${reasons ? ` (${reasons})` : ''}`]);
  if (d.intensity)
    rows.push([
      'Intensity',
      `${d.intensity.restarts} of ${d.intensity.intensity} restart${d.intensity.intensity === 1 ? '' : 's'} within ${formatDuration(d.intensity.period)} used`,
    ]);
  if (d.lastExit) rows.push(['Last exit', d.lastExit]);
  // Cumulative: the cgroup outlives restarts, so its cpu time is every instance's.
  const cpuTime = c?.cpuSeconds == null ? '-' : `${seconds(c.cpuSeconds)} of cpu time in all`;
  const throttled = c?.throttledPeriods
    ? `; throttled in ${c.throttledPeriods} periods (${seconds(c.throttledSeconds ?? 0)})`
    : '';
  rows.push([
    'CPU',
    `${cpuTime}; ${g.cpu === null ? 'no limit of its own' : `limit ${g.cpu} cores`}${throttled}`,
  ]);
  const memory = c?.memoryBytes ?? d.used.memory;
  rows.push([
    'Memory',
    ofGrant(
      memory == null ? '-' : formatBytes(memory),
      g.memory === null ? null : formatBytes(g.memory),
      memory == null || g.memory === null ? null : memory / g.memory,
    ),
  ]);
  rows.push([
    'PIDs',
    ofGrant(
      c?.pids == null ? '-' : String(c.pids),
      g.pids === null ? null : String(g.pids),
      c?.pids == null || g.pids === null ? null : c.pids / g.pids,
    ),
  ]);
  if (c?.oomKills) rows.push(['OOM kills', String(c.oomKills)]);
  if (d.kind === 'node') {
    const up = d.children.filter((x) => x.state === 'ready' || x.state === 'running').length;
    rows.push(['Children', `${d.children.length} (${up} up)`]);
  }
  const width = Math.max(...rows.map(([k]) => k.length));
  const lines = [`${p.bold(d.path)} ${p.dim(`(${d.kind})`)}`];
  for (const [k, v] of rows) lines.push(`  ${p.dim(`${k}:`.padStart(width + 1))} ${v}`);
  if (d.kind === 'node')
    for (const child of d.children)
      lines.push(`    ${child.path.split('/').at(-1)} ${p.dim(child.kind)} ${child.state}`);
  const short = d.path.split('/').at(-1);
  if (d.exits.length > 0) {
    lines.push('', `Last exits (captree events --path ${d.path}):`);
    for (const e of d.exits) {
      const text = `${e.type === 'start_failed' ? 'failed to start: ' : ''}${e.reason}`;
      lines.push(`  ${p.dim(e.time)} ${e.expected ? text : p.red(text)}`);
    }
  }
  if (d.kind === 'process') {
    lines.push(
      '',
      d.logs.length > 0
        ? `Last ${d.logs.length} log line${d.logs.length === 1 ? '' : 's'} (captree logs ${short}):`
        : 'No output yet.',
    );
    for (const l of d.logs) lines.push(`  ${p.dim(l.time)} ${l.stream} ${l.text}`);
  }
  return `${lines.join('\n')}\n`;
}
