/** Children that run in their own worker thread and can be terminated: see driver.ts. */
export { type WorkerOptions, worker } from './driver.ts';
export type { WorkerContext } from './types.ts';
