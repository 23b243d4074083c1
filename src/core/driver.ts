/**
 * The one interface through which every kind of child plugs into the engine: in-process tasks,
 * nested supervisors, OS processes and, later, nodes on other hosts.
 *
 * Contract, in the order things happen:
 * 1. `start(ctx, events)` begins the child and returns its handle at once; it must not throw
 *    (a failure to start is reported as `events.exited(...)` before any `events.ready()`).
 * 2. `events.ready(declared)` once the child is up: `declared` when the child itself said so
 *    (notify fd, sd_notify, a probe), not declared when the driver merely assumes it.
 * 3. `handle.stop()` asks politely (abort signal, SIGTERM); `handle.kill()` forces. The engine owns
 *    the deadline between them. After `kill()` the driver must report `exited` promptly.
 * 4. `events.exited(reason)` exactly once, when nothing of the child is left running.
 */
import type { Clock } from './clock.ts';
import type { EventSink } from './events.ts';
import type { Checkpoint, ExitReason } from './types.ts';

export type ChildKind = 'task' | 'worker' | 'node' | 'process';

export interface StartContext {
  /** The child's path in the tree, e.g. `/shop/db`. */
  readonly path: string;
  readonly clock: Clock;
  /** Where a nested supervisor sends its own events. */
  readonly sink: EventSink;
  /** The last checkpoint its predecessor saved, if any, with the predecessor's exit reason. */
  readonly checkpoint: Checkpoint | undefined;
  /** Saves a small state handed to this child's replacement after a restart. */
  save(state: unknown): void;
  /** The spec's `maxSteps` (tasks and workers enforce it; see types.ts). */
  readonly maxSteps?: number | undefined;
  /** The spec's `maxRuntime`, ms. */
  readonly maxRuntime?: number | undefined;
}

export interface ChildEvents {
  /** For drivers with `startsAsync`: the child now exists (e.g. the process was exec'd). */
  started(pid: number | null): void;
  ready(declared: boolean): void;
  exited(reason: ExitReason): void;
}

export interface ChildHandle {
  /** OS process id, or null for in-process children. */
  readonly pid: number | null;
  stop(): void;
  kill(): void;
  /** A nested supervisor, for tree queries. */
  readonly node?: import('./supervisor.ts').Supervisor;
}

export interface ChildDriver {
  readonly kind: ChildKind;
  /**
   * True when the child comes into existence after `start()` returns (an OS process spawned by
   * the launcher): the driver then reports `events.started(pid)` itself, so the `started` event
   * carries the real pid. Otherwise the engine reports it when `start()` returns.
   */
  readonly startsAsync?: boolean;
  /** A nested supervisor's spec, as each start builds it (reconciliation revises from it). */
  readonly spec?: import('./types.ts').SupervisorSpec;
  start(ctx: StartContext, events: ChildEvents): ChildHandle;
}
