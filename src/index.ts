/** captree's public library API. */

/** For a supervisor running as a captree child: its grant, cgroup subtree and parent channel. */
export {
  type ChildContext,
  ChildRuntime,
  DeniedError,
  delegatedGroup,
  fromEnvironment,
  ParentChannel,
  type ProcessChildOptions,
  processChild,
} from './child/index.ts';
export * from './core/index.ts';
/** In-process children in their own thread, terminated for real at kill, limits and deadlines. */
export { type WorkerContext, type WorkerOptions, worker } from './workers/index.ts';
