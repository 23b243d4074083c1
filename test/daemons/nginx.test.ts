/**
 * nginx 1.22 (nginx-light) as a classic forking daemon: `daemon on`, the starter exits 0 and the
 * master runs on in a session of its own. `pidFile:` (systemd's PIDFile=) makes the master the
 * child's main process: `ps` shows its pid, its kill -9 is the child's crash (not the starter's
 * old exit 0), and stop reaches the master and its workers. It runs as www-data: a child has no
 * capabilities, so a root master could not switch its workers' user anyway.
 */
import assert from 'node:assert/strict';
import { chownSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { httpGet } from '../support/net.ts';
import { daemonLife, freePort, needPrograms, treeDir, userIds } from './support.ts';

const NGINX = '/usr/sbin/nginx';

test('nginx forking into the background, followed through its pid file', async (t) => {
  if (!needPrograms(t, [NGINX])) return;
  const port = await freePort();
  let run = '';
  const td = treeDir(
    t,
    'nginx',
    (name, dir) => `name: ${name}
requires: { cpu: 1.0, memory: 512Mi, pids: 128 }
children:
  - name: web
    user: www-data
    command: [${NGINX}, -p, ${run}, -c, ${join(dir, 'nginx.conf')}, -e, stderr]
    pidFile: ${join(run, 'nginx.pid')}
    ready: { http: 'http://127.0.0.1:${port}/', timeout: 20s }
    requires: { cpu: 0.5, memory: 64Mi, pids: 16 }
`,
    (dir) => {
      run = join(dir, 'run');
      mkdirSync(run);
      const { uid, gid } = userIds('www-data');
      chownSync(run, uid, gid);
      writeFileSync(
        join(dir, 'nginx.conf'),
        `daemon on;
pid ${join(run, 'nginx.pid')};
error_log stderr notice;
worker_processes 2;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path ${run}/body; proxy_temp_path ${run}/proxy; fastcgi_temp_path ${run}/fastcgi;
  uwsgi_temp_path ${run}/uwsgi; scgi_temp_path ${run}/scgi;
  server { listen 127.0.0.1:${port}; location / { return 200 "served by $pid\\n"; } }
}
`,
      );
    },
  );
  await daemonLife(t, td, 'web', {
    budget: { cpu: 0.5, memory: 64 * 2 ** 20, pids: 16 },
    probe: async () => {
      const e = await td.entry('web');
      const master = Number(readFileSync(join(run, 'nginx.pid'), 'utf8'));
      // The pid file holds the master's pid in its own PID namespace; ps shows the host's.
      const nspid = /^NSpid:.*\s(\d+)$/m.exec(readFileSync(`/proc/${e.pid}/status`, 'utf8'))?.[1];
      assert.equal(Number(nspid), master, 'ps shows the master of the pid file, not the starter');
      assert.match(await httpGet(port), /^served by \d+/);
    },
    intact: async () => {
      assert.match(await httpGet(port), /^served by \d+/);
    },
    cleanLine: /signal 15 \(SIGTERM\) received from \d+, exiting[\s\S]*: exit$/m,
  });
});
