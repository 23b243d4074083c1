/**
 * A supervisor child's channel is usable only by that child. The attacker is a process the
 * supervisor child starts (it sees the channel socket, as every descendant does, but was not
 * handed the token): it connects and says hello without the token, with a guessed one, and
 * sends a `release` straight away. From the host: every attempt was denied and closed, the
 * child's grant and its cgroup quota are unchanged, its own connection still answers, and the
 * journal names no grant change.
 */
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Daemon } from '../../src/daemon/index.ts';
import { cgroupsNamed } from '../cli/helpers.ts';
import { daemonOn } from '../support/daemon.ts';

const script = join(import.meta.dirname, 'fixtures', 'channel-owner.py');

describe('a channel answers only the child it was made for', () => {
  const dir = mkdtempSync(join(tmpdir(), 'captree-hijack-'));
  const name = `hj${process.pid}${Math.random().toString(36).slice(2, 6)}`;
  const out = join(dir, 'seen.txt');
  let daemon: Daemon;

  before(async () => {
    chmodSync(dir, 0o755);
    daemon = await daemonOn(
      dir,
      `name: ${name}
requires: { cpu: 1.0, memory: 256Mi, pids: 64 }
children:
  - name: sup
    command: [/usr/bin/python3, ${script}, ${out}]
    supervisor: true
    ready: { log: DONE }
    requires: { cpu: 0.5, memory: 64Mi }
`,
    );
  });

  after(async () => {
    await daemon?.stop();
    await daemon?.finished;
    rmSync(dir, { recursive: true, force: true });
  });

  test('a descendant without the token is denied; the grant, the quota and the owner’s connection are unchanged', () => {
    const seen = readFileSync(out, 'utf8');
    const owner = JSON.parse(/^owner_hello (.*)$/m.exec(seen)?.[1] ?? 'null');
    assert.equal(owner?.type, 'grant', seen);
    assert.equal(owner.cpu, 0.5);
    const attacks = [...seen.matchAll(/^attack (\[.*\])$/gm)].map((m) => JSON.parse(m[1]!) as string[]);
    assert.equal(attacks.length, 3, seen);
    for (const replies of attacks) {
      // One denial, then the connection closed: the release was never read.
      assert.equal(replies.length, 1, JSON.stringify(replies));
      const answer = JSON.parse(replies[0]!);
      assert.equal(answer.type, 'denied');
      assert.equal(answer.re, 'unauthenticated');
    }
    const after = JSON.parse(/^owner_after (.*)$/m.exec(seen)?.[1] ?? 'null');
    assert.equal(after?.type, 'grant', 'the owner’s connection still answers');
    assert.equal(after.cpu, 0.5, 'its grant unchanged');
    // From the host: the quota in cgroupfs, and the journal.
    const cpuRoot = cgroupsNamed(name).find(
      (d) => d.startsWith('/sys/fs/cgroup/cpu/') || d.startsWith('/sys/fs/cgroup/cpu,cpuacct/'),
    );
    assert.ok(cpuRoot);
    const quota = join(cpuRoot, 'sup', 'cpu.cfs_quota_us');
    assert.ok(existsSync(quota));
    assert.equal(readFileSync(quota, 'utf8').trim(), '50000');
    const journal = readFileSync(join(dir, '.captree', 'journal.jsonl'), 'utf8');
    assert.doesNotMatch(journal, /"grant_changed"/);
    assert.doesNotMatch(journal, /"token":"[^(]/, 'no token in the journal');
  });
});
