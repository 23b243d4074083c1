/**
 * The worker driver: a child whose code runs in its own `worker_threads` Worker (its own V8
 * isolate and event loop), so it can be really stopped. `kill()`, a shutdown deadline passing,
 * `maxRuntime`, `maxSteps` and a missed heartbeat terminate the thread even while it spins
 * (`for (;;) {}`): V8 interrupts the running script. `resourceLimits` bound its heap; exceeding
 * them ends the thread (`oom`) and nothing else.
 *
 * Exit reasons: the module resolves → `normal` (`shutdown` if it was asked to stop); throws →
 * `crashed` with the error's message (`permanent_failure` for an error named PermanentFailure);
 * killed → `killed`; heap limit → `crashed` + `oom`; more than `maxSteps` steps → `crashed` +
 * `step_limit`; `maxRuntime` passed → `crashed` + `deadline`; no `ctx.alive()` nor `ctx.step()`
 * within `heartbeat` ms → `crashed` + `liveness`. `exited` is reported once the thread is gone.
 *
 * Cost (bench/core.ts): ~9 MB of RSS per idle worker (its own isolate) and ~30 ms per restart,
 * against ~1.7 KB and a few µs for a task. Use `task()` for code that awaits, `worker()` for code
 * that computes or may hang, a process for code that must not share the supervisor's authority.
 */
import { pathToFileURL } from 'node:url';
import { type ResourceLimits, Worker } from 'node:worker_threads';
import {
  type ChildDriver,
  type ChildHandle,
  deadlineExit,
  type ExitReason,
  stepLimitExit,
} from '../core/index.ts';
import { beatCell, type FromWorker, type ToWorker, type WorkerBoot } from './protocol.ts';
import { workerSource } from './runtime.ts';

export interface WorkerOptions {
  /** Handed to the module as `ctx.data` (structured-cloned). */
  readonly data?: unknown;
  /** Node's per-thread limits (`maxOldGenerationSizeMb`, `maxYoungGenerationSizeMb`, ...). */
  readonly resourceLimits?: ResourceLimits;
  /** `immediate` (default): up once the module is loaded and running. `manual`: up at `ctx.ready()`. */
  readonly readiness?: 'immediate' | 'manual';
  /** ms: the module must call `ctx.alive()` or `ctx.step()` this often, else it is terminated. */
  readonly heartbeat?: number;
}

const normal: ExitReason = { kind: 'normal' };
const shutdown: ExitReason = { kind: 'shutdown' };
const killed: ExitReason = { kind: 'killed' };

function moduleHref(moduleUrl: string | URL): string {
  if (moduleUrl instanceof URL) return moduleUrl.href;
  return /^[a-z][a-z0-9+.-]*:/i.test(moduleUrl) ? moduleUrl : pathToFileURL(moduleUrl).href;
}

export function worker(moduleUrl: string | URL, options: WorkerOptions = {}): ChildDriver {
  const module = moduleHref(moduleUrl);
  const heartbeat = options.heartbeat;
  if (heartbeat !== undefined && !(Number.isInteger(heartbeat) && heartbeat > 0)) {
    throw new RangeError(`worker heartbeat: expected ms > 0, got ${heartbeat}`);
  }
  return {
    kind: 'worker',
    start(ctx, events): ChildHandle {
      const shared = new SharedArrayBuffer(8);
      const cells = new Int32Array(shared);
      const boot: WorkerBoot = {
        module,
        path: ctx.path,
        data: options.data,
        checkpoint: ctx.checkpoint?.state,
        previousExit: ctx.checkpoint?.previousExit,
        maxSteps: ctx.maxSteps,
        manual: options.readiness === 'manual',
        shared,
      };
      let thread: Worker;
      try {
        thread = new Worker(workerSource, {
          eval: true,
          workerData: boot,
          resourceLimits: options.resourceLimits,
        });
      } catch (err) {
        events.exited({ kind: 'crashed', message: (err as Error).message });
        return { pid: null, stop() {}, kill() {} };
      }
      let gone = false;
      let stopRequested = false;
      // The first reason decided wins: a kill after a step limit is still a step limit.
      let reason: ExitReason | null = null;
      let deadline: { cancel(): void } | null = null;
      let beat: { cancel(): void } | null = null;
      const end = (why: ExitReason) => {
        reason ??= why;
        void thread.terminate();
      };
      // Counted from when the module runs: a thread's boot (~30-60 ms) is not the module's time.
      const armTimers = () => {
        const { maxRuntime } = ctx;
        if (maxRuntime !== undefined)
          deadline = ctx.clock.setTimer(maxRuntime, () => end(deadlineExit(maxRuntime)));
        if (heartbeat !== undefined) {
          let seen = -1;
          const check = () => {
            const beats = Atomics.load(cells, beatCell);
            if (beats === seen) {
              end({
                kind: 'crashed',
                reason: 'liveness',
                message: `liveness: no ctx.alive() or ctx.step() within ${heartbeat} ms`,
              });
              return;
            }
            seen = beats;
            beat = ctx.clock.setTimer(heartbeat, check);
          };
          check();
        }
      };
      thread.on('message', (m: FromWorker) => {
        if (gone) return;
        switch (m.t) {
          case 'running':
            armTimers();
            if (!boot.manual) events.ready(false);
            return;
          case 'ready':
            events.ready(true);
            return;
          case 'save':
            if (reason === null) ctx.save(m.state);
            return;
          case 'step_limit':
            end(stepLimitExit(ctx.maxSteps ?? m.steps - 1));
            return;
          case 'done':
            end(m.exit.kind === 'normal' && stopRequested ? shutdown : m.exit);
            return;
        }
      });
      thread.on('error', (err: Error & { code?: string }) => {
        if (err.code === 'ERR_WORKER_OUT_OF_MEMORY') {
          reason ??= { kind: 'crashed', reason: 'oom', oom: true, message: err.message };
        } else {
          reason ??= { kind: 'crashed', message: err.message };
        }
      });
      thread.on('exit', (code) => {
        gone = true;
        deadline?.cancel();
        beat?.cancel();
        events.exited(
          reason ??
            (stopRequested
              ? shutdown
              : code === 0
                ? normal
                : { kind: 'crashed', message: `exit code ${code}`, code }),
        );
      });
      return {
        pid: null,
        stop: () => {
          stopRequested = true;
          if (!gone) thread.postMessage({ t: 'stop' } satisfies ToWorker);
        },
        kill: () => end(killed),
      };
    },
  };
}
