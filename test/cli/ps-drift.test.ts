/**
 * A limit rewritten behind captree's back shows in `ps`: the demo's worker is granted 0.1 cores;
 * the host (an operator, a script) writes its quota to -1; `ps` warns with what the grant says,
 * what the cgroup holds and the fix, `ps --json` carries the drift, and `restart` restores it.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { skipOrFail } from '../support/host.ts';
import { captree, cgroupsNamed, demoCopy, eventually, killAll, psJson } from './helpers.ts';

describe('ps shows limit drift', () => {
  let dir: string;
  let name: string;
  let daemonPid: number | undefined;
  before(async () => {
    ({ dir, name } = await demoCopy());
    const r = await captree(['up', '-d'], dir);
    assert.equal(r.code, 0, r.stderr);
    daemonPid = Number(/daemon pid (\d+)/.exec(r.stdout)?.[1]);
  });
  after(async () => {
    await captree(['down'], dir);
    killAll([daemonPid]);
    rmSync(dir, { recursive: true, force: true });
  });

  test('a quota lifted from the host is reported, in words and in --json, and restart restores it', async (t) => {
    const root = cgroupsNamed(name).find(
      (d) => /\/cpu(,cpuacct)?\//.test(d) && existsSync(join(d, 'cpu.cfs_quota_us')),
    );
    if (!root) return skipOrFail(t, 'no v1 cpu controller here (cgroup v2 cpu.max is read by the same code)');
    const quota = join(root, 'worker', 'cpu.cfs_quota_us');
    assert.equal(readFileSync(quota, 'utf8').trim(), '10000');
    writeFileSync(quota, '-1');
    const ps = await captree(['ps'], dir);
    assert.equal(ps.code, 0, ps.stderr);
    assert.match(
      ps.stderr,
      new RegExp(
        `limit drift: /${name}/worker is granted cpu 0\\.1 cores, its cgroup holds unlimited \\(restore it: captree restart /${name}/worker\\)`,
      ),
    );
    const worker = (await psJson(dir)).find((e) => e.path === `/${name}/worker`) as
      | { drift?: unknown }
      | undefined;
    assert.deepEqual(worker?.drift, [{ quantity: 'cpu', granted: 0.1, enforced: null }]);
    assert.equal((await captree(['restart', 'worker'], dir)).code, 0);
    await eventually(
      () => (readFileSync(quota, 'utf8').trim() === '10000' ? true : undefined),
      'the quota restored',
    );
    assert.doesNotMatch((await captree(['ps'], dir)).stderr, /limit drift/);
  });
});
