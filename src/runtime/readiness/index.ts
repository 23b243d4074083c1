/**
 * Readiness and liveness for supervised children: TCP, HTTP, exec and log-line probes with
 * deadlines and precise failure reasons, periodic liveness checks, and an sd_notify-style
 * watchdog. Launcher-delivered readiness (notify fd, sd_notify) is not here.
 */
export {
  type Check,
  type ExecTarget,
  execCheck,
  type HttpTarget,
  httpCheck,
  type TcpTarget,
  tcpCheck,
} from './checks.ts';
export { LivenessMonitor, type LivenessOptions, Watchdog, type WatchdogOptions } from './liveness.ts';
export {
  LogMatcher,
  ReadinessError,
  type WaitOptions,
  waitExec,
  waitHttp,
  waitTcp,
  waitUntil,
} from './readiness.ts';
