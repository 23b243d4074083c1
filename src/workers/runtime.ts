/**
 * The worker thread's side of a `worker()` child: imports the module, calls its default export
 * with the context, and reports how it ended. Loaded only inside a `worker_threads` Worker.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { ExitReason } from '../core/index.ts';
import { beatCell, type FromWorker, parkCell, type ToWorker, type WorkerBoot } from './protocol.ts';
import type { WorkerContext } from './types.ts';

const port = parentPort!;
const boot = workerData as WorkerBoot;
const cells = new Int32Array(boot.shared);
const controller = new AbortController();
let state = boot.checkpoint;
let steps = 0;

const send = (m: FromWorker) => port.postMessage(m);

port.on('message', (m: ToWorker) => {
  if (m.t === 'stop') controller.abort(new DOMException('stopped by its supervisor', 'AbortError'));
});

const save = (next: unknown) => {
  send({ t: 'save', state: next });
  state = next;
};

const ctx: WorkerContext = {
  signal: controller.signal,
  path: boot.path,
  data: boot.data,
  previousExit: boot.previousExit,
  checkpoint: { load: () => state, save },
  save,
  step() {
    steps++;
    Atomics.add(cells, beatCell, 1);
    if (boot.maxSteps !== undefined && steps > boot.maxSteps) {
      send({ t: 'step_limit', steps });
      // Step N+1 never runs: the thread waits here until the driver terminates it.
      for (;;) Atomics.wait(cells, parkCell, 0);
    }
    return steps;
  },
  alive() {
    Atomics.add(cells, beatCell, 1);
  },
  ready() {
    if (boot.manual) send({ t: 'ready' });
  },
  get steps() {
    return steps;
  },
};

function exitOf(err: unknown): ExitReason {
  const e = err as Error | undefined;
  if (e?.name === 'PermanentFailure') return { kind: 'permanent_failure', message: e.message };
  if (controller.signal.aborted && (err === controller.signal.reason || e?.name === 'AbortError')) {
    return { kind: 'shutdown' };
  }
  return { kind: 'crashed', message: err instanceof Error ? err.message : String(err) };
}

let exit: ExitReason;
try {
  const mod = (await import(boot.module)) as { default?: unknown };
  if (typeof mod.default !== 'function') {
    throw new Error(`${boot.module} has no default export function (export default async (ctx) => …)`);
  }
  send({ t: 'running' });
  await (mod.default as (ctx: WorkerContext) => unknown)(ctx);
  exit = controller.signal.aborted ? { kind: 'shutdown' } : { kind: 'normal' };
} catch (err) {
  exit = exitOf(err);
}
send({ t: 'done', exit });
// Nothing more to hear: let the thread end (the driver terminates it if the module left handles open).
port.unref();
