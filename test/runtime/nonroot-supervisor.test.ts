/**
 * An application supervisor that runs as another user (`user: daemon`) starts: it finds the
 * launcher the daemon built (CAPTREE_CACHE_DIR, not the daemon's ~/.cache it cannot reach), its
 * children's logs directory is its own even when a state dir reused from a root run left root's
 * files in it, and its child runs inside its delegated cgroup. Checked from the host: the
 * supervisor's uid, the child's cgroup, the log file's owner and content.
 */
import assert from 'node:assert/strict';
import {
  chmodSync,
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Daemon } from '../../src/daemon/index.ts';
import { cgroupsNamed } from '../cli/helpers.ts';
import { daemonOn } from '../support/daemon.ts';
import { reachableNode } from '../support/reachable.ts';

const repo = join(import.meta.dirname, '..', '..');
const fixture = join(import.meta.dirname, 'fixtures', 'child', 'nonroot-sup.ts');

async function until<T>(what: string, probe: () => T | undefined, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('a supervisor child that is not root', () => {
  // Everything the child runs from, where `daemon` can read it (a clone may sit under a 0700 home).
  const dir = mkdtempSync(join(tmpdir(), 'captree-nonroot-sup-'));
  const name = `nr${process.pid}${Math.random().toString(36).slice(2, 6)}`;
  const daemonUid = Number(/^daemon:[^:]*:(\d+):/m.exec(readFileSync('/etc/passwd', 'utf8'))?.[1]);
  const childLogs = join(dir, '.captree', 'logs', `${name}.sup.children`);
  const stale = join(childLogs, 'left-by-root.log');
  let daemon: Daemon;

  before(async () => {
    chmodSync(dir, 0o755);
    cpSync(join(repo, 'src'), join(dir, 'src'), { recursive: true });
    cpSync(join(repo, 'native'), join(dir, 'native'), { recursive: true });
    mkdirSync(join(dir, 'test/runtime/fixtures/child'), { recursive: true });
    cpSync(fixture, join(dir, 'test/runtime/fixtures/child/nonroot-sup.ts'));
    // A state dir reused from a run as root: root's files in the children's logs directory.
    mkdirSync(childLogs, { recursive: true, mode: 0o700 });
    writeFileSync(stale, 'from before\n', { mode: 0o600 });
    chmodSync(join(dir, '.captree'), 0o700);
    daemon = await daemonOn(
      dir,
      `name: ${name}
requires: { cpu: 1.0, memory: 512Mi, pids: 128 }
children:
  - name: sup
    command: [${reachableNode()}, test/runtime/fixtures/child/nonroot-sup.ts]
    user: daemon
    supervisor: true
    ready: { log: sup-ready, timeout: 30s }
    requires: { cpu: 0.5, memory: 256Mi, pids: 64 }
`,
    );
  });

  after(async () => {
    await daemon?.stop();
    await daemon?.finished;
    if (!process.env.KEEP) rmSync(dir, { recursive: true, force: true });
  });

  test('starts, runs its child in its own cgroup, and owns its children’s logs', async () => {
    const supPid = daemon.tree.supervisor.child('sup')?.pid as number;
    assert.ok(supPid > 0);
    const workerLog = await until('the worker’s log line', () => {
      try {
        const text = readFileSync(join(childLogs, `${name}.sup.worker.log`), 'utf8');
        return text.includes('worker-up') ? text : undefined;
      } catch {
        return undefined;
      }
    });
    assert.match(workerLog, /worker-up/);
    assert.equal(statSync(stale).uid, daemonUid, 'root’s leftover is the supervisor’s now');
    // From the host: the supervisor runs as daemon, and its worker (`sleep infinity`) in a cgroup below sup's.
    // Its status line (sent before it said ready) reaches the journal on its own time.
    const m = await until(
      'the supervisor’s status in the journal',
      () =>
        /worker pid \d+ uid (\d+)/.exec(readFileSync(join(dir, '.captree', 'journal.jsonl'), 'utf8')) ??
        undefined,
    );
    assert.equal(Number(m[1]), daemonUid);
    const pidsRoot = cgroupsNamed(name).find((d) => d.startsWith('/sys/fs/cgroup/pids/'));
    assert.ok(pidsRoot);
    const supGroup = join(pidsRoot, 'sup');
    const below = (d: string): string[] =>
      readdirSync(d, { withFileTypes: true }).flatMap((e) =>
        e.isDirectory() ? [join(d, e.name), ...below(join(d, e.name))] : [],
      );
    const sleeper = below(supGroup)
      .flatMap((g) =>
        readFileSync(join(g, 'cgroup.procs'), 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((pid) => ({ g, pid })),
      )
      .find(({ pid }) => {
        try {
          return readFileSync(`/proc/${pid}/cmdline`, 'utf8') === 'sleep\0infinity\0';
        } catch {
          return false;
        }
      });
    assert.ok(sleeper, 'the worker runs in a cgroup below the supervisor’s');
    assert.notEqual(sleeper.g, supGroup);
  });
});
