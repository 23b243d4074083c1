/**
 * Fault: an async subscriber whose promise rejects (listeners.test.ts covers synchronous throws).
 * It must be detached and reported like a throwing one, never an unhandled rejection.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SupervisorEvent } from '../../src/core/events.ts';
import { harness, typesFor } from '../core/fixtures.ts';

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
