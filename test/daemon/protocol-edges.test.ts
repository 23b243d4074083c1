/**
 * Protocol edges, driven by a child that speaks protocol v1 itself (Python, no captree library)
 * and checked from the host side: `denied` keeps the request's id, huge numbers get a clear
 * reason, a tiny cpu grant is rounded to what the kernel enforces (and that is in the cgroup
 * file), a fully busy sibling is not called idle, the 64 KiB line limit is exact, and a flood of
 * 60 kB `status` lines cannot make the daemon journal more than a bounded amount.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { grantOf } from '../../src/caps/index.ts';
import { DeniedError, ParentChannel } from '../../src/child/index.ts';
import { buildTree, type RunningTree } from '../../src/daemon/build-tree.ts';
import { type ChannelEvent, Channels, channelPath, channelToken } from '../../src/daemon/channel.ts';
import { parseManifest } from '../../src/manifest/index.ts';
import { skipOrFail } from '../support/host.ts';

const script = join(import.meta.dirname, 'fixtures', 'edges-child.py');
const dir = mkdtempSync(join(tmpdir(), 'captree-edges-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function quotaFile(tree: RunningTree, path: string): number | null {
  const d = tree.runtime.groupFor(path).dirs.find((x) => existsSync(join(x, 'cpu.cfs_quota_us')));
  return d ? Number(readFileSync(join(d, 'cpu.cfs_quota_us'), 'utf8')) : null;
}

describe('protocol edges, from a Python child', () => {
  let tree: RunningTree | undefined;
  let channels: Channels | undefined;
  const events: ChannelEvent[] = [];
  const name = `pe${process.pid}`;
  const sup = `/${name}/sup`;
  const results = join(dir, 'answers.jsonl');

  before(async (t) => {
    if (process.getuid?.() !== 0) return skipOrFail(t as never, 'needs root for cgroups');
    const parsed = parseManifest(
      `
name: ${name}
requires: { cpu: 0.6, memory: 512Mi, pids: 128 }
children:
  - name: hog
    command: [python3, -c, 'while True: pass']
    requires: { cpu: 0.3, memory: 64Mi }
  - name: sup
    command: [python3, ${JSON.stringify(script)}, ${JSON.stringify(results)}]
    supervisor: true
    restart: temporary
    requires: { cpu: 0.2, memory: 64Mi }
`,
      join(dir, 'captree.yaml'),
      { baseDir: dir },
    );
    assert.ok(parsed.ok, parsed.ok ? '' : JSON.stringify(parsed.errors));
    tree = await buildTree(parsed.tree, { stateDir: join(dir, 'state'), source: parsed.source });
    channels = await Channels.open(tree, { onEvent: (e) => events.push(e) });
  });

  after(async () => {
    await channels?.close();
    if (tree) {
      await tree.supervisor.stop().catch(() => {});
      await tree.runtime.close();
    }
  });

  it('answers every edge as documented, and bounds what a flood makes the daemon write', async (t) => {
    if (!tree || !channels) return skipOrFail(t, 'needs root for cgroups');
    const exited = new Promise<string>((resolve) =>
      tree!.supervisor.subscribe((e) => {
        if (e.type === 'exited' && e.path === sup) resolve(JSON.stringify(e.reason));
      }),
    );
    await tree.supervisor.start();
    assert.equal(await exited, '{"kind":"normal"}', 'the Python child ran to its end');
    const answers = readFileSync(results, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const [hello, zero, huge, tiny, busy, afterFlood, exact, over, closed] = answers;
    assert.equal(hello?.type, 'grant');
    assert.equal(hello?.cpu, 0.2);
    // An invalid request is denied with its own id (so a caller waiting on it settles).
    assert.equal(zero?.type, 'denied');
    assert.equal(zero?.id, 'zero');
    assert.match(String(zero?.reasons), /cpu must be a positive number/);
    assert.equal(huge?.id, 'huge');
    assert.match(String(huge?.reasons), /cpu 1e\+308 cores is more than any host holds \(at most 1000000\)/);
    // 0.2 - 0.199 = 0.001 cores: rounded up to what cgroup v1 enforces (1 ms per 100 ms), reported so.
    assert.deepEqual(tiny, { v: 1, type: 'grant', id: 'tiny', cpu: 0.01, memory: 64 * 2 ** 20, pids: null });
    assert.equal(grantOf(tree.caps, sup)?.cpu.reserved, 0.01);
    const quota = quotaFile(tree, sup);
    if (quota !== null) assert.equal(quota, 1000, 'the quota file holds what was reported');
    // The hog uses all it holds: it is not "idle", and it gave nothing.
    assert.equal(busy?.type, 'denied');
    assert.equal(busy?.id, 'busy');
    const reason = String(busy?.reasons);
    assert.doesNotMatch(reason, /idle/, reason);
    // On a loaded machine the hog may be measured below its quota: then what it could give back is
    // named, never as "idle".
    assert.match(reason, /no sibling has any to spare|siblings using less than they hold could give back/);
    assert.equal(grantOf(tree.caps, `/${name}/hog`)?.cpu.reserved, 0.3);
    assert.equal(afterFlood?.type, 'grant');
    // 65536 bytes before the newline is accepted; 65537 is denied and closes the connection.
    assert.equal(exact?.type, 'grant');
    assert.equal(over?.type, 'denied');
    assert.match(String(over?.reasons), /longer than 64 KiB/);
    assert.deepEqual(closed, { closed: true });

    // The flood (1,000 × 60 kB = 60 MB sent) left a bounded trace: short status texts, a count of
    // what was not journaled, and well under a megabyte of events in all.
    const mine = events.filter((e) => e.path === sup);
    const bytes = mine.reduce((s, e) => s + JSON.stringify(e).length, 0);
    const statuses = mine.filter(
      (e) => e.type === 'channel' && (e.message as { type?: string }).type === 'status',
    );
    const suppressed = mine.reduce(
      (s, e) => s + (e.type === 'channel' && 'suppressed' in e.message ? e.message.suppressed : 0),
      0,
    );
    t.diagnostic(
      `${mine.length} events, ${bytes} bytes, ${statuses.length} status, ${suppressed} suppressed`,
    );
    assert.ok(bytes < 1_000_000, `journaled ${bytes} bytes`);
    assert.ok(suppressed > 0, 'the excess was counted');
    for (const s of statuses) {
      const text = String((s as { message: { text: string } }).message.text);
      assert.ok(text.length < 600, `a status text of ${text.length} characters was journaled`);
    }
  });

  it("the library's request({cpu: 0}) settles with DeniedError", async (t) => {
    if (!tree || !channels) return skipOrFail(t, 'needs root for cgroups');
    const ch = new ParentChannel(
      channelPath(tree.runtime.stateDir, sup),
      { cpu: null, memory: null, pids: null },
      channelToken(tree.runtime.stateDir, sup),
    );
    try {
      await ch.connected;
      await assert.rejects(ch.request({ cpu: 0 }), (err: unknown) => {
        assert.ok(err instanceof DeniedError);
        assert.match(err.message, /cpu must be a positive number/);
        return true;
      });
    } finally {
      ch.close();
    }
  });
});
