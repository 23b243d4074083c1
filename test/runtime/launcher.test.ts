/**
 * The launcher against real processes: exit statuses, exact env, cwd, cgroup join before exec,
 * both readiness protocols, streams that outlive a child, subreaping, socket activation, and
 * what happens to children when the client goes.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  rmdirSync,
  rmSync,
} from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { launcherBinary } from '../../src/runtime/launcher/build.ts';
import {
  type ExitEvent,
  Launcher,
  type LauncherError,
  launcherHealth,
} from '../../src/runtime/launcher/client.ts';
import { skipOrFail, uniqueName } from '../support/host.ts';

const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const isRoot = process.getuid?.() === 0;
// pyenv shims need pyenv's own environment; the real interpreter runs with an empty one.
const python = execFileSync('python3', ['-c', 'import sys; print(sys.executable)'], {
  encoding: 'utf8',
}).trim();

let launcher: Launcher;
const started: number[] = [];
const tmp = mkdtempSync(join(tmpdir(), 'captree-launcher-test-'));

before(async () => {
  launcher = await Launcher.start();
});

after(async () => {
  for (const pid of started) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await launcher?.close();
  rmSync(tmp, { recursive: true, force: true });
});

/** Collects one stream key's output; complete once the writing child's `exited` has settled. */
function collect(l: Launcher, key: string): { text(): string; until(re: RegExp): Promise<string> } {
  const chunks: Buffer[] = [];
  let wake: (() => void) | undefined;
  l.on('output', (o) => {
    if (o.key !== key) return;
    chunks.push(o.data);
    wake?.();
  });
  const text = (): string => Buffer.concat(chunks).toString('utf8');
  return {
    text,
    async until(re) {
      while (!re.test(text())) await new Promise<void>((r) => (wake = r));
      return text();
    },
  };
}

/** For processes we are not the parent of, /proc is the only witness; poll it briefly. */
async function waitGone(pid: number, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (existsSync(`/proc/${pid}`)) {
    if (Date.now() > deadline) {
      const state = readFileSync(`/proc/${pid}/stat`, 'utf8').split(' ')[2];
      assert.fail(`process ${pid} still present (state ${state})`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function spawn(l: Launcher, spec: Parameters<Launcher['spawn']>[0]) {
  const child = await l.spawn(spec);
  started.push(child.pid);
  return child;
}

describe('launcher', () => {
  it('reports health for doctor', async () => {
    const h = await launcherHealth();
    assert.equal(h.ok, true, h.error);
    assert.ok(h.binary && existsSync(h.binary));
  });

  it('names the missing compiler when it cannot build', async () => {
    await assert.rejects(
      launcherBinary({ cacheDir: join(tmp, 'cache'), cc: 'captree-no-such-cc' }),
      /C compiler.*'captree-no-such-cc' was not found/,
    );
  });

  it('reports exit codes and signals', async () => {
    const a = await spawn(launcher, { argv: ['sh', '-c', 'exit 7'], env: { PATH } });
    const ea = await a.exited;
    assert.deepEqual([ea.pid, ea.code, ea.signal], [a.pid, 7, null]);
    assert.ok(ea.atNs > a.forkedAtNs, 'reaped after fork');
    assert.ok(a.forkedAtNs <= process.hrtime.bigint(), 'fork time is on our monotonic clock');

    const b = await spawn(launcher, { argv: ['sleep', '100'], env: { PATH } });
    await launcher.kill(b.pid, 'SIGTERM');
    const eb = await b.exited;
    assert.deepEqual([eb.code, eb.signal], [null, 'SIGTERM']);

    await assert.rejects(launcher.kill(b.pid, 'SIGTERM'), (e: LauncherError) => e.code === 'ESRCH');
  });

  it('killGroup reaches what the child forked', async () => {
    const key = uniqueName('grp');
    const out = collect(launcher, key);
    const c = await spawn(launcher, {
      argv: ['sh', '-c', 'sleep 100 & echo $!; wait'],
      env: { PATH },
      stdout: key,
    });
    const bg = Number((await out.until(/\n/)).trim());
    started.push(bg);
    await launcher.killGroup(c.pid, 'SIGKILL');
    assert.equal((await c.exited).signal, 'SIGKILL');
    await waitGone(bg);
  });

  it('gives the child exactly the env it was given, and the cwd', async () => {
    const key = uniqueName('env');
    const out = collect(launcher, key);
    const c = await spawn(launcher, { argv: ['/usr/bin/env'], env: { A: '1', B: 'x y=z' }, stdout: key });
    assert.equal((await c.exited).code, 0);
    assert.equal(out.text(), 'A=1\nB=x y=z\n');

    const key2 = uniqueName('cwd');
    const out2 = collect(launcher, key2);
    const d = await spawn(launcher, { argv: ['/bin/pwd'], env: [], cwd: tmp, stdout: key2 });
    await d.exited;
    assert.equal(out2.text(), `${realpathSync(tmp)}\n`);

    await assert.rejects(
      launcher.spawn({ argv: ['/bin/true'], env: [], cwd: join(tmp, 'missing') }),
      (e: LauncherError) => e.code === 'ENOENT' && /chdir/.test(e.message),
    );
    await assert.rejects(
      launcher.spawn({ argv: ['no-such-program-captree'], env: { PATH } }),
      (e: LauncherError) => e.code === 'ENOENT' && /exec no-such-program-captree/.test(e.message),
    );
  });

  it('joins the given cgroup before exec', async (t) => {
    if (!isRoot) return skipOrFail(t, 'creating a cgroup needs root');
    const own = readFileSync('/proc/self/cgroup', 'utf8')
      .split('\n')
      .map((l) => l.split(':'))
      .find((f) => f[1]?.split(',').includes('pids'));
    const mount = readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .map((l) => l.split(' '))
      .find((f) => f[f.indexOf('-') + 1] === 'cgroup' && f.at(-1)?.split(',').includes('pids'))?.[4];
    if (!own || !mount) return skipOrFail(t, 'no cgroup v1 pids hierarchy on this host');
    const rel = join(own[2]!, uniqueName('pids'));
    const dir = join(mount, rel);
    mkdirSync(dir);
    t.after(() => rmdirSync(dir));

    const key = uniqueName('cg');
    const out = collect(launcher, key);
    const c = await spawn(launcher, {
      argv: ['cat', '/proc/self/cgroup'],
      env: { PATH },
      cgroupProcs: [join(dir, 'cgroup.procs')],
      stdout: key,
    });
    assert.equal((await c.exited).code, 0);
    assert.match(out.text(), new RegExp(`^\\d+:pids:${rel.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'));

    await assert.rejects(
      launcher.spawn({ argv: ['/bin/true'], env: [], cgroupProcs: [join(dir, 'missing', 'cgroup.procs')] }),
      (e: LauncherError) => e.code === 'ENOENT' && /join cgroup/.test(e.message),
    );
  });

  it('reports readiness from a notification fd', async () => {
    const c = await spawn(launcher, {
      argv: ['sh', '-c', 'echo >&5; exec sleep 100'],
      env: { PATH },
      notifyFd: 5,
    });
    assert.deepEqual(await c.ready, { pid: c.pid, via: 'fd' });
    await launcher.kill(c.pid, 'SIGKILL');
    await c.exited;

    const d = await spawn(launcher, { argv: ['true'], env: { PATH }, notifyFd: 5 });
    await assert.rejects(d.ready, /exited before it was ready/);
  });

  it('forwards sd_notify datagrams from a real sender', async () => {
    const script = [
      'import os, socket',
      's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
      "p = os.environ['NOTIFY_SOCKET']",
      "s.sendto(b'STATUS=warming up', p)",
      "s.sendto(b'READY=1\\nSTATUS=serving', p)",
      'import time; time.sleep(100)',
    ].join('\n');
    const notes: string[] = [];
    const onNotify = (n: { pid: number; text: string }): void => void notes.push(`${n.pid} ${n.text}`);
    launcher.on('notify', onNotify);
    const c = await spawn(launcher, { argv: [python, '-c', script], env: {}, sdNotify: true });
    assert.deepEqual(await c.ready, { pid: c.pid, via: 'sd_notify' });
    launcher.off('notify', onNotify);
    assert.deepEqual(notes, [`${c.pid} STATUS=warming up`, `${c.pid} READY=1\nSTATUS=serving`]);
    await launcher.kill(c.pid, 'SIGKILL');
    await c.exited;
  });

  it('works with systemd-notify', async (t) => {
    if (!existsSync('/usr/bin/systemd-notify') && !existsSync('/bin/systemd-notify'))
      return skipOrFail(t, 'systemd-notify not installed');
    // systemd-notify attributes the message to its parent shell, which stays until we kill it.
    const c = await spawn(launcher, {
      argv: ['sh', '-c', 'systemd-notify --ready --status=up; exec sleep 100'],
      env: { PATH },
      sdNotify: true,
    });
    assert.equal((await c.ready).via, 'sd_notify');
    await launcher.kill(c.pid, 'SIGKILL');
    await c.exited;
  });

  it('keeps a stream across spawns with the same key, losing nothing', async () => {
    const key = uniqueName('stream');
    const out = collect(launcher, key);
    // More than a pipe buffer each, so the launcher must keep pace while children block.
    const a = await spawn(launcher, { argv: ['seq', '-f', 'a%g', '1', '30000'], env: { PATH }, stdout: key });
    assert.equal((await a.exited).code, 0);
    const b = await spawn(launcher, {
      argv: ['sh', '-c', 'seq -f b%g 1 30000 >&2'],
      env: { PATH },
      stdout: key,
      stderr: key,
    });
    assert.equal((await b.exited).code, 0);
    const expected = [
      ...Array.from({ length: 30000 }, (_, i) => `a${i + 1}`),
      ...Array.from({ length: 30000 }, (_, i) => `b${i + 1}`),
    ];
    assert.deepEqual(out.text().trimEnd().split('\n'), expected);
    assert.ok((await launcher.list()).streams.includes(key));
    await launcher.closeStream(key);
    assert.ok(!(await launcher.list()).streams.includes(key));
  });

  it('reaps a double-forked daemon as subreaper', async () => {
    const key = uniqueName('daemon');
    const out = collect(launcher, key);
    const c = await spawn(launcher, {
      argv: ['sh', '-c', 'sh -c "setsid sleep 100 >/dev/null 2>&1 & echo \\$!"; exit 0'],
      env: { PATH },
      stdout: key,
    });
    await c.exited;
    const daemon = Number(out.text().trim());
    started.push(daemon);
    const ppid = /^PPid:\s+(\d+)$/m.exec(readFileSync(`/proc/${daemon}/status`, 'utf8'))?.[1];
    assert.equal(Number(ppid), launcher.pid, 'the orphan was adopted by the launcher');
    process.kill(daemon, 'SIGKILL');
    await waitGone(daemon); // a zombie would keep /proc/<pid> (and pids.current) occupied
  });

  it('passes listening sockets with LISTEN_FDS, LISTEN_FDNAMES and a correct LISTEN_PID', async () => {
    const http = await launcher.listen({ tcp: { host: '127.0.0.1', port: 0 } });
    const admin = await launcher.listen({ unix: join(tmp, 'admin.sock') });
    assert.ok(http.port && http.port > 0);
    const script = [
      'import os, socket',
      's = socket.socket(fileno=3)',
      'c, _ = s.accept()',
      "env = ' '.join(f'{k}={os.environ[k]}' for k in ('LISTEN_FDS', 'LISTEN_FDNAMES', 'LISTEN_PID'))",
      "c.sendall(f'pid={os.getpid()} {env} fd4={socket.socket(fileno=4).family.name}\\n'.encode())",
      'c.close()',
    ].join('\n');
    const c = await spawn(launcher, {
      argv: [python, '-c', script],
      env: {},
      listenFds: [
        { handle: http.handle, name: 'http' },
        { handle: admin.handle, name: 'admin' },
      ],
    });
    const reply = await new Promise<string>((resolve, reject) => {
      const sock = connect(http.port!, '127.0.0.1');
      let data = '';
      sock.on('data', (d) => (data += d));
      sock.on('end', () => resolve(data));
      sock.on('error', reject);
    });
    assert.equal(
      reply,
      `pid=${c.pid} LISTEN_FDS=2 LISTEN_FDNAMES=http:admin LISTEN_PID=${c.pid} fd4=AF_UNIX\n`,
    );
    assert.equal((await c.exited).code, 0);
    await launcher.closeListen(http.handle);
    await launcher.closeListen(admin.handle);
    assert.equal(existsSync(join(tmp, 'admin.sock')), false);
    await assert.rejects(
      launcher.spawn({ argv: ['/bin/true'], env: [], listenFds: [{ handle: http.handle, name: 'x' }] }),
      (e: LauncherError) => e.code === 'EBADF',
    );
  });

  it('runs as another uid/gid', async (t) => {
    if (!isRoot) return skipOrFail(t, 'changing uid needs root');
    const key = uniqueName('uid');
    const out = collect(launcher, key);
    const c = await spawn(launcher, {
      argv: ['sh', '-c', 'id -u; id -g; id -G'],
      env: { PATH },
      uid: 65534,
      gid: 65534,
      stdout: key,
    });
    assert.equal((await c.exited).code, 0);
    assert.equal(out.text(), '65534\n65534\n65534\n');
  });

  it('confines with newNetNs and noNewPrivs', async (t) => {
    if (!isRoot) return skipOrFail(t, 'a network namespace needs root');
    const script = [
      'import os, socket',
      "print(os.readlink('/proc/self/ns/net'))",
      "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()",
      'c = socket.create_connection(s.getsockname(), timeout=2)',
      "print('lo-up')",
      "print(''.join(l for l in open('/proc/self/status') if l.split(':')[0] in ('NoNewPrivs', 'CapBnd', 'CapEff')), end='')",
    ].join('\n');
    const key = uniqueName('ns');
    const out = collect(launcher, key);
    const c = await spawn(launcher, {
      argv: [python, '-c', script],
      env: {},
      newNetNs: true,
      noNewPrivs: true,
      stdout: key,
      stderr: key,
    });
    assert.equal((await c.exited).code, 0, out.text());
    const [ns, lo, ...status] = out.text().trimEnd().split('\n');
    assert.notEqual(ns, readlinkSync('/proc/self/ns/net'));
    assert.equal(lo, 'lo-up');
    assert.deepEqual(status.map((l) => l.replace(/\s+/g, ' ')).sort(), [
      'CapBnd: 0000000000000000',
      'CapEff: 0000000000000000',
      'NoNewPrivs: 1',
    ]);
  });

  it('kills everything below it when its client disconnects', async () => {
    const own = await Launcher.start();
    const key = uniqueName('gone');
    const out = collect(own, key);
    // A live child with a background job in its group; a group whose leader already exited; a
    // setsid daemon that left every group and was adopted by the launcher.
    const c = await own.spawn({
      argv: ['sh', '-c', 'sleep 100 & echo $!; wait'],
      env: { PATH },
      stdout: key,
    });
    const leaderless = await own.spawn({
      argv: ['sh', '-c', 'sleep 100 & echo $!'],
      env: { PATH },
      stdout: key,
    });
    const daemonized = await own.spawn({
      argv: ['sh', '-c', 'setsid sleep 100 >/dev/null 2>&1 & echo $!'],
      env: { PATH },
      stdout: key,
    });
    started.push(c.pid, leaderless.pid, daemonized.pid);
    await leaderless.exited;
    await daemonized.exited;
    const pids = (await out.until(/^(\d+\n){3}$/)).trim().split('\n').map(Number);
    started.push(...pids);
    for (const pid of pids) assert.ok(existsSync(`/proc/${pid}`));
    await own.disconnect();
    await waitGone(own.pid);
    for (const pid of [c.pid, ...pids]) await waitGone(pid);
  });

  it('lets a client re-attach through its socket path, with exits that happened meanwhile', async () => {
    const socketPath = join(tmp, 'launcher.sock');
    const first = await Launcher.start({ socketPath });
    const kept = await first.spawn({ argv: ['sleep', '100'], env: { PATH } });
    const dies = await first.spawn({ argv: ['sleep', '100'], env: { PATH } });
    started.push(kept.pid, dies.pid);
    await first.disconnect();
    process.kill(dies.pid, 'SIGKILL');
    await waitGone(dies.pid);
    assert.ok(existsSync(`/proc/${kept.pid}`), 'child kept while no client is attached');

    const second = await Launcher.start({ socketPath });
    const exits: ExitEvent[] = [];
    second.on('exited', (e) => exits.push(e));
    assert.equal(second.pid, first.pid);
    assert.deepEqual((await second.list()).children, [kept.pid]);
    assert.deepEqual(
      exits.map((e) => [e.pid, e.signal]),
      [[dies.pid, 'SIGKILL']],
      'the exit queued while detached is delivered',
    );
    assert.equal(first.reattached, false);
    assert.equal(second.reattached, true);
    // A child the first client spawned, followed by the second as if it had spawned it.
    const watched = second.watch(kept.pid);
    assert.ok(second.watching(kept.pid));
    await second.kill(kept.pid, 'SIGKILL');
    const e = await watched.exited;
    assert.deepEqual([e.pid, e.code, e.signal], [kept.pid, null, 'SIGKILL']);
    assert.ok(!second.watching(kept.pid));
    await second.close();
    await waitGone(first.pid);
    assert.equal(existsSync(socketPath), false);
  });
});
