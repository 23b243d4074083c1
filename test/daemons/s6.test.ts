/**
 * s6-svscan 2.11 supervising a service of its own (s6-supervise, then the service's run script)
 * inside one captree child: readiness through its own notification fd (`-d 3`), kill -9 of
 * s6-svscan restarts the whole child, a daemon kill -9 then `up` finds the same service process
 * still running, and stop reaches the service itself (its own clean-shutdown line).
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { isAlive } from '../../src/daemon/index.ts';
import { daemonLife, hostPidOf, needPrograms, serviceScript, treeDir, until } from './support.ts';

const SVSCAN = '/usr/bin/s6-svscan';

test('s6-svscan and its supervised service in one child', async (t) => {
  if (!needPrograms(t, [SVSCAN, '/usr/bin/s6-supervise'])) return;
  let dirOf = '';
  const td = treeDir(
    t,
    's6',
    (name, dir) => `name: ${name}
requires: { cpu: 1.0, memory: 512Mi, pids: 128 }
children:
  - name: svscan
    command: [${SVSCAN}, -d, "3", ${join(dir, 'scan')}]
    ready: { notify: fd, timeout: 20s }
    requires: { cpu: 0.25, memory: 64Mi, pids: 32 }
`,
    (dir) => {
      dirOf = dir;
      mkdirSync(join(dir, 'scan', 'svc'), { recursive: true });
      writeFileSync(join(dir, 'scan', 'svc', 'run'), serviceScript(join(dir, 'svc.pid')));
      chmodSync(join(dir, 'scan', 'svc', 'run'), 0o755);
    },
  );
  let service = 0;
  // The run script writes its pid as its PID namespace has it; the host's is found in the cgroup.
  const servicePid = () =>
    until('the service’s pid file', async () => {
      const main = (await td.entry('svscan')).pid;
      const nspid = Number(readFileSync(join(dirOf, 'svc.pid'), 'utf8'));
      return main && nspid ? hostPidOf(main, nspid, `captree-${td.name}-`) : null;
    });
  await daemonLife(t, td, 'svscan', {
    budget: { cpu: 0.25, memory: 64 * 2 ** 20, pids: 32 },
    probe: async () => {
      // The service of this instance, not a previous one's.
      service = await until('the service of this instance', async () => {
        const pid = await servicePid();
        return isAlive(pid) && pid !== service ? pid : null;
      });
    },
    intact: async () => {
      assert.equal(await servicePid(), service);
      assert.ok(isAlive(service), 'the supervised service survived the daemon’s kill -9');
    },
    cleanLine: /service stopping cleanly/,
  });
});
