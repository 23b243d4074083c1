/**
 * How a child declares readiness and liveness, as data: the manifest produces these and the
 * process driver carries them out. Durations in milliseconds.
 */

export type ReadySpec = { timeout: number } & (
  | { type: 'notify'; fd: number }
  | { type: 'sd_notify' }
  | { type: 'tcp'; host: string; port: number }
  | { type: 'http'; url: string }
  | { type: 'exec'; command: string[] }
  | { type: 'log'; pattern: string }
);

export type LivenessSpec = { interval: number; timeout: number; failures: number } & (
  | { type: 'tcp'; host: string; port: number }
  | { type: 'http'; url: string }
  | { type: 'exec'; command: string[] }
);
