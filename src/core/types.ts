/**
 * The vocabulary of the supervision engine: exit reasons, restart types, shutdown policies,
 * strategies, child states and the specs that declare them. Semantics follow Erlang/OTP's
 * `supervisor` where OTP has an answer; where captree adds something (backoff, permanent failure,
 * checkpoints) the field says so.
 */
import type { ChildDriver } from './driver.ts';

/**
 * Why a child stopped running.
 * - `normal`: it finished on its own (exit 0, task promise resolved).
 * - `shutdown`: it stopped because it was asked to (by its supervisor or an auto-shutdown).
 * - `killed`: it was killed (brutal shutdown, or it outlived its shutdown timeout).
 * - `crashed`: anything abnormal: non-zero exit, signal, OOM kill, rejected task, failed readiness,
 *   or a limit (`reason`: `step_limit`, `deadline`, `oom`, `liveness`; see `LimitReason`), or
 *   the loss of what ran it (`reason: 'launcher_lost'`: not the child's own failure, see below).
 * - `permanent_failure`: the child declared it must not be restarted (s6's exit 125,
 *   systemd's `RestartPreventExitStatus`); it is reported, not looped.
 * - `escalated`: a nested supervisor exceeded its restart intensity and gave up.
 */
export type ExitReason =
  | { readonly kind: 'normal' }
  | { readonly kind: 'shutdown' }
  | { readonly kind: 'killed' }
  | {
      readonly kind: 'crashed';
      readonly message: string;
      readonly code?: number;
      readonly signal?: string;
      readonly oom?: boolean;
      /**
       * A limit of the spec or driver ended the instance (the process driver's OOM sets `oom`
       * only), or `launcher_lost`: the process that ran it died, so it was ended with it.
       */
      readonly reason?: LimitReason | 'launcher_lost';
    }
  | { readonly kind: 'permanent_failure'; readonly message: string; readonly code?: number }
  | { readonly kind: 'escalated'; readonly message: string };

/**
 * Why a limit ended an instance: `step_limit` (more than `maxSteps` calls of `ctx.step()`),
 * `deadline` (`maxRuntime` passed), `oom` (a worker's `resourceLimits` heap exceeded), `liveness`
 * (a worker did not call `ctx.alive()` or `ctx.step()` within its heartbeat interval). Each is a
 * crash: abnormal, so permanent and transient children are restarted, as OTP does for any exit
 * reason other than `normal` and `shutdown`.
 */
export type LimitReason = 'step_limit' | 'deadline' | 'oom' | 'liveness';
export const limitReasons: readonly LimitReason[] = ['step_limit', 'deadline', 'oom', 'liveness'];

/**
 * The child did not fail: what ran it did (the launcher was killed). It is restarted as any crash
 * would be, but the restart does not count against its supervisor's intensity (nor its backoff):
 * a node must not give up on children whose only fault was to lose their parent process.
 */
export function isLauncherLoss(reason: ExitReason | null | undefined): boolean {
  return reason?.kind === 'crashed' && reason.reason === 'launcher_lost';
}

/** OTP: a transient child is restarted only when its exit reason is abnormal. */
export function isAbnormal(reason: ExitReason): boolean {
  return reason.kind !== 'normal' && reason.kind !== 'shutdown';
}

export type RestartType = 'permanent' | 'transient' | 'temporary';
export const restartTypes: readonly RestartType[] = ['permanent', 'transient', 'temporary'];

/** Milliseconds (ask, wait, then kill), `brutal` (kill at once) or `infinity` (wait for ever). */
export type Shutdown = number | 'brutal' | 'infinity';

export type Strategy = 'one_for_one' | 'one_for_all' | 'rest_for_one' | 'dynamic';
export const strategies: readonly Strategy[] = ['one_for_one', 'one_for_all', 'rest_for_one', 'dynamic'];

export type AutoShutdown = 'never' | 'any_significant' | 'all_significant';
export const autoShutdowns: readonly AutoShutdown[] = ['never', 'any_significant', 'all_significant'];

/**
 * A child's state, as shown by `captree ps --json`.
 * `starting` until it reports readiness; `running` once started when no readiness was declared;
 * `ready` once it declared readiness; `restarting` while a backoff delay runs; `stopping` while it
 * is being asked to stop; `stopped` when not running (kept spec); `failed` after a permanent
 * failure or a failed start that will not be retried.
 */
export type ChildState = 'starting' | 'running' | 'ready' | 'restarting' | 'stopping' | 'stopped' | 'failed';

/** captree's addition to OTP: an exponential delay between restarts of one child. */
export interface BackoffSpec {
  /** Delay before the first restart, ms. */
  readonly initial: number;
  /** Upper bound of the delay, ms. */
  readonly max: number;
  /** Growth per consecutive restart (default 2). */
  readonly factor?: number;
  /** After this long up (ms), the next crash starts again from `initial` (default: `max`). */
  readonly resetAfter?: number;
}

export interface ChildSpec {
  /** Unique among its siblings; the last segment of its path. */
  readonly id: string;
  /** How the child runs: an in-process task, a nested supervisor, an OS process. */
  readonly driver: ChildDriver;
  /** Default `permanent`. */
  readonly restart?: RestartType;
  /** Default 5000 ms for workers, `infinity` for nested supervisors (OTP). */
  readonly shutdown?: Shutdown;
  /** Counts for the supervisor's `autoShutdown`; invalid with `permanent` (OTP). */
  readonly significant?: boolean;
  /** Default: none (restart at once, like OTP). */
  readonly backoff?: BackoffSpec | false;
  /** Tasks and workers: more than this many `ctx.step()` calls ends the instance (`step_limit`). */
  readonly maxSteps?: number;
  /** Tasks and workers: wall-clock ms one instance may run before it is ended (`deadline`). */
  readonly maxRuntime?: number;
}

export interface SupervisorSpec {
  readonly name: string;
  /** Default `one_for_one`. */
  readonly strategy?: Strategy;
  /** Restarts tolerated within `period` before giving up (default 1, OTP). */
  readonly intensity?: number;
  /** Window for `intensity`, ms (default 5000, OTP). */
  readonly period?: number;
  /** Default `never`. */
  readonly autoShutdown?: AutoShutdown;
  /** Children in start order. A `dynamic` supervisor starts with none unless given. */
  readonly children?: readonly ChildSpec[];
  /** `dynamic` only: upper bound on children; `addChild` beyond it is rejected. */
  readonly maxChildren?: number;
  /** `dynamic` only: fields merged under every `addChild` spec. */
  readonly template?: Partial<Omit<ChildSpec, 'id'>>;
}

/** A saved checkpoint handed to a child's replacement, with the reason its predecessor exited. */
export interface Checkpoint {
  readonly state: unknown;
  readonly previousExit: ExitReason | undefined;
}
