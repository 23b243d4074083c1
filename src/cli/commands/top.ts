/**
 * `captree top [PATH]`: a full-screen live view of the tree, redrawn every `-d` seconds (1 by
 * default) from `GET /v1/stats`: state, grant against use for cpu, memory and pids as bars,
 * throttling, restarts and each node's intensity fill. CPU use is the counter's growth between
 * two reads, clamped to the grant (the quota makes more impossible; a higher figure is only the
 * two reads' timing). Between reads neither top nor the daemon does anything; suspended (Ctrl-Z)
 * or quit, nothing is read at all.
 */
import { urlPath } from '../../daemon/client.ts';
import type { PathStats, StatsReply } from '../../daemon/metrics.ts';
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

type SortKey = 'tree' | 'cpu' | 'memory' | 'restarts';

export interface Sample {
  at: number;
  cpu: Map<string, number>;
  throttled: Map<string, number>;
}

export interface ViewState {
  sort: SortKey;
  filter: string;
  /** Typing a filter after `/`. */
  editing: boolean;
  interval: number;
}

const BAR = 10;

function bar(use: number | null, grant: number | null): string {
  if (grant === null || grant <= 0 || use === null) return `[${' '.repeat(BAR)}]`;
  const filled = Math.round(Math.min(1, Math.max(0, use / grant)) * BAR);
  return `[${'#'.repeat(filled)}${' '.repeat(BAR - filled)}]`;
}

function sampleOf(s: StatsReply): Sample {
  const cpu = new Map<string, number>();
  const throttled = new Map<string, number>();
  for (const p of s.paths) {
    if (p.counters?.cpuSeconds != null) cpu.set(p.path, p.counters.cpuSeconds);
    if (p.counters?.throttledSeconds != null) throttled.set(p.path, p.counters.throttledSeconds);
  }
  return { at: s.at, cpu, throttled };
}

/** Cores used since `prev`, clamped to the grant; null until two reads exist. */
export function coresUsed(p: PathStats, prev: Sample | null, at: number): number | null {
  const now = p.counters?.cpuSeconds;
  const then = prev?.cpu.get(p.path);
  if (now == null || then === undefined || !prev || at <= prev.at) return null;
  const cores = Math.max(0, (now - then) / ((at - prev.at) / 1000));
  return p.grant.cpu === null ? cores : Math.min(cores, p.grant.cpu);
}

/** The screen for one read: header, column titles, one line per row, cut to `rows` × `columns`. */
export function frame(
  s: StatsReply,
  prev: Sample | null,
  view: ViewState,
  size: { columns: number; rows: number },
): string[] {
  const root = s.paths[0];
  let list = s.paths.map((p) => ({ p, cores: coresUsed(p, prev, s.at) }));
  if (view.filter !== '')
    list = list.filter((r) => r.p.path.includes(view.filter) || r.p.state === view.filter);
  if (view.sort === 'cpu') list.sort((a, b) => (b.cores ?? -1) - (a.cores ?? -1));
  else if (view.sort === 'memory')
    list.sort((a, b) => (b.p.counters?.memoryBytes ?? -1) - (a.p.counters?.memoryBytes ?? -1));
  else if (view.sort === 'restarts') list.sort((a, b) => b.p.restarts - a.p.restarts);
  const up = s.paths.filter((p) => p.up).length;
  const lines = [
    `captree top ${root?.path ?? ''}  ${new Date(s.at).toISOString().slice(11, 19)}  every ${view.interval}s  ` +
      `${up}/${s.paths.length} up  sort: ${view.sort}${view.filter ? `  filter: ${view.filter}` : ''}  (read in ${s.tookMs.toFixed(1)} ms)`,
    view.editing
      ? `filter: ${view.filter}_  (Enter keeps it, Esc clears)`
      : 'keys: q quit  c cpu  m memory  r restarts  t tree  / filter',
    '',
    `${'PATH'.padEnd(28)} ${'STATE'.padEnd(10)} ${'PID'.padStart(7)} ${'CPU use/grant'.padEnd(24)} ${'MEMORY use/grant'.padEnd(30)} ${'PIDS'.padEnd(20)} ${'THR'.padStart(4)} ${'RST'.padStart(4)} INTENSITY`,
  ];
  for (const { p, cores } of list) {
    const name =
      view.sort === 'tree'
        ? `${'  '.repeat(p.depth)}${p.depth === 0 ? p.path : p.path.split('/').at(-1)}`
        : p.path;
    const cpuText = `${cores === null ? '-' : cores.toFixed(2)}/${p.grant.cpu === null ? '-' : p.grant.cpu.toFixed(2)}`;
    const mem = p.counters?.memoryBytes ?? null;
    const memText = `${mem === null ? '-' : formatBytes(mem)}/${p.grant.memory === null ? '-' : formatBytes(p.grant.memory)}`;
    const pids = p.counters?.pids ?? null;
    const pidsText = `${pids ?? '-'}/${p.grant.pids ?? '-'}`;
    const t0 = prev?.throttled.get(p.path);
    const t1 = p.counters?.throttledSeconds;
    const thr =
      t0 !== undefined && t1 != null && prev && s.at > prev.at
        ? `${Math.round(Math.min(1, (t1 - t0) / ((s.at - prev.at) / 1000)) * 100)}%`
        : '';
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
Nothing is read between redraws, nor while top is suspended.

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
    const query = path === null ? '/v1/stats' : `/v1/stats?path=${encodeURIComponent(`/${urlPath(path)}`)}`;
    // A wrong PATH fails here, before the screen is taken.
    let stats = await client.json<StatsReply>(query);
    const out = io.stdout;
    const stdin = process.stdin;
    if (!out.isTTY || !stdin.isTTY)
      throw new CliError('captree top needs a terminal; for a snapshot use: captree ps --json');
    const view: ViewState = { sort: 'tree', filter: '', editing: false, interval };
    let prev: Sample | null = null;
    let timer: NodeJS.Timeout | null = null;
    let fetching = false;
    const draw = () => {
      const lines = frame(stats, prev, view, { columns: out.columns || 120, rows: out.rows || 40 });
      out.write(`\x1b[H\x1b[2J${lines.join('\n')}`);
    };
    const tick = async () => {
      if (fetching) return;
      fetching = true;
      try {
        const next = await client.json<StatsReply>(query);
        prev = sampleOf(stats);
        stats = next;
        draw();
      } catch (err) {
        out.write(`\x1b[H\x1b[2K captree top: ${(err as Error).message}`);
      } finally {
        fetching = false;
      }
    };
    return await new Promise<number>((resolve) => {
      const finish = () => {
        if (timer) clearInterval(timer);
        stdin.off('data', onKey);
        out.off('resize', draw);
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
        draw();
      };
      out.write('\x1b[?1049h\x1b[?25l');
      stdin.setRawMode(true);
      stdin.resume();
      stdin.on('data', onKey);
      out.on('resize', draw);
      draw();
      void tick();
      timer = setInterval(() => void tick(), interval * 1000);
    });
  },
};
