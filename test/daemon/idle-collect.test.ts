/**
 * The idle collection that replaces V8's polling memory reducer in the detached daemon: armed
 * when the last connection closes, disarmed by a new one, nothing at all without `--expose-gc`.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import * as net from 'node:net';
import { test } from 'node:test';
import { IdleCollector } from '../../src/daemon/idle-collect.ts';

async function serverWith(idle: IdleCollector) {
  const server = net.createServer((s) => s.resume());
  idle.watch(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  const open = async () => {
    const c = net.connect(port, '127.0.0.1');
    await once(c, 'connect');
    return c;
  };
  return { server, open };
}

test('one collection after the last client left; a client back in time disarms it', async () => {
  let collected = 0;
  let done: () => void = () => {};
  const idle = new IdleCollector(1000, () => {
    collected++;
    done();
  });
  const { server, open } = await serverWith(idle);
  const a = await open();
  const b = await open();
  a.destroy();
  // One client is still there: nothing armed. The second one leaves, then a third comes back.
  b.destroy();
  await once(b, 'close');
  const c = await open();
  assert.equal(collected, 0);
  const collection = new Promise<void>((resolve) => {
    done = resolve;
  });
  c.destroy();
  await collection;
  assert.equal(collected, 1);
  assert.equal(idle.collections, 1);
  idle.close();
  server.close();
});

test('without --expose-gc it watches nothing', async () => {
  const idle = new IdleCollector(10, undefined);
  const { server, open } = await serverWith(idle);
  assert.equal(server.listenerCount('connection'), 1);
  const c = await open();
  c.destroy();
  await once(c, 'close');
  assert.equal(idle.collections, 0);
  server.close();
});
