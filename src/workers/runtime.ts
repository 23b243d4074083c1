/**
 * The worker thread's side of a `worker()` child: imports the module, calls its default export
 * with the context, and reports how it ended.
 *
 * `workerMain` runs inside the thread from its source text (`workerSource`), not from this file:
 * a thread that loads a `.ts` entry pays for Node's type stripper in every isolate (measured here:
 * +9 MB RSS and +14 ms per start). So the function is self-contained: it uses only its
 * parameters and globals (the module is imported through `load`), and must stay free of syntax
 * that type stripping cannot erase.
 */
import type * as WorkerThreads from 'node:worker_threads';
import type { ExitReason } from '../core/index.ts';
import { beatCell, type FromWorker, parkCell, type ToWorker, type WorkerBoot } from './protocol.ts';
import type { WorkerContext } from './types.ts';

async function workerMain(
  wt: typeof WorkerThreads,
  beat: number,
  park: number,
  load: (url: string) => Promise<unknown>,
): Promise<void> {
  const port = wt.parentPort!;
  const boot = wt.workerData as WorkerBoot;
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
      Atomics.add(cells, beat, 1);
      if (boot.maxSteps !== undefined && steps > boot.maxSteps) {
        send({ t: 'step_limit', steps });
        // Step N+1 never runs: the thread waits here until the driver terminates it.
        for (;;) Atomics.wait(cells, park, 0);
      }
      return steps;
    },
    alive() {
      Atomics.add(cells, beat, 1);
    },
    ready() {
      if (boot.manual) send({ t: 'ready' });
    },
    get steps() {
      return steps;
    },
  };

  let exit: ExitReason;
  try {
    const mod = (await load(boot.module)) as { default?: unknown };
    if (typeof mod.default !== 'function') {
      throw new Error(`${boot.module} has no default export function (export default async (ctx) => …)`);
    }
    send({ t: 'running' });
    await (mod.default as (ctx: WorkerContext) => unknown)(ctx);
    exit = controller.signal.aborted ? { kind: 'shutdown' } : { kind: 'normal' };
  } catch (err) {
    const e = err as Error | undefined;
    if (e?.name === 'PermanentFailure') exit = { kind: 'permanent_failure', message: e.message };
    else if (controller.signal.aborted && (err === controller.signal.reason || e?.name === 'AbortError'))
      exit = { kind: 'shutdown' };
    else exit = { kind: 'crashed', message: err instanceof Error ? err.message : String(err) };
  }
  send({ t: 'done', exit });
  // Nothing more to hear: let the thread end (the driver terminates it if the module left handles open).
  port.unref();
}

/** The thread's entry, evaluated as a script (`new Worker(workerSource, { eval: true })`). */
// The import is in the string, where tsc's rewriting of relative import extensions cannot reach it.
export const workerSource = `(${workerMain.toString()})(require('node:worker_threads'), ${beatCell}, ${parkCell}, (u) => import(u));`;
