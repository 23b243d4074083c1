/** The event stream: every transition, typed and timestamped by the engine's clock. */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { harness } from './fixtures.ts';

it('every transition of a crash, backoff restart and stop is an event stamped with clock time', async () => {
  const h = harness();
  await h.clock.advance(1000);
  const sup = h.supervisor({
    name: 'root',
    children: [{ id: 'a', driver: h.probe('a').driver, backoff: { initial: 250, max: 250 } }],
  });
  await sup.start();
  await h.clock.advance(500);
  h.probe('a').crash('bad input');
  await h.settle();
  await h.clock.advance(250);
  await sup.stop();
  const seen = h.events.map((e) => `${e.at} ${e.type} ${e.path}`);
  assert.deepEqual(seen, [
    '1000 starting /root',
    '1000 starting /root/a',
    '1000 started /root/a',
    '1000 ready /root/a',
    '1000 ready /root',
    '1500 exited /root/a',
    '1500 restarting /root/a',
    '1750 starting /root/a',
    '1750 started /root/a',
    '1750 ready /root/a',
    '1750 stopping /root',
    '1750 stopping /root/a',
    '1750 exited /root/a',
    '1750 stopped /root/a',
    '1750 stopped /root',
  ]);
  const exited = h.events.find((e) => e.type === 'exited');
  assert.deepEqual(exited?.type === 'exited' && [exited.reason, exited.expected], [
    { kind: 'crashed', message: 'bad input' },
    false,
  ]);
  const restarting = h.events.find((e) => e.type === 'restarting');
  assert.deepEqual(restarting?.type === 'restarting' && [restarting.delay, restarting.restarts], [250, 1]);
});

it('unsubscribing stops delivery', async () => {
  const h = harness();
  const sup = h.supervisor({ name: 'root', children: [{ id: 'a', driver: h.probe('a').driver }] });
  const mine: string[] = [];
  const off = sup.subscribe((e) => mine.push(e.type));
  await sup.start();
  off();
  await sup.stop();
  assert.equal(mine.includes('stopping'), false);
  assert.ok(mine.includes('ready'));
});
