/**
 * The counter reader on real cgroups: a process's pids and memory read through held
 * descriptors, a removed group read as unknown with its descriptors closed, and a process out of
 * descriptors (prlimit) falling back to reading without holding any.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CounterReader } from '../../src/runtime/cgroup/counters.ts';
import { type CgroupGroup, type CgroupHost, probeCgroups } from '../../src/runtime/cgroup/index.ts';
import { skipOrFail, uniqueName } from '../support/host.ts';

const node = resolve(import.meta.dirname, '../../node_modules/.bin/node');

describe('cgroup counter reader', () => {
  let host: CgroupHost;
  let root: CgroupGroup | undefined;
  let child: ChildProcess | undefined;

  before(() => {
    host = probeCgroups();
    if (host.driver !== 'none') root = host.createRoot(uniqueName('counters'));
  });

  after(async () => {
    if (child?.pid && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
    if (root) {
      await root.kill();
      await root.waitEmpty(AbortSignal.timeout(5000));
      await root.remove();
    }
  });

  test('pids, memory and cpu of a group with a process; a removed group reads as unknown', async (t) => {
    if (!root) return skipOrFail(t, `no cgroup driver here (${host.reason})`);
    const g = root.createChild('busy');
    g.setLimits({ cpu: 0.5 });
    child = spawn('sh', ['-c', 'for f in $CGP; do echo $$ > "$f"; done; exec sleep infinity'], {
      env: { ...process.env, CGP: g.procsFiles.join(' ') },
      stdio: 'ignore',
    });
    // The shim's writes are done once the group's pids read 1 (the exec keeps the pid).
    const reader = new CounterReader();
    let c = reader.read(g.dirs);
    for (let i = 0; i < 200 && c.pids !== 1; i++) {
      await new Promise((r) => setTimeout(r, 10));
      c = reader.read(g.dirs);
    }
    assert.equal(c.pids, 1);
    assert.ok((c.memoryBytes ?? 0) > 0);
    assert.ok((c.cpuSeconds ?? -1) >= 0);
    assert.equal(c.throttledSeconds !== null, true, 'a group with a quota has throttling figures');
    assert.equal(c.oomKills, 0);
    assert.ok(reader.openFiles >= 4);
    child.kill('SIGKILL');
    await once(child, 'exit');
    await g.waitEmpty(AbortSignal.timeout(5000));
    await g.remove();
    const gone = reader.read(g.dirs);
    assert.equal(gone.pids, null);
    assert.equal(gone.memoryBytes, null);
    assert.equal(reader.openFiles, 0);
    reader.close();
  });

  test('out of descriptors: reads every group anyway, holding none', async (t) => {
    if (!root) return skipOrFail(t, `no cgroup driver here (${host.reason})`);
    const groups = Array.from({ length: 30 }, (_, i) => root!.createChild(`g${i}`));
    const script = `
      import { CounterReader } from ${JSON.stringify(resolve(import.meta.dirname, '../../src/runtime/cgroup/counters.ts'))};
      const dirs = ${JSON.stringify(groups.map((g) => g.dirs))};
      const r = new CounterReader();
      const read = dirs.map((d) => r.read(d));
      console.log(JSON.stringify({ ok: read.filter((c) => c.pids === 0).length, held: r.openFiles }));
    `;
    const out = await new Promise<string>((done, reject) =>
      execFile(
        'prlimit',
        ['--nofile=60:60', node, '--input-type=module', '-e', script],
        (err, stdout, stderr) => (err ? reject(new Error(stderr || err.message)) : done(stdout)),
      ),
    );
    const result = JSON.parse(out) as { ok: number; held: number };
    assert.equal(result.ok, 30, 'every group read');
    assert.equal(result.held, 0, 'nothing held once descriptors ran out');
    for (const g of groups) await g.remove();
  });
});
