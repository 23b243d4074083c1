/**
 * Renegotiation on a real tree (real processes, cgroups, the channel): a busy supervisor child
 * asks for more cpu and gets it from an idle sibling within a second, the sibling's new quota is
 * in its cgroup file, a request beyond what exists is denied with the reason, and nobody restarts.
 * Plus the channel's own rules: per-child socket 0600, protocol errors, releases.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { grantOf } from '../../src/caps/index.ts';
import type { SupervisorEvent } from '../../src/core/index.ts';
import { buildTree, type RunningTree } from '../../src/daemon/build-tree.ts';
import { type ChannelEvent, Channels, channelPath, channelToken } from '../../src/daemon/channel.ts';
import { parseManifest } from '../../src/manifest/index.ts';
import { skipOrFail } from '../support/host.ts';

const fixture = join(import.meta.dirname, '..', 'runtime', 'fixtures', 'child', 'requester.ts');
const dir = mkdtempSync(join(tmpdir(), 'captree-reneg-'));

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Channel events, and a wait for the next one matching. */
class Events {
  readonly all: ChannelEvent[] = [];
  #waiters: { match: (e: ChannelEvent) => boolean; resolve: (e: ChannelEvent) => void }[] = [];
  constructor(channels: Channels) {
    channels.subscribe((e) => {
      this.all.push(e);
      this.#waiters = this.#waiters.filter((w) => {
        if (!w.match(e)) return true;
        w.resolve(e);
        return false;
      });
    });
  }
  next(match: (e: ChannelEvent) => boolean, what: string, ms = 10_000): Promise<ChannelEvent> {
    const seen = this.all.find(match);
    if (seen) return Promise.resolve(seen);
    return within(new Promise((resolve) => this.#waiters.push({ match, resolve })), ms, what);
  }
}

/** The message of a channel event as plain data (null for other events). */
const msg = (e: ChannelEvent): Record<string, unknown> | null =>
  e.type === 'channel' ? (e.message as Record<string, unknown>) : null;

const fromChild = (path: string, type: string) => (e: ChannelEvent) =>
  e.type === 'channel' && e.path === path && e.from === 'child' && msg(e)?.type === type;

const statusFrom = (path: string, prefix: string) => (e: ChannelEvent) =>
  fromChild(path, 'status')(e) && String(msg(e)?.text).startsWith(prefix);

function quotaOf(tree: RunningTree, path: string): number {
  const d = tree.runtime.groupFor(path).dirs.find((x) => existsSync(join(x, 'cpu.cfs_quota_us')));
  if (d) return Number(readFileSync(join(d, 'cpu.cfs_quota_us'), 'utf8')) / 100_000;
  const v2 = tree.runtime.groupFor(path).dirs.find((x) => existsSync(join(x, 'cpu.max')));
  const [q] = readFileSync(join(v2!, 'cpu.max'), 'utf8').split(' ');
  return Number(q) / 100_000;
}

after(() => rmSync(dir, { recursive: true, force: true }));

describe('renegotiation through the channel', () => {
  let tree: RunningTree | undefined;
  let channels: Channels | undefined;
  let events: Events;
  const supEvents: SupervisorEvent[] = [];
  const name = `rn${process.pid}`;
  const root = `/${name}`;

  before(async (t) => {
    if (process.getuid?.() !== 0) return skipOrFail(t as never, 'needs root for cgroups');
    const parsed = parseManifest(
      `
name: ${name}
requires: { cpu: 1.0, memory: 1Gi, pids: 512 }
children:
  - name: busy
    command: [${JSON.stringify(process.execPath)}, ${JSON.stringify(fixture)}]
    supervisor: true
    env: { PLAN: '[{"cpu":0.5},{"cpu":2}]' }
    requires: { cpu: 0.2, memory: 256Mi, pids: 64 }
  - name: idle
    command: [sleep, '1000']
    priority: low
    requires: { cpu: 0.6, memory: 128Mi, pids: 16 }
  - name: idle2
    command: [sleep, '1000']
    requires: { cpu: 0.2, memory: 128Mi }
`,
      join(dir, 'captree.yaml'),
      { baseDir: dir },
    );
    assert.ok(parsed.ok, parsed.ok ? '' : JSON.stringify(parsed.errors));
    tree = await buildTree(parsed.tree, { stateDir: join(dir, 'state'), source: parsed.source });
    channels = await Channels.open(tree);
    events = new Events(channels);
    tree.supervisor.subscribe((e) => supEvents.push(e));
  });

  after(async () => {
    try {
      await channels?.close();
      if (tree) {
        await tree.supervisor.stop().catch(() => {});
        await tree.runtime.close();
      }
    } finally {
      rmSync(join(dir, 'state'), { recursive: true, force: true });
    }
  });

  it('a busy child gets +cpu from an idle sibling within a second, live, nobody restarted', async (t) => {
    if (!tree || !channels) return skipOrFail(t, 'needs root for cgroups');
    const busy = `${root}/busy`;
    const idle = `${root}/idle`;
    await within(tree.supervisor.start(), 15_000, 'the tree to start');
    const pids = new Map(tree.supervisor.children().map((c) => [c.id, c.pid]));
    for (const [id, pid] of pids) assert.ok(pid, `${id} has a pid`);

    const request = await events.next(fromChild(busy, 'request'), 'the request');
    const reply = await events.next(
      (e) =>
        e.type === 'channel' && e.path === busy && e.from === 'parent' && msg(e)?.id === msg(request)?.id,
      'the grant',
    );
    assert.equal(msg(reply)?.type, 'grant');
    const elapsed = reply.at - request.at;
    assert.ok(elapsed < 1000, `granted in ${elapsed} ms`);
    t.diagnostic(`request → grant: ${elapsed.toFixed(1)} ms`);
    const status = await events.next(statusFrom(busy, 'granted'), 'the granted status');
    assert.match(String(msg(status)?.text), /"cpu":0\.7/);

    // The capability tree, the cgroup files and `ps` agree: busy 0.7, idle (low priority) gave 0.5.
    assert.equal(grantOf(tree.caps, busy)?.cpu.reserved, 0.7);
    assert.equal(grantOf(tree.caps, idle)?.cpu.reserved, 0.1);
    assert.equal(grantOf(tree.caps, `${root}/idle2`)?.cpu.reserved, 0.2);
    assert.equal(quotaOf(tree, busy), 0.7);
    assert.equal(quotaOf(tree, idle), 0.1);
    assert.equal(quotaOf(tree, `${root}/idle2`), 0.2);
    assert.equal(tree.resources(busy).grant.cpu, 0.7);
    assert.equal(tree.resources(idle).grant.cpu, 0.1);
    const changes = events.all.filter((e) => e.type === 'grant_changed');
    assert.deepEqual(
      changes.map((c) => c.type === 'grant_changed' && [c.path, c.cause, c.grant.cpu]),
      [
        [idle, 'reclaim', 0.1],
        [busy, 'request', 0.7],
      ],
    );

    // Beyond what exists: denied, saying why and how much could be had.
    const denied = await events.next(statusFrom(busy, 'denied'), 'the denial');
    const text = String(msg(denied)?.text);
    assert.match(text, /cpu: asked \+2 cores, at most \+0\.\d+ cores can be granted now/);
    assert.match(text, new RegExp(`${root} has 0 cores unreserved`));
    assert.equal(grantOf(tree.caps, busy)?.cpu.reserved, 0.7, 'a denial changes nothing');
    await events.next(fromChild(busy, 'ready'), 'ready');

    // Nobody was restarted: same pids, no restart event.
    assert.deepEqual(new Map(tree.supervisor.children().map((c) => [c.id, c.pid])), pids);
    assert.equal(supEvents.filter((e) => e.type === 'restarting' || e.type === 'exited').length, 0);
  });

  it('the channel is a per-child socket, mode 0600, under the state dir', (t) => {
    if (!tree || !channels) return skipOrFail(t, 'needs root for cgroups');
    const file = channelPath(tree.runtime.stateDir, `${root}/busy`);
    assert.ok(file.startsWith(tree.runtime.stateDir));
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.deepEqual(channels.paths(), [`${root}/busy`]);
    const env = environOfProgram(tree.supervisor.child('busy')!.pid as number);
    assert.ok(env.includes(`CAPTREE_CHANNEL=${file}`));
    assert.ok(env.some((e) => e.startsWith('CAPTREE_GRANT={"cpu":0.2,')));
    const cg = env
      .find((e) => e.startsWith('CAPTREE_CGROUP='))!
      .slice('CAPTREE_CGROUP='.length)
      .split(':');
    assert.deepEqual(cg, [...tree.runtime.groupFor(`${root}/busy`).dirs]);
    // The idle siblings got nothing of the sort.
    const idleEnv = readFileSync(`/proc/${tree.supervisor.child('idle')!.pid}/environ`, 'utf8');
    assert.ok(!idleEnv.includes('CAPTREE_CHANNEL'));
  });

  it('answers bad messages with denied and reasons; release gives back; versions are checked', async (t) => {
    if (!tree || !channels) return skipOrFail(t, 'needs root for cgroups');
    // A second connection on the child's socket plays the child (with its token, it replaces the real one).
    const sock = connect(channelPath(tree.runtime.stateDir, `${root}/busy`));
    const replies: Record<string, unknown>[] = [];
    let waiting: (() => void) | null = null;
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      buf += d;
      let nl = buf.indexOf('\n');
      while (nl >= 0) {
        replies.push(JSON.parse(buf.slice(0, nl)));
        buf = buf.slice(nl + 1);
        nl = buf.indexOf('\n');
      }
      waiting?.();
    });
    const ask = async (line: string) => {
      const n = replies.length;
      sock.write(`${line}\n`);
      while (replies.length === n) await within(new Promise<void>((r) => (waiting = r)), 5000, line);
      return replies[n]!;
    };
    const token = channelToken(tree.runtime.stateDir, `${root}/busy`);
    assert.deepEqual(await ask(JSON.stringify({ v: 1, type: 'hello', token })), {
      v: 1,
      type: 'grant',
      cpu: 0.7,
      memory: 256 * 2 ** 20,
      pids: 64,
    });
    assert.match(String((await ask('{"v":2,"type":"hello"}')).reasons), /unsupported protocol version 2/);
    assert.match(String((await ask('not json')).reasons), /not JSON/);
    assert.match(
      String((await ask('{"v":1,"type":"request","cpu":-1}')).reasons),
      /cpu must be a positive number/,
    );
    assert.match(String((await ask('{"v":1,"type":"request","cpu":0.0001}')).reasons), /multiple of 0\.001/);
    assert.match(String((await ask('{"v":1,"type":"fly"}')).reasons), /unknown message type "fly"/);
    const released = await ask('{"v":1,"type":"release","id":"x","cpu":0.3}');
    assert.deepEqual(released, { v: 1, type: 'grant', id: 'x', cpu: 0.4, memory: 256 * 2 ** 20, pids: 64 });
    assert.equal(quotaOf(tree, `${root}/busy`), 0.4);
    assert.match(
      String((await ask('{"v":1,"type":"release","id":"y","cpu":0.4}')).reasons),
      /cannot give back 0\.4 cores of a reservation of 0\.4 cores/,
    );
    // Slack first: 0.3 came back to the parent, so this comes from it, nobody else touched.
    const before = grantOf(tree.caps, `${root}/idle`)?.cpu.reserved;
    assert.equal((await ask('{"v":1,"type":"request","id":"z","cpu":0.3}')).cpu, 0.7);
    assert.equal(grantOf(tree.caps, `${root}/idle`)?.cpu.reserved, before);
    // Memory: 512Mi of the root's 1Gi is unreserved; asking 600Mi more takes the other 88Mi from
    // the idle siblings, never below their usage + 16Mi, and none of them is killed.
    const pidsBefore = tree.supervisor.children().map((c) => c.pid);
    const mem = await ask(`{"v":1,"type":"request","id":"m","memory":${600 * 2 ** 20}}`);
    assert.equal(mem.type, 'grant', JSON.stringify(mem));
    assert.equal(mem.memory, 856 * 2 ** 20);
    const idleMem = (p: string) => grantOf(tree!.caps, `${root}/${p}`)!.memory.reserved;
    assert.equal(idleMem('idle') + idleMem('idle2'), 256 * 2 ** 20 - 88 * 2 ** 20);
    for (const p of ['idle', 'idle2']) {
      const usage = tree.runtime.groupFor(`${root}/${p}`).usage().memoryBytes!;
      assert.ok(idleMem(p) >= usage + 16 * 2 ** 20, `${p} keeps usage + margin`);
    }
    const huge = await ask(`{"v":1,"type":"request","id":"h","memory":${2 ** 30}}`);
    assert.equal(huge.type, 'denied');
    assert.match(String(huge.reasons), /memory: asked \+1024Mi/);
    assert.deepEqual(
      tree.supervisor.children().map((c) => c.pid),
      pidsBefore,
    );
    sock.destroy();
  });
});

describe('a supervisor child with a user', () => {
  it('owns its channel, its cgroup directories and the files that move processes, not its limits', async (t) => {
    if (process.getuid?.() !== 0) return skipOrFail(t, 'needs root for cgroups');
    const name = `rnu${process.pid}`;
    const parsed = parseManifest(
      `
name: ${name}
requires: { cpu: 0.5 }
children:
  - { name: sup, command: [sleep, '1000'], supervisor: true, user: nobody, requires: { cpu: 0.2 } }
`,
      join(dir, 'user.yaml'),
      { baseDir: dir },
    );
    assert.ok(parsed.ok);
    const tree = await buildTree(parsed.tree, { stateDir: join(dir, 'state-user'), source: parsed.source });
    const channels = await Channels.open(tree);
    try {
      const nobody = Number(
        readFileSync('/etc/passwd', 'utf8')
          .split('\n')
          .find((l) => l.startsWith('nobody:'))!
          .split(':')[2],
      );
      const path = `/${name}/sup`;
      assert.equal(statSync(channelPath(tree.runtime.stateDir, path)).uid, nobody);
      for (const d of tree.runtime.groupFor(path).dirs) {
        assert.equal(statSync(d).uid, nobody, d);
        assert.equal(statSync(join(d, 'cgroup.procs')).uid, nobody);
        for (const limit of ['cpu.cfs_quota_us', 'memory.limit_in_bytes', 'pids.max', 'cpu.max']) {
          if (existsSync(join(d, limit)))
            assert.equal(statSync(join(d, limit)).uid, 0, `${d}/${limit} stays root's`);
        }
      }
    } finally {
      await channels.close();
      await tree.runtime.close();
    }
  });
});

/**
 * The environment of a confined child's program: the pid the engine reports is the launcher's
 * outer process of its PID namespace, and the program runs below it (init, then the program).
 */
function environOfProgram(pid: number): string[] {
  let p = pid;
  for (let depth = 0; depth < 3; depth++) {
    const env = readFileSync(`/proc/${p}/environ`, 'utf8').split('\0');
    if (env.some((e) => e.startsWith('CAPTREE_PATH='))) return env;
    const kids = readFileSync(`/proc/${p}/task/${p}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
    if (kids.length === 0) return env;
    p = Number(kids[0]);
  }
  return readFileSync(`/proc/${p}/environ`, 'utf8').split('\0');
}
