/**
 * Reconciliation on a running tree: what it is (`actual`, `snapshot`), applying a desired
 * manifest (`apply`), finishing an apply a killed daemon left (`resume`), and drift seen in the
 * events, journalled as `reconcile_required | reconcile_recommended | reconcile_blocked`.
 * The decisions are src/reconcile's (pure); this module measures, persists and carries out.
 *
 * Durability of an apply (section `reconcile` of state.json, and `applied.json`):
 * 1. Before the first step: the desired tree is written to `applied.json` and the section says
 *    `{generation: N+1, applying: {steps, done: 0, pids}}`: the steps and the pid of every
 *    process before any of them ran. Both fsync'd.
 * 2. After each step: `done` advances (state.json rewritten whole, fsync'd), and a
 *    `reconcile_step` event is journalled.
 * 3. At the end: `applying` goes; `reconcile_applied` is journalled with what was restarted,
 *    what the plan said, and any difference.
 * A daemon killed in between is followed by `up`, which builds the tree from `applied.json`
 * (the desired tree: steps that change specs are done by building it), adopts what still runs,
 * then `resume` restarts only children still running the instance they had before the apply
 * (same pid): a child already restarted, or stopped and started again by the recovery, is not
 * restarted twice. Limits are written again (idempotent).
 * The generation goes up by one per apply that changes something and stays across daemon
 * restarts until a clean `down`; a plan names it and `apply --plan` refuses another.
 */
import { join } from 'node:path';
import { grantOf } from '../caps/index.ts';
import { describeExit, type SupervisorEvent, type TreeEntry } from '../core/index.ts';
import type { ManifestTree } from '../manifest/index.ts';
import {
  type Actual,
  type ActualChild,
  admitTree,
  assess,
  contractOf,
  type Hold,
  hasChanges,
  indexTree,
  type Observed,
  type Plan,
  type Recommendation,
  type Reserved,
  type Snapshot,
  type StatusReport,
  type Step,
  specDigest,
} from '../reconcile/index.ts';
import type { CgroupGroup } from '../runtime/cgroup/index.ts';
import { availableSecrets, type RunningTree } from './build-tree.ts';
import type { DynamicChildren } from './dynamic-children.ts';
import { readPrivate, writeAtomic } from './private-fs.ts';
import { StepRunner } from './reconcile-apply.ts';
import { planAgainst } from './reconcile-plan.ts';
import type { DurableState, StatePaths } from './state.ts';

/** What the daemon journals about reconciliation (see `JournalEvent`). */
export type ReconcileEvent =
  | {
      readonly type: 'reconcile_apply';
      readonly path: string;
      readonly at: number;
      readonly generation: number;
      readonly steps: number;
      /** The plan's restart set. */
      readonly restarts: readonly string[];
      readonly resumed: boolean;
    }
  | {
      readonly type: 'reconcile_step';
      readonly path: string;
      readonly at: number;
      readonly generation: number;
      readonly step: number;
      readonly op: Step['op'];
      readonly error: string | null;
    }
  | {
      readonly type: 'reconcile_applied';
      readonly path: string;
      readonly at: number;
      readonly generation: number;
      /** Processes seen restarted (their pid changed). */
      readonly restarted: readonly string[];
      /** The processes the plan said it would restart. */
      readonly planned: readonly string[];
      /** Where the result differs from the plan, in words (empty: as planned). */
      readonly differences: readonly string[];
      readonly resumed: boolean;
    }
  | {
      /** An operator held a subtree from reconciliation (`captree hold`), or released it. */
      readonly type: 'reconcile_hold' | 'reconcile_release';
      readonly path: string;
      readonly at: number;
      readonly by: string;
      readonly reason: string;
    }
  /** A drift seen in the events, with what to do about it (src/reconcile/drift.ts). */
  | (Recommendation & { readonly at: number; readonly message: string });

export interface ApplyResult {
  generation: number;
  plan: Plan;
  restarted: string[];
  planned: string[];
  differences: string[];
  /** Limits read back as differing from their grant and written again. */
  repaired: string[];
  errors: { step: number; op: Step['op']; path: string; message: string }[];
}

export class ReconcileError extends Error {
  readonly status: number;
  readonly code: string;
  readonly reasons: readonly { path: string; field: string; message: string }[];
  constructor(status: number, code: string, message: string, reasons: ReconcileError['reasons'] = []) {
    super(message);
    this.name = 'ReconcileError';
    this.status = status;
    this.code = code;
    this.reasons = reasons;
  }
}

interface Applying {
  generation: number;
  base: string;
  target: string;
  steps: Step[];
  done: number;
  /** Process path → its pid before the apply began. */
  pids: Record<string, number | null>;
  restarts: string[];
}

interface Section {
  generation: number;
  /** Subtrees held from reconciliation (`captree hold`). */
  holds?: Hold[];
  /** `applied.json` holds the tree this daemon runs (an apply happened since the last clean up). */
  applied?: boolean;
  applying?: Applying;
}

const SECTION = 'reconcile';

export function appliedFile(paths: StatePaths): string {
  return join(paths.dir, 'applied.json');
}

function sectionOf(durable: DurableState): Section | null {
  const s = durable.section(SECTION) as Section | undefined;
  return s && typeof s.generation === 'number' ? s : null;
}

/**
 * The tree a daemon restarted after a crash must run: the last one applied (an apply in the
 * middle included), not the manifest `up` was given. Null: nothing was applied.
 */
export function recoveredManifest(paths: StatePaths, durable: DurableState): ManifestTree | null {
  const s = sectionOf(durable);
  if (!s?.applied) return null;
  const text = readPrivate(appliedFile(paths));
  if (text === null) return null;
  return JSON.parse(text) as ManifestTree;
}

/** A tree the reconciler can change: the host runtime's (an in-process test tree cannot). */
export function canReconcile(tree: object): tree is RunningTree {
  const t = tree as Partial<RunningTree>;
  return typeof t.engineChild === 'function' && typeof t.install === 'function' && t.caps !== undefined;
}

export interface ReconcilerOptions {
  tree: RunningTree;
  durable: DurableState;
  paths: StatePaths;
  dynamic?: DynamicChildren | undefined;
  /** Journals an event. */
  record(event: ReconcileEvent): void;
  /** Told after an apply changed the manifest (the renegotiator re-reads the process children). */
  changed?(): void;
}

const RUNNING = new Set(['starting', 'running', 'ready', 'restarting', 'stopping']);

export class Reconciler {
  readonly #o: ReconcilerOptions;
  #generation: number;
  #applying: Applying | null = null;
  #holds: Hold[];
  #busy = false;
  readonly #oom = new Map<string, number>();
  readonly #liveness = new Map<string, number>();
  readonly #escalated = new Set<string>();
  /** Recommendation keys already journalled (the checkpoint's content). */
  #journalled = new Map<string, Recommendation>();
  #scheduled = false;

  constructor(options: ReconcilerOptions) {
    this.#o = options;
    const s = sectionOf(options.durable);
    this.#generation = s?.generation ?? 1;
    this.#applying = s?.applying ?? null;
    this.#holds = s?.holds ?? [];
    options.tree.supervisor.subscribe((e) => this.#observe(e));
  }

  get generation(): number {
    return this.#generation;
  }

  /** The running tree as planning sees it. */
  actual(): Actual {
    const tree = this.#o.tree;
    const sup = tree.supervisor;
    const entries = sup.tree();
    const children: Record<string, ActualChild> = {};
    const order: Record<string, string[]> = {};
    for (const e of entries) {
      children[e.path] = {
        kind: e.kind,
        state: e.state,
        pid: e.pid,
        held: this.#o.durable.isHeld(e.path),
      };
      if (e.kind !== 'node') continue;
      const live = e.path === sup.path ? sup : this.#nested(e.path);
      if (live) order[e.path] = live.children().map((c) => c.id);
    }
    const specs = indexTree(tree.manifest);
    const reserved: Record<string, Reserved> = {};
    const admitted = (this.#o.dynamic?.admittedSpecs() ?? []).map(({ node, spec }) => ({
      path: spec.path,
      node,
      contract: contractOf(spec),
    }));
    // Renegotiated reservations: where the capability tree holds another amount than the manifest.
    for (const [path, spec] of specs) {
      const g = grantOf(tree.caps, path);
      if (!g) continue;
      const live = { cpu: g.cpu.reserved, memory: g.memory.reserved, pids: g.pids.reserved };
      const r = spec.requires;
      if (live.cpu !== (r.cpu ?? 0) || live.memory !== (r.memory ?? 0) || live.pids !== (r.pids ?? 0))
        reserved[path] = live;
    }
    return {
      generation: this.#generation,
      tree: tree.manifest,
      host: { ...tree.host, secrets: availableSecrets(tree.manifest) },
      order,
      reserved,
      admitted,
      children,
      holds: this.#holds.map((h) => ({ ...h })),
    };
  }

  /**
   * Holds `path`'s subtree from reconciliation: no apply may change anything in it until it is
   * released (Flux's `suspend`). Durable, journalled with who asked.
   */
  hold(path: string, by: string, reason: string): Hold {
    if (!this.#o.tree.supervisor.tree().some((e) => e.path === path))
      throw new ReconcileError(404, 'not_found', `no node or child ${path} in this tree (see: captree ps)`);
    const known = this.#holds.find((h) => h.path === path);
    if (known) return known;
    const hold: Hold = { path, by, reason, at: Date.now() };
    this.#holds = [...this.#holds, hold].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    this.#persist(this.#applying);
    this.#o.record({ type: 'reconcile_hold', path, at: this.#o.tree.supervisor.clock.now(), by, reason });
    this.#schedule();
    return hold;
  }

  /** Releases a hold; false when `path` was not held. */
  release(path: string, by: string): boolean {
    const known = this.#holds.find((h) => h.path === path);
    if (!known) return false;
    this.#holds = this.#holds.filter((h) => h !== known);
    this.#persist(this.#applying);
    this.#o.record({
      type: 'reconcile_release',
      path,
      at: this.#o.tree.supervisor.clock.now(),
      by,
      reason: known.reason,
    });
    this.#schedule();
    return true;
  }

  /** The plan for `desired` against the tree now (clashing unix listen paths are reasons too). */
  plan(desired: ManifestTree, actual = this.actual()): Plan {
    return planAgainst(desired, actual);
  }

  /** What `captree status --json` prints, before assessment: the actual tree and what events told. */
  snapshot(options: { limits?: boolean } = {}): Snapshot {
    const actual = this.actual();
    const observed: Record<string, Observed> = {};
    const tree = this.#o.tree;
    const sup = tree.supervisor;
    for (const e of sup.tree()) {
      const o: Observed = {
        restarts: e.restarts,
        lastExit: e.lastExit ? describe(e) : null,
        oomKills: this.#oom.get(e.path) ?? 0,
        livenessFailures: this.#liveness.get(e.path) ?? 0,
      };
      if (e.kind === 'node') {
        const live = e.path === sup.path ? sup : this.#nested(e.path);
        if (live) o.window = live.restartWindow();
        if (this.#escalated.has(e.path)) o.escalated = true;
      } else if (options.limits !== false && RUNNING.has(e.state)) {
        const drift = limitDrift(tree, e.path);
        if (drift.length > 0) o.limitDrift = drift;
      }
      observed[e.path] = o;
    }
    const applying = this.#applying;
    return {
      version: 1,
      generation: this.#generation,
      base: specDigest(actual.tree),
      actual,
      observed,
      applying: applying
        ? { generation: applying.generation, paths: [...new Set(applying.steps.map((s) => s.path))] }
        : null,
    };
  }

  /** An apply (or a resumed one) is under way: admissions and renegotiations wait for it. */
  get applyingNow(): boolean {
    return this.#busy || this.#applying !== null;
  }

  /**
   * Applies `desired`: refuses (nothing done) when a plan made earlier no longer matches the tree
   * (`expect`), when it does not fit, or while another apply runs. `onStep` hears each step.
   */
  async apply(
    desired: ManifestTree,
    expect: { generation?: number; base?: string; target?: string } = {},
    onStep?: (index: number, step: Step, error: string | null) => void,
  ): Promise<ApplyResult> {
    if (this.#busy || this.#applying)
      throw new ReconcileError(409, 'apply_in_progress', 'another apply is under way');
    const state = this.#o.tree.supervisor.state;
    if (state !== 'ready')
      throw new ReconcileError(409, 'not_ready', `the tree is ${state}: apply once it is up`);
    const actual = this.actual();
    const p = this.plan(desired, actual);
    if (expect.generation !== undefined && expect.generation !== actual.generation)
      throw new ReconcileError(
        409,
        'stale_plan',
        `the plan was made at generation ${expect.generation}; the tree is at generation ${actual.generation} now: plan again`,
      );
    if (expect.base !== undefined && expect.base !== p.base)
      throw new ReconcileError(
        409,
        'stale_plan',
        'the running tree changed since the plan was made: plan again',
      );
    if (expect.target !== undefined && expect.target !== p.target)
      throw new ReconcileError(
        409,
        'plan_mismatch',
        'the manifest is not the one the plan was made from: plan again',
      );
    if (!p.fits)
      throw new ReconcileError(
        422,
        'does_not_fit',
        `the manifest does not fit: ${p.reasons.map((r) => r.message).join('; ')}`,
        p.reasons,
      );
    this.#busy = true;
    try {
      const repaired = this.#repairLimits();
      if (!hasChanges(p))
        return {
          generation: this.#generation,
          plan: p,
          restarted: [],
          planned: [],
          differences: [],
          repaired,
          errors: [],
        };
      const generation = this.#generation + 1;
      const before = this.#pids();
      writeAtomic(appliedFile(this.#o.paths), JSON.stringify(desired));
      const applying: Applying = {
        generation,
        base: p.base,
        target: p.target,
        steps: p.steps,
        done: 0,
        pids: before,
        restarts: [...new Set(p.actions.flatMap((a) => a.restarts))].sort(),
      };
      this.#generation = generation;
      this.#persist(applying);
      const result = await this.#run(desired, actual, applying, false, onStep);
      return { ...result, plan: p, repaired };
    } finally {
      this.#busy = false;
    }
  }

  /** Finishes an apply a killed daemon left (see the module comment); null when there is none. */
  async resume(): Promise<Omit<ApplyResult, 'plan' | 'repaired'> | null> {
    const applying = this.#applying;
    if (!applying) return null;
    this.#busy = true;
    try {
      return await this.#run(this.#o.tree.manifest, this.actual(), applying, true);
    } finally {
      this.#busy = false;
    }
  }

  /** Drift and recommendations now (`desired`: also what applying it would change). */
  status(desired?: ManifestTree, file?: string): StatusReport {
    const snapshot = this.snapshot();
    return assess(snapshot, {
      ...(desired ? { plan: this.plan(desired, snapshot.actual) } : {}),
      ...(file ? { file } : {}),
    });
  }

  async #run(
    desired: ManifestTree,
    actual: Actual,
    applying: Applying,
    resumed: boolean,
    onStep?: (index: number, step: Step, error: string | null) => void,
  ): Promise<Omit<ApplyResult, 'plan' | 'repaired'>> {
    const tree = this.#o.tree;
    const root = tree.supervisor.path;
    const now = () => tree.supervisor.clock.now();
    const { steps } = applying;
    this.#o.record({
      type: 'reconcile_apply',
      path: root,
      at: now(),
      generation: applying.generation,
      steps: steps.length,
      restarts: applying.restarts,
      resumed,
    });
    const admitted = admitTree(desired, actual, indexTree(actual.tree));
    if (!admitted.ok || !admitted.caps) {
      // Only when resuming (a fresh apply was admitted a moment ago): give up on this apply
      // rather than block every later one; the journal says why, status shows the drift.
      const why = `the manifest no longer fits: ${admitted.reasons.map((r) => r.message).join('; ')}`;
      this.#persist(null);
      this.#o.record({
        type: 'reconcile_applied',
        path: root,
        at: now(),
        generation: applying.generation,
        restarted: [],
        planned: applying.restarts,
        differences: [why],
        resumed,
      });
      throw new ReconcileError(422, 'does_not_fit', why);
    }
    const readmitted = { caps: admitted.caps, grants: admitted.grants, startOrder: admitted.startOrder };
    const restarting = new Set(steps.filter((s) => s.op === 'stop').map((s) => s.path));
    const runner = new StepRunner({
      tree,
      desired,
      admitted: readmitted,
      dynamic: this.#o.dynamic,
      restarting,
      resumed,
    });
    const errors: ApplyResult['errors'] = [];
    // Resuming: the tree was built from the desired manifest, so what changes specs is done;
    // only children still running their old instance are restarted, and limits written again.
    const stale = resumed ? this.#stillOld(applying) : null;
    const resumedStops = new Set<string>();
    for (let i = 0; i < steps.length; i++) {
      const step = steps[i] as Step;
      if (stale) {
        const go =
          step.op === 'limits' ||
          (step.op === 'stop' && stale.has(step.path)) ||
          (step.op === 'start' && resumedStops.has(step.path));
        if (!go) continue;
        if (step.op === 'stop') resumedStops.add(step.path);
      }
      let error: string | null = null;
      try {
        await runner.run(step);
      } catch (err) {
        error = (err as Error).message ?? String(err);
        errors.push({ step: i, op: step.op, path: step.path, message: error });
      }
      applying.done = i + 1;
      this.#persist(applying);
      this.#o.record({
        type: 'reconcile_step',
        path: step.path,
        at: now(),
        generation: applying.generation,
        step: i,
        op: step.op,
        error,
      });
      onStep?.(i, step, error);
    }
    if (!stale) await runner.finish();
    this.#persist(null);
    this.#o.changed?.();
    const after = this.#pids();
    const restarted = Object.keys(applying.pids)
      .filter((p) => applying.pids[p] !== null && after[p] !== undefined && after[p] !== applying.pids[p])
      .sort();
    const processes = new Set(Object.keys(applying.pids).filter((p) => applying.pids[p] !== null));
    const planned = applying.restarts.filter((p) => processes.has(p));
    const differences = [
      ...planned.filter((p) => !restarted.includes(p)).map((p) => `${p} was to restart and did not`),
      ...restarted.filter((p) => !planned.includes(p)).map((p) => `${p} restarted, not by the plan`),
      ...errors.map((e) => `step ${e.step} (${e.op} ${e.path}) failed: ${e.message}`),
    ];
    this.#o.record({
      type: 'reconcile_applied',
      path: root,
      at: now(),
      generation: applying.generation,
      restarted,
      planned,
      differences,
      resumed,
    });
    this.#schedule();
    return { generation: applying.generation, restarted, planned, differences, errors };
  }

  /** Stopped paths of the plan whose process (or a process below the node) still runs its old instance. */
  #stillOld(applying: Applying): Set<string> {
    const now = this.#pids();
    const out = new Set<string>();
    for (const s of applying.steps) {
      if (s.op !== 'stop') continue;
      for (const [p, pid] of Object.entries(applying.pids))
        if ((p === s.path || p.startsWith(`${s.path}/`)) && pid !== null && now[p] === pid) out.add(s.path);
    }
    return out;
  }

  #pids(): Record<string, number | null> {
    const out: Record<string, number | null> = {};
    for (const e of this.#o.tree.supervisor.tree()) if (e.kind !== 'node') out[e.path] = e.pid;
    return out;
  }

  #persist(applying: Applying | null): void {
    this.#applying = applying;
    const section: Section = { generation: this.#generation };
    if (this.#generation > 1 || applying) section.applied = true;
    if (this.#holds.length > 0) section.holds = this.#holds;
    if (applying) section.applying = applying;
    this.#o.durable.setSection(SECTION, section);
  }

  /** Every limit read back as differing from its grant, written again; the paths. */
  #repairLimits(): string[] {
    const tree = this.#o.tree;
    const out: string[] = [];
    for (const e of tree.supervisor.tree()) {
      if (e.kind === 'node' || !RUNNING.has(e.state)) continue;
      const drift = limitDrift(tree, e.path);
      if (drift.length === 0) continue;
      const limits: Record<string, number | null> = {};
      for (const d of drift) limits[d.quantity] = d.granted;
      try {
        tree.runtime.groupFor(e.path).setLimits(limits);
        out.push(e.path);
      } catch {
        // Left as drift: status keeps recommending it.
      }
    }
    return out;
  }

  #nested(path: string) {
    const at = this.#o.tree.locate(path);
    return at ? at.supervisor.nested(at.id) : undefined;
  }

  // ---- drift from events ---------------------------------------------------------------------

  #observe(e: SupervisorEvent): void {
    switch (e.type) {
      case 'exited':
        if (e.reason.kind === 'crashed' && e.reason.oom)
          this.#oom.set(e.path, (this.#oom.get(e.path) ?? 0) + 1);
        if (e.reason.kind === 'crashed' && e.reason.reason === 'liveness')
          this.#liveness.set(e.path, (this.#liveness.get(e.path) ?? 0) + 1);
        break;
      // A start or readiness can only clear drift: nothing to assess while nothing was found
      // (a tree starting up costs no assessment).
      case 'started':
        this.#liveness.delete(e.path);
        if (this.#journalled.size === 0) return;
        break;
      case 'escalated':
        this.#escalated.add(e.path);
        break;
      case 'ready':
        this.#escalated.delete(e.path);
        if (this.#journalled.size === 0) return;
        break;
      case 'permanent_failure':
      case 'intensity_exceeded':
      case 'stopped':
      case 'child_deleted':
        break;
      default:
        return;
    }
    this.#schedule();
  }

  /** Recommendations follow events at the next turn of the event loop (a burst is assessed once). */
  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.recommendNow();
    });
  }

  /** Assesses the tree now and journals each recommendation not journalled before; returns them. */
  recommendNow(): Recommendation[] {
    if (this.#o.tree.supervisor.state !== 'ready' || this.#busy) return [];
    const report = assess(this.snapshot({ limits: false }));
    const next = new Map(
      report.recommendations.map((r) => [`${r.type} ${r.path} ${r.drift} ${r.action}`, r]),
    );
    const fresh = [...next].filter(([k]) => !this.#journalled.has(k)).map(([, r]) => r);
    const now = this.#o.tree.supervisor.clock.now();
    const drift = new Map(report.drift.map((d) => [`${d.path} ${d.kind}`, d.message]));
    for (const r of fresh)
      this.#o.record({ ...r, at: now, message: drift.get(`${r.path} ${r.drift}`) ?? r.reason });
    const gone = [...this.#journalled.keys()].some((k) => !next.has(k));
    this.#journalled = next;
    if (fresh.length > 0 || gone) this.#checkpoint(report);
    return fresh;
  }

  #checkpoint(report: StatusReport): void {
    try {
      writeAtomic(
        join(this.#o.paths.dir, 'reconcile-checkpoint.json'),
        `${JSON.stringify({ generation: report.generation, summary: report.summary, recommendations: report.recommendations }, null, 2)}\n`,
      );
    } catch {
      // The journal has them; a checkpoint that cannot be written is not worth failing for.
    }
  }
}

function describe(e: TreeEntry): string {
  return e.lastExit ? describeExit(e.lastExit) : '';
}

/**
 * Limits read back from a path's cgroup (`CgroupGroup.enforced`, as `ps` shows drift) that
 * differ from its grant, in the kernel's units (a quota of at least 1 ms per period, memory in
 * whole pages). A limit found where none was granted is drift too.
 */
function limitDrift(tree: RunningTree, path: string): NonNullable<Observed['limitDrift']> {
  let enforced: ReturnType<CgroupGroup['enforced']>;
  try {
    enforced = tree.runtime.groupFor(path).enforced();
  } catch {
    return [];
  }
  const grant = tree.grant(path);
  const tolerance = { cpu: 0.0051, memory: 4096, pids: 0 } as const;
  const out: NonNullable<Observed['limitDrift']> = [];
  for (const q of ['cpu', 'memory', 'pids'] as const) {
    const e = enforced[q];
    if (e === undefined) continue;
    const g = grant[q];
    const wanted = g === null ? null : q === 'cpu' ? Math.max(g, 0.01) : g;
    const same = wanted === null ? e === null : e !== null && Math.abs(e - wanted) <= tolerance[q];
    if (!same) out.push({ quantity: q, granted: g, enforced: e });
  }
  return out;
}
