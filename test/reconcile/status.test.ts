/**
 * `captree status` and `captree reconcile` through the real bin on a real tree: nominal after a
 * clean `up`; then each drift kind made for real and seen with its recommendation, its command
 * and its blast radius: a permanent failure (exit code 3), a crash inside the intensity window
 * (kill -9), a cgroup limit rewritten behind captree's back (and `apply` writing it back), a
 * manifest edited but not applied, a child added whose program does not exist (missing). The
 * daemon journals `reconcile_*` events as the drift appears; `captree reconcile` over the saved
 * snapshot gives the same decision, byte for byte.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { psJson } from '../cli/helpers.ts';
import { journalOf, type LiveTree, liveTree, until } from './support.ts';

const yaml = (extra = '') => `
name: @NAME@
intensity: 5
period: 10m
requires: { cpu: 1, memory: 512Mi, pids: 128 }
children:
  - name: steady
    command: [sleep, '1000']
    requires: { cpu: 0.1, memory: 64Mi }
  - name: quitter
    command: [sh, -c, 'sleep 0.3; exit 3']
    permanentExitCodes: [3]
    requires: { cpu: 0.1, memory: 32Mi }
${extra}`;

interface Report {
  generation: number;
  summary: string;
  drift: { path: string; kind: string; message: string }[];
  recommendations: {
    type: string;
    path: string;
    drift: string;
    action: string;
    command: string;
    blastRadius: string[];
  }[];
}

describe('status: drift and recommendations', () => {
  let t: LiveTree;
  let root: string;
  const status = async (): Promise<Report> => {
    const r = await t.run(['status', '--json']);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as Report;
  };
  before(async () => {
    t = await liveTree('status', yaml());
    root = `/${t.name}`;
  });
  after(async () => {
    await t?.down();
  });

  it('a permanent failure: failed, unstable, reconcile_required restart journalled', async () => {
    await until(
      'quitter to fail',
      async () => (await psJson(t.dir)).find((e) => e.path === `${root}/quitter`)?.state === 'failed',
    );
    const r = await status();
    assert.equal(r.summary, 'unstable');
    assert.deepEqual(
      r.drift.map((d) => [d.path, d.kind]),
      [[`${root}/quitter`, 'failed']],
    );
    assert.deepEqual(
      r.recommendations.map((x) => [x.type, x.action, x.command, x.blastRadius]),
      [['reconcile_required', 'restart', `captree start ${root}/quitter`, [`${root}/quitter`]]],
    );
    const journalled = await until('the reconcile_required event', async () =>
      journalOf(t.dir, 'reconcile_required').find((e) => e.path === `${root}/quitter`),
    );
    assert.equal(journalled.command, `captree start ${root}/quitter`);
    assert.match(String(journalled.message), /permanent failure/);
    const human = await t.run(['status']);
    assert.match(human.stdout, /unstable/);
    assert.match(
      human.stdout,
      new RegExp(`required +${root}/quitter +restart: captree start ${root}/quitter`),
    );
  });

  it('a crash inside the intensity window: an incident on the node, diagnostics recommended', async () => {
    const before = (await t.pids())[`${root}/steady`] as number;
    process.kill(before, 'SIGKILL');
    await until('steady restarted', async () => {
      const e = (await psJson(t.dir)).find((x) => x.path === `${root}/steady`);
      return e?.pid && e.pid !== before && e.state === 'running';
    });
    const r = await status();
    const incident = r.recommendations.find((x) => x.path === root && x.drift === 'incident');
    assert.equal(incident?.type, 'reconcile_recommended');
    assert.equal(incident?.command, `captree events --path ${root} --since 600s`);
    assert.match(r.drift.find((d) => d.path === root)?.message ?? '', /^1 of 5 restarts used/);
  });

  it('a limit rewritten behind captree: limit drift, and apply writes the grant back, live', async () => {
    const file = t.cgroupPath(`${root}/steady`, 'memory.limit_in_bytes')
      ? 'memory.limit_in_bytes'
      : 'memory.max';
    const at = t.cgroupPath(`${root}/steady`, file);
    assert.ok(at, 'the memory group of steady');
    writeFileSync(at, String(48 * 2 ** 20));
    const r = await status();
    const d = r.drift.find((x) => x.kind === 'limit');
    assert.equal(d?.path, `${root}/steady`);
    assert.match(d?.message ?? '', /memory limit reads 50331648 bytes, granted 67108864 bytes/);
    const rec = r.recommendations.find((x) => x.drift === 'limit');
    assert.deepEqual(
      [rec?.type, rec?.command, rec?.blastRadius],
      ['reconcile_required', 'captree apply captree.yaml', []],
    );
    const pid = (await t.pids())[`${root}/steady`];
    const apply = await t.run(['apply', '--yes']);
    assert.equal(apply.code, 0, apply.stderr + apply.stdout);
    assert.match(apply.stdout, /limits +\/\S+\/steady rewritten/);
    assert.equal(t.cgroupFile(`${root}/steady`, file), String(64 * 2 ** 20));
    assert.equal((await t.pids())[`${root}/steady`], pid, 'nothing restarted');
    assert.equal(
      (await status()).drift.some((x) => x.kind === 'limit'),
      false,
    );
  });

  it('the manifest edited, not applied: pending, apply recommended with the plan restarts', async () => {
    t.write(yaml().replace("[sleep, '1000']", "[sleep, '1001']"));
    const r = await status();
    assert.deepEqual(
      r.drift.filter((d) => d.kind === 'pending').map((d) => d.path),
      [`${root}/steady`],
    );
    const rec = r.recommendations.find((x) => x.drift === 'pending');
    assert.deepEqual(
      [rec?.type, rec?.command, rec?.blastRadius],
      ['reconcile_recommended', 'captree apply captree.yaml', [`${root}/steady`]],
    );
    t.write(yaml());
  });

  it('a child whose program does not exist, added by apply: missing, start recommended', async () => {
    t.write(yaml(`  - name: ghost\n    command: [/nonexistent/ghost]\n`));
    const apply = await t.run(['apply', '--yes', '--json']);
    assert.equal(apply.code, 1, 'different from the plan: ghost did not start');
    assert.match(JSON.parse(apply.stdout).differences.join('\n'), /add \/\S+\/ghost\) failed/);
    const r = await status();
    const d = r.drift.find((x) => x.path === `${root}/ghost`);
    assert.equal(d?.kind, 'missing');
    assert.equal(
      r.recommendations.find((x) => x.path === `${root}/ghost`)?.command,
      `captree start ${root}/ghost`,
    );
  });

  it('captree reconcile over the saved snapshot: the same decision, byte for byte', async () => {
    const saved = await t.run(['status', '--json']);
    writeFileSync(join(t.dir, 'snapshot.json'), saved.stdout);
    const args = ['reconcile', '--desired', 'captree.yaml', '--actual', 'snapshot.json', '--json'];
    const one = await t.run(args);
    const two = await t.run(args);
    assert.equal(one.code, 2, one.stderr);
    assert.equal(one.stdout, two.stdout);
    const out = JSON.parse(one.stdout) as { status: Report; plan: { fits: boolean } };
    const live = JSON.parse(saved.stdout) as Report;
    assert.deepEqual(out.status.recommendations, live.recommendations);
    assert.deepEqual(out.status.drift, live.drift);
    assert.equal(out.plan.fits, true);
  });
});
