/**
 * s6-svscan 2.11 supervising a service of its own (s6-supervise, then the service's run script)
 * inside one captree child: readiness through its own notification fd (`-d 3`), kill -9 of
 * s6-svscan restarts the whole child, a daemon kill -9 then `up` finds the same service process
 * still running, and stop reaches the service itself (its own clean-shutdown line).
 */
import { join } from 'node:path';
import { test } from 'node:test';
import { daemonLife, needPrograms, supervisedService, treeDir, writeService } from './support.ts';

const SVSCAN = '/usr/bin/s6-svscan';

test('s6-svscan and its supervised service in one child', async (t) => {
  if (!needPrograms(t, [SVSCAN, '/usr/bin/s6-supervise'])) return;
  let pidFile = '';
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
      pidFile = writeService(join(dir, 'scan', 'svc'));
    },
  );
  await daemonLife(t, td, 'svscan', {
    budget: { cpu: 0.25, memory: 64 * 2 ** 20, pids: 32 },
    ...supervisedService(td, 'svscan', pidFile),
    cleanLine: /service stopping cleanly/,
  });
});
