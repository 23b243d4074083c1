/**
 * What the tree looks like in figures, for `GET /metrics` (Prometheus text), `GET /v1/stats`
 * (the same as JSON, for `captree top` and the dashboard): per node and child its grant, the
 * kernel's counters of its cgroup, restarts by reason, how full its restart-intensity window is
 * and the backoff it waits out; per node, admissions by result and reason.
 *
 * Everything is computed when asked: the counters are read from cgroupfs during the request,
 * the rest comes from the live supervisor and from counts this collector keeps as events pass
 * (no timer, so an idle daemon with no scraper does no work at all).
 */
import type { ExitReason, SupervisorEvent, TreeEntry } from '../core/index.ts';
import { type Counters, Want } from '../runtime/cgroup/counters.ts';
import type { JournalRecord } from './journal.ts';
import { quoted, SeriesLines, TextWriter } from './metrics-text.ts';
import type { PsEntry, RunningTree } from './types.ts';

/** One node or child, as `/v1/stats` returns it. */
export interface PathStats {
  path: string;
  depth: number;
  kind: PsEntry['kind'];
  state: string;
  pid: number | null;
  /** 1 when it is up: a child running or ready, a node ready. */
  up: boolean;
  restarts: number;
  /** Restarts since the daemon started, by the reason the instance before exited. */
  restartsByReason: Record<string, number>;
  /** Cores, bytes, count; null = unlimited (shares its parent's remainder). */
  grant: { cpu: number | null; memory: number | null; pids: number | null };
  /** The kernel's counters of its cgroup now; null where there is none. */
  counters: Counters | null;
  /**
   * Cores used since the daemon's previous `/v1/stats` read of it, clamped to the grant (the
   * quota allows no more; a higher figure is only the two reads' timing); null until two reads.
   */
  cores: number | null;
  /** Share of that interval its cpu quota throttled it (0 to 1); null until two reads. */
  throttled: number | null;
  /** Nodes: restarts in the window over `intensity` (1: the next failure escalates). */
  intensity: { restarts: number; intensity: number; period: number; ratio: number } | null;
  /** Children waiting out a backoff delay: its length, s; else 0. */
  backoffSeconds: number;
  lastExit: string | null;
}

export interface StatsReply {
  /** ms epoch when read. */
  at: number;
  /** Time the daemon took to read it, ms. */
  tookMs: number;
  /** Paths in scope (the subtree asked for, within the caller's reach) and how many are up. */
  total: number;
  up: number;
  /** Of those, how many `match` kept, before `offset` and `limit` cut the list. */
  matched: number;
  paths: PathStats[];
  admissions: AdmissionCount[];
}

export type StatsSort = 'tree' | 'cpu' | 'memory' | 'restarts';

/** What a read asks for; nothing given: every path, in tree order, all counters. */
export interface StatsQuery {
  /** The paths in scope (a subtree, a caller's reach); default all. */
  keep?: (path: string) => boolean;
  /** Keeps the paths containing this text, or in this state. */
  match?: string;
  /** cpu: by `cores`, memory: by bytes, restarts: by count, each largest first; default tree. */
  sort?: StatsSort;
  /** The window of the sorted list answered; counters are read for its rows only (and the sort key for all). */
  offset?: number;
  limit?: number;
  /**
   * Takes this read as the sample `cores` and `throttled` are measured against (`/v1/stats`: yes;
   * a Prometheus scrape, which computes its own rates, no).
   */
  rates?: boolean;
}

export interface AdmissionCount {
  node: string;
  result: 'admitted' | 'refused';
  /** `ok` for admissions; the error code of a refusal (`rejected`, `over_max_grant`, ...). */
  reason: string;
  count: number;
}

/** A refusal as the dashboard lists it. */
export interface Refusal {
  node: string;
  /** ms epoch. */
  ts: number;
  status: number;
  code: string;
  message: string;
}

const RECENT_REFUSALS = 50;
/** Two reads closer than this keep the rate of the last longer interval (too short to measure). */
const MIN_RATE_INTERVAL_MS = 100;

/** The label of a restart: why the instance before it stopped. */
export function restartReason(reason: ExitReason | undefined, startFailed: boolean): string {
  if (startFailed) return 'start_failed';
  if (!reason) return 'unknown';
  if (reason.kind === 'crashed') return reason.oom ? 'oom' : reason.signal ? 'signal' : 'exit_code';
  return reason.kind;
}

/** One path while a read is assembled. */
interface Row {
  e: TreeEntry;
  depth: number;
  grant: PathStats['grant'];
  counters: Counters | null;
  cores: number | null;
  throttled: number | null;
}

/** The last cpu reading of a path and the rates measured up to it. */
interface Sample {
  at: number;
  cpu: number;
  throttledSeconds: number | null;
  cores: number | null;
  throttled: number | null;
}

export class Metrics {
  readonly #tree: RunningTree;
  readonly #lastExit = new Map<string, { reason: ExitReason; startFailed: boolean }>();
  readonly #restarts = new Map<string, Record<string, number>>();
  readonly #backoff = new Map<string, number>();
  readonly #admissions = new Map<string, AdmissionCount>();
  readonly #refusals: Refusal[] = [];
  readonly #samples = new Map<string, Sample>();
  /** Children came or went since the last scrape: counter files of the gone ones to close. */
  #changed = true;

  constructor(tree: RunningTree) {
    this.#tree = tree;
  }

  /** Fed every engine event (the daemon subscribes it next to the journal). */
  observe(e: SupervisorEvent | JournalRecord): void {
    switch (e.type) {
      case 'exited':
        if (!e.expected) this.#lastExit.set(e.path, { reason: e.reason, startFailed: false });
        break;
      case 'start_failed':
        this.#lastExit.set(e.path, { reason: e.reason, startFailed: true });
        break;
      case 'started':
        // A new instance: a new cgroup whose counters start over.
        this.#samples.delete(e.path);
        break;
      case 'restarting': {
        const last = this.#lastExit.get(e.path);
        const label = e.because ? 'sibling' : restartReason(last?.reason, last?.startFailed ?? false);
        const counts = this.#restarts.get(e.path) ?? {};
        counts[label] = (counts[label] ?? 0) + 1;
        this.#restarts.set(e.path, counts);
        this.#backoff.set(e.path, e.delay);
        break;
      }
      case 'child_added':
        this.#changed = true;
        break;
      case 'child_deleted':
        this.#changed = true;
        this.#lastExit.delete(e.path);
        this.#restarts.delete(e.path);
        this.#backoff.delete(e.path);
        this.#samples.delete(e.path);
        forgetLabel(e.path);
        break;
    }
  }

  /** An answer of the admission endpoint: counted, and kept if it refused. */
  admission(node: string, status: number, body: unknown): void {
    const ok = status < 300;
    const error = (body as { error?: { code?: string; message?: string } } | null)?.error;
    const reason = ok ? 'ok' : (error?.code ?? String(status));
    const key = `${node}\0${ok}\0${reason}`;
    const count = this.#admissions.get(key) ?? {
      node,
      result: ok ? 'admitted' : 'refused',
      reason,
      count: 0,
    };
    count.count++;
    this.#admissions.set(key, count);
    if (ok) return;
    this.#refusals.push({ node, ts: Date.now(), status, code: reason, message: error?.message ?? '' });
    if (this.#refusals.length > RECENT_REFUSALS) this.#refusals.shift();
  }

  admissions(): AdmissionCount[] {
    return [...this.#admissions.values()].map((a) => ({ ...a }));
  }

  /** The most recent refusals, newest last. */
  refusals(): Refusal[] {
    return [...this.#refusals];
  }

  stats(q: StatsQuery = {}): StatsReply {
    const started = performance.now();
    const tree = this.#tree;
    const sup = tree.supervisor;
    const rootDepth = slashes(sup.path);
    const rows: Row[] = [];
    let up = 0;
    for (const e of sup.tree()) {
      if (q.keep && !q.keep(e.path)) continue;
      let grant: PathStats['grant'] = { cpu: null, memory: null, pids: null };
      try {
        grant = tree.grant ? tree.grant(e.path) : tree.resources(e.path).grant;
      } catch {
        // A path without a cgroup (yet): no grant to show.
      }
      if (isUp(e)) up++;
      rows.push({
        e,
        depth: slashes(e.path) - rootDepth,
        grant,
        counters: null,
        cores: null,
        throttled: null,
      });
    }
    const match = q.match;
    let list = match ? rows.filter((r) => r.e.path.includes(match) || r.e.state === match) : rows;
    const matched = list.length;
    const windowed = q.offset !== undefined || q.limit !== undefined;
    const at = Date.now();
    if (tree.counters) {
      tree.countersPass?.(true);
      try {
        if (!windowed) {
          for (const r of rows) r.counters = this.#read(r, Want.all);
        } else {
          // The sort key for every listed row, OOM kills for all (a v1 node's figure sums its
          // children's; they are re-read only after the host counted a kill), the rest for the window.
          const sortWant = q.sort === 'cpu' ? Want.cpu : q.sort === 'memory' ? Want.memory : 0;
          const listed = match ? new Set(list) : null;
          for (const r of rows)
            r.counters = this.#read(r, Want.oomKills | (listed === null || listed.has(r) ? sortWant : 0));
          if (q.rates && sortWant === Want.cpu) for (const r of list) this.#rate(r, at);
          list = sorted(list, q.sort);
          list = list.slice(q.offset ?? 0, (q.offset ?? 0) + (q.limit ?? list.length));
          const rest = Want.all & ~(Want.oomKills | sortWant);
          for (const r of list) r.counters = merge(r.counters, this.#read(r, rest));
        }
      } finally {
        tree.countersPass?.(false);
      }
      if (q.rates) for (const r of list) if (r.cores === null) this.#rate(r, at);
    }
    if (!windowed) list = sorted(list, q.sort);
    sumOomKills(rows);
    if (this.#changed) {
      this.#changed = false;
      tree.retainCounters?.(sup.tree().map((e) => e.path));
    }
    const paths = list.map((r) => this.#pathStats(r));
    return {
      at,
      tookMs: performance.now() - started,
      total: rows.length,
      up,
      matched,
      paths,
      admissions: q.keep ? this.admissions().filter((a) => q.keep?.(a.node)) : this.admissions(),
    };
  }

  #read(r: Row, want: number): Counters | null {
    if (want === 0) return r.counters;
    try {
      return this.#tree.counters?.(r.e.path, want, r.grant.cpu !== null) ?? null;
    } catch {
      // A path without a cgroup (yet): its counters are unknown.
      return null;
    }
  }

  /** Cores used and share throttled since the path's previous sample; the sample moves on. */
  #rate(r: Row, at: number): void {
    const cpu = r.counters?.cpuSeconds;
    if (cpu === null || cpu === undefined) return;
    const thr = r.counters?.throttledSeconds ?? null;
    const last = this.#samples.get(r.e.path);
    if (last && at - last.at < MIN_RATE_INTERVAL_MS) {
      r.cores = last.cores;
      r.throttled = last.throttled;
      return;
    }
    if (last && cpu >= last.cpu) {
      const seconds = (at - last.at) / 1000;
      const cores = (cpu - last.cpu) / seconds;
      r.cores = r.grant.cpu === null ? cores : Math.min(cores, r.grant.cpu);
      r.throttled =
        thr === null || last.throttledSeconds === null
          ? null
          : Math.min(1, Math.max(0, (thr - last.throttledSeconds) / seconds));
    }
    this.#samples.set(r.e.path, { at, cpu, throttledSeconds: thr, cores: r.cores, throttled: r.throttled });
  }

  #pathStats(r: Row): PathStats {
    const e = r.e;
    const sup = this.#tree.supervisor;
    let intensity: PathStats['intensity'] = null;
    if (e.kind === 'node') {
      const node = e.path === sup.path ? sup : nestedAt(this.#tree, e.path);
      const w = node?.restartWindow();
      if (w) intensity = { ...w, ratio: w.intensity === 0 ? 1 : Math.min(1, w.restarts / w.intensity) };
    }
    return {
      path: e.path,
      depth: r.depth,
      kind: e.kind,
      state: e.state,
      pid: e.pid,
      up: isUp(e),
      restarts: e.restarts,
      restartsByReason: this.#restarts.get(e.path) ?? {},
      grant: r.grant,
      counters: r.counters,
      cores: r.cores,
      throttled: r.throttled,
      intensity,
      backoffSeconds: e.state === 'restarting' ? (this.#backoff.get(e.path) ?? 0) / 1000 : 0,
      lastExit: e.lastExit ? describe(e.lastExit) : null,
    };
  }

  /** The Prometheus text exposition of `stats()`. */
  text(): string {
    return render(this.stats());
  }
}

const SORTS: readonly StatsSort[] = ['tree', 'cpu', 'memory', 'restarts'];

/** `?match=&sort=&offset=&limit=` of `/v1/stats`, or why not (only the parameters given appear). */
export function statsWindow(params: URLSearchParams): {
  window: Pick<StatsQuery, 'match' | 'sort' | 'offset' | 'limit'>;
  error: string | null;
} {
  const window: Pick<StatsQuery, 'match' | 'sort' | 'offset' | 'limit'> = {};
  const match = params.get('match');
  if (match !== null) window.match = match;
  const sort = params.get('sort');
  if (sort !== null) {
    if (!SORTS.includes(sort as StatsSort))
      return { window, error: `sort=${sort}: expected one of ${SORTS.join(', ')}` };
    window.sort = sort as StatsSort;
  }
  for (const key of ['offset', 'limit'] as const) {
    const raw = params.get(key);
    if (raw === null) continue;
    const n = Number(raw);
    if (raw.trim() === '' || !Number.isInteger(n) || n < 0)
      return { window, error: `${key}=${raw}: expected an integer ≥ 0` };
    window[key] = n;
  }
  return { window, error: null };
}

function isUp(e: TreeEntry): boolean {
  return e.kind === 'node' ? e.state === 'ready' : e.state === 'running' || e.state === 'ready';
}

function sorted(list: Row[], sort: StatsSort | undefined): Row[] {
  const by = (key: (r: Row) => number) => [...list].sort((a, b) => key(b) - key(a));
  switch (sort) {
    case 'cpu':
      return by((r) => r.cores ?? -1);
    case 'memory':
      return by((r) => r.counters?.memoryBytes ?? -1);
    case 'restarts':
      return by((r) => r.e.restarts);
    default:
      return list;
  }
}

/** Two partial reads of one group as one: what the second read fills in. */
function merge(a: Counters | null, b: Counters | null): Counters | null {
  if (a === null || b === null) return a ?? b;
  return {
    cpuSeconds: a.cpuSeconds ?? b.cpuSeconds,
    throttledSeconds: a.throttledSeconds ?? b.throttledSeconds,
    throttledPeriods: a.throttledPeriods ?? b.throttledPeriods,
    memoryBytes: a.memoryBytes ?? b.memoryBytes,
    oomKills: a.oomKills ?? b.oomKills,
    oomKillsLocal: a.oomKillsLocal || b.oomKillsLocal,
    pids: a.pids ?? b.pids,
  };
}

function slashes(path: string): number {
  let n = 0;
  for (let i = path.indexOf('/'); i >= 0; i = path.indexOf('/', i + 1)) n++;
  return n;
}

function describe(reason: ExitReason): string {
  switch (reason.kind) {
    case 'crashed':
      return reason.message;
    case 'permanent_failure':
    case 'escalated':
      return `${reason.kind}: ${reason.message}`;
    default:
      return reason.kind;
  }
}

function nestedAt(tree: RunningTree, path: string) {
  const at = tree.locate(path);
  return at ? at.supervisor.nested(at.id) : undefined;
}

/**
 * cgroup v1 counts an OOM kill in the victim's own group only: a node's figure is its own plus
 * its children's (summed first, walking up from the leaves). v2's `memory.events` is already
 * hierarchical.
 */
function sumOomKills(rows: Row[]): void {
  for (let i = rows.length - 1; i >= 0; i--) {
    const p = rows[i] as Row;
    if (p.e.kind !== 'node' || !p.counters?.oomKillsLocal || p.counters.oomKills === null) continue;
    for (let j = i + 1; j < rows.length && (rows[j] as Row).depth > p.depth; j++) {
      const c = rows[j] as Row;
      if (c.depth === p.depth + 1) p.counters.oomKills += c.counters?.oomKills ?? 0;
    }
  }
}

const families: [string, 'counter' | 'gauge', string][] = [
  ['captree_up', 'gauge', 'Whether the node or child is up (1) or not (0); state is its current state.'],
  ['captree_cpu_grant_cores', 'gauge', 'CPU granted, in cores (absent: shares its parent remainder).'],
  ['captree_cpu_seconds_total', 'counter', 'CPU time used by the cgroup, in seconds.'],
  [
    'captree_cpu_throttled_seconds_total',
    'counter',
    'Time the cgroup was throttled by its CPU quota, in seconds.',
  ],
  ['captree_cpu_throttled_periods_total', 'counter', 'CFS periods in which the cgroup was throttled.'],
  ['captree_memory_grant_bytes', 'gauge', 'Memory granted, in bytes (absent: shares its parent remainder).'],
  ['captree_memory_bytes', 'gauge', 'Memory used by the cgroup, in bytes.'],
  ['captree_oom_kills_total', 'counter', 'Processes the kernel OOM-killed in the cgroup and below.'],
  ['captree_pids_grant', 'gauge', 'Processes and threads granted (absent: shares its parent remainder).'],
  ['captree_pids', 'gauge', 'Processes and threads in the cgroup.'],
  [
    'captree_restarts_total',
    'counter',
    'Restarts since the daemon started, by why the instance before stopped.',
  ],
  [
    'captree_intensity_used_ratio',
    'gauge',
    'Restarts within the period over the intensity: 1 means the next failure makes the node give up.',
  ],
  [
    'captree_backoff_seconds',
    'gauge',
    'Backoff delay the child is waiting out before its restart, in seconds.',
  ],
  [
    'captree_admissions_total',
    'counter',
    'Run-time admission requests answered, by node, result and reason.',
  ],
  ['captree_scrape_duration_seconds', 'gauge', 'Time the daemon took to collect this scrape, in seconds.'],
];

/** Slots of a path's series in its `SeriesLines` (the families one path has one line in). */
const Slot = {
  up: 0,
  cpuGrant: 1,
  memoryGrant: 2,
  pidsGrant: 3,
  cpuSeconds: 4,
  throttledSeconds: 5,
  throttledPeriods: 6,
  memory: 7,
  oomKills: 8,
  pids: 9,
  intensity: 10,
  backoff: 11,
  count: 12,
} as const;

/**
 * The text exposition of a read. A path's lines come from its `SeriesLines`, kept between
 * scrapes: a value unchanged since the last scrape reuses its line, its label set is escaped once.
 */
export function render(s: StatsReply): string {
  return renderChunks(s).join('');
}

/** `render` in pieces of about 20 KiB, to be written one after the other. */
export function renderChunks(s: StatsReply): string[] {
  const w = new TextWriter();
  const f = (name: string) => {
    const family = families.find((x) => x[0] === name) as (typeof families)[number];
    return w.family(family[0], family[1], family[2]);
  };
  const upLines = f('captree_up');
  const cpuGrant = f('captree_cpu_grant_cores');
  const cpuSeconds = f('captree_cpu_seconds_total');
  const throttledSeconds = f('captree_cpu_throttled_seconds_total');
  const throttledPeriods = f('captree_cpu_throttled_periods_total');
  const memoryGrant = f('captree_memory_grant_bytes');
  const memory = f('captree_memory_bytes');
  const oomKills = f('captree_oom_kills_total');
  const pidsGrant = f('captree_pids_grant');
  const pids = f('captree_pids');
  f('captree_restarts_total');
  const intensity = f('captree_intensity_used_ratio');
  const backoff = f('captree_backoff_seconds');
  f('captree_admissions_total');
  f('captree_scrape_duration_seconds');
  for (const p of s.paths) {
    const l = linesOf(p.path);
    upLines.push(l.line(Slot.up, 'captree_up', p.up ? 1 : 0, upLabels(p.kind, p.state)));
    const g = p.grant;
    if (g.cpu !== null) cpuGrant.push(l.line(Slot.cpuGrant, 'captree_cpu_grant_cores', g.cpu));
    if (g.memory !== null) memoryGrant.push(l.line(Slot.memoryGrant, 'captree_memory_grant_bytes', g.memory));
    if (g.pids !== null) pidsGrant.push(l.line(Slot.pidsGrant, 'captree_pids_grant', g.pids));
    const c = p.counters;
    if (c) {
      if (c.cpuSeconds !== null)
        cpuSeconds.push(l.line(Slot.cpuSeconds, 'captree_cpu_seconds_total', c.cpuSeconds));
      if (c.throttledSeconds !== null)
        throttledSeconds.push(
          l.line(Slot.throttledSeconds, 'captree_cpu_throttled_seconds_total', c.throttledSeconds),
        );
      if (c.throttledPeriods !== null)
        throttledPeriods.push(
          l.line(Slot.throttledPeriods, 'captree_cpu_throttled_periods_total', c.throttledPeriods),
        );
      if (c.memoryBytes !== null) memory.push(l.line(Slot.memory, 'captree_memory_bytes', c.memoryBytes));
      if (c.oomKills !== null) oomKills.push(l.line(Slot.oomKills, 'captree_oom_kills_total', c.oomKills));
      if (c.pids !== null) pids.push(l.line(Slot.pids, 'captree_pids', c.pids));
    }
    for (const reason in p.restartsByReason)
      w.sample('captree_restarts_total', { path: p.path, reason }, p.restartsByReason[reason] as number);
    if (p.intensity)
      intensity.push(l.line(Slot.intensity, 'captree_intensity_used_ratio', p.intensity.ratio));
    if (p.kind !== 'node') backoff.push(l.line(Slot.backoff, 'captree_backoff_seconds', p.backoffSeconds));
  }
  for (const a of s.admissions)
    w.sample('captree_admissions_total', { node: a.node, result: a.result, reason: a.reason }, a.count);
  w.sample('captree_scrape_duration_seconds', {}, s.tookMs / 1000);
  return w.chunks();
}

/** Each path's kept lines; forgotten when the path goes (and all past a bound). */
const kept = new Map<string, SeriesLines>();
const KEPT_PATHS = 100_000;

function linesOf(path: string): SeriesLines {
  let l = kept.get(path);
  if (l === undefined) {
    if (kept.size >= KEPT_PATHS) kept.clear();
    l = new SeriesLines({ path }, Slot.count);
    kept.set(path, l);
  }
  return l;
}

function forgetLabel(path: string): void {
  kept.delete(path);
}

/** `kind="...",state="..."` of `captree_up`, one string per pair. */
const upLabelTexts = new Map<string, Map<string, string>>();

function upLabels(kind: string, state: string): string {
  let byState = upLabelTexts.get(kind);
  if (!byState) {
    byState = new Map();
    upLabelTexts.set(kind, byState);
  }
  let text = byState.get(state);
  if (text === undefined) {
    text = `kind=${quoted(kind)},state=${quoted(state)}`;
    byState.set(state, text);
  }
  return text;
}
