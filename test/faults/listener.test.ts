/**
 * Fault: a subscriber that throws inside the engine's emit (the journal writes from a listener).
 * Supervision must go on: the listener is detached and reported, the child restarts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SupervisorEvent } from '../../src/core/events.ts';
import { harness, typesFor } from '../core/fixtures.ts';

for (const on of ['exited', 'restarting'] as const) {
  test(`a listener that throws on ${on} is detached and reported; the permanent child still restarts`, async () => {
    const h = harness();
    const sup = h.supervisor({ name: 'root', children: [{ id: 'a', driver: h.probe('a').driver }] });
    let calls = 0;
    sup.subscribe((e) => {
      calls++;
      if (e.type === on) throw new Error(`broken on ${on}`);
    });
    await sup.start();
    h.probe('a').crash('boom');
    await h.settle();
    await h.clock.advance(10_000);
    await h.settle();
    const callsAfterFailure = calls;
    h.probe('a').crash('again');
    await h.settle();
    await h.clock.advance(10_000);
    await h.settle();

    const failed = h.events.filter((e) => e.type === 'listener_failed') as Extract<
      SupervisorEvent,
      { type: 'listener_failed' }
    >[];
    assert.equal(failed.length, 1, 'reported once, then detached');
    assert.equal(failed[0]!.error, `broken on ${on}`);
    assert.equal(calls, callsAfterFailure, 'the detached listener hears nothing more');
    const a = typesFor(h.events, '/root/a');
    assert.equal(a.filter((t) => t === 'started').length, 3, `restarted twice: ${a.join(' ')}`);
    assert.equal(sup.children().find((c) => c.id === 'a')?.state, 'ready');
    await sup.stop();
  });
}

test('a listener whose promise rejects is detached too, without an unhandled rejection', async () => {
  const h = harness();
  const sup = h.supervisor({ name: 'root', children: [{ id: 'a', driver: h.probe('a').driver }] });
  sup.subscribe((async (e: SupervisorEvent) => {
    if (e.type === 'exited') throw new Error('async broken');
  }) as (e: SupervisorEvent) => void);
  await sup.start();
  h.probe('a').crash('boom');
  await h.settle();
  await new Promise((r) => setImmediate(r));
  await h.clock.advance(10_000);
  await h.settle();
  assert.ok(h.events.some((e) => e.type === 'listener_failed' && e.error === 'async broken'));
  assert.equal(typesFor(h.events, '/root/a').filter((t) => t === 'started').length, 2);
  await sup.stop();
});
