/** The daemon layer: a running tree on one host, its control API, journal and state dir. */
export { checkTree } from './check.ts';
export {
  type ApiReply,
  ApiResponseError,
  ControlClient,
  eachEvent,
  eachLine,
  NotRunningError,
  type RemoteTarget,
  readAll,
  urlPath,
} from './client.ts';
export { type Daemon, type DaemonOptions, defaultBuilder, startDaemon } from './daemon.ts';
export {
  Journal,
  type JournalFilter,
  type JournalHealth,
  type JournalRecord,
  pathMatches,
  readJournal,
} from './journal.ts';
export {
  type Access,
  ApiFailure,
  type ControlOptions,
  type ControlServer,
  createControlServer,
  type TcpOptions,
} from './server.ts';
export { snapshot } from './snapshot.ts';
export {
  acquireStateDir,
  isAlive,
  liveOwner,
  readPid,
  STATE_DIR_NAME,
  StateDirBusyError,
  type StatePaths,
  stateDirFor,
  statePaths,
} from './state.ts';
export { formatDuration, parseSince } from './time.ts';
export type * from './types.ts';
