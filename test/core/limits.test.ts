/** `maxSteps` and `maxRuntime` on in-process tasks (virtual clock), and the spec checks of both fields. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  decideExit,
  type ExitReason,
  flushMicrotasks,
  InvalidSpecError,
  LimitExceeded,
  limitReasons,
  node,
  Supervisor,
  type SupervisorEvent,
  task,
  VirtualClock,
} from '../../src/core/index.ts';

function run(spec: ConstructorParameters<typeof Supervisor>[0]) {
  const clock = new VirtualClock();
  const sup = new Supervisor(spec, { clock });
  const events: SupervisorEvent[] = [];
  sup.subscribe((e) => events.push(e));
  return { sup, clock, events };
}

describe('task limits', () => {
  it('maxSteps: the step beyond the limit throws and ends the instance as step_limit; it restarts', async () => {
    const seen: unknown[] = [];
    let starts = 0;
    const { sup, events } = run({
      name: 's',
      intensity: 5,
      children: [
        {
          id: 't',
          maxSteps: 3,
          shutdown: 'brutal',
          driver: task(async (ctx) => {
            starts++;
            if (starts > 1) return new Promise(() => {});
            await Promise.resolve(); // past its start: a crash, not a failed start
            try {
              for (;;) ctx.step();
            } catch (err) {
              seen.push(err);
            }
          }),
        },
      ],
    });
    await sup.start();
    await flushMicrotasks();
    const exit = events.find((e) => e.type === 'exited');
    assert.ok(exit?.type === 'exited');
    assert.deepEqual(exit.reason, {
      kind: 'crashed',
      reason: 'step_limit',
      message: 'step_limit: more than 3 steps',
    });
    assert.ok(seen[0] instanceof LimitExceeded && seen[0].reason === 'step_limit');
    assert.ok(events.some((e) => e.type === 'restarting'));
    assert.equal(starts, 2);
    await sup.stop();
  });

  it('maxRuntime: an instance still running at the deadline ends as deadline, its signal aborted', async () => {
    let aborted = false;
    const { sup, clock, events } = run({
      name: 's',
      children: [
        {
          id: 't',
          restart: 'temporary',
          maxRuntime: 1000,
          driver: task(
            ({ signal }) =>
              new Promise(() => {
                signal.addEventListener('abort', () => {
                  aborted = true;
                });
              }),
          ),
        },
      ],
    });
    await sup.start();
    await clock.advance(999);
    assert.equal(events.filter((e) => e.type === 'exited').length, 0);
    await clock.advance(1);
    const exit = events.find((e) => e.type === 'exited');
    assert.ok(exit?.type === 'exited');
    assert.equal(exit.reason.kind === 'crashed' && exit.reason.reason, 'deadline');
    assert.equal(aborted, true);
    await sup.stop();
  });

  it('a task that ends before its deadline leaves no timer behind', async () => {
    const { sup, clock, events } = run({
      name: 's',
      children: [{ id: 't', restart: 'transient', maxRuntime: 1000, driver: task(async () => {}) }],
    });
    await sup.start();
    await flushMicrotasks();
    await clock.advance(5000);
    const exits = events.filter((e) => e.type === 'exited');
    assert.equal(exits.length, 1);
    assert.deepEqual(exits[0]?.type === 'exited' && exits[0].reason, { kind: 'normal' });
    await sup.stop();
  });
});

describe('limit fields in specs', () => {
  const idle = task(() => new Promise(() => {}));
  it('rejects a non-positive or fractional maxSteps and maxRuntime, naming the field', () => {
    assert.throws(
      () =>
        new Supervisor({ name: 's', children: [{ id: 'a', driver: idle, maxSteps: 0, maxRuntime: 1.5 }] }),
      (err: InvalidSpecError) =>
        err instanceof InvalidSpecError &&
        err.problems.map((p) => p.field).join(',') === 'children[0].maxSteps,children[0].maxRuntime',
    );
  });

  it('rejects limits on a nested supervisor: only tasks and workers count steps', () => {
    assert.throws(
      () =>
        new Supervisor({
          name: 's',
          children: [{ id: 'n', driver: node({ name: 'n' }), maxSteps: 10 }],
        }),
      /Expected `children\[0\]\.maxSteps` only on a task or worker child/,
    );
  });
});

describe('limit exits are crashes, classified as OTP classifies any abnormal exit', () => {
  it('permanent and transient children restart after each; temporary ones are removed', () => {
    for (const reason of limitReasons) {
      const exit: ExitReason = { kind: 'crashed', reason, message: reason };
      assert.equal(decideExit('permanent', exit), 'restart', reason);
      assert.equal(decideExit('transient', exit), 'restart', reason);
      assert.equal(decideExit('temporary', exit), 'delete', reason);
    }
    // ...as after a kill, and unlike a normal exit or a shutdown.
    assert.equal(decideExit('transient', { kind: 'killed' }), 'restart');
    assert.equal(decideExit('transient', { kind: 'normal' }), 'keep');
    assert.equal(decideExit('transient', { kind: 'shutdown' }), 'keep');
  });
});
