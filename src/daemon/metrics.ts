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
import type { ExitReason, SupervisorEvent } from '../core/index.ts';
import type { Counters } from '../runtime/cgroup/counters.ts';
import type { JournalRecord } from './journal.ts';
import { TextWriter } from './metrics-text.ts';
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
  paths: PathStats[];
  admissions: AdmissionCount[];
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

/** The label of a restart: why the instance before it stopped. */
export function restartReason(reason: ExitReason | undefined, startFailed: boolean): string {
  if (startFailed) return 'start_failed';
  if (!reason) return 'unknown';
  if (reason.kind === 'crashed') return reason.oom ? 'oom' : reason.signal ? 'signal' : 'exit_code';
  return reason.kind;
}

export class Metrics {
  readonly #tree: RunningTree;
  readonly #lastExit = new Map<string, { reason: ExitReason; startFailed: boolean }>();
  readonly #restarts = new Map<string, Record<string, number>>();
  readonly #backoff = new Map<string, number>();
  readonly #admissions = new Map<string, AdmissionCount>();
  readonly #refusals: Refusal[] = [];
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

  stats(): StatsReply {
    const started = performance.now();
    const tree = this.#tree;
    const sup = tree.supervisor;
    const rootDepth = slashes(sup.path);
    const entries = sup.tree();
    const paths: PathStats[] = [];
    for (const e of entries) {
      let grant: PathStats['grant'] = { cpu: null, memory: null, pids: null };
      let counters: Counters | null = null;
      try {
        grant = tree.grant ? tree.grant(e.path) : tree.resources(e.path).grant;
        counters = tree.counters?.(e.path) ?? null;
      } catch {
        // A path without a cgroup (yet): its counters are unknown.
      }
      let intensity: PathStats['intensity'] = null;
      if (e.kind === 'node') {
        const node = e.path === sup.path ? sup : nestedAt(tree, e.path);
        const w = node?.restartWindow();
        if (w) intensity = { ...w, ratio: w.intensity === 0 ? 1 : Math.min(1, w.restarts / w.intensity) };
      }
      const up = e.kind === 'node' ? e.state === 'ready' : e.state === 'running' || e.state === 'ready';
      paths.push({
        path: e.path,
        depth: slashes(e.path) - rootDepth,
        kind: e.kind,
        state: e.state,
        pid: e.pid,
        up,
        restarts: e.restarts,
        restartsByReason: this.#restarts.get(e.path) ?? {},
        grant,
        counters,
        intensity,
        backoffSeconds: e.state === 'restarting' ? (this.#backoff.get(e.path) ?? 0) / 1000 : 0,
        lastExit: e.lastExit ? describe(e.lastExit) : null,
      });
    }
    sumOomKills(paths);
    if (this.#changed) {
      this.#changed = false;
      tree.retainCounters?.(paths.map((p) => p.path));
    }
    return {
      at: Date.now(),
      tookMs: performance.now() - started,
      paths,
      admissions: this.admissions(),
    };
  }

  /** The Prometheus text exposition of `stats()`. */
  text(): string {
    return render(this.stats());
  }
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
function sumOomKills(paths: PathStats[]): void {
  for (let i = paths.length - 1; i >= 0; i--) {
    const p = paths[i] as PathStats;
    if (p.kind !== 'node' || !p.counters?.oomKillsLocal || p.counters.oomKills === null) continue;
    for (let j = i + 1; j < paths.length && (paths[j] as PathStats).depth > p.depth; j++) {
      const c = paths[j] as PathStats;
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

export function render(s: StatsReply): string {
  const w = new TextWriter();
  for (const [name, type, help] of families) w.family(name, type, help);
  for (const p of s.paths) {
    const l = { path: p.path };
    w.sample('captree_up', { path: p.path, kind: p.kind, state: p.state }, p.up ? 1 : 0);
    if (p.grant.cpu !== null) w.sample('captree_cpu_grant_cores', l, p.grant.cpu);
    if (p.grant.memory !== null) w.sample('captree_memory_grant_bytes', l, p.grant.memory);
    if (p.grant.pids !== null) w.sample('captree_pids_grant', l, p.grant.pids);
    const c = p.counters;
    if (c) {
      if (c.cpuSeconds !== null) w.sample('captree_cpu_seconds_total', l, c.cpuSeconds);
      if (c.throttledSeconds !== null) w.sample('captree_cpu_throttled_seconds_total', l, c.throttledSeconds);
      if (c.throttledPeriods !== null) w.sample('captree_cpu_throttled_periods_total', l, c.throttledPeriods);
      if (c.memoryBytes !== null) w.sample('captree_memory_bytes', l, c.memoryBytes);
      if (c.oomKills !== null) w.sample('captree_oom_kills_total', l, c.oomKills);
      if (c.pids !== null) w.sample('captree_pids', l, c.pids);
    }
    for (const [reason, n] of Object.entries(p.restartsByReason))
      w.sample('captree_restarts_total', { path: p.path, reason }, n);
    if (p.intensity) w.sample('captree_intensity_used_ratio', l, p.intensity.ratio);
    if (p.kind !== 'node') w.sample('captree_backoff_seconds', l, p.backoffSeconds);
  }
  for (const a of s.admissions)
    w.sample('captree_admissions_total', { node: a.node, result: a.result, reason: a.reason }, a.count);
  w.sample('captree_scrape_duration_seconds', {}, s.tookMs / 1000);
  return w.toString();
}
