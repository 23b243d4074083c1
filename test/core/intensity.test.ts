/** Intensity, escalation, backoff and shutdown deadlines, on a virtual clock. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { node, RestartWindow, Supervisor, type SupervisorEvent, VirtualClock } from '../../src/core/index.ts';
import { harness, Probe, typesFor } from './fixtures.ts';

describe('intensity', () => {
  it('RestartWindow: more than intensity restarts within period exceeds it; older ones age out', () => {
    const w = new RestartWindow(2, 1000);
    assert.equal(w.add(0), true);
    assert.equal(w.add(500), true);
    assert.equal(w.add(900), false);
    const v = new RestartWindow(2, 1000);
    v.add(0);
    v.add(500);
    assert.equal(v.add(1001), true, 'the restart at 0 left the window');
  });

  it('RestartWindow.countAt: restarts still in the window at a time, without changing it', () => {
    const w = new RestartWindow(3, 1000);
    w.add(0);
    w.add(600);
    assert.equal(w.countAt(700), 2);
    assert.equal(w.countAt(1000), 1, 'the restart at 0 is out at 1000 (window is (now-period, now])');
    assert.equal(w.countAt(1700), 0);
    assert.equal(w.count, 2, 'a query prunes nothing');
    assert.equal(w.add(900), true);
  });

  it('intensity 0 gives up on the first restart', () => {
    assert.equal(new RestartWindow(0, 1000).add(0), false);
  });

  it('exceeding the intensity stops all children in reverse order and exits escalated', async () => {
    const h = harness();
    const sup = h.supervisor({
      name: 'root',
      intensity: 2,
      period: 1000,
      children: ['a', 'b', 'c'].map((id) => ({ id, driver: h.probe(id).driver })),
    });
    await sup.start();
    for (let i = 0; i < 2; i++) {
      h.probe('b').crash();
      await h.settle();
    }
    assert.equal(sup.state, 'ready');
    h.log.length = 0;
    h.probe('b').crash();
    await h.settle();
    assert.deepEqual(h.log, ['crash:b', 'stop:c', 'stop:a']);
    assert.equal(sup.state, 'stopped');
    const reason = await sup.whenStopped();
    assert.equal(reason.kind, 'escalated');
    assert.deepEqual(typesFor(h.events, '/root').slice(-4), [
      'intensity_exceeded',
      'stopping',
      'escalated',
      'stopped',
    ]);
  });

  it('restarts spread wider than the period never exceed the intensity', async () => {
    const h = harness();
    const sup = h.supervisor({
      name: 'root',
      intensity: 1,
      period: 1000,
      children: [{ id: 'a', driver: h.probe('a').driver }],
    });
    await sup.start();
    for (let i = 0; i < 10; i++) {
      h.probe('a').crash();
      await h.settle();
      await h.clock.advance(1001);
    }
    assert.equal(sup.state, 'ready');
    assert.equal(h.probe('a').starts, 11);
  });

  it('failed restart attempts count against the intensity', async () => {
    const h = harness();
    const sup = h.supervisor({
      name: 'root',
      intensity: 3,
      period: 1000,
      children: [{ id: 'a', driver: h.probe('a').driver }],
    });
    await sup.start();
    h.probe('a').failNext = 10;
    h.probe('a').crash();
    await h.settle();
    // 1 restart for the crash + 2 failed retries are tolerated; the 4th restart exceeds 3.
    assert.equal(h.probe('a').starts, 1 + 3);
    assert.equal(sup.state, 'stopped');
    assert.equal((await sup.whenStopped()).kind, 'escalated');
  });

  it('escalation travels through three levels to the root', async () => {
    const clock = new VirtualClock();
    const log: string[] = [];
    const leaf = new Probe('leaf', log);
    const level3 = node({ name: 'l3', intensity: 0, children: [{ id: 'leaf', driver: leaf.driver }] });
    const level2 = node({ name: 'l2', intensity: 0, children: [{ id: 'l3', driver: level3 }] });
    const level1 = node({ name: 'l1', intensity: 0, children: [{ id: 'l2', driver: level2 }] });
    const root = new Supervisor(
      { name: 'root', intensity: 0, children: [{ id: 'l1', driver: level1 }] },
      { clock },
    );
    const events: SupervisorEvent[] = [];
    root.subscribe((e) => events.push(e));
    await root.start();
    assert.equal(root.tree().length, 5);
    leaf.crash();
    await new Promise((r) => setImmediate(r));
    const escalations = events.filter((e) => e.type === 'escalated').map((e) => e.path);
    assert.deepEqual(escalations, ['/root/l1/l2/l3', '/root/l1/l2', '/root/l1', '/root']);
    assert.equal(root.state, 'stopped');
    assert.equal((await root.whenStopped()).kind, 'escalated');
  });

  it('a nested supervisor that gives up is restarted by its parent within the parent intensity', async () => {
    const clock = new VirtualClock();
    const log: string[] = [];
    const leaf = new Probe('leaf', log);
    const inner = node({ name: 'inner', intensity: 0, children: [{ id: 'leaf', driver: leaf.driver }] });
    const root = new Supervisor(
      { name: 'root', intensity: 5, children: [{ id: 'inner', driver: inner }] },
      { clock },
    );
    await root.start();
    leaf.crash();
    await new Promise((r) => setImmediate(r));
    assert.equal(root.state, 'ready');
    assert.equal(leaf.starts, 2);
    assert.equal(root.child('inner')?.restarts, 1);
    assert.equal(root.nested('inner')?.state, 'ready');
  });
});

describe('backoff', () => {
  it('delays grow by the factor up to the cap, and the intensity window still applies', async () => {
    const h = harness();
    const sup = h.supervisor({
      name: 'root',
      intensity: 100,
      period: 1_000_000,
      children: [
        {
          id: 'a',
          driver: h.probe('a').driver,
          backoff: { initial: 100, max: 400, factor: 2, resetAfter: 10_000 },
        },
      ],
    });
    await sup.start();
    const delays: number[] = [];
    sup.subscribe((e) => {
      if (e.type === 'restarting') delays.push(e.delay);
    });
    for (let i = 0; i < 5; i++) {
      h.probe('a').crash();
      await h.settle();
      assert.equal(sup.child('a')?.state, 'restarting');
      await h.clock.advance(delays.at(-1)! - 1);
      assert.equal(h.probe('a').alive, false, 'not restarted before its delay');
      await h.clock.advance(1);
      assert.equal(h.probe('a').alive, true);
    }
    assert.deepEqual(delays, [100, 200, 400, 400, 400]);
  });

  it('resets to the initial delay after the child stayed up for resetAfter', async () => {
    const h = harness();
    const sup = h.supervisor({
      name: 'root',
      intensity: 100,
      children: [
        { id: 'a', driver: h.probe('a').driver, backoff: { initial: 100, max: 10_000, resetAfter: 5000 } },
      ],
    });
    await sup.start();
    const delays: number[] = [];
    sup.subscribe((e) => {
      if (e.type === 'restarting') delays.push(e.delay);
    });
    for (let i = 0; i < 3; i++) {
      h.probe('a').crash();
      await h.settle();
      await h.clock.advance(delays.at(-1)!);
    }
    await h.clock.advance(5000);
    h.probe('a').crash();
    await h.settle();
    assert.deepEqual(delays, [100, 200, 400, 100]);
  });

  it('a stop during the backoff delay cancels the pending restart', async () => {
    const h = harness();
    const sup = h.supervisor({
      name: 'root',
      children: [{ id: 'a', driver: h.probe('a').driver, backoff: { initial: 1000, max: 1000 } }],
    });
    await sup.start();
    h.probe('a').crash();
    await h.settle();
    await sup.stop();
    await h.clock.advance(5000);
    assert.equal(h.probe('a').starts, 1);
    assert.equal(h.clock.pending, 0);
  });

  it('the intensity counts restarts when decided, so backoff cannot hide a crash loop', async () => {
    const h = harness();
    const sup = h.supervisor({
      name: 'root',
      intensity: 2,
      period: 10_000,
      children: [{ id: 'a', driver: h.probe('a').driver, backoff: { initial: 1000, max: 1000 } }],
    });
    await sup.start();
    for (let i = 0; i < 3; i++) {
      h.probe('a').crash();
      await h.settle();
      await h.clock.advance(1000);
    }
    assert.equal(sup.state, 'stopped');
  });
});

describe('shutdown', () => {
  it('milliseconds: asks, waits the deadline, then kills', async () => {
    const h = harness();
    const sup = h.supervisor({
      name: 'root',
      children: [{ id: 'a', driver: h.probe('a').driver, shutdown: 2000 }],
    });
    h.probe('a').onStop = 'ignore';
    await sup.start();
    const stopped = sup.stop();
    await h.settle();
    assert.equal(h.probe('a').current?.stopAsked, true);
    await h.clock.advance(1999);
    assert.equal(h.probe('a').alive, true);
    await h.clock.advance(1);
    await stopped;
    assert.equal(h.probe('a').instances[0]?.killed, true);
  });

  it('brutal: kills at once without asking', async () => {
    const h = harness();
    const sup = h.supervisor({
      name: 'root',
      children: [{ id: 'a', driver: h.probe('a').driver, shutdown: 'brutal' }],
    });
    await sup.start();
    await sup.stop();
    assert.deepEqual(h.log, ['start:a', 'kill:a']);
  });

  it('infinity: waits for as long as the child takes', async () => {
    const h = harness();
    const sup = h.supervisor({
      name: 'root',
      children: [{ id: 'a', driver: h.probe('a').driver, shutdown: 'infinity' }],
    });
    h.probe('a').onStop = 'ignore';
    await sup.start();
    let done = false;
    const stopped = sup.stop().then(() => {
      done = true;
    });
    await h.clock.advance(3_600_000);
    assert.equal(done, false);
    h.probe('a').exit({ kind: 'shutdown' });
    await stopped;
    assert.equal(h.clock.pending, 0);
  });

  it('exits while being stopped are expected and never restart the child', async () => {
    const h = harness();
    const sup = h.supervisor({ name: 'root', children: [{ id: 'a', driver: h.probe('a').driver }] });
    await sup.start();
    await sup.stopChild('a');
    assert.equal(h.probe('a').starts, 1);
    const exited = h.events.find((e) => e.type === 'exited');
    assert.equal(exited?.type === 'exited' && exited.expected, true);
  });
  it('a child lost with its launcher is restarted at once, its own backoff untouched, not counted against the intensity', async () => {
    const h = harness();
    const sup = h.supervisor({
      name: 'root',
      intensity: 1,
      period: 1000,
      children: ['a', 'b', 'c'].map((id) => ({
        id,
        driver: h.probe(id).driver,
        backoff: { initial: 500, max: 5000 },
      })),
    });
    await sup.start();
    const lost = { kind: 'crashed', message: 'launcher lost', reason: 'launcher_lost' } as const;
    for (let round = 0; round < 3; round++) {
      for (const id of ['a', 'b', 'c']) h.probe(id).exit(lost);
      await h.settle();
    }
    assert.equal(sup.state, 'ready', 'nine lost children later, the root has not given up');
    for (const id of ['a', 'b', 'c']) assert.equal(h.probe(id).starts, 4, `${id} was restarted each time`);
    const restarts = h.events.filter((e) => e.type === 'restarting');
    assert.equal(restarts.length, 9);
    assert.ok(restarts.every((e) => e.type === 'restarting' && e.cause === 'launcher_lost' && e.delay === 0));
    assert.equal(sup.restartWindow().restarts, 0);
    // Its own crash still counts, and still waits its backoff.
    h.probe('a').crash();
    await h.settle();
    assert.equal(sup.restartWindow().restarts, 1);
    assert.equal(sup.child('a')?.state, 'restarting');
    h.clock.advance(500);
    await h.settle();
    assert.equal(h.probe('a').starts, 5);
    h.probe('b').crash();
    await h.settle();
    assert.equal(sup.state, 'stopped', 'a second crash of its own in the period exceeds intensity 1');
  });
});
