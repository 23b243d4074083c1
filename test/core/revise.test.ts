/**
 * What reconciliation asks of the engine: a child's spec replaced without touching its running
 * instance (`reviseChild`), a supervisor's flags changed in place (`revise`), a child inserted
 * at its place in start order, stopped or not started (`addChild` options), and a stop that
 * neither holds nor removes (`stopChild(id, { hold: false })`).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SupervisorError } from '../../src/core/index.ts';
import { harness } from './fixtures.ts';

describe('engine operations for reconciliation', () => {
  it('reviseChild: the running instance keeps going; the next start uses the new driver and restart type', async () => {
    const h = harness();
    const a = h.probe('a');
    const b = h.probe('b');
    const sup = h.supervisor({ name: 'r', intensity: 10, children: [{ id: 'a', driver: a.driver }] });
    await sup.start();
    await sup.reviseChild({ id: 'a', driver: b.driver, restart: 'transient' });
    assert.equal(a.alive, true, 'still the first instance');
    assert.equal(b.starts, 0);
    assert.equal(sup.child('a')?.restart, 'transient');
    a.crash();
    await h.settle();
    assert.equal(b.starts, 1, 'the restart ran the revised driver');
    await assert.rejects(
      sup.reviseChild({ id: 'a', driver: { kind: 'node', start: a.driver.start } }),
      (err: Error) => err instanceof SupervisorError && /replace it/.test(err.message),
    );
    await sup.stop();
  });

  it('revise: strategy, intensity and period change in place; the restarts in the window stay counted', async () => {
    const h = harness();
    const [a, b] = [h.probe('a'), h.probe('b')];
    const sup = h.supervisor({
      name: 'r',
      strategy: 'one_for_one',
      intensity: 5,
      period: 1000,
      children: [
        { id: 'a', driver: a.driver },
        { id: 'b', driver: b.driver },
      ],
    });
    await sup.start();
    a.crash();
    await h.settle();
    assert.equal(b.starts, 1, 'one_for_one: b untouched');
    sup.revise({ strategy: 'one_for_all', intensity: 1, period: 1000 });
    assert.equal(sup.strategy, 'one_for_all');
    assert.deepEqual(sup.restartWindow(), { restarts: 1, intensity: 1, period: 1000 });
    assert.equal(b.starts, 1, 'revising restarts nothing');
    a.crash();
    await h.settle();
    assert.equal(sup.state, 'stopped', 'the second restart exceeds the new intensity of 1');
    assert.throws(() => h.supervisor({ name: 'x' }).revise({ strategy: 'dynamic' }), /to or from dynamic/);
  });

  it('addChild at an index, not started; stopChild without a hold keeps a temporary child', async () => {
    const h = harness();
    const [a, b, c] = [h.probe('a'), h.probe('b'), h.probe('c')];
    const sup = h.supervisor({
      name: 'r',
      strategy: 'rest_for_one',
      children: [
        { id: 'a', driver: a.driver },
        { id: 'c', driver: c.driver, restart: 'temporary' },
      ],
    });
    await sup.start();
    await sup.addChild({ id: 'b', driver: b.driver }, { index: 1, start: false });
    assert.deepEqual(
      sup.children().map((x) => [x.id, x.state]),
      [
        ['a', 'ready'],
        ['b', 'stopped'],
        ['c', 'ready'],
      ],
    );
    await sup.startChild('b');
    assert.equal(b.starts, 1);
    await sup.stopChild('c', { hold: false });
    assert.equal(sup.child('c')?.state, 'stopped', 'kept, not removed');
    await sup.startChild('c');
    // rest_for_one now runs over a, b, c: a restart of b takes c along (a temporary child
    // stopped by a sibling's restart is removed, as in OTP), not a.
    await sup.restartChild('b');
    assert.equal(sup.child('c'), undefined);
    assert.equal(a.starts, 1);
    await sup.stop();
  });
});
