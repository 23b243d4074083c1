/**
 * A full disk under the state directory (a 5 MiB tmpfs) never ends supervision: a child that
 * logs fast has its records dropped with an event (`log_dropping`), the journal degrades to
 * memory and `GET /v1/daemon` says so, and both resume once space returns (`log_resumed`, with
 * the count dropped). The journal's `seq` goes on across daemons.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type Daemon, Journal, type JournalRecord, startDaemon } from '../../src/daemon/index.ts';
import { loadManifest } from '../../src/manifest/index.ts';

describe('a full disk under the state directory', () => {
  const dir = mkdtempSync(join(tmpdir(), 'captree-fulldisk-'));
  const state = join(dir, 'state');
  const name = `fd${process.pid}${Math.random().toString(36).slice(2, 6)}`;
  let mounted = false;
  let daemon: Daemon | undefined;
  const records: JournalRecord[] = [];
  const waiters: { test: (r: JournalRecord) => boolean; resolve: (r: JournalRecord) => void }[] = [];
  const next = (test: (r: JournalRecord) => boolean) =>
    new Promise<JournalRecord>((resolve) => {
      const seen = records.find(test);
      if (seen) resolve(seen);
      else waiters.push({ test, resolve });
    });

  before(() => {
    execFileSync('mkdir', ['-p', state]);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=5m,mode=0700', 'tmpfs', state]);
    mounted = true;
  });

  after(async () => {
    await daemon?.stop();
    await daemon?.finished;
    if (mounted) execFileSync('umount', [state]);
    rmSync(dir, { recursive: true, force: true });
  });

  test('the journal survives ENOSPC, says so, resumes, and keeps seq monotonic', () => {
    const file = join(state, 'j-test.jsonl');
    const j = new Journal(file);
    const first = j.append({ type: 'starting', path: '/x', at: 0 });
    const filler = join(state, 'filler');
    // Fill the filesystem to the last byte.
    try {
      execFileSync('dd', ['if=/dev/zero', `of=${filler}`, 'bs=64k'], { stdio: 'ignore' });
    } catch {
      // dd ends with ENOSPC: that is the point
    }
    const big = 'x'.repeat(8192);
    let degraded = false;
    for (let i = 0; i < 100 && !degraded; i++) {
      j.append({ type: 'orphan_killed', path: '/x', at: i, pid: i, why: big });
      degraded = j.health.degraded;
    }
    assert.ok(degraded, 'the journal noticed the full disk');
    assert.match(j.health.error ?? '', /ENOSPC|no space/i);
    assert.ok(j.health.unwritten > 0);
    assert.ok(j.unwrittenRecords().length > 0, 'what it could not write is kept in memory');
    rmSync(filler);
    const resumed = j.append({ type: 'starting', path: '/x', at: 1 });
    assert.equal(j.health.degraded, false, 'resumed once space returned');
    j.close();
    const again = new Journal(file);
    const later = again.append({ type: 'starting', path: '/x', at: 2 });
    again.close();
    assert.ok(resumed.seq > first.seq);
    assert.equal(later.seq, resumed.seq + 1, 'a new journal goes on from the last seq');
    rmSync(file);
  });

  test('a child that floods its log: records dropped with an event, the daemon lives, both resume', async () => {
    writeFileSync(
      join(dir, 'captree.yaml'),
      `name: ${name}
children:
  - name: flood
    command:
      - sh
      - -c
      - |
        head -c 12000000 /dev/zero | tr '\\0' x | fold -w 200
        while [ ! -e ${join(dir, 'done')} ]; do echo after; sleep 0.05; done
        exec sleep infinity
`,
    );
    const m = await loadManifest(join(dir, 'captree.yaml'));
    assert.ok(m.ok, m.ok ? '' : JSON.stringify(m.errors));
    daemon = await startDaemon({
      manifest: m.tree,
      stateDir: state,
      onEvent: (r) => {
        records.push(r);
        for (const w of [...waiters])
          if (w.test(r)) {
            waiters.splice(waiters.indexOf(w), 1);
            w.resolve(r);
          }
      },
    });
    await daemon.started;
    const dropping = await next((r) => r.type === 'log_dropping');
    assert.equal(dropping.path, `/${name}/flood`);
    assert.match((dropping as { error: string }).error, /ENOSPC|no space/i);
    // Still supervising: the API answers and the child runs.
    assert.equal(daemon.tree.supervisor.children()[0]?.state, 'running');
    const info = daemon.info();
    assert.equal(info.state, 'ready');
    // Space returns: the rotated logs go.
    for (const f of readdirSync(join(state, 'logs'))) rmSync(join(state, 'logs', f));
    const resumed = await next((r) => r.type === 'log_resumed');
    assert.ok((resumed as { dropped: number }).dropped > 0, 'the count of dropped records is told');
    writeFileSync(join(dir, 'done'), '');
    assert.equal(daemon.info().journal.degraded, false, 'the journal writes again');
    assert.ok(existsSync(join(state, 'journal.jsonl')));
  });
});
