/** Strategies, restart types and start/stop order, named after the rules in supervisor.ts and restart.ts. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ExitReason, RestartType, Strategy } from '../../src/core/index.ts';
import { harness } from './fixtures.ts';

function tree(strategy: Strategy, ids = ['a', 'b', 'c'], restart: RestartType = 'permanent') {
  const h = harness();
  const sup = h.supervisor({
    name: 'root',
    strategy,
    intensity: 10,
    children: ids.map((id) => ({ id, driver: h.probe(id).driver, restart })),
  });
  return { h, sup };
}

describe('strategies', () => {
  it('one_for_one restarts only the exited child', async () => {
    const { h, sup } = tree('one_for_one');
    await sup.start();
    h.log.length = 0;
    h.probe('b').crash();
    await h.settle();
    assert.deepEqual(h.log, ['crash:b', 'start:b']);
    assert.deepEqual(
      sup.children().map((c) => c.restarts),
      [0, 1, 0],
    );
  });

  it('one_for_all stops the others in reverse order, then starts all in order', async () => {
    const { h, sup } = tree('one_for_all');
    await sup.start();
    h.log.length = 0;
    h.probe('b').crash();
    await h.settle();
    assert.deepEqual(h.log, ['crash:b', 'stop:c', 'stop:a', 'start:a', 'start:b', 'start:c']);
  });

  it('rest_for_one stops the children started after it, then starts it and them', async () => {
    const { h, sup } = tree('rest_for_one', ['a', 'b', 'c', 'd']);
    await sup.start();
    h.log.length = 0;
    h.probe('b').crash();
    await h.settle();
    assert.deepEqual(h.log, ['crash:b', 'stop:d', 'stop:c', 'start:b', 'start:c', 'start:d']);
    assert.equal(h.probe('a').starts, 1);
  });

  it('rest_for_one with a backoff stops the dependants when the failure happens and starts them after the delay', async () => {
    const h = harness();
    const sup = h.supervisor({
      name: 'root',
      strategy: 'rest_for_one',
      intensity: 10,
      children: ['db', 'api', 'worker'].map((id) => ({
        id,
        driver: h.probe(id).driver,
        backoff: { initial: 1000, max: 1000 },
      })),
    });
    await sup.start();
    h.log.length = 0;
    h.probe('db').crash();
    await h.settle();
    // Down at once, not after the delay: nothing runs against the dead database meanwhile.
    assert.deepEqual(h.log, ['crash:db', 'stop:worker', 'stop:api']);
    assert.deepEqual(
      sup.children().map((c) => c.state),
      ['restarting', 'stopped', 'stopped'],
    );
    await h.clock.advance(999);
    assert.deepEqual(h.log, ['crash:db', 'stop:worker', 'stop:api']);
    await h.clock.advance(1);
    await h.settle();
    assert.deepEqual(h.log.slice(3), ['start:db', 'start:api', 'start:worker']);
    // Every restart counts, and the dependants' say why.
    assert.deepEqual(
      sup.children().map((c) => c.restarts),
      [1, 1, 1],
    );
    const restarting = h.events.filter((e) => e.type === 'restarting');
    assert.deepEqual(
      restarting.map((e) => [e.path, e.type === 'restarting' ? (e.because ?? null) : null]),
      [
        ['/root/db', null],
        ['/root/api', '/root/db'],
        ['/root/worker', '/root/db'],
      ],
    );
  });

  it('rest_for_one on the last child restarts only it', async () => {
    const { h, sup } = tree('rest_for_one');
    await sup.start();
    h.log.length = 0;
    h.probe('c').crash();
    await h.settle();
    assert.deepEqual(h.log, ['crash:c', 'start:c']);
  });

  it('start is sequential and waits for each child to be ready', async () => {
    const { h, sup } = tree('one_for_one');
    h.probe('a').readiness = 'manual';
    const started = sup.start();
    await h.settle();
    assert.deepEqual(h.log, ['start:a']);
    h.probe('a').ready();
    await started;
    assert.deepEqual(h.log, ['start:a', 'start:b', 'start:c']);
    assert.equal(sup.state, 'ready');
  });

  it('stop is in reverse start order and reports the supervisor stopped', async () => {
    const { h, sup } = tree('one_for_one');
    await sup.start();
    h.log.length = 0;
    await sup.stop();
    assert.deepEqual(h.log, ['stop:c', 'stop:b', 'stop:a']);
    assert.equal(sup.state, 'stopped');
    assert.deepEqual(await sup.whenStopped(), { kind: 'shutdown' });
  });

  it('a failure during start stops the already-started children and fails the start', async () => {
    const { h, sup } = tree('one_for_one', ['a', 'b', 'c', 'd']);
    h.probe('c').readiness = 'fail';
    await assert.rejects(sup.start(), /child c failed to start/);
    assert.deepEqual(h.log, ['start:a', 'start:b', 'start:c', 'failed:c', 'stop:b', 'stop:a']);
    assert.equal(h.probe('d').starts, 0);
    assert.equal(sup.state, 'stopped');
  });

  it('stop() during a start that waits for readiness stops what started and rejects the start', async () => {
    const { h, sup } = tree('one_for_one');
    h.probe('b').readiness = 'manual';
    const started = sup.start();
    await h.settle();
    await sup.stop();
    await assert.rejects(started, /stopped while starting/);
    assert.deepEqual(h.log, ['start:a', 'start:b', 'stop:b', 'stop:a']);
    assert.equal(h.probe('c').starts, 0);
  });
});

describe('restart types × exit reasons', () => {
  const reasons: Record<string, ExitReason> = {
    normal: { kind: 'normal' },
    shutdown: { kind: 'shutdown' },
    crashed: { kind: 'crashed', message: 'boom' },
    killed: { kind: 'killed' },
  };
  const expected: Record<RestartType, Record<string, 'restarted' | 'kept' | 'deleted'>> = {
    permanent: { normal: 'restarted', shutdown: 'restarted', crashed: 'restarted', killed: 'restarted' },
    transient: { normal: 'kept', shutdown: 'kept', crashed: 'restarted', killed: 'restarted' },
    temporary: { normal: 'deleted', shutdown: 'deleted', crashed: 'deleted', killed: 'deleted' },
  };
  for (const restart of ['permanent', 'transient', 'temporary'] as const) {
    for (const [name, reason] of Object.entries(reasons)) {
      const outcome = expected[restart][name];
      it(`${restart} child, ${name} exit: ${outcome}`, async () => {
        const { h, sup } = tree('one_for_one', ['a'], restart);
        await sup.start();
        h.probe('a').exit(reason);
        await h.settle();
        const info = sup.child('a');
        if (outcome === 'restarted') {
          assert.equal(h.probe('a').starts, 2);
          assert.equal(info?.state, 'ready');
        } else if (outcome === 'kept') {
          assert.equal(h.probe('a').starts, 1);
          assert.equal(info?.state, 'stopped');
        } else {
          assert.equal(info, undefined);
        }
      });
    }
  }

  it('temporary children stopped by a sibling restart under one_for_all are removed, not restarted', async () => {
    const h = harness();
    const sup = h.supervisor({
      name: 'root',
      strategy: 'one_for_all',
      intensity: 5,
      children: [
        { id: 'a', driver: h.probe('a').driver },
        { id: 't', driver: h.probe('t').driver, restart: 'temporary' },
        { id: 'c', driver: h.probe('c').driver },
      ],
    });
    await sup.start();
    h.log.length = 0;
    h.probe('a').crash();
    await h.settle();
    assert.deepEqual(h.log, ['crash:a', 'stop:c', 'stop:t', 'start:a', 'start:c']);
    assert.deepEqual(
      sup.children().map((c) => c.id),
      ['a', 'c'],
    );
  });

  it('a permanent-failure exit is reported and not restarted, whatever the restart type', async () => {
    const { h, sup } = tree('one_for_one', ['a']);
    await sup.start();
    h.probe('a').exit({ kind: 'permanent_failure', message: 'config invalid', code: 125 });
    await h.settle();
    assert.equal(h.probe('a').starts, 1);
    assert.equal(sup.child('a')?.state, 'failed');
    assert.ok(h.events.some((e) => e.type === 'permanent_failure' && e.path === '/root/a'));
    assert.equal(sup.state, 'ready');
  });

  it('a failed child is left alone by a later group restart', async () => {
    const { h, sup } = tree('one_for_all', ['a', 'b']);
    await sup.start();
    h.probe('a').exit({ kind: 'permanent_failure', message: 'no' });
    await h.settle();
    h.probe('b').crash();
    await h.settle();
    assert.equal(h.probe('a').starts, 1);
    assert.equal(h.probe('b').starts, 2);
  });
});
