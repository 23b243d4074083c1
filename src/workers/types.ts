import type { ExitReason } from '../core/index.ts';

/** What a worker module's default export receives: `export default async (ctx: WorkerContext) => …`. */
export interface WorkerContext {
  /** Aborted when the supervisor asks the worker to stop; at its shutdown deadline the thread is terminated. */
  readonly signal: AbortSignal;
  readonly path: string;
  /** The driver's `data`, structured-cloned into the thread. */
  readonly data: unknown;
  /** Why the previous instance exited (undefined on the first start). */
  readonly previousExit: ExitReason | undefined;
  /**
   * The checkpoint: `load()` returns the last state saved by this instance or a predecessor;
   * `save(state)` hands a structured-cloneable state to the supervisor for the replacement.
   */
  readonly checkpoint: { load(): unknown; save(state: unknown): void };
  /** The same as `checkpoint.save`, as tasks have it. */
  save(state: unknown): void;
  /** Counts a step (and a heartbeat); beyond `maxSteps` the thread stops here and is terminated. */
  step(): number;
  /** A heartbeat for long steps: without one (or a step) within `heartbeat` ms the thread is terminated. */
  alive(): void;
  /** Declares readiness (only with `readiness: 'manual'`). */
  ready(): void;
  /** Steps counted so far by this instance. */
  readonly steps: number;
}
