/**
 * A subscriber that throws never stops supervision (OTP's gen_event detaches a failing handler):
 * the journal write runs inside the engine's emit, so a listener failing on `exited` or
 * `restarting` must leave the restart to happen, be detached, and be reported to the others.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { SupervisorEvent } from '../../src/core/index.ts';
import { harness } from '../core/fixtures.ts';

function tree() {
  const h = harness();
  const sup = h.supervisor({
    name: 'root',
    strategy: 'one_for_one',
    intensity: 10,
    children: [{ id: 'a', driver: h.probe('a').driver, restart: 'permanent' }],
  });
  return { h, sup };
}

describe('event listeners are isolated', () => {
  for (const on of ['exited', 'restarting', 'started'] as const) {
    it(`a listener throwing on '${on}' is detached and the permanent child is restarted`, async () => {
      const { h, sup } = tree();
      await sup.start();
      const seen: SupervisorEvent[] = [];
      let calls = 0;
      sup.subscribe((e) => {
        if (e.type === on) {
          calls++;
          throw new Error(`listener broke on ${on}`);
        }
      });
      sup.subscribe((e) => seen.push(e));
      h.log.length = 0;
      h.probe('a').crash();
      await h.settle();
      assert.deepEqual(h.log, ['crash:a', 'start:a'], 'the child was restarted');
      assert.equal(sup.children()[0]?.restarts, 1);
      const failed = seen.filter((e) => e.type === 'listener_failed');
      assert.equal(failed.length, 1, 'reported once to the remaining listeners');
      assert.deepEqual(
        { on: (failed[0] as { on: string }).on, error: (failed[0] as { error: string }).error },
        { on, error: `listener broke on ${on}` },
      );
      // Detached: a second crash does not call it again.
      h.probe('a').crash();
      await h.settle();
      assert.equal(calls, 1);
      assert.equal(sup.children()[0]?.restarts, 2);
    });
  }
});
