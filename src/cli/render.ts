/**
 * Text for humans: the `ps` table (an indented tree, aligned columns, colour on a TTY) and one
 * line per journal event. Pure functions of their input, shared by `ps`, `events` and the live
 * view of `up`.
 */
import { describeExit } from '../core/index.ts';
import type { JournalRecord, PsEntry } from '../daemon/index.ts';
import { formatDuration } from '../daemon/time.ts';
import type { Palette } from './cli.ts';

/** No colour: every style is the identity. */
export const plain: Palette = {
  enabled: false,
  bold: (s) => s,
  dim: (s) => s,
  red: (s) => s,
  green: (s) => s,
  yellow: (s) => s,
  cyan: (s) => s,
};

/** `512Mi`, `1.5Gi`, `800Ki`, `12B`. */
export function formatBytes(n: number): string {
  const units = ['B', 'Ki', 'Mi', 'Gi', 'Ti'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  const text = i === 0 || v >= 10 || Number.isInteger(v) ? String(Math.round(v)) : v.toFixed(1);
  return `${text}${units[i]}`;
}

function cores(n: number): string {
  return n >= 10 ? n.toFixed(0) : n.toFixed(2).replace(/\.?0+$/, '') || '0';
}

function usedOf(used: number | null, grant: number | null, fmt: (n: number) => string): string {
  return `${used === null ? '-' : fmt(used)}/${grant === null ? '∞' : fmt(grant)}`;
}

/** Tree glyphs for each entry of a depth-first listing: `├─ `, `└─ `, with `│  ` for open ancestors. */
export function treePrefixes(depths: readonly number[]): string[] {
  const open: boolean[] = [];
  return depths.map((depth, i) => {
    if (depth === 0) return '';
    let last = true;
    for (let j = i + 1; j < depths.length; j++) {
      const d = depths[j]!;
      if (d < depth) break;
      if (d === depth) {
        last = false;
        break;
      }
    }
    open[depth] = !last;
    let prefix = '';
    for (let level = 1; level < depth; level++) prefix += open[level] ? '│  ' : '   ';
    return `${prefix}${last ? '└─ ' : '├─ '}`;
  });
}

function stateColour(state: string, p: Palette): (s: string) => string {
  switch (state) {
    case 'ready':
    case 'running':
      return p.green;
    case 'starting':
    case 'restarting':
    case 'stopping':
      return p.yellow;
    case 'failed':
      return p.red;
    default:
      return p.dim;
  }
}

export interface TableOptions {
  palette?: Palette;
  /** Leave out uptime (the live view redraws once a second, uptime would tick for nothing). */
  uptime?: boolean;
  /** Truncate to this many characters per line (terminal width). */
  width?: number;
}

function clampTo(used: number | null, grant: number | null): number | null {
  return used === null || grant === null ? used : Math.min(used, grant);
}

/** The `ps` table: header plus one line per entry, columns aligned on visible width. */
export function renderTable(entries: readonly PsEntry[], options: TableOptions = {}): string[] {
  const p = options.palette ?? plain;
  const prefixes = treePrefixes(entries.map((e) => e.depth));
  type Cell = { text: string; colour?: (s: string) => string; right?: boolean };
  const header: Cell[] = [
    { text: 'PATH' },
    { text: 'KIND' },
    { text: 'STATE' },
    { text: 'PID', right: true },
    ...(options.uptime === false ? [] : [{ text: 'UPTIME', right: true }]),
    { text: 'RESTARTS', right: true },
    { text: 'READY' },
    { text: 'CPU', right: true },
    { text: 'MEMORY', right: true },
    { text: 'PIDS', right: true },
  ];
  const rows: Cell[][] = entries.map((e, i) => [
    {
      text: `${prefixes[i]}${e.depth === 0 ? e.path : (e.path.split('/').at(-1) ?? e.path)}`,
      colour: e.depth === 0 ? p.bold : undefined,
    },
    { text: e.kind, colour: p.dim },
    { text: e.state, colour: stateColour(e.state, p) },
    { text: e.pid === null ? '-' : String(e.pid), right: true },
    ...(options.uptime === false
      ? []
      : [{ text: e.uptimeMs === null ? '-' : formatDuration(e.uptimeMs), right: true }]),
    { text: String(e.restarts), right: true, colour: e.restarts > 0 ? p.yellow : undefined },
    { text: e.ready ? 'yes' : 'no', colour: e.ready ? undefined : p.yellow },
    // Use between two reads can exceed the quota only by the reads' timing: shown clamped.
    { text: usedOf(clampTo(e.used.cpu, e.grant.cpu), e.grant.cpu, cores), right: true },
    { text: usedOf(e.used.memory, e.grant.memory, formatBytes), right: true },
    { text: e.grant.pids === null ? '∞' : String(e.grant.pids), right: true },
  ]);
  const all = [header, ...rows];
  const widths = header.map((_, c) => Math.max(...all.map((r) => r[c]!.text.length)));
  return all.map((row, r) => {
    const line = row
      .map((cell, c) => {
        const padded = cell.right ? cell.text.padStart(widths[c]!) : cell.text.padEnd(widths[c]!);
        if (r === 0) return p.dim(padded);
        return cell.colour ? cell.colour(padded) : padded;
      })
      .join('  ')
      .trimEnd();
    return options.width && !p.enabled && line.length > options.width ? line.slice(0, options.width) : line;
  });
}

/** What happened, in words: `started pid 1234`, `exited: exit code 1`, `restarting in 200ms (#3)`. */
export function describeEvent(r: JournalRecord): string {
  switch (r.type) {
    case 'started':
      return r.pid === null ? 'started' : `started pid ${r.pid}`;
    case 'ready':
      return r.declared ? 'ready' : 'up';
    case 'exited':
      return r.reason.kind === 'shutdown' ? 'exited' : `exited: ${describeExit(r.reason)}`;
    case 'start_failed':
      return `failed to start: ${describeExit(r.reason)}`;
    case 'restarting':
      return `restarting${r.delay > 0 ? ` in ${formatDuration(r.delay)}` : ''} (restart #${r.restarts}${r.because ? `, with ${r.because}` : ''})`;
    case 'permanent_failure':
      return `permanent failure: ${describeExit(r.reason)}`;
    case 'stopped':
      return r.reason.kind === 'shutdown' ? 'stopped' : `stopped (${describeExit(r.reason)})`;
    case 'intensity_exceeded':
      return `gave up: ${r.restarts} restart${r.restarts === 1 ? '' : 's'} within ${formatDuration(r.period)} (intensity ${r.intensity})`;
    case 'escalated':
      return `escalated: ${describeExit(r.reason)}`;
    case 'auto_shutdown':
      return `auto shutdown (triggered by ${r.trigger})`;
    case 'child_added':
      return 'child added';
    case 'child_deleted':
      return 'child removed';
    case 'adopted':
      return `adopted pid ${r.pid} (kept running while no daemon was)`;
    case 'exited_offline':
      return `pid ${r.pid} exited while no daemon was running (${r.code !== null ? `exit code ${r.code}` : `killed by ${r.signal}`})`;
    case 'orphan_killed':
      return `killed orphan pid ${r.pid}: ${r.why}`;
    case 'recovered':
      return `recovered: launcher pid ${r.launcherPid} had kept ${r.found} children; ${r.exited} exited meanwhile, ${r.killed} orphans killed`;
    case 'signalled':
      return `sent ${r.signal} to pid ${r.pid} (asked by ${r.by})`;
    case 'reloaded':
      return `${r.ok ? 'reloaded' : 'reload failed'} (${r.how}): ${r.result} (asked by ${r.by})`;
    case 'channel': {
      // `request cpu=0.5`, `→ grant cpu=0.7 memory=…`: the parent–child channel (docs/protocol.md).
      if ('suppressed' in r.message)
        return `← ${r.message.suppressed} more messages not journaled (over the channel's rate limit)`;
      const { v: _v, type, ...rest } = r.message as Record<string, unknown>;
      const fields = Object.entries(rest)
        .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
        .join(' ');
      return `${r.from === 'child' ? '←' : '→'} ${String(type ?? 'invalid')}${fields ? ` ${fields}` : ''}`;
    }
    case 'grant_changed':
      return `grant ${r.cause === 'reclaim' ? 'reclaimed' : r.cause === 'release' ? 'released' : r.cause === 'return' ? 'returned' : 'raised'} (by ${r.by}): cpu ${r.grant.cpu ?? 'shared'}, memory ${r.grant.memory === null ? 'shared' : formatBytes(r.grant.memory)}, pids ${r.grant.pids ?? 'shared'}`;
    case 'reconcile_apply':
      return `${r.resumed ? 'resuming' : 'applying'} generation ${r.generation}: ${r.steps} steps, restarting ${r.restarts.length > 0 ? r.restarts.join(', ') : 'nothing'}`;
    case 'reconcile_step':
      return `apply step ${r.step + 1}: ${r.op}${r.error ? ` failed: ${r.error}` : ''}`;
    case 'reconcile_applied':
      return `applied generation ${r.generation}: restarted ${r.restarted.length > 0 ? r.restarted.join(', ') : 'nothing'}${r.differences.length > 0 ? `; differs from the plan: ${r.differences.join('; ')}` : ', as planned'}`;
    case 'reconcile_hold':
      return `held from reconciliation by ${r.by}${r.reason ? `: ${r.reason}` : ''}`;
    case 'reconcile_release':
      return `released for reconciliation by ${r.by}`;
    case 'reconcile_auto':
      return `auto: ${r.action} (as ${r.command})${r.error ? ` failed: ${r.error}` : ' done'}: ${r.message}`;
    case 'reconcile_required':
    case 'reconcile_recommended':
    case 'reconcile_blocked':
      return `${r.type.slice('reconcile_'.length)}: ${r.action} (${r.command}): ${r.guard ? `not done (${r.guard}): ${r.reason}; ` : ''}${r.message}`;
    default:
      return r.type;
  }
}

/** One journal event as a log line: `2025-01-31T12:00:00.000Z /demo/db started pid 1234`. */
export function eventLine(r: JournalRecord, p: Palette = plain): string {
  const bad =
    (r.type === 'exited' && !r.expected) ||
    r.type === 'start_failed' ||
    r.type === 'permanent_failure' ||
    r.type === 'escalated' ||
    r.type === 'intensity_exceeded' ||
    (r.type === 'reloaded' && !r.ok);
  const text = describeEvent(r);
  return `${p.dim(r.time)} ${p.cyan(r.path)} ${bad ? p.red(text) : text}`;
}
