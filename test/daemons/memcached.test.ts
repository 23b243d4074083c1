/**
 * memcached 1.6 under `user: memcache`: ready once its port accepts, a value stored before a
 * daemon kill -9 is still served by the same re-adopted process after, and SIGTERM makes it say
 * "Exiting normally" (at -vv).
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { test } from 'node:test';
import { daemonLife, freePort, needPrograms, treeDir } from './support.ts';

const MEMCACHED = '/usr/bin/memcached';

/** One memcached text-protocol exchange on 127.0.0.1:`port`: sends `request`, resolves at `until`. */
function memcache(port: number, request: string, until: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port });
    let got = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      got += d;
      if (until.test(got)) {
        s.destroy();
        resolve(got);
      }
    });
    s.on('error', reject);
    s.write(request);
  });
}

test('memcached under user: memcache', async (t) => {
  if (!needPrograms(t, [MEMCACHED])) return;
  const port = await freePort();
  const td = treeDir(
    t,
    'memcached',
    (name) => `name: ${name}
requires: { cpu: 1.0, memory: 512Mi, pids: 128 }
children:
  - name: cache
    user: memcache
    command: [${MEMCACHED}, -l, 127.0.0.1, -p, "${port}", -U, "0", -m, "32", -vv]
    ready: { tcp: ${port}, timeout: 20s }
    requires: { cpu: 0.25, memory: 96Mi, pids: 16 }
`,
  );
  const value = 'kept across the re-adoption';
  await daemonLife(t, td, 'cache', {
    budget: { cpu: 0.25, memory: 96 * 2 ** 20, pids: 16 },
    probe: async () => {
      const stored = await memcache(port, `set greeting 0 0 ${value.length}\r\n${value}\r\n`, /\r\n$/);
      assert.equal(stored, 'STORED\r\n');
    },
    intact: async () => {
      const got = await memcache(port, 'get greeting\r\n', /END\r\n$/);
      assert.equal(got, `VALUE greeting 0 ${value.length}\r\n${value}\r\nEND\r\n`);
    },
    cleanLine: /Exiting normally/,
  });
});
