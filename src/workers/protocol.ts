/**
 * Messages between a worker child's thread and its driver, and what the thread is started with.
 * Shared memory carries what must be read while the thread spins: cell 0 counts heartbeats
 * (`ctx.alive()` and `ctx.step()`), cell 1 is a cell nobody notifies, on which a thread past its
 * step limit waits until it is terminated.
 */
import type { ExitReason } from '../core/index.ts';

export interface WorkerBoot {
  readonly module: string;
  readonly path: string;
  readonly data: unknown;
  readonly checkpoint: unknown;
  readonly previousExit: ExitReason | undefined;
  readonly maxSteps: number | undefined;
  readonly manual: boolean;
  readonly shared: SharedArrayBuffer;
}

export const beatCell = 0;
export const parkCell = 1;

/** Thread → driver. */
export type FromWorker =
  | { readonly t: 'running' }
  | { readonly t: 'ready' }
  | { readonly t: 'save'; readonly state: unknown }
  | { readonly t: 'step_limit'; readonly steps: number }
  | { readonly t: 'done'; readonly exit: ExitReason };

/** Driver → thread. */
export type ToWorker = { readonly t: 'stop' };
