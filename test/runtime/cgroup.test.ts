/**
 * cgroup drivers against the real kernel: containment (pids, memory, cpu), tracking of escaped
 * daemons, kill and emptiness events, clean removal. Children are placed with a shell shim that
 * writes its own pid into every procsFile before exec, standing in for the C launcher.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import {
  analyseCgroups,
  CgroupError,
  type CgroupGroup,
  type CgroupHost,
  probeCgroups,
} from '../../src/runtime/cgroup/index.ts';
import { skipOrFail, uniqueName } from '../support/host.ts';

const SHIM = 'for f in $CGP; do echo $$ > "$f" || exit 99; done; exec "$@"';

function spawnIn(group: CgroupGroup, argv: string[]): ChildProcess {
  return spawn('sh', ['-c', SHIM, 'shim', ...argv], {
    env: { ...process.env, CGP: group.procsFiles.join(' ') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

async function exitOf(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null)
    return { code: child.exitCode, signal: child.signalCode };
  const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
  return { code, signal };
}

function collect(child: ChildProcess): { out: () => string; err: () => string } {
  let out = '';
  let err = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d));
  return { out: () => out, err: () => err };
}

function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

let python: string | null = null;
try {
  // Resolve through pyenv-style shims: the shim forks helpers that a pids limit would starve.
  python = execFileSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim();
} catch {
  python = null;
}

describe('cgroup probe (fixtures)', () => {
  const base = {
    readFile: (f: string) => (f.endsWith('cgroup.controllers') ? 'cpu memory pids\n' : null),
    writable: () => true,
    kernelRelease: '6.1.0',
  };

  test('pure v2 host: one hierarchy, limits via v2, groups under our own cgroup', () => {
    const p = analyseCgroups({
      ...base,
      statfsType: 0x63677270,
      mountinfo: '30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n',
      procCgroup: '0::/system.slice/captree.service\n',
    });
    assert.equal(p.layout, 'v2');
    assert.equal(p.driver, 'v2');
    assert.equal(p.unified?.selfDir, '/sys/fs/cgroup/system.slice/captree.service');
    assert.deepEqual(p.v1, []);
    assert.equal(p.limits.memory.detail, 'memory limits: enforced (cgroup v2)');
    assert.equal(p.cgroupEvents, true);
  });

  test('co-mounted cpu,cpuacct is one hierarchy; a container mount root is stripped', () => {
    const p = analyseCgroups({
      ...base,
      readFile: () => null,
      statfsType: 0x1021994,
      mountinfo: [
        '31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw',
        '32 31 0:29 /docker/abc /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct',
        '35 31 0:32 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory',
        '36 31 0:33 /other /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids',
        '',
      ].join('\n'),
      procCgroup: '4:memory:/docker/abc/sub\n3:cpu,cpuacct:/docker/abc\n2:pids:/docker/abc\n',
    });
    assert.equal(p.layout, 'v1');
    assert.deepEqual(
      p.v1.map((h) => [h.controllers.join(','), h.selfDir]),
      [
        ['cpu,cpuacct', '/sys/fs/cgroup/cpu,cpuacct'],
        ['memory', '/sys/fs/cgroup/memory/sub'],
      ],
    );
    assert.equal(p.limits.pids.enforced, false);
    assert.match(p.reason ?? '', /pids mount .* does not contain/);
    assert.equal(p.cgroupKill, false);
  });

  test('unwritable hierarchies fall back on the none driver and say why', () => {
    const p = analyseCgroups({
      ...base,
      writable: () => false,
      statfsType: 0x63677270,
      mountinfo: '30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n',
      procCgroup: '0::/user.slice\n',
    });
    assert.equal(p.layout, 'v2');
    assert.equal(p.driver, 'none');
    assert.match(p.reason ?? '', /no write access/);
    assert.equal(p.limits.cpu.detail, 'cpu limits: not enforced (no usable cgroups)');
  });
});

describe('cgroup driver (real kernel)', () => {
  let host: CgroupHost;
  let root: CgroupGroup | null = null;

  before(() => {
    host = probeCgroups();
    if (host.driver !== 'none') root = host.createRoot(uniqueName('cg'));
  });

  after(async () => {
    if (!root) return;
    await root.kill();
    await root.waitEmpty(AbortSignal.timeout(5000));
    await root.remove();
    for (const d of root.dirs) assert.equal(fs.existsSync(d), false, `${d} left behind`);
  });

  const need = (
    t: import('node:test').TestContext,
    what: 'cpu' | 'memory' | 'pids' | null,
  ): CgroupGroup | null => {
    if (!root) {
      skipOrFail(t, `no usable cgroups: ${host.reason}`);
      return null;
    }
    if (what && !host.limits[what].enforced) {
      skipOrFail(t, host.limits[what].detail);
      return null;
    }
    return root;
  };

  test('the probe describes this host', (t) => {
    if (!need(t, null)) return;
    assert.ok(['v2', 'hybrid', 'v1'].includes(host.driver));
    for (const d of root!.dirs) assert.ok(fs.statSync(d).isDirectory());
    assert.equal(root!.procsFiles.length, root!.dirs.length);
  });

  test('nested groups nest in every hierarchy and remove() leaves nothing', async (t) => {
    const r = need(t, null);
    if (!r) return;
    const a = r.createChild('nest');
    const b = a.createChild('leaf');
    assert.equal(b.path, `${r.path}/nest/leaf`);
    for (const [i, d] of b.dirs.entries()) assert.equal(d, `${a.dirs[i]}/leaf`);
    assert.throws(
      () => r.createChild('nest'),
      (e: unknown) => e instanceof CgroupError && e.code === 'EEXIST',
    );
    assert.deepEqual(r.createChild('nest', { reuse: true }).dirs, a.dirs);
    await a.remove();
    for (const d of [...a.dirs, ...b.dirs]) assert.equal(fs.existsSync(d), false);
  });

  test('a fork bomb is contained by the pids limit', async (t) => {
    const r = need(t, 'pids');
    if (!r) return;
    if (!python) return skipOrFail(t, 'python3 not found');
    const g = r.createChild('forkbomb');
    assert.deepEqual(g.setLimits({ pids: 16 }), { pids: host.limits.pids.via });
    // Each child blocks on a pipe until the parent has hit EAGAIN, then all exit: bounded.
    const script = [
      'import os, sys',
      'r, w = os.pipe()',
      'n = 0',
      'err = "none"',
      'while n < 1000:',
      '    try:',
      '        pid = os.fork()',
      '    except OSError as e:',
      '        err = e.__class__.__name__ + ":" + str(e.errno)',
      '        break',
      '    if pid == 0:',
      '        os.close(w); os.read(r, 1); os._exit(0)',
      '    n += 1',
      'print(n, err, flush=True)',
      'os.close(w)',
      'for _ in range(n): os.wait()',
    ].join('\n');
    const child = spawnIn(g, [python, '-c', script]);
    const io = collect(child);
    const { code } = await exitOf(child);
    assert.equal(code, 0, io.err());
    const [forks, err] = io.out().trim().split(' ');
    t.diagnostic(`forks before EAGAIN: ${forks} (${err})`);
    assert.ok(Number(forks) < 16 && Number(forks) > 0, `forks=${forks}`);
    assert.equal(err, 'BlockingIOError:11');
    await g.waitEmpty(AbortSignal.timeout(5000));
    await g.remove();
  });

  test('a memory hog is OOM-killed and oomKills() rises', async (t) => {
    const r = need(t, 'memory');
    if (!r) return;
    if (!python) return skipOrFail(t, 'python3 not found');
    const g = r.createChild('hog');
    g.setLimits({ memory: 64 * 1024 * 1024 });
    const before = g.oomKills();
    const script = 'chunks = []\nfor _ in range(1024): chunks.append(bytearray(1 << 20))\nprint("survived")';
    const child = spawnIn(g, [python, '-c', script]);
    const io = collect(child);
    const { signal } = await exitOf(child);
    assert.equal(signal, 'SIGKILL', `expected an OOM kill, got stdout=${io.out()} stderr=${io.err()}`);
    assert.equal(g.oomKills(), before + 1);
    t.diagnostic(`oomKills ${before} -> ${g.oomKills()}`);
    await g.waitEmpty(AbortSignal.timeout(5000));
    await g.remove();
  });

  test('a spinning process under a 0.2 cpu limit uses 0.2 cpu (±10%)', async (t) => {
    const r = need(t, 'cpu');
    if (!r) return;
    if (host.accounting.cpu === 'none') return skipOrFail(t, 'no cpu accounting');
    const g = r.createChild('spin');
    g.setLimits({ cpu: 0.2 });
    const child = spawnIn(g, ['sh', '-c', 'while :; do :; done']);
    // Let the shim exec and the quota engage before the measuring window opens.
    await delay(200);
    const u0 = g.usage().cpuUsec!;
    const t0 = performance.now();
    await delay(1500);
    const u1 = g.usage().cpuUsec!;
    const wallUs = (performance.now() - t0) * 1000;
    const cores = (u1 - u0) / wallUs;
    t.diagnostic(`measured ${cores.toFixed(4)} cores over ${(wallUs / 1e6).toFixed(2)} s under a 0.2 limit`);
    child.kill('SIGKILL');
    await exitOf(child);
    assert.ok(cores >= 0.18 && cores <= 0.22, `measured ${cores}`);
    await g.waitEmpty(AbortSignal.timeout(5000));
    await g.remove();
  });

  test('a setsid double-forked daemon stays tracked, kill() stops it, waitEmpty() resolves', async (t) => {
    const r = need(t, null);
    if (!r) return;
    const g = r.createChild('daemon');
    const launcher = spawnIn(g, ['sh', '-c', '(setsid sleep 300 </dev/null >/dev/null 2>&1 &); exit 0']);
    assert.equal((await exitOf(launcher)).code, 0);
    const pids = g.pids();
    assert.equal(pids.length, 1, `pids=${pids}`);
    const daemon = pids[0]!;
    assert.ok(alive(daemon));
    // It left our process group: kill(-pgid) of the launcher would miss it.
    assert.throws(() => process.kill(-launcher.pid!, 0), { code: 'ESRCH' });
    assert.equal(g.isEmpty(), false);
    const empty = g.waitEmpty(AbortSignal.timeout(5000));
    const t0 = performance.now();
    await g.kill();
    await empty;
    t.diagnostic(`kill() to waitEmpty() resolved: ${(performance.now() - t0).toFixed(2)} ms`);
    assert.equal(g.isEmpty(), true);
    assert.equal(alive(daemon), false);
    await g.remove();
  });

  test('waitEmpty() rejects when aborted', async (t) => {
    const r = need(t, null);
    if (!r) return;
    const g = r.createChild('abort');
    // The line is printed after the shim joined the group.
    const child = spawnIn(g, ['sh', '-c', 'echo ready; exec sleep 300']);
    await once(child.stdout!, 'data');
    assert.deepEqual(g.pids(), [child.pid]);
    const ac = new AbortController();
    const p = g.waitEmpty(ac.signal);
    ac.abort(new Error('stop waiting'));
    await assert.rejects(p, /stop waiting/);
    await g.kill();
    await g.waitEmpty(AbortSignal.timeout(5000));
    await exitOf(child);
    await g.remove();
  });

  test('v1 cpu quota ordering: a child above its parent is refused with a hint', async (t) => {
    const r = need(t, 'cpu');
    if (!r) return;
    if (host.limits.cpu.via !== 'cgroup v1') return t.skip('v2 accepts any order; nothing to prove here');
    const parent = r.createChild('order');
    const child = parent.createChild('c');
    parent.setLimits({ cpu: 0.5 });
    assert.throws(
      () => child.setLimits({ cpu: 0.8 }),
      (e: unknown) =>
        e instanceof CgroupError && e.code === 'EINVAL' && /raise parents first/.test(e.message),
    );
    child.setLimits({ cpu: 0.3 });
    assert.throws(() => parent.setLimits({ cpu: 0.2 }), /lower children first/);
    // The documented order works: lower the child first, then the parent.
    child.setLimits({ cpu: 0.1 });
    parent.setLimits({ cpu: 0.2 });
    // Raising: parent first.
    parent.setLimits({ cpu: 1 });
    child.setLimits({ cpu: 0.8 });
    await parent.remove();
  });
});

describe('none driver', () => {
  test('tracks a process group, reports limits as not enforced, kills the group', async () => {
    const host = probeCgroups({ force: 'none' });
    assert.equal(host.driver, 'none');
    assert.equal(host.limits.memory.enforced, false);
    const g = host.createRoot(uniqueName('none'));
    assert.deepEqual(g.procsFiles, []);
    assert.deepEqual(g.setLimits({ cpu: 1, memory: 1e6 }), { cpu: 'not enforced', memory: 'not enforced' });
    const child = spawn('sh', ['-c', 'sleep 300 & sleep 300 & echo ready; wait'], {
      detached: true,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    g.track(child.pid!);
    await once(child.stdout!, 'data');
    assert.equal(g.pids().length, 3);
    assert.equal(g.isEmpty(), false);
    await g.kill();
    await g.waitEmpty(AbortSignal.timeout(5000));
    assert.equal((await exitOf(child)).signal, 'SIGKILL');
    await g.remove();
  });
});
