/**
 * The counter reader on real cgroups: a process's pids and memory read through held
 * descriptors, a removed group read as unknown with its descriptors closed, a read of some
 * counters only, an OOM kill seen through the host-wide gate on re-reading OOM counts, and a
 * process out of descriptors (prlimit) falling back to reading without holding any.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CounterReader, Want } from '../../src/runtime/cgroup/counters.ts';
import { type CgroupGroup, type CgroupHost, probeCgroups } from '../../src/runtime/cgroup/index.ts';
import { skipOrFail, uniqueName } from '../support/host.ts';

const node = resolve(import.meta.dirname, '../../node_modules/.bin/node');

let python: string | null = null;
try {
  python = execFileSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim();
} catch {
  python = null;
}

/** The host's OOM kill count (`/proc/vmstat`), the figure the reader's gate watches. */
function hostOomKills(): number | null {
  const m = /^oom_kill (\d+)$/m.exec(readFileSync('/proc/vmstat', 'utf8'));
  return m ? Number(m[1]) : null;
}

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

  test('a read of some counters leaves the others null and their files unread', async (t) => {
    if (!root) return skipOrFail(t, `no cgroup driver here (${host.reason})`);
    const g = root.createChild('some');
    const reader = new CounterReader();
    reader.read(g.dirs);
    const before = reader.fileReads;
    const c = reader.read(g.dirs, false, Want.pids);
    assert.equal(c.pids, 0);
    assert.equal(c.memoryBytes, null);
    assert.equal(c.cpuSeconds, null);
    assert.equal(reader.fileReads - before, 1, 'one file read: pids.current');
    reader.close();
    await g.remove();
  });

  test('OOM counts: not re-read while the host counts no OOM kill; a kill in the group is seen', async (t) => {
    if (!root) return skipOrFail(t, `no cgroup driver here (${host.reason})`);
    if (!python) return skipOrFail(t, 'python3 not found');
    if (hostOomKills() === null) return skipOrFail(t, 'no oom_kill in /proc/vmstat (kernel before 4.13)');
    const g = root.createChild('hog');
    g.setLimits({ memory: 64 * 1024 * 1024 });
    const reader = new CounterReader();
    const pass = () => {
      reader.beginPass();
      try {
        const before = reader.fileReads;
        const c = reader.read(g.dirs, false, Want.oomKills);
        return { kills: c.oomKills, reads: reader.fileReads - before };
      } finally {
        reader.endPass();
      }
    };
    // Three passes with the host's count still: the third reuses the count (another suite's OOM
    // kill on this host reopens the gate, so only a still count is asserted on).
    const still = hostOomKills();
    pass();
    pass();
    const third = pass();
    assert.equal(third.kills, 0);
    if (hostOomKills() === still) assert.equal(third.reads, 0, 'the OOM count was re-read');
    else t.diagnostic('the host counted an OOM kill meanwhile: the gate was open');
    const script = 'chunks = []\nfor _ in range(1024): chunks.append(bytearray(1 << 20))\nprint("survived")';
    child = spawn('sh', ['-c', 'for f in $CGP; do echo $$ > "$f"; done; exec "$PY" -c "$SCRIPT"'], {
      env: { ...process.env, CGP: g.procsFiles.join(' '), PY: python, SCRIPT: script },
      stdio: 'ignore',
    });
    const [, signal] = (await once(child, 'exit')) as [number | null, string | null];
    assert.equal(signal, 'SIGKILL', 'the hog was OOM-killed');
    const after = pass();
    assert.equal(after.kills, 1);
    assert.equal(after.reads, 1);
    // Outside a pass the count is always read.
    assert.equal(reader.read(g.dirs, false, Want.oomKills).oomKills, 1);
    reader.close();
    await g.waitEmpty(AbortSignal.timeout(5000));
    await g.remove();
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
