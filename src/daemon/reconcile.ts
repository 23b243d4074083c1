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
 *
 * `reconcile: { mode: auto }`: after each assessment, every `reconcile_required` in an auto
 * subtree goes through `decide` (src/reconcile/auto.ts: mode, hold, windows, rate limit); what
 * it lets through is carried out as the operator's command would (`reconcile_auto`), what it
 * refuses is journalled once per recommendation and guard (`reconcile_blocked`, `guard`), and
 * assessed again when the clock alone can change the answer (`retryAt`). The actions taken are
 * in state.json, so a daemon restart does not reset the rate limit.
 */
import { join } from 'node:path';
import { grantOf } from '../caps/index.ts';
import { describeExit, type SupervisorEvent, type TreeEntry } from '../core/index.ts';
import type { ManifestTree } from '../manifest/index.ts';
import {
  type Actual,
  type ActualChild,
  type AutoAction,
  admitTree,
  assess,
  checkInterval,
  contractOf,
  decide,
  type Guard,
  type Hold,
  hasChanges,
  indexTree,
  type Observed,
  type Plan,
  policyFor,
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
  | {
      /** `mode: auto`: the daemon carried out a `reconcile_required` itself (src/reconcile/auto.ts). */
      readonly type: 'reconcile_auto';
      readonly path: string;
      readonly at: number;
      readonly drift: Recommendation['drift'];
      readonly action: string;
      /** What an operator would have run. */
      readonly command: string;
      /** The node whose rate limit it counts against. */
      readonly scope: string;
      /** Wall-clock ms epoch of the decision: what the rate limit counts (`retryAt` is one `per` on). */
      readonly decidedAt: number;
      readonly message: string;
      /** Null: done. */
      readonly error: string | null;
    }
  /**
   * A drift seen in the events, with what to do about it (src/reconcile/drift.ts). Under
   * `mode: auto`, a `reconcile_blocked` also says which guardrail stopped the daemon acting
   * (`guard`), why (`reason`) and when it can next (`retryAt`, ms epoch, when the clock decides).
   */
  | (Recommendation & {
      readonly at: number;
      readonly message: string;
      readonly guard?: Guard;
      readonly retryAt?: number | null;
    });

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
  /** `mode: auto` actions still inside a rate limit window: a daemon restart does not reset it. */
  auto?: AutoAction[];
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
  /**
   * Wall-clock ms epoch for `mode: auto`'s guardrails (cron windows are clock times, and the
   * rate limit outlives a daemon restart); default Date.now.
   */
  wallClock?(): number;
}

const RUNNING = new Set(['starting', 'running', 'ready', 'restarting', 'stopping']);
/** Guards that are guardrails (journalled as `reconcile_blocked`), not merely "not for auto". */
const GUARDRAILS: ReadonlySet<Guard> = new Set<Guard>(['held', 'denied', 'outside_window', 'rate_limit']);

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
  /** `mode: auto`: actions taken (for the rate limit), in flight, and guardrail refusals journalled. */
  #auto: AutoAction[];
  readonly #acting = new Set<string>();
  readonly #refused = new Map<string, Guard>();
  #check: NodeJS.Timeout | null = null;
  #retry: { at: number; timer: NodeJS.Timeout } | null = null;
  #autoPaths: { manifest: ManifestTree; auto: (path: string) => boolean } | null = null;

  constructor(options: ReconcilerOptions) {
    this.#o = options;
    const s = sectionOf(options.durable);
    this.#generation = s?.generation ?? 1;
    this.#applying = s?.applying ?? null;
    this.#holds = s?.holds ?? [];
    this.#auto = s?.auto ?? [];
    options.tree.supervisor.subscribe((e) => this.#observe(e));
    this.#arm();
  }

  /** Stops the timers (`mode: auto`'s limit read-back and retries). */
  close(): void {
    if (this.#check) clearInterval(this.#check);
    if (this.#retry) clearTimeout(this.#retry.timer);
    this.#check = null;
    this.#retry = null;
  }

  /**
   * An auto subtree has its limits read back every `checkEvery`: cgroupfs (v1) sends no event
   * when someone else writes a limit, so this is the one drift found by looking.
   */
  #arm(): void {
    if (this.#check) clearInterval(this.#check);
    this.#check = null;
    const every = checkInterval(this.#o.tree.manifest);
    if (every === null) return;
    this.#check = setInterval(() => this.#schedule(), every);
    this.#check.unref();
  }

  /** Whether `path` is in a `mode: auto` subtree of the running manifest. */
  #isAuto(path: string): boolean {
    const manifest = this.#o.tree.manifest;
    if (this.#autoPaths?.manifest !== manifest) {
      const seen = new Map<string, boolean>();
      this.#autoPaths = {
        manifest,
        auto: (p) => {
          let v = seen.get(p);
          if (v === undefined) {
            v = policyFor(manifest, p).mode === 'auto';
            seen.set(p, v);
          }
          return v;
        },
      };
    }
    return this.#autoPaths.auto(path);
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
  snapshot(options: { limits?: boolean | ((path: string) => boolean) } = {}): Snapshot {
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
      } else if (
        RUNNING.has(e.state) &&
        (typeof options.limits === 'function' ? options.limits(e.path) : options.limits !== false)
      ) {
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
    this.#arm();
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
    if (this.#auto.length > 0) section.auto = this.#auto;
    this.#o.durable.setSection(SECTION, section);
  }

  /** Every limit read back as differing from its grant, written again; the paths. */
  #repairLimits(): string[] {
    const tree = this.#o.tree;
    const out: string[] = [];
    for (const e of tree.supervisor.tree()) {
      if (e.kind === 'node' || !RUNNING.has(e.state)) continue;
      try {
        if (this.#rewriteLimits(e.path)) out.push(e.path);
      } catch {
        // Left as drift: status keeps recommending it.
      }
    }
    return out;
  }

  /** Writes a path's limits that read back as differing from its grant; false when none did. */
  #rewriteLimits(path: string): boolean {
    const tree = this.#o.tree;
    const drift = limitDrift(tree, path);
    if (drift.length === 0) return false;
    const limits: Record<string, number | null> = {};
    for (const d of drift) limits[d.quantity] = d.granted;
    tree.runtime.groupFor(path).setLimits(limits);
    return true;
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
    // Limits are read back only in auto subtrees (elsewhere `status` reads them when asked).
    const report = assess(this.snapshot({ limits: (p) => this.#isAuto(p) }));
    const next = new Map(report.recommendations.map((r) => [keyOf(r), r]));
    const fresh = [...next].filter(([k]) => !this.#journalled.has(k)).map(([, r]) => r);
    const now = this.#o.tree.supervisor.clock.now();
    const drift = new Map(report.drift.map((d) => [`${d.path} ${d.kind}`, d.message]));
    const messageOf = (r: Recommendation) => drift.get(`${r.path} ${r.drift}`) ?? r.reason;
    const wall = this.#o.wallClock?.() ?? Date.now();
    const verdicts = this.#decideAll(report.recommendations, wall);
    for (const r of fresh) {
      const v = verdicts.get(r);
      // A recommendation already blocked (held) says so itself: its guard goes with it.
      const guarded = v && !v.act && GUARDRAILS.has(v.guard) && r.type === 'reconcile_blocked';
      if (guarded) this.#refused.set(keyOf(r), v.guard);
      this.#o.record({
        ...r,
        at: now,
        message: messageOf(r),
        ...(guarded ? { guard: v.guard, retryAt: v.retryAt } : {}),
      });
    }
    for (const [r, v] of verdicts) {
      const key = keyOf(r);
      if (v.act) {
        this.#refused.delete(key);
        this.#act(key, r, messageOf(r), now, wall);
      } else if (GUARDRAILS.has(v.guard) && this.#refused.get(key) !== v.guard) {
        this.#refused.set(key, v.guard);
        this.#o.record({
          ...r,
          type: 'reconcile_blocked',
          reason: v.reason,
          at: now,
          message: messageOf(r),
          guard: v.guard,
          retryAt: v.retryAt,
        });
      }
      if (!v.act && v.retryAt !== null) this.#retryAt(v.retryAt);
    }
    for (const k of this.#refused.keys()) if (!next.has(k)) this.#refused.delete(k);
    const gone = [...this.#journalled.keys()].some((k) => !next.has(k));
    this.#journalled = next;
    if (fresh.length > 0 || gone) this.#checkpoint(report);
    return fresh;
  }

  /** The auto-mode verdict of each recommendation in an auto subtree (actions counted as decided). */
  #decideAll(recs: readonly Recommendation[], now: number): Map<Recommendation, ReturnType<typeof decide>> {
    const out = new Map<Recommendation, ReturnType<typeof decide>>();
    const manifest = this.#o.tree.manifest;
    let took = false;
    for (const r of recs) {
      if (!this.#isAuto(r.path)) continue;
      if (this.#acting.has(keyOf(r))) continue;
      const policy = policyFor(manifest, r.path);
      const v = decide(r, policy, { actions: this.#auto, holds: this.#holds }, now);
      if (v.act) {
        took = true;
        // Forget what no rate limit can count any more; remember this one before the next decision.
        this.#auto = [
          ...this.#auto.filter((a) => a.at > now - policyFor(manifest, a.scope).per),
          { scope: policy.scope, path: r.path, at: now },
        ];
      }
      if (v.act || GUARDRAILS.has(v.guard)) out.set(r, v);
    }
    if (took) this.#persist(this.#applying);
    return out;
  }

  /** Carries out a required recommendation (`mode: auto`) and journals it as `reconcile_auto`. */
  #act(key: string, r: Recommendation, message: string, now: number, wall: number): void {
    this.#acting.add(key);
    const scope = policyFor(this.#o.tree.manifest, r.path).scope;
    const done = (error: string | null) => {
      this.#acting.delete(key);
      this.#o.record({
        type: 'reconcile_auto',
        path: r.path,
        at: now,
        drift: r.drift,
        action: r.action,
        command: r.command,
        scope,
        decidedAt: wall,
        message,
        error,
      });
      this.#schedule();
    };
    this.#carryOut(r).then(
      () => done(null),
      (err: unknown) => done((err as Error).message ?? String(err)),
    );
  }

  async #carryOut(r: Recommendation): Promise<void> {
    if (r.action === 'rewrite limit') {
      this.#rewriteLimits(r.path);
      return;
    }
    const at = this.#o.tree.locate(r.path);
    if (!at) throw new Error(`no child ${r.path} in this tree`);
    if (r.command.startsWith('captree restart ')) await at.supervisor.restartChild(at.id);
    else await at.supervisor.startChild(at.id);
  }

  /** Assesses again when the clock alone lets a refused action through (the earliest such time). */
  #retryAt(at: number): void {
    if (this.#retry && this.#retry.at <= at) return;
    if (this.#retry) clearTimeout(this.#retry.timer);
    const delay = Math.max(0, at - (this.#o.wallClock?.() ?? Date.now())) + 10;
    // Timers cap at 2^31-1 ms; the periodic check or the next event covers anything further.
    if (delay > 2 ** 31 - 1) return;
    const timer = setTimeout(() => {
      this.#retry = null;
      this.#schedule();
    }, delay);
    timer.unref();
    this.#retry = { at, timer };
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

/** One recommendation across assessments: journalled once, refused once per guard. */
function keyOf(r: Recommendation): string {
  return `${r.type} ${r.path} ${r.drift} ${r.action}`;
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
