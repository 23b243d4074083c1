/**
 * The in-process task driver: an async function supervised like any child. It receives an
 * `AbortSignal` that fires when it is asked to stop; resolving is a normal exit (or `shutdown` if
 * it was asked to stop), rejecting is a crash, and throwing `PermanentFailure` tells the supervisor
 * not to restart it. A task can save a checkpoint that its replacement receives after a restart,
 * with the exit reason of its predecessor, so a long-running agent resumes instead of starting over.
 *
 * JavaScript cannot kill a promise: `kill()` (brutal shutdown, or a task that outlived its
 * shutdown timeout) abandons the task, reports it `killed`, and aborts its signal. The spec's
 * `maxSteps` and `maxRuntime` end an instance the same way (`crashed` with reason `step_limit` or
 * `deadline`): the step that exceeds the limit throws `LimitExceeded` so the task's own code
 * unwinds, but a task that spins without calling `ctx.step()` keeps the event loop for ever.
 * Work that may spin belongs in a `worker()` (src/workers), whose thread can be terminated.
 */
import type { ChildDriver, ChildHandle } from './driver.ts';
import type { ExitReason, LimitReason } from './types.ts';

export interface TaskContext {
  /** Aborted when the supervisor asks the task to stop. */
  readonly signal: AbortSignal;
  readonly path: string;
  /** The state the previous instance saved, if any. */
  readonly checkpoint: unknown;
  /** Why the previous instance exited (undefined on the first start). */
  readonly previousExit: ExitReason | undefined;
  /** Saves a small state for the replacement of this task after a restart. */
  save(state: unknown): void;
  /** Declares readiness (only with `readiness: 'manual'`; otherwise the task is up once started). */
  ready(): void;
  /**
   * Counts one step and returns the count so far; beyond the spec's `maxSteps` the instance ends
   * (`step_limit`) and this throws `LimitExceeded`.
   */
  step(): number;
}

export type TaskFunction = (ctx: TaskContext) => Promise<unknown> | unknown;

export interface TaskOptions {
  /** `immediate` (default): up as soon as started. `manual`: up when it calls `ctx.ready()`. */
  readonly readiness?: 'immediate' | 'manual';
}

/** Thrown by a task that must not be restarted (like s6's exit 125). */
export class PermanentFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PermanentFailure';
  }
}

/**
 * One abort reason for every task: `abort()` without one builds a DOMException with a stack
 * trace each time, which made stopping 100,000 tasks four times slower.
 */
/** Thrown by `ctx.step()` once the instance has been ended by a limit. */
export class LimitExceeded extends Error {
  readonly reason: LimitReason;
  constructor(reason: LimitReason, message: string) {
    super(message);
    this.name = 'LimitExceeded';
    this.reason = reason;
  }
}

/** The exit reason of an instance ended by `maxSteps`, shared by tasks and workers. */
export function stepLimitExit(maxSteps: number): ExitReason {
  return { kind: 'crashed', reason: 'step_limit', message: `step_limit: more than ${maxSteps} steps` };
}

/** The exit reason of an instance ended by `maxRuntime`, shared by tasks and workers. */
export function deadlineExit(maxRuntime: number): ExitReason {
  return { kind: 'crashed', reason: 'deadline', message: `deadline: still running after ${maxRuntime} ms` };
}

const stopReason = new DOMException('stopped by its supervisor', 'AbortError');

const normal: ExitReason = { kind: 'normal' };
const shutdown: ExitReason = { kind: 'shutdown' };
const killed: ExitReason = { kind: 'killed' };

export function task(fn: TaskFunction, options: TaskOptions = {}): ChildDriver {
  const manual = options.readiness === 'manual';
  return {
    kind: 'task',
    start(ctx, events): ChildHandle {
      const controller = new AbortController();
      let done = false;
      let steps = 0;
      let limit: ExitReason | null = null;
      const finish = (reason: ExitReason) => {
        if (done) return;
        done = true;
        deadline?.cancel();
        events.exited(reason);
      };
      const end = (reason: ExitReason) => {
        limit = reason;
        finish(reason);
        controller.abort(stopReason);
      };
      const { maxSteps, maxRuntime } = ctx;
      const deadline =
        maxRuntime === undefined ? null : ctx.clock.setTimer(maxRuntime, () => end(deadlineExit(maxRuntime)));
      const taskCtx: TaskContext = {
        signal: controller.signal,
        path: ctx.path,
        checkpoint: ctx.checkpoint?.state,
        previousExit: ctx.checkpoint?.previousExit,
        save: (state) => {
          if (!done) ctx.save(state);
        },
        ready: () => {
          if (!done) events.ready(true);
        },
        step: () => {
          if (limit?.kind === 'crashed' && limit.reason && limit.reason !== 'launcher_lost')
            throw new LimitExceeded(limit.reason, limit.message);
          steps++;
          if (maxSteps !== undefined && steps > maxSteps) {
            const reason = stepLimitExit(maxSteps);
            end(reason);
            throw new LimitExceeded('step_limit', reason.kind === 'crashed' ? reason.message : '');
          }
          return steps;
        },
      };
      let result: unknown;
      try {
        result = fn(taskCtx);
      } catch (err) {
        finish(reasonOf(err, controller.signal));
        return { pid: null, stop() {}, kill() {} };
      }
      if (!manual) events.ready(false);
      if (result instanceof Promise) {
        result.then(
          () => finish(controller.signal.aborted ? shutdown : normal),
          (err: unknown) => finish(reasonOf(err, controller.signal)),
        );
      } else {
        finish(normal);
      }
      return {
        pid: null,
        stop: () => controller.abort(stopReason),
        kill: () => {
          finish(killed);
          controller.abort(stopReason);
        },
      };
    },
  };
}

function reasonOf(err: unknown, signal: AbortSignal): ExitReason {
  if (err instanceof PermanentFailure) return { kind: 'permanent_failure', message: err.message };
  // A task that lets the abort propagate was stopped, not crashed.
  if (signal.aborted && (err === signal.reason || (err as Error)?.name === 'AbortError')) return shutdown;
  return { kind: 'crashed', message: err instanceof Error ? err.message : String(err) };
}
