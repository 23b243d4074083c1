/**
 * `captree top [PATH]`: a full-screen live view of the tree, redrawn every `-d` seconds (1 by
 * default) from `GET /v1/stats`: state, grant against use for cpu, memory and pids as bars,
 * throttling, restarts and each node's intensity fill. It asks for the rows the screen has room
 * for (`limit`, with the sort and filter applied by the daemon), so the daemon reads the kernel's
 * counters of those rows only (and, to sort by cpu or memory, that one counter of every row). CPU
 * use is the daemon's: the counter's growth between two reads, clamped to the grant (the quota
 * makes more impossible; a higher figure is only the two reads' timing). Between reads neither
 * top nor the daemon does anything; suspended (Ctrl-Z) or quit, nothing is read at all.
 */
import { urlPath } from '../../daemon/client.ts';
import type { StatsReply, StatsSort } from '../../daemon/metrics.ts';
import {
  CliError,
  type Command,
  connect,
  normalizePath,
  remoteOptions,
  stateOption,
  UsageError,
} from '../cli.ts';
import { formatBytes } from '../render.ts';

export interface ViewState {
  sort: StatsSort;
  filter: string;
  /** Typing a filter after `/`. */
  editing: boolean;
  interval: number;
}

const BAR = 10;
/** Title, keys, a blank line and the column titles. */
const HEADER_LINES = 4;

function bar(use: number | null, grant: number | null): string {
  if (grant === null || grant <= 0 || use === null) return `[${' '.repeat(BAR)}]`;
  const filled = Math.round(Math.min(1, Math.max(0, use / grant)) * BAR);
  return `[${'#'.repeat(filled)}${' '.repeat(BAR - filled)}]`;
}

/** How many rows a terminal of `rows` lines shows (the last line stays free for the cursor). */
export function rowsFor(rows: number): number {
  return Math.max(1, rows - 1 - HEADER_LINES);
}

/** The `/v1/stats` query of a view: the rows it shows, sorted and filtered by the daemon. */
export function statsQuery(path: string | null, view: ViewState, rows: number): string {
  const q = new URLSearchParams();
  if (path !== null) q.set('path', `/${urlPath(path)}`);
  if (view.sort !== 'tree') q.set('sort', view.sort);
  if (view.filter !== '') q.set('match', view.filter);
  q.set('limit', String(rowsFor(rows)));
  return `/v1/stats?${q.toString().replace(/%2F/g, '/')}`;
}

/** The screen for one read: header, column titles, one line per row, cut to `rows` × `columns`. */
export function frame(s: StatsReply, view: ViewState, size: { columns: number; rows: number }): string[] {
  const root = s.paths[0];
  const room = rowsFor(size.rows);
  const more = s.matched - s.paths.length;
  const list = more > 0 && s.paths.length >= room ? s.paths.slice(0, room - 1) : s.paths;
  const lines = [
    `captree top ${root?.path ?? ''}  ${new Date(s.at).toISOString().slice(11, 19)}  every ${view.interval}s  ` +
      `${s.up}/${s.total} up  sort: ${view.sort}${view.filter ? `  filter: ${view.filter} (${s.matched})` : ''}  (read in ${s.tookMs.toFixed(1)} ms)`,
    view.editing
      ? `filter: ${view.filter}_  (Enter keeps it, Esc clears)`
      : 'keys: q quit  c cpu  m memory  r restarts  t tree  / filter',
    '',
    `${'PATH'.padEnd(28)} ${'STATE'.padEnd(10)} ${'PID'.padStart(7)} ${'CPU use/grant'.padEnd(24)} ${'MEMORY use/grant'.padEnd(30)} ${'PIDS'.padEnd(20)} ${'THR'.padStart(4)} ${'RST'.padStart(4)} INTENSITY`,
  ];
  for (const p of list) {
    const name =
      view.sort === 'tree'
        ? `${'  '.repeat(p.depth)}${p.depth === 0 ? p.path : p.path.split('/').at(-1)}`
        : p.path;
    const cores = p.cores;
    const cpuText = `${cores === null ? '-' : cores.toFixed(2)}/${p.grant.cpu === null ? '-' : p.grant.cpu.toFixed(2)}`;
    const mem = p.counters?.memoryBytes ?? null;
    const memText = `${mem === null ? '-' : formatBytes(mem)}/${p.grant.memory === null ? '-' : formatBytes(p.grant.memory)}`;
    const pids = p.counters?.pids ?? null;
    const pidsText = `${pids ?? '-'}/${p.grant.pids ?? '-'}`;
    const thr = p.throttled === null ? '' : `${Math.round(p.throttled * 100)}%`;
    const intensity = p.intensity
      ? `${bar(p.intensity.restarts, p.intensity.intensity || 1)} ${p.intensity.restarts}/${p.intensity.intensity}`
      : p.backoffSeconds > 0
        ? `backoff ${p.backoffSeconds}s`
        : '';
    lines.push(
      `${name.padEnd(28).slice(0, 28)} ${p.state.padEnd(10)} ${String(p.pid ?? '-').padStart(7)} ` +
        `${bar(cores, p.grant.cpu)} ${cpuText.padEnd(11)} ${bar(mem, p.grant.memory)} ${memText.padEnd(17)} ` +
        `${bar(pids, p.grant.pids)} ${pidsText.padEnd(7)} ${thr.padStart(4)} ${String(p.restarts).padStart(4)} ${intensity}`,
    );
  }
  if (list.length < s.paths.length || more > 0)
    lines.push(`… ${s.matched - list.length} more (a taller terminal, a sort key or / shows them)`);
  return lines.slice(0, Math.max(1, size.rows - 1)).map((l) => l.slice(0, size.columns));
}

export const top: Command = {
  name: 'top',
  summary: 'full-screen live view: grant vs use, throttling, restarts, intensity',
  usage: 'captree top [PATH] [-d SECONDS] [--state DIR | --url URL --token-file FILE]',
  help: `
Shows the tree (or the subtree at PATH) full screen and redraws it every SECONDS (default 1):
each node's and child's state, its grant against its use for cpu, memory and pids as bars
(use is clamped to the grant: the kernel allows no more), the share of time its cpu quota
throttled it (THR), its restarts (RST), and for nodes the restart-intensity window's fill
(full: the next failure makes the node give up). Keys: q (or Ctrl-C) quits, c / m / r sort by
cpu, memory or restarts, t back to tree order, / filters by path or state.
Only the rows the terminal has room for are read (sorting by cpu or memory reads that figure
of every row); nothing is read between redraws, nor while top is suspended.

Example:
  captree top
  captree top /demo/api -d 2
  captree top --url http://127.0.0.1:7070 --token-file admin.token`,
  options: {
    delay: { type: 'string', short: 'd', description: 'seconds between redraws (default 1; 0.1 to 3600)' },
    ...stateOption,
    ...remoteOptions,
  },
  positionals: [0, 1],
  async run({ values, positionals }, io) {
    const interval = values.delay === undefined ? 1 : Number(values.delay);
    if (!Number.isFinite(interval) || interval < 0.1 || interval > 3600)
      throw new UsageError(`-d ${values.delay}: expected seconds between 0.1 and 3600`);
    const path = positionals[0] === undefined ? null : normalizePath(positionals[0]);
    const { client } = await connect(values, io);
    const out = io.stdout;
    const view: ViewState = { sort: 'tree', filter: '', editing: false, interval };
    const size = () => ({ columns: out.columns || 120, rows: out.rows || 40 });
    // A wrong PATH fails here, before the screen is taken.
    let stats = await client.json<StatsReply>(statsQuery(path, view, size().rows));
    const stdin = process.stdin;
    if (!out.isTTY || !stdin.isTTY)
      throw new CliError('captree top needs a terminal; for a snapshot use: captree ps --json');
    let timer: NodeJS.Timeout | null = null;
    let fetching = false;
    /** A key or a resize asked for a read while one was under way: read again after it. */
    let again = false;
    let closed = false;
    const draw = () => {
      if (closed) return;
      out.write(`\x1b[H\x1b[2J${frame(stats, view, size()).join('\n')}`);
    };
    const tick = async (): Promise<void> => {
      if (fetching) {
        again = true;
        return;
      }
      fetching = true;
      try {
        stats = await client.json<StatsReply>(statsQuery(path, view, size().rows));
        draw();
      } catch (err) {
        if (!closed) out.write(`\x1b[H\x1b[2K captree top: ${(err as Error).message}`);
      } finally {
        fetching = false;
      }
      if (again && !closed) {
        again = false;
        return tick();
      }
    };
    const redraw = () => {
      draw();
      void tick();
    };
    return await new Promise<number>((resolve) => {
      const finish = () => {
        closed = true;
        if (timer) clearInterval(timer);
        stdin.off('data', onKey);
        out.off('resize', redraw);
        stdin.setRawMode(false);
        stdin.pause();
        out.write('\x1b[?25h\x1b[?1049l');
        resolve(0);
      };
      const onKey = (data: Buffer) => {
        for (const ch of data.toString('utf8')) {
          if (view.editing) {
            if (ch === '\r' || ch === '\n') view.editing = false;
            else if (ch === '\x1b') {
              view.editing = false;
              view.filter = '';
            } else if (ch === '\x7f') view.filter = view.filter.slice(0, -1);
            else if (ch >= ' ') view.filter += ch;
          } else if (ch === 'q' || ch === '\x03') return finish();
          else if (ch === 'c') view.sort = 'cpu';
          else if (ch === 'm') view.sort = 'memory';
          else if (ch === 'r') view.sort = 'restarts';
          else if (ch === 't') view.sort = 'tree';
          else if (ch === '/') view.editing = true;
        }
        redraw();
      };
      out.write('\x1b[?1049h\x1b[?25l');
      stdin.setRawMode(true);
      stdin.resume();
      stdin.on('data', onKey);
      out.on('resize', redraw);
      draw();
      timer = setInterval(() => void tick(), interval * 1000);
    });
  },
};
