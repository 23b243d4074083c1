/**
 * `worker()` children through the library: every exit reason and its restart decision, a
 * spinning worker terminated while the supervisor's own timers keep firing, an allocating one
 * stopped by its heap limit, a silent one by its heartbeat, and checkpoints across a step-limit
 * restart. The threads are real worker_threads; nothing is mocked.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import {
  type CheckpointStore,
  type ChildSpec,
  type ExitReason,
  Supervisor,
  type SupervisorEvent,
  worker,
} from '../../src/index.ts';

const modes = new URL('./fixtures/modes.ts', import.meta.url);

// Whatever a failed assertion left running, its threads are terminated before the file ends.
const live = new Set<Supervisor>();
after(async () => {
  for (const sup of live) await sup.kill();
});

/** A supervised child and every event about it, with a wait for the next matching one. */
function harness(spec: Omit<ChildSpec, 'id'>, checkpoints?: CheckpointStore) {
  const sup = new Supervisor(
    { name: 'w', intensity: 100, period: 60_000, children: [{ id: 'c', ...spec }] },
    { checkpoints },
  );
  live.add(sup);
  const seen: SupervisorEvent[] = [];
  const waiters: {
    from: number;
    match: (e: SupervisorEvent) => boolean;
    resolve: (e: SupervisorEvent) => void;
  }[] = [];
  sup.subscribe((e) => {
    if (e.path !== '/w/c') return;
    seen.push(e);
    for (const w of waiters.splice(0)) {
      if (seen.length - 1 >= w.from && w.match(e)) w.resolve(e);
      else waiters.push(w);
    }
  });
  const next = <T extends SupervisorEvent['type']>(type: T, from = 0) =>
    new Promise<Extract<SupervisorEvent, { type: T }>>((resolve) => {
      const found = seen.slice(from).find((e) => e.type === type);
      if (found) resolve(found as Extract<SupervisorEvent, { type: T }>);
      else
        waiters.push({
          from,
          match: (e) => e.type === type,
          resolve: resolve as (e: SupervisorEvent) => void,
        });
    });
  return { sup, seen, next };
}

/** Starts the child (transient), returns its first exit and whether the supervisor restarted it. */
async function firstExit(data: unknown, extra: Partial<ChildSpec> = {}, options = {}) {
  const h = harness({ driver: worker(modes, { data, ...options }), restart: 'transient', ...extra });
  await h.sup.start();
  const exited = await h.next('exited');
  const i = h.seen.indexOf(exited);
  // The restart decision comes right after the exit: `restarting`, or nothing for a kept child.
  if (exited.reason.kind !== 'normal') await h.next('restarting', i);
  await h.sup.stop();
  const restarted = h.seen.slice(i).some((e) => e.type === 'restarting');
  return { reason: exited.reason, restarted };
}

function isLimit(reason: ExitReason, limit: string): boolean {
  return reason.kind === 'crashed' && reason.reason === limit;
}

describe('worker(): exit reasons, each classified for restart like OTP', { timeout: 60_000 }, () => {
  it('normal: the module resolved; a transient child is kept, not restarted', async () => {
    const { reason, restarted } = await firstExit({ mode: 'normal' });
    assert.deepEqual(reason, { kind: 'normal' });
    assert.equal(restarted, false);
  });

  it('crash: the module threw; the error is the reason, and it is restarted', async () => {
    const { reason, restarted } = await firstExit({ mode: 'throw' });
    assert.equal(reason.kind, 'crashed');
    assert.equal(reason.kind === 'crashed' && reason.message, 'boom from the worker');
    assert.equal(restarted, true);
  });

  it('permanent failure: thrown PermanentFailure is reported, not looped', async () => {
    const h = harness({ driver: worker(modes, { data: { mode: 'permanent' } }) });
    await h.sup.start();
    const failed = await h.next('permanent_failure');
    assert.equal(failed.reason.kind === 'permanent_failure' && failed.reason.message, 'bad configuration');
    assert.equal(h.sup.child('c')?.state, 'failed');
    await h.sup.stop();
  });

  it('shutdown: asked to stop, the module returned on its abort signal', async () => {
    const h = harness({ driver: worker(modes, { data: { mode: 'idle' } }) });
    await h.sup.start();
    assert.equal(h.sup.child('c')?.kind, 'worker');
    await h.sup.stopChild('c');
    const exited = await h.next('exited');
    assert.deepEqual(exited.reason, { kind: 'shutdown' });
    await h.sup.stop();
  });

  it('deadline: maxRuntime ends an instance that would wait for ever, and it is restarted', async () => {
    const { reason, restarted } = await firstExit({ mode: 'idle' }, { maxRuntime: 50 });
    assert.ok(isLimit(reason, 'deadline'), JSON.stringify(reason));
    assert.equal(restarted, true);
  });

  it('step_limit: more than maxSteps steps ends the instance; a transient child is restarted', async () => {
    // The agent fixture's first instance loops calling ctx.step() for ever.
    const { reason, restarted } = await firstExit({ mode: 'agent' }, { maxSteps: 20 });
    assert.ok(isLimit(reason, 'step_limit'), JSON.stringify(reason));
    assert.match(reason.kind === 'crashed' ? reason.message : '', /more than 20 steps/);
    assert.equal(restarted, true);
  });

  it('step_limit: the step beyond the limit never runs its body', async () => {
    const counter = new SharedArrayBuffer(4);
    const h = harness({
      driver: worker(modes, { data: { mode: 'count', counter } }),
      maxSteps: 3,
      restart: 'temporary',
    });
    await h.sup.start();
    const { reason } = await h.next('exited');
    await h.sup.stop();
    assert.ok(isLimit(reason, 'step_limit'), JSON.stringify(reason));
    assert.equal(Atomics.load(new Int32Array(counter), 0), 3);
  });

  it('oom: a heap limit ends the allocating thread, not the supervisor, and it is restarted', async () => {
    const { reason, restarted } = await firstExit(
      { mode: 'alloc' },
      {},
      { resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 4 } },
    );
    assert.ok(
      isLimit(reason, 'oom') && reason.kind === 'crashed' && reason.oom === true,
      JSON.stringify(reason),
    );
    assert.equal(restarted, true);
  });

  it('liveness: a thread silent for longer than its heartbeat is terminated', async () => {
    const counter = new SharedArrayBuffer(4);
    const { reason, restarted } = await firstExit({ mode: 'silent', counter }, {}, { heartbeat: 100 });
    assert.ok(isLimit(reason, 'liveness'), JSON.stringify(reason));
    assert.equal(restarted, true);
  });

  it('a long step that calls ctx.alive() outlives many heartbeat intervals', async () => {
    const { reason } = await firstExit({ mode: 'busy', ms: 400 }, {}, { heartbeat: 50 });
    assert.deepEqual(reason, { kind: 'normal' });
  });
});

describe('worker(): bad modules and options', { timeout: 60_000 }, () => {
  it('a module that cannot be loaded is a failed start, with the reason', async () => {
    for (const [url, pattern] of [
      [
        new URL('./fixtures/missing.mjs', import.meta.url),
        /Cannot find module|ERR_MODULE_NOT_FOUND|missing\.mjs/,
      ],
      [new URL('./fixtures/no-default.mjs', import.meta.url), /has no default export function/],
    ] as const) {
      const h = harness({ driver: worker(url) });
      await assert.rejects(h.sup.start(), (err: Error & { reason?: ExitReason }) => {
        assert.equal(err.reason?.kind, 'crashed');
        assert.match(err.reason?.kind === 'crashed' ? err.reason.message : '', pattern);
        return true;
      });
    }
  });

  it('rejects a heartbeat that is not a positive number of ms when the driver is made', () => {
    assert.throws(() => worker(modes, { heartbeat: 0 }), /heartbeat: expected ms > 0, got 0/);
  });
});

describe('worker(): a spinning module is really stopped', { timeout: 60_000 }, () => {
  it('keeps the supervisor responsive while it spins, and its shutdown deadline terminates it', async () => {
    const counter = new SharedArrayBuffer(4);
    const spins = new Int32Array(counter);
    const h = harness({ driver: worker(modes, { data: { mode: 'spin', counter } }), shutdown: 100 });
    await h.sup.start();
    await h.next('checkpoint'); // it said `spinning`...
    // ...and its loop has run (it bumps the counter before it spins, and notifies).
    await Atomics.waitAsync(spins, 0, 0).value;
    // A timer of the supervisor's thread fires while the worker spins...
    const state = await new Promise<string | undefined>((resolve) =>
      setTimeout(() => resolve(h.sup.child('c')?.state), 1),
    );
    assert.equal(state, 'running', 'the timer fired before the worker was terminated');
    // ...and stopping it works although it never looks at its abort signal.
    await h.sup.stopChild('c');
    const exited = await h.next('exited');
    assert.deepEqual(exited.reason, { kind: 'killed' });
    // Gone for real: while a whole other worker runs to its end, the counter does not move.
    const after = Atomics.load(spins, 0);
    const other = harness({ driver: worker(modes, { data: { mode: 'normal' } }), restart: 'transient' });
    await other.sup.start();
    await other.next('exited');
    assert.equal(Atomics.load(spins, 0), after);
    await other.sup.stop();
    await h.sup.stop();
  });

  it('kill() (brutal shutdown) terminates a spinning worker at once', async () => {
    const h = harness({ driver: worker(modes, { data: { mode: 'spin' } }), shutdown: 'brutal' });
    await h.sup.start();
    await h.next('checkpoint');
    await h.sup.stop();
    const exited = await h.next('exited');
    assert.deepEqual(exited.reason, { kind: 'killed' });
  });

  it('keeps the supervisor responsive while a worker allocates, until its heap limit ends it', async () => {
    const shared = new SharedArrayBuffer(8);
    const cells = new Int32Array(shared);
    const h = harness({
      driver: worker(modes, {
        data: { mode: 'churn', counter: shared },
        resourceLimits: { maxOldGenerationSizeMb: 24, maxYoungGenerationSizeMb: 4 },
      }),
      restart: 'temporary',
    });
    await h.sup.start();
    await Atomics.waitAsync(cells, 0, 0).value; // it is allocating from here on
    const state = await new Promise<string | undefined>((resolve) =>
      setTimeout(() => resolve(h.sup.child('c')?.state), 1),
    );
    assert.equal(state, 'running', 'the timer fired while the worker was allocating');
    Atomics.store(cells, 1, 1); // now hoard
    const exited = await h.next('exited');
    assert.ok(isLimit(exited.reason, 'oom'), JSON.stringify(exited.reason));
    assert.equal(h.sup.state, 'ready');
    await h.sup.stop();
  });

  it('an allocating worker is ended by its heap limit; the supervisor and its heap are untouched', async () => {
    const h = harness({
      driver: worker(modes, {
        data: { mode: 'alloc' },
        resourceLimits: { maxOldGenerationSizeMb: 24, maxYoungGenerationSizeMb: 4 },
      }),
      restart: 'temporary',
    });
    const heapBefore = process.memoryUsage().heapUsed;
    await h.sup.start();
    await h.next('checkpoint');
    const exited = await h.next('exited');
    assert.ok(isLimit(exited.reason, 'oom'), JSON.stringify(exited.reason));
    // The supervisor carries on, and the hoard lived in the worker's heap, not in ours.
    assert.equal(h.sup.state, 'ready');
    assert.ok(process.memoryUsage().heapUsed - heapBefore < 16 * 2 ** 20);
    await h.sup.stop();
  });
});

describe('worker(): checkpoints across a step-limit restart', { timeout: 60_000 }, () => {
  it('the replacement loads the checkpoint and resumes from the last saved step', async () => {
    const store = new Map<string, unknown>();
    const checkpoints: CheckpointStore = {
      load: (path) => (store.has(path) ? { state: store.get(path) } : undefined),
      save: (path, state) => store.set(path, state),
    };
    const h = harness(
      { driver: worker(modes, { data: { mode: 'agent' } }), restart: 'transient', maxSteps: 10 },
      checkpoints,
    );
    await h.sup.start();
    const first = await h.next('exited');
    assert.ok(isLimit(first.reason, 'step_limit'), JSON.stringify(first.reason));
    const second = await h.next('exited', h.seen.indexOf(first) + 1);
    assert.deepEqual(second.reason, { kind: 'normal' });
    assert.deepEqual(store.get('/w/c'), {
      step: 5,
      log: ['start at step 0 (first start)', 'start at step 2 (step_limit)'],
    });
    assert.equal(h.sup.child('c')?.restarts, 1);
    await h.sup.stop();
  });
});
