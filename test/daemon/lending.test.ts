/**
 * Lent budget comes back. A low-priority idle sibling gives cpu to a supervisor child that asks
 * for more; then (1) a restart of the lender starts it from its declared grant again, and (2)
 * once the lender gets busy at its lowered grant, it gets its budget back from the borrower,
 * tick by tick, under the same fairness policy. Checked in the capability tree and in the quota
 * files of cgroupfs; the test plays the supervisor child through its channel (with its token).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { grantOf } from '../../src/caps/index.ts';
import { ParentChannel } from '../../src/child/index.ts';
import { buildTree, type RunningTree } from '../../src/daemon/build-tree.ts';
import { type ChannelEvent, Channels, channelPath, channelToken } from '../../src/daemon/channel.ts';
import { parseManifest } from '../../src/manifest/index.ts';
import { skipOrFail } from '../support/host.ts';

const dir = mkdtempSync(join(tmpdir(), 'captree-lending-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function quota(tree: RunningTree, path: string): number | null {
  const d = tree.runtime.groupFor(path).dirs.find((x) => existsSync(join(x, 'cpu.cfs_quota_us')));
  return d ? Number(readFileSync(join(d, 'cpu.cfs_quota_us'), 'utf8')) : null;
}

describe('lending and returning cpu', () => {
  let tree: RunningTree | undefined;
  let channels: Channels | undefined;
  let sup: ParentChannel | undefined;
  const events: ChannelEvent[] = [];
  const name = `ln${process.pid}`;
  const lender = `/${name}/lender`;
  const fifo = join(dir, 'go');

  /** Resolves once `path`'s reserved cpu is `cores` in the capability tree (after a grant change). */
  const cpuBecomes = (path: string, cores: number, ms = 20_000) =>
    new Promise<void>((resolve, reject) => {
      if (grantOf(tree!.caps, path)?.cpu.reserved === cores) return resolve();
      const timer = setTimeout(
        () => reject(new Error(`${path} cpu is ${grantOf(tree!.caps, path)?.cpu.reserved}, not ${cores}`)),
        ms,
      );
      const off = channels!.subscribe((e) => {
        if (e.type === 'grant_changed' && grantOf(tree!.caps, path)?.cpu.reserved === cores) {
          clearTimeout(timer);
          off();
          resolve();
        }
      });
    });

  before(async (t) => {
    if (process.getuid?.() !== 0) return skipOrFail(t as never, 'needs root for cgroups');
    execFileSync('mkfifo', [fifo]);
    const parsed = parseManifest(
      `
name: ${name}
requires: { cpu: 1.0, memory: 512Mi, pids: 128 }
children:
  - name: sup
    command: [sleep, infinity]
    supervisor: true
    requires: { cpu: 0.3 }
  - name: lender
    priority: low
    command: [sh, -c, 'read x < ${fifo}; exec python3 -c "while True: pass"']
    requires: { cpu: 0.5 }
`,
      join(dir, 'captree.yaml'),
      { baseDir: dir },
    );
    assert.ok(parsed.ok, parsed.ok ? '' : JSON.stringify(parsed.errors));
    tree = await buildTree(parsed.tree, { stateDir: join(dir, 'state'), source: parsed.source });
    channels = await Channels.open(tree, { sampleMs: 200, onEvent: (e) => events.push(e) });
    await tree.supervisor.start();
    const supPath = `/${name}/sup`;
    sup = new ParentChannel(
      channelPath(tree.runtime.stateDir, supPath),
      { cpu: 0.3, memory: null, pids: null },
      channelToken(tree.runtime.stateDir, supPath),
    );
    await sup.connected;
  });

  after(async () => {
    sup?.close?.();
    await channels?.close();
    if (tree) {
      await tree.supervisor.stop().catch(() => {});
      await tree.runtime.close();
    }
  });

  /** The supervisor asks for +0.6 cores: 0.2 of slack and 0.4 from the idle lender. */
  const borrow = async () => {
    const g = await sup!.request({ cpu: 0.6 });
    assert.equal(g.cpu, 0.9);
    assert.equal(grantOf(tree!.caps, lender)?.cpu.reserved, 0.1);
    const q = quota(tree!, lender);
    if (q !== null) assert.equal(q, 10_000);
  };

  it('a restart starts the lender from its declared grant; the borrower gives it back', async (t) => {
    if (!tree || !channels) return skipOrFail(t, 'needs root for cgroups');
    // The lender is measured by the request itself (a sampling window when no sample is old enough).
    await borrow();
    const back = cpuBecomes(lender, 0.5);
    await tree.supervisor.restartChild('lender');
    await back;
    assert.equal(grantOf(tree.caps, `/${name}/sup`)?.cpu.reserved, 0.5);
    const q = quota(tree, lender);
    if (q !== null) assert.equal(q, 50_000);
    assert.ok(events.some((e) => e.type === 'grant_changed' && e.path === lender && e.cause === 'return'));
  });

  it('a lender busy at its lowered grant gets its budget back, tick by tick, under the fairness policy', async (t) => {
    if (!tree || !channels) return skipOrFail(t, 'needs root for cgroups');
    // Give the slack back first so the borrow is the same as before.
    await sup!.release({ cpu: 0.2 });
    await borrow();
    const back = cpuBecomes(lender, 0.5);
    writeFileSync(fifo, 'go\n');
    await back;
    const q = quota(tree, lender);
    if (q !== null) assert.equal(q, 50_000);
    // The borrower was lowered (reclaimed) to make room, and told so.
    assert.ok((grantOf(tree.caps, `/${name}/sup`)?.cpu.reserved ?? 1) <= 0.5);
    const returns = events.filter(
      (e) => e.type === 'grant_changed' && e.path === lender && e.cause === 'return',
    );
    assert.ok(returns.length >= 2, `returned in steps: ${returns.length}`);
  });
});
