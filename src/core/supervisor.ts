/**
 * The supervisor: OTP supervision semantics over any kind of child (see driver.ts).
 *
 * - Start is sequential in list order and waits for each child's readiness; if one fails, the
 *   children already started are stopped in reverse order and `start()` rejects.
 * - Stop is in reverse start order (all at once for `dynamic`), each child per its `shutdown`:
 *   ms = ask, wait, then kill; `brutal` = kill at once; `infinity` = wait.
 * - A child that exits on its own is handled by `decideExit` (restart.ts) and the strategy. Each
 *   restart counts against the intensity window, failed restart attempts too; exceeding it makes
 *   this supervisor stop everything and exit `escalated`, which its parent sees as a crash.
 * - Auto-shutdown fires only when a significant child exits by itself, never when the supervisor
 *   stopped it (sibling restart, `stopChild`).
 * - Operations that change children run one at a time through a queue (OTP's mailbox), so an exit
 *   arriving in the middle of a group restart is handled after it. `stop()` does not wait its
 *   turn: it stops the children at once and then lets the in-flight operation drain, so a child
 *   that never becomes ready cannot block a shutdown.
 *
 * Deliberate differences from OTP: an operator's `stopChild` holds the child stopped, so a later
 * group restart of its siblings leaves it stopped (OTP would restart it); a `permanent_failure`
 * exit marks the child `failed` instead of restarting it; a supervisor that gives up exits
 * `escalated` (not `shutdown`), so even a transient parent entry restarts it.
 */
import { backoffDelay } from './backoff.ts';
import { type Clock, systemClock, type Timer } from './clock.ts';
import type { ChildEvents, ChildHandle, ChildKind, StartContext } from './driver.ts';
import { EventSink, type SupervisorEvent } from './events.ts';
import { RestartWindow } from './intensity.ts';
import { childrenToStart, decideExit, siblingsToStop } from './restart.ts';
import { checkChildSpec, checkSupervisorSpec, InvalidSpecError } from './spec.ts';
import type {
  AutoShutdown,
  ChildSpec,
  ChildState,
  ExitReason,
  RestartType,
  Shutdown,
  Strategy,
  SupervisorSpec,
} from './types.ts';
import { isLauncherLoss } from './types.ts';

/** Where checkpoints live; in memory unless the daemon supplies a durable store. */
export interface CheckpointStore {
  load(path: string): { state: unknown } | undefined;
  save(path: string, state: unknown): void;
  delete?(path: string): void;
}

/**
 * Which children an operator holds stopped (`stopChild`), by path; in memory unless the daemon
 * supplies a durable store. A child held when its supervisor is built is not started by `start()`.
 */
export interface HoldStore {
  isHeld(path: string): boolean;
  /** Called before the operation it records takes effect. */
  setHeld(path: string, held: boolean): void;
}

export interface SupervisorOptions {
  clock?: Clock;
  sink?: EventSink;
  /** This supervisor's path; default `/<name>`. */
  path?: string;
  checkpoints?: CheckpointStore;
  holds?: HoldStore;
}

export type SupervisorState = 'idle' | 'starting' | 'ready' | 'stopping' | 'stopped';

export type SupervisorErrorCode =
  | 'not_found'
  | 'already_present'
  | 'running'
  | 'not_running'
  | 'max_children'
  | 'start_failed';

export class SupervisorError extends Error {
  readonly code: SupervisorErrorCode;
  readonly reason: ExitReason | undefined;
  constructor(code: SupervisorErrorCode, message: string, reason?: ExitReason) {
    super(message);
    this.name = 'SupervisorError';
    this.code = code;
    this.reason = reason;
  }
}

/** One child as the queries report it. */
export interface ChildInfo {
  readonly id: string;
  readonly path: string;
  readonly kind: ChildKind;
  readonly state: ChildState;
  readonly pid: number | null;
  readonly restarts: number;
  readonly restart: RestartType;
  readonly significant: boolean;
  /** Clock time of the current instance's start, or null when not running. */
  readonly startedAt: number | null;
  readonly lastExit: ExitReason | null;
}

/** One entry of a whole-tree listing: a supervisor or a child, depth-first in start order. */
export interface TreeEntry {
  readonly path: string;
  readonly kind: ChildKind;
  readonly state: ChildState | SupervisorState;
  readonly pid: number | null;
  readonly restarts: number;
  readonly startedAt: number | null;
  readonly lastExit: ExitReason | null;
}

export interface ChildCounts {
  readonly specs: number;
  readonly active: number;
  readonly supervisors: number;
  readonly workers: number;
}

/** Outcome of launching one child: null when it became ready, else why it failed. */
type LaunchOutcome = ExitReason | null;

class ChildRecord {
  spec: ChildSpec;
  readonly parentPath: string;
  restart: RestartType;
  shutdown: Shutdown;
  state: ChildState = 'stopped';
  handle: ChildHandle | null = null;
  gen = 0;
  restarts = 0;
  startedAt = 0;
  attempt = 0;
  held = false;
  deleted = false;
  launching = false;
  earlyReady: boolean | null = null;
  lastExit: ExitReason | null = null;
  saved: { state: unknown } | null = null;
  timer: Timer | null = null;
  waiter: ((outcome: LaunchOutcome) => void) | null = null;

  constructor(spec: ChildSpec, parentPath: string) {
    this.spec = spec;
    this.parentPath = parentPath;
    this.restart = spec.restart ?? 'permanent';
    this.shutdown = spec.shutdown ?? (spec.driver.kind === 'node' ? 'infinity' : 5000);
  }

  /** A revised spec (same id): used from the next start; a running instance keeps going. */
  revise(spec: ChildSpec): void {
    this.spec = spec;
    this.restart = spec.restart ?? 'permanent';
    this.shutdown = spec.shutdown ?? (spec.driver.kind === 'node' ? 'infinity' : 5000);
  }

  /** Built on demand: 100,000 idle children should not hold 100,000 path strings. */
  get path(): string {
    return `${this.parentPath}/${this.spec.id}`;
  }

  get active(): boolean {
    return this.handle !== null || this.state === 'restarting';
  }
}

/**
 * The events a driver reports for one instance of a child. A class rather than two closures per
 * start keeps an idle child small; `gen` makes reports from a replaced instance harmless.
 */
class InstanceEvents implements ChildEvents {
  readonly #sup: Supervisor;
  readonly #rec: ChildRecord;
  readonly #gen: number;
  constructor(sup: Supervisor, rec: ChildRecord, gen: number) {
    this.#sup = sup;
    this.#rec = rec;
    this.#gen = gen;
  }
  started(pid: number | null): void {
    report(this.#sup).started(this.#rec, this.#gen, pid);
  }
  ready(declared: boolean): void {
    report(this.#sup).ready(this.#rec, this.#gen, declared);
  }
  exited(reason: ExitReason): void {
    report(this.#sup).exited(this.#rec, this.#gen, reason);
  }
}

interface Reporter {
  started(rec: ChildRecord, gen: number, pid: number | null): void;
  ready(rec: ChildRecord, gen: number, declared: boolean): void;
  exited(rec: ChildRecord, gen: number, reason: ExitReason): void;
}
let report: (sup: Supervisor) => Reporter;

const shutdownReason: ExitReason = { kind: 'shutdown' };

/** Queued supervision operations run back to back before yielding to the event loop once. */
const burstLimit = 256;

export class Supervisor {
  readonly name: string;
  readonly path: string;
  #strategy: Strategy;
  #autoShutdown: AutoShutdown;
  readonly clock: Clock;
  readonly events: EventSink;
  #spec: SupervisorSpec;
  #window: RestartWindow;
  readonly #checkpoints: CheckpointStore | undefined;
  readonly #holds: HoldStore | undefined;
  readonly #isRoot: boolean;
  #children: ChildRecord[] = [];
  #byId = new Map<string, ChildRecord>();
  #state: SupervisorState = 'idle';
  #queue: Promise<void> = Promise.resolve();
  #exit: ExitReason | null = null;
  #exitWaiters: ((reason: ExitReason) => void)[] = [];
  #exitListener: ((reason: ExitReason) => void) | null = null;
  #restarts = 0;
  #startedAt: number | null = null;
  #terminating: Promise<void> | null = null;
  #burst = 0;

  constructor(spec: SupervisorSpec, options: SupervisorOptions = {}) {
    const problems = checkSupervisorSpec(spec);
    if (problems.length > 0) throw new InvalidSpecError(`supervisor spec ${spec.name}`, problems);
    this.#spec = spec;
    this.name = spec.name;
    this.path = options.path ?? `/${spec.name}`;
    this.#strategy = spec.strategy ?? 'one_for_one';
    this.#autoShutdown = spec.autoShutdown ?? 'never';
    this.clock = options.clock ?? systemClock;
    this.#isRoot = options.sink === undefined;
    this.events = options.sink ?? new EventSink();
    this.#checkpoints = options.checkpoints;
    this.#holds = options.holds;
    this.#window = new RestartWindow(spec.intensity ?? 1, spec.period ?? 5000);
    for (const child of spec.children ?? []) this.#insert(child);
  }

  get state(): SupervisorState {
    return this.#state;
  }

  get strategy(): Strategy {
    return this.#strategy;
  }

  get autoShutdown(): AutoShutdown {
    return this.#autoShutdown;
  }

  /** Why this supervisor stopped, once it has. */
  get exitReason(): ExitReason | null {
    return this.#exit;
  }

  /** Called once with this supervisor's exit reason (used by the nested-supervisor driver). */
  onExit(fn: (reason: ExitReason) => void): void {
    this.#exitListener = fn;
  }

  /** Resolves with the exit reason when this supervisor has stopped, whatever stopped it. */
  whenStopped(): Promise<ExitReason> {
    if (this.#exit) return Promise.resolve(this.#exit);
    return new Promise((resolve) => this.#exitWaiters.push(resolve));
  }

  subscribe(listener: (event: SupervisorEvent) => void): () => void {
    return this.events.subscribe(listener);
  }

  // ---- lifecycle ---------------------------------------------------------------------------

  /** Starts every child in order, each ready before the next; rejects (having stopped them) if one fails. */
  start(): Promise<void> {
    if (this.#state !== 'idle') {
      return Promise.reject(new SupervisorError('running', `${this.path} was already started`));
    }
    this.#state = 'starting';
    this.#startedAt = this.clock.now();
    if (this.#isRoot) this.#emit({ type: 'starting', path: this.path, at: this.clock.now() });
    return this.#serial(async () => {
      const started: ChildRecord[] = [];
      for (const rec of [...this.#children]) {
        if (this.#state !== 'starting') break;
        if (rec.held) continue;
        const outcome = await this.#launch(rec);
        if (this.#state !== 'starting') break;
        if (outcome !== null) {
          await this.#haltAll(started);
          this.#finish(outcome, false);
          throw new SupervisorError(
            'start_failed',
            `${this.path}: child ${rec.spec.id} failed to start: ${describeExit(outcome)}`,
            outcome,
          );
        }
        started.push(rec);
      }
      if (this.#state !== 'starting') {
        throw new SupervisorError('not_running', `${this.path} was stopped while starting`);
      }
      this.#state = 'ready';
      if (this.#isRoot) this.#emit({ type: 'ready', path: this.path, at: this.clock.now(), declared: true });
    });
  }

  /** Stops every child in reverse start order, then this supervisor; resolves when all are gone. */
  stop(): Promise<void> {
    return this.#terminate(shutdownReason, false);
  }

  /** Kills every child at once (the `brutal` stop of a nested supervisor). */
  kill(): Promise<void> {
    return this.#terminate({ kind: 'killed' }, true);
  }

  // ---- operations on children -----------------------------------------------------------------

  /**
   * Adds a child at run time and starts it (OTP `start_child`); a child that fails to start is
   * discarded. `index`: its place in start order (default: last), so a reconciled manifest's new
   * child starts, stops and scopes rest_for_one where the manifest puts it. `start: false` only
   * inserts it (stopped; `startChild` starts it, and a failed start then keeps it, stopped).
   */
  addChild(
    input: ChildSpec | (Partial<ChildSpec> & { id?: string }),
    options: { index?: number; start?: boolean } = {},
  ): Promise<ChildInfo> {
    const spec = this.#fromTemplate(input);
    const problems = checkChildSpec(spec, this.#spec);
    if (problems.length > 0) return Promise.reject(new InvalidSpecError(`child spec ${spec.id}`, problems));
    return this.#serial(async () => {
      if (this.#byId.has(spec.id)) {
        throw new SupervisorError('already_present', `${this.path} already has a child ${spec.id}`);
      }
      const max = this.#spec.maxChildren;
      if (max !== undefined && this.#children.length >= max) {
        throw new SupervisorError('max_children', `${this.path} is at maxChildren (${max})`);
      }
      const rec = this.#insert(spec, options.index);
      this.#emit({ type: 'child_added', path: rec.path, at: this.clock.now() });
      if (this.#state === 'ready' && options.start !== false) {
        const outcome = await this.#launch(rec);
        if (outcome !== null) {
          this.#remove(rec);
          throw new SupervisorError(
            'start_failed',
            `${rec.path} failed to start: ${describeExit(outcome)}`,
            outcome,
          );
        }
      }
      return this.#info(rec);
    });
  }

  /** Starts a stopped child (OTP `restart_child`); it no longer counts as held by an operator. */
  startChild(id: string): Promise<ChildInfo> {
    return this.#serial(async () => {
      const rec = this.#get(id);
      if (rec.handle) throw new SupervisorError('running', `${rec.path} is already running`);
      this.#requireReady();
      rec.timer?.cancel();
      this.#hold(rec, false);
      const outcome = await this.#launch(rec);
      if (outcome !== null) {
        throw new SupervisorError(
          'start_failed',
          `${rec.path} failed to start: ${describeExit(outcome)}`,
          outcome,
        );
      }
      return this.#info(rec);
    });
  }

  /**
   * Stops a child and keeps its spec, held stopped (OTP `terminate_child`); a temporary child is
   * removed. With `hold: false` (reconciliation, which starts it again itself) the child is
   * neither held nor removed: a sibling's restart may start it, as after any other stop.
   */
  stopChild(id: string, options: { hold?: boolean } = {}): Promise<void> {
    const hold = options.hold ?? true;
    return this.#serial(async () => {
      const rec = this.#get(id);
      if (hold) this.#hold(rec, true);
      await this.#halt(rec);
      if (hold && rec.restart === 'temporary') this.#remove(rec);
    });
  }

  /**
   * Replaces a child's spec (same id; OTP's appup child-spec change): a running instance keeps
   * running, the new spec (driver, restart type, shutdown, backoff) applies from its next start.
   */
  reviseChild(spec: ChildSpec): Promise<void> {
    const problems = checkChildSpec(spec, this.#spec);
    if (problems.length > 0) return Promise.reject(new InvalidSpecError(`child spec ${spec.id}`, problems));
    return this.#serial(async () => {
      const rec = this.#get(spec.id);
      if (rec.spec.driver.kind !== spec.driver.kind) {
        throw new SupervisorError(
          'running',
          `${rec.path} is a ${rec.spec.driver.kind}; replace it (delete, add) to make it a ${spec.driver.kind}`,
        );
      }
      rec.revise(spec);
    });
  }

  /** The current spec of child `id` (as revised), or undefined. */
  childSpec(id: string): ChildSpec | undefined {
    return this.#byId.get(id)?.spec;
  }

  /**
   * Changes this supervisor's own flags in place (OTP: supervisor flags changed by a code
   * upgrade): the strategy (not to or from `dynamic`), intensity and period (restarts already
   * in the window stay counted), autoShutdown, maxChildren. Nothing is restarted.
   */
  revise(
    flags: Pick<SupervisorSpec, 'strategy' | 'intensity' | 'period' | 'autoShutdown' | 'maxChildren'>,
  ): void {
    const next: SupervisorSpec = { ...this.#spec, ...flags, children: [] };
    const problems = checkSupervisorSpec(next);
    if ((this.#strategy === 'dynamic') !== ((next.strategy ?? 'one_for_one') === 'dynamic'))
      throw new SupervisorError(
        'running',
        `${this.path}: a strategy cannot change to or from dynamic in place; restart the node`,
      );
    if (problems.length > 0) throw new InvalidSpecError(`supervisor flags of ${this.path}`, problems);
    this.#spec = { ...this.#spec, ...flags };
    this.#strategy = next.strategy ?? 'one_for_one';
    this.#autoShutdown = next.autoShutdown ?? 'never';
    this.#window = this.#window.resized(next.intensity ?? 1, next.period ?? 5000);
  }

  /**
   * Restarts a child as its strategy would after a crash (its rest_for_one / one_for_all siblings
   * with it), without counting against the intensity: the operator asked for it.
   */
  restartChild(id: string): Promise<ChildInfo> {
    return this.#serial(async () => {
      const rec = this.#get(id);
      this.#requireReady();
      this.#hold(rec, false);
      const failed = await this.#applyStrategy(rec);
      if (failed) {
        throw new SupervisorError(
          'start_failed',
          `${failed.path} failed to start: ${describeExit(failed.lastExit ?? shutdownReason)}`,
          failed.lastExit ?? undefined,
        );
      }
      return this.#info(rec);
    });
  }

  /** Removes a stopped child's spec (OTP `delete_child`). */
  deleteChild(id: string): Promise<void> {
    return this.#serial(async () => {
      const rec = this.#get(id);
      if (rec.active) throw new SupervisorError('running', `${rec.path} is running; stop it first`);
      this.#remove(rec);
    });
  }

  // ---- queries ------------------------------------------------------------------------------

  children(): ChildInfo[] {
    return this.#children.map((rec) => this.#info(rec));
  }

  child(id: string): ChildInfo | undefined {
    const rec = this.#byId.get(id);
    return rec ? this.#info(rec) : undefined;
  }

  /** True when child `id` is held stopped by an operator (`stopChild`), so nothing restarts it. */
  isHeld(id: string): boolean {
    return this.#byId.get(id)?.held ?? false;
  }

  /** The nested supervisor running as child `id`, if any. */
  nested(id: string): Supervisor | undefined {
    return this.#byId.get(id)?.handle?.node;
  }

  /** The supervisor that owns `path` and the child's id there, searching nested supervisors. */
  locate(path: string): { supervisor: Supervisor; id: string } | null {
    if (!path.startsWith(`${this.path}/`)) return null;
    const rest = path.slice(this.path.length + 1);
    const cut = rest.indexOf('/');
    if (cut < 0) return this.#byId.has(rest) ? { supervisor: this, id: rest } : null;
    return this.nested(rest.slice(0, cut))?.locate(path) ?? null;
  }

  /** How close this supervisor is to giving up: restarts in the window now, out of `intensity`. */
  restartWindow(): { restarts: number; intensity: number; period: number } {
    const w = this.#window;
    return { restarts: w.countAt(this.clock.now()), intensity: w.intensity, period: w.period };
  }

  countChildren(): ChildCounts {
    let active = 0;
    let supervisors = 0;
    for (const rec of this.#children) {
      if (rec.handle) active++;
      if (rec.spec.driver.kind === 'node') supervisors++;
    }
    const specs = this.#children.length;
    return { specs, active, supervisors, workers: specs - supervisors };
  }

  /** This supervisor and everything below it, depth-first in start order. */
  tree(): TreeEntry[] {
    const out: TreeEntry[] = [];
    this.#collect(out, this.#restarts, this.#startedAt);
    return out;
  }

  #collect(out: TreeEntry[], restarts: number, startedAt: number | null): void {
    out.push({
      path: this.path,
      kind: 'node',
      state: this.#state,
      pid: null,
      restarts,
      startedAt,
      lastExit: this.#exit,
    });
    for (const rec of this.#children) {
      const node = rec.handle?.node;
      if (node) {
        node.#collect(out, rec.restarts, rec.startedAt);
      } else if (rec.spec.driver.kind === 'node') {
        out.push({ ...entryOf(this.#info(rec)), kind: 'node' });
      } else {
        out.push(entryOf(this.#info(rec)));
      }
    }
  }

  // ---- internals: one child -------------------------------------------------------------------

  #insert(spec: ChildSpec, index?: number): ChildRecord {
    const rec = new ChildRecord(spec, this.path);
    const stored = this.#checkpoints?.load(rec.path);
    if (stored) rec.saved = stored;
    if (this.#holds?.isHeld(rec.path)) rec.held = true;
    if (index !== undefined && index >= 0 && index < this.#children.length)
      this.#children.splice(index, 0, rec);
    else this.#children.push(rec);
    this.#byId.set(spec.id, rec);
    return rec;
  }

  #remove(rec: ChildRecord): void {
    if (rec.deleted) return;
    rec.deleted = true;
    rec.timer?.cancel();
    const i = this.#children.indexOf(rec);
    if (i >= 0) this.#children.splice(i, 1);
    this.#byId.delete(rec.spec.id);
    this.#checkpoints?.delete?.(rec.path);
    this.#hold(rec, false);
    this.#emit({ type: 'child_deleted', path: rec.path, at: this.clock.now() });
  }

  #hold(rec: ChildRecord, held: boolean): void {
    if (rec.held === held) return;
    this.#holds?.setHeld(rec.path, held);
    rec.held = held;
  }

  #get(id: string): ChildRecord {
    const rec = this.#byId.get(id);
    if (!rec) throw new SupervisorError('not_found', `${this.path} has no child ${id}`);
    return rec;
  }

  #requireReady(): void {
    if (this.#state !== 'ready') throw new SupervisorError('not_running', `${this.path} is ${this.#state}`);
  }

  #fromTemplate(input: Partial<ChildSpec> & { id?: string }): ChildSpec {
    const template = this.#spec.template ?? {};
    let id = input.id;
    if (id === undefined) {
      let n = this.#children.length + 1;
      while (this.#byId.has(`${this.name}-${n}`)) n++;
      id = `${this.name}-${n}`;
    }
    return { ...template, ...input, id } as ChildSpec;
  }

  /** Starts one child; resolves (or returns synchronously) null when ready, else the failure. */
  #launch(rec: ChildRecord): LaunchOutcome | Promise<LaunchOutcome> {
    rec.timer?.cancel();
    rec.timer = null;
    const gen = ++rec.gen;
    rec.state = 'starting';
    rec.startedAt = this.clock.now();
    rec.earlyReady = null;
    this.#emit({ type: 'starting', path: rec.path, at: rec.startedAt });
    const events = new InstanceEvents(this, rec, gen);
    const ctx: StartContext = {
      path: rec.path,
      clock: this.clock,
      sink: this.events,
      checkpoint:
        rec.saved || rec.lastExit
          ? { state: rec.saved?.state, previousExit: rec.lastExit ?? undefined }
          : undefined,
      save: (state) => this.#save(rec, gen, state),
      maxSteps: rec.spec.maxSteps,
      maxRuntime: rec.spec.maxRuntime,
    };
    rec.launching = true;
    let handle: ChildHandle | null = null;
    try {
      handle = rec.spec.driver.start(ctx, events);
    } catch (err) {
      rec.launching = false;
      if (gen === rec.gen && rec.state === 'starting') this.#onExit(rec, gen, crashOf(err));
      return rec.lastExit ?? crashOf(err);
    }
    rec.launching = false;
    // The driver may have reported readiness or an exit from inside start(); TypeScript cannot see that.
    const state = rec.state as ChildState;
    if (rec.gen !== gen || state !== 'starting' || rec.earlyReady !== null) {
      if (state === 'stopped' || state === 'failed') return rec.lastExit ?? shutdownReason;
      rec.handle = handle;
      if (!rec.spec.driver.startsAsync) {
        this.#emit({ type: 'started', path: rec.path, at: this.clock.now(), pid: handle.pid });
      }
      this.#emit({ type: 'ready', path: rec.path, at: this.clock.now(), declared: rec.earlyReady ?? false });
      return null;
    }
    rec.handle = handle;
    if (!rec.spec.driver.startsAsync) {
      this.#emit({ type: 'started', path: rec.path, at: this.clock.now(), pid: handle.pid });
    }
    return new Promise<LaunchOutcome>((resolve) => {
      rec.waiter = resolve;
    });
  }

  #onStarted(rec: ChildRecord, gen: number, pid: number | null): void {
    if (gen !== rec.gen || rec.deleted) return;
    this.#emit({ type: 'started', path: rec.path, at: this.clock.now(), pid });
  }

  #onReady(rec: ChildRecord, gen: number, declared: boolean): void {
    if (gen !== rec.gen) return;
    if (rec.state === 'starting') {
      rec.state = declared ? 'ready' : 'running';
      if (rec.launching) {
        rec.earlyReady = declared;
        return;
      }
      this.#emit({ type: 'ready', path: rec.path, at: this.clock.now(), declared });
      const waiter = rec.waiter;
      rec.waiter = null;
      waiter?.(null);
    } else if (rec.state === 'running' && declared) {
      rec.state = 'ready';
      this.#emit({ type: 'ready', path: rec.path, at: this.clock.now(), declared });
    }
  }

  #onExit(rec: ChildRecord, gen: number, reason: ExitReason): void {
    if (gen !== rec.gen || rec.deleted) return;
    const previous = rec.state;
    if (previous === 'stopped' || previous === 'failed' || previous === 'restarting') return;
    rec.handle = null;
    rec.timer?.cancel();
    rec.timer = null;
    rec.lastExit = reason;
    const at = this.clock.now();
    const waiter = rec.waiter;
    rec.waiter = null;
    if (previous === 'starting' || rec.launching) {
      // Exited before it was ready (or while the driver was still starting it): a failed start.
      rec.state = 'stopped';
      this.#emit({ type: 'start_failed', path: rec.path, at, reason });
      waiter?.(reason);
    } else if (previous === 'stopping') {
      rec.state = 'stopped';
      this.#emit({ type: 'exited', path: rec.path, at, reason, expected: true });
      this.#emit({ type: 'stopped', path: rec.path, at, reason });
      waiter?.(reason);
    } else {
      rec.state = 'stopped';
      this.#emit({ type: 'exited', path: rec.path, at, reason, expected: false });
      this.#enqueue(() => this.#handleExit(rec, gen, reason));
    }
  }

  #save(rec: ChildRecord, gen: number, state: unknown): void {
    if (gen !== rec.gen || rec.deleted) return;
    rec.saved = { state };
    this.#checkpoints?.save(rec.path, state);
    this.#emit({ type: 'checkpoint', path: rec.path, at: this.clock.now() });
  }

  /** Stops one child per its shutdown policy; resolves once it has exited. */
  #halt(rec: ChildRecord, force = false): Promise<void> | null {
    if (rec.state === 'restarting') {
      rec.timer?.cancel();
      rec.timer = null;
      rec.state = 'stopped';
      return null;
    }
    const handle = rec.handle;
    if (!handle && rec.state !== 'starting') return null;
    if (rec.state === 'stopping') {
      if (force) handle?.kill();
      return new Promise<void>((resolve) => {
        const previous = rec.waiter;
        rec.waiter = (outcome) => {
          previous?.(outcome);
          resolve();
        };
      });
    }
    const startWaiter = rec.waiter;
    rec.state = 'stopping';
    this.#emit({ type: 'stopping', path: rec.path, at: this.clock.now() });
    const gen = rec.gen;
    return new Promise<void>((resolve) => {
      rec.waiter = (outcome) => {
        // A start that was still waiting for readiness learns it was cut short.
        startWaiter?.(outcome ?? shutdownReason);
        resolve();
      };
      if (!handle) return; // still inside driver.start(); its exit will come
      if (force || rec.shutdown === 'brutal') {
        handle.kill();
        return;
      }
      handle.stop();
      if (typeof rec.shutdown === 'number' && rec.state === 'stopping' && rec.gen === gen) {
        rec.timer = this.clock.setTimer(rec.shutdown, () => {
          if (rec.gen === gen && rec.state === 'stopping') handle.kill();
        });
      }
    });
  }

  /** Stops the given children in reverse order (all at once under `dynamic`). */
  async #haltAll(records: readonly ChildRecord[], brutal = false): Promise<void> {
    if (brutal) {
      await Promise.all(records.map((rec) => this.#halt(rec, true)));
      return;
    }
    if (this.strategy === 'dynamic') {
      await Promise.all(records.map((rec) => this.#halt(rec)));
      return;
    }
    for (let i = records.length - 1; i >= 0; i--) {
      const pending = this.#halt(records[i] as ChildRecord);
      if (pending) await pending;
    }
  }

  // ---- internals: supervision ----------------------------------------------------------------

  /** A child exited on its own: its restart type and the strategy decide what happens. */
  async #handleExit(rec: ChildRecord, gen: number, reason: ExitReason): Promise<void> {
    if (this.#state !== 'ready' || rec.deleted || rec.gen !== gen || rec.handle) return;
    const decision = decideExit(rec.restart, reason);
    if (decision === 'fail') {
      rec.state = 'failed';
      this.#emit({ type: 'permanent_failure', path: rec.path, at: this.clock.now(), reason });
      await this.#checkAutoShutdown(rec);
    } else if (decision === 'delete') {
      this.#remove(rec);
      await this.#checkAutoShutdown(rec);
    } else if (decision === 'keep') {
      await this.#checkAutoShutdown(rec);
    } else {
      await this.#restart(rec);
    }
  }

  /**
   * Counts a restart against the intensity, then restarts now or after the backoff delay. A child
   * that died with its launcher (or could not start because it was gone) is restarted at once and
   * not counted: losing the launcher is not its failure, and the node must not give up over it.
   */
  async #restart(rec: ChildRecord): Promise<void> {
    if (this.#state !== 'ready' || rec.deleted) return;
    const now = this.clock.now();
    rec.restarts++;
    this.#restarts++;
    if (isLauncherLoss(rec.lastExit)) {
      this.#emit({
        type: 'restarting',
        path: rec.path,
        at: now,
        delay: 0,
        restarts: rec.restarts,
        cause: 'launcher_lost',
      });
      await this.#restartNow(rec);
      return;
    }
    if (!this.#window.add(now)) {
      this.#emit({
        type: 'intensity_exceeded',
        path: this.path,
        at: now,
        restarts: this.#window.count,
        intensity: this.#window.intensity,
        period: this.#window.period,
      });
      const message = `${this.path}: more than ${plural(this.#window.intensity, 'restart')} in ${seconds(this.#window.period)} (last: ${rec.path} ${describeExit(rec.lastExit ?? shutdownReason)})`;
      await this.#giveUp({ kind: 'escalated', message });
      return;
    }
    const backoff = rec.spec.backoff;
    if (backoff && now - rec.startedAt >= (backoff.resetAfter ?? backoff.max)) rec.attempt = 0;
    const delay = backoffDelay(backoff, rec.attempt);
    if (backoff) rec.attempt++;
    this.#emit({ type: 'restarting', path: rec.path, at: now, delay, restarts: rec.restarts });
    if (delay > 0) {
      rec.state = 'restarting';
      // Its dependants must not run against it while it is down for the whole delay: the
      // strategy stops them now and starts them after it (#applyStrategy finds them stopped).
      await this.#stopSiblings(rec);
      if (rec.state !== 'restarting' || this.#state !== 'ready') return;
      rec.timer = this.clock.setTimer(delay, () => {
        rec.timer = null;
        if (rec.state === 'restarting') this.#enqueue(() => this.#restartNow(rec));
      });
      return;
    }
    await this.#restartNow(rec);
  }

  async #restartNow(rec: ChildRecord): Promise<void> {
    if (this.#state !== 'ready' || rec.deleted || rec.handle) return;
    const failed = await this.#applyStrategy(rec);
    // OTP's try_again_restart: a failed restart counts as another restart, queued behind
    // whatever arrived meanwhile so a stop request can get in.
    if (failed && this.#state === 'ready') this.#enqueue(() => this.#restart(failed));
  }

  /**
   * Stops the siblings the strategy names (reverse order), then starts the child and those
   * siblings (start order). Returns the child whose start failed, if one did.
   */
  async #applyStrategy(rec: ChildRecord): Promise<ChildRecord | null> {
    const list = [...this.#children];
    const index = list.indexOf(rec);
    if (index < 0) return null;
    const strategy = this.#effectiveStrategy();
    // An operator's restart finds the child running: it stops in its place in reverse start order.
    await this.#stopSiblings(rec, rec.handle !== null || rec.state === 'restarting');
    for (const i of childrenToStart(strategy, list.length, index)) {
      if (this.#state !== 'ready') return null;
      const child = list[i] as ChildRecord;
      if (child.deleted || child.handle) continue;
      if (child !== rec && (child.held || child.state === 'failed')) continue;
      if (child !== rec) {
        // Restarted for its sibling's sake: it counts, and says why.
        child.restarts++;
        this.#emit({
          type: 'restarting',
          path: child.path,
          at: this.clock.now(),
          delay: 0,
          restarts: child.restarts,
          because: rec.path,
        });
      }
      const outcome = await this.#launch(child);
      if (outcome !== null) return child;
    }
    return null;
  }

  #effectiveStrategy(): Strategy {
    return this.strategy === 'dynamic' ? 'one_for_one' : this.strategy;
  }

  /** Stops the siblings `rec`'s restart takes with it (reverse start order), and `rec` too if asked. */
  async #stopSiblings(rec: ChildRecord, withItself = false): Promise<void> {
    const list = [...this.#children];
    const index = list.indexOf(rec);
    if (index < 0) return;
    const toStop = siblingsToStop(this.#effectiveStrategy(), list.length, index);
    if (withItself) {
      toStop.push(index);
      toStop.sort((x, y) => y - x);
    }
    for (const i of toStop) {
      const sibling = list[i] as ChildRecord;
      if (sibling.deleted) continue;
      const wasActive = sibling.active;
      const pending = this.#halt(sibling);
      if (pending) await pending;
      // OTP: a temporary child stopped by a sibling's restart is not restarted but removed.
      if (wasActive && sibling.restart === 'temporary') this.#remove(sibling);
    }
  }

  /** OTP auto_shutdown: only a significant child's own exit (not restarted) can trigger it. */
  async #checkAutoShutdown(rec: ChildRecord): Promise<void> {
    if (!rec.spec.significant || this.autoShutdown === 'never' || this.#state !== 'ready') return;
    if (this.autoShutdown === 'all_significant') {
      const anyLeft = this.#children.some((c) => c.spec.significant && c.active);
      if (anyLeft) return;
    }
    this.#emit({ type: 'auto_shutdown', path: this.path, at: this.clock.now(), trigger: rec.path });
    await this.#giveUp(shutdownReason);
  }

  /** From inside the queue: stop everything and exit with `reason`. */
  async #giveUp(reason: ExitReason): Promise<void> {
    if (this.#state === 'stopping' || this.#state === 'stopped') return;
    this.#state = 'stopping';
    if (this.#isRoot) this.#emit({ type: 'stopping', path: this.path, at: this.clock.now() });
    await this.#haltAll(this.#children);
    this.#finish(reason, true);
  }

  /** From outside the queue: stop at once, let the in-flight operation drain, then exit. */
  #terminate(reason: ExitReason, brutal: boolean): Promise<void> {
    if (this.#state === 'stopped') return Promise.resolve();
    if (this.#terminating) return this.#terminating;
    if (this.#state === 'stopping') return this.whenStopped().then(() => undefined);
    const wasIdle = this.#state === 'idle';
    this.#state = 'stopping';
    if (this.#isRoot && !wasIdle) this.#emit({ type: 'stopping', path: this.path, at: this.clock.now() });
    this.#terminating = (async () => {
      await this.#haltAll(this.#children, brutal);
      await this.#queue;
      await this.#haltAll(this.#children, brutal);
      this.#finish(reason, true);
    })();
    return this.#terminating;
  }

  #finish(reason: ExitReason, notify: boolean): void {
    if (this.#state === 'stopped') return;
    this.#state = 'stopped';
    this.#exit = reason;
    const at = this.clock.now();
    for (const rec of this.#children) {
      rec.timer?.cancel();
      rec.timer = null;
      if (rec.state === 'restarting') rec.state = 'stopped';
    }
    if (reason.kind === 'escalated') this.#emit({ type: 'escalated', path: this.path, at, reason });
    if (this.#isRoot) this.#emit({ type: 'stopped', path: this.path, at, reason });
    for (const waiter of this.#exitWaiters.splice(0)) waiter(reason);
    if (notify) this.#exitListener?.(reason);
  }

  #serial<T>(op: () => Promise<T>): Promise<T> {
    const result = this.#queue.then(op);
    this.#queue = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  #enqueue(op: () => Promise<void>): void {
    this.#serial(async () => {
      // A crash loop of in-process children is all microtasks; without a macrotask boundary now
      // and then it would starve timers and I/O (the control API, a stop request) for ever.
      if (++this.#burst >= burstLimit) {
        this.#burst = 0;
        await new Promise((resolve) => setImmediate(resolve));
      }
      await op();
    }).catch((err: unknown) => {
      // Supervision code must not fail silently: make the defect visible, then stop safely.
      this.#emit({
        type: 'escalated',
        path: this.path,
        at: this.clock.now(),
        reason: { kind: 'crashed', message: `internal error: ${(err as Error)?.stack ?? String(err)}` },
      });
    });
  }

  static {
    // Gives InstanceEvents access to the private handlers without exposing them publicly.
    report = (sup) => ({
      started: (rec, gen, pid) => sup.#onStarted(rec, gen, pid),
      ready: (rec, gen, declared) => sup.#onReady(rec, gen, declared),
      exited: (rec, gen, reason) => sup.#onExit(rec, gen, reason),
    });
  }

  #emit(event: SupervisorEvent): void {
    if (this.events.active) this.events.emit(event);
  }

  #info(rec: ChildRecord): ChildInfo {
    return {
      id: rec.spec.id,
      path: rec.path,
      kind: rec.spec.driver.kind,
      state: rec.state,
      pid: rec.handle?.pid ?? null,
      restarts: rec.restarts,
      restart: rec.restart,
      significant: rec.spec.significant ?? false,
      startedAt: rec.handle ? rec.startedAt : null,
      lastExit: rec.lastExit,
    };
  }
}

function entryOf(info: ChildInfo): TreeEntry {
  return {
    path: info.path,
    kind: info.kind,
    state: info.state,
    pid: info.pid,
    restarts: info.restarts,
    startedAt: info.startedAt,
    lastExit: info.lastExit,
  };
}

export function crashOf(err: unknown): ExitReason {
  const message = err instanceof Error ? err.message : String(err);
  return { kind: 'crashed', message };
}

/** One line for humans: `exit code 3`, `killed by SIGKILL (out of memory)`, `crashed: boom`. */
export function describeExit(reason: ExitReason): string {
  switch (reason.kind) {
    case 'normal':
      return 'exited normally';
    case 'shutdown':
      return 'stopped';
    case 'killed':
      return 'killed';
    case 'crashed': {
      if (reason.oom && !reason.signal) return `out of memory: ${reason.message}`;
      if (reason.oom) return `killed by ${reason.signal} (out of memory)`;
      if (reason.signal) return `killed by ${reason.signal}`;
      if (reason.code !== undefined) {
        const plain = `exit code ${reason.code}`;
        return reason.message && reason.message !== plain ? `${plain}: ${reason.message}` : plain;
      }
      return `crashed: ${reason.message}`;
    }
    case 'permanent_failure':
      return `permanent failure${reason.code !== undefined ? ` (exit code ${reason.code})` : ''}: ${reason.message}`;
    case 'escalated':
      return `gave up: ${reason.message}`;
  }
}

/** `1 restart`, `3 restarts`. */
function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** A period as people write it in the manifest: `10s`, `1.5s`, `250ms`. */
function seconds(ms: number): string {
  return ms >= 1000 ? `${Number((ms / 1000).toFixed(3))}s` : `${ms}ms`;
}
