/** The supervision engine: OTP semantics over pluggable child drivers. Pure: no I/O, clock injected. */
export { backoffDelay } from './backoff.ts';
export { type Clock, flushMicrotasks, systemClock, type Timer, VirtualClock } from './clock.ts';
export type { ChildDriver, ChildEvents, ChildHandle, ChildKind, StartContext } from './driver.ts';
export { EventSink, type Listener, type SupervisorEvent, type SupervisorEventType } from './events.ts';
export { RestartWindow } from './intensity.ts';
export { node } from './node-driver.ts';
export { childrenToStart, decideExit, type ExitDecision, siblingsToStop } from './restart.ts';
export { checkChildSpec, checkSupervisorSpec, InvalidSpecError, SpecError } from './spec.ts';
export {
  type CheckpointStore,
  type ChildCounts,
  type ChildInfo,
  crashOf,
  describeExit,
  type HoldStore,
  Supervisor,
  SupervisorError,
  type SupervisorErrorCode,
  type SupervisorOptions,
  type SupervisorState,
  type TreeEntry,
} from './supervisor.ts';
export {
  deadlineExit,
  LimitExceeded,
  PermanentFailure,
  stepLimitExit,
  type TaskContext,
  type TaskFunction,
  type TaskOptions,
  task,
} from './task.ts';
export * from './types.ts';
