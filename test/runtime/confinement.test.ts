/**
 * Confinement of a child against its siblings and the tree itself, on the real kernel: a secret
 * holder and a confined sibling (`net: none`) are built from a manifest and started; the sibling
 * (fixtures/confinement/sibling.mjs) tries, from inside its confinement, what it was not granted:
 * the holder's secret through /proc/<pid>/root, the state directory's control and launcher
 * sockets, its own and its node's cgroup limits. A confined server shows that what it was granted
 * still works: its passed listening socket (LISTEN_FDS, LISTEN_PID), notify-fd readiness, and a
 * graceful SIGTERM.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { RunningTree } from '../../src/daemon/build-tree.ts';
import { isRoot, skipOrFail, uniqueName } from '../support/host.ts';
import { freePort, httpGet } from '../support/net.ts';
import { parentOf } from '../support/proc.ts';
import { buildManifest, Recorder } from '../support/tree.ts';

const NODE = process.execPath;
const FIXTURES = fileURLToPath(new URL('./fixtures/confinement/', import.meta.url));
const SECRET = `s3cr3t-${Math.random().toString(36).slice(2)}`;

interface Probe {
  op: string;
  target?: string;
  ok?: boolean;
  code?: string;
  value?: unknown;
}

/** Children of `pid` (all its threads' children), from /proc. */
function childrenOf(pid: number): number[] {
  return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
    .trim()
    .split(/\s+/)
    .filter(Boolean)
    .map(Number);
}

describe('a confined child cannot reach its siblings or the tree', () => {
  let tree: RunningTree | null = null;
  let dir = '';
  let stateDir = '';
  let root = '';
  let port = 0;
  let control: Server | null = null;
  const rec = new Recorder();
  const { exits } = rec;
  const probes = (path: string): Probe[] => rec.probes<Probe>(path);
  const pidOf = (path: string): number => {
    const at = tree!.supervisor.locate(path);
    const pid = at ? at.supervisor.child(at.id)?.pid : null;
    if (typeof pid !== 'number') throw new Error(`${path} has no pid`);
    return pid;
  };
  async function until<T>(what: string, f: () => T | undefined, ms = 15_000): Promise<T> {
    const end = Date.now() + ms;
    for (;;) {
      const v = f();
      if (v !== undefined) return v;
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  before(async () => {
    if (!isRoot) return;
    dir = mkdtempSync(join(tmpdir(), 'captree-conf-'));
    chmodSync(dir, 0o755);
    root = uniqueName('conf').replace('captree-test-', 'ct-');
    stateDir = join(dir, '.captree');
    port = await freePort();
    const file = join(dir, 'captree.yaml');
    const yaml = [
      `name: ${root}`,
      'children:',
      '  - name: holder',
      '    command: [sleep, infinity]',
      '    requires: { secrets: [TOKEN] }',
      '  - name: sibling',
      `    command: ${JSON.stringify([NODE, join(FIXTURES, 'sibling.mjs'), join(dir, 'go.json'), stateDir])}`,
      '    shutdown: 10s',
      '    requires: { cpu: 0.2, net: none }',
      '  - name: server',
      `    command: ${JSON.stringify([NODE, join(FIXTURES, 'server.mjs')])}`,
      '    ready: { notify: { fd: 4 }, timeout: 10s }',
      `    requires: { net: none, listen: { http: 127.0.0.1:${port} } }`,
      '',
    ].join('\n');
    writeFileSync(file, yaml);
    const secrets = join(dir, 'secrets');
    mkdirSync(secrets);
    writeFileSync(join(secrets, 'TOKEN'), SECRET);
    tree = await buildManifest(dir, yaml, stateDir);
    // What the daemon would listen on: the tree's control socket.
    control = createServer((s) => s.destroy());
    await new Promise<void>((resolve) => control!.listen(join(stateDir, 'control.sock'), resolve));
    rec.attach(tree);
    await tree.supervisor.start();
  });

  after(async () => {
    if (tree) {
      await tree.supervisor.stop().catch(() => {});
      await tree.runtime.close();
    }
    if (control) await new Promise<void>((resolve) => control!.close(() => resolve()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('sees only its own processes and cannot read a sibling’s secret through /proc/PID/root', async (t) => {
    if (!isRoot) return skipOrFail(t, 'needs root (cgroups, namespaces)');
    const holder = `/${root}/holder`;
    const sibling = `/${root}/sibling`;
    const secret = join(stateDir, 'credentials', `${root}.holder`, 'TOKEN');
    // The holder's program (its reported pid), the init of its PID namespace and the outer process, as the host sees them.
    const program = pidOf(holder);
    const init = parentOf(program) as number;
    const outer = parentOf(init) as number;
    assert.deepEqual(childrenOf(outer), [init]);
    // The path is real: from the host (a process in the initial namespaces) it leads to the secret.
    assert.equal(readFileSync(`/proc/${program}/root${secret}`, 'utf8'), SECRET);
    writeFileSync(join(dir, 'go.json'), JSON.stringify({ pids: [outer, init, program], secret }));
    await until('the sibling’s probes', () =>
      probes(sibling).some((p) => p.op === 'done') ? true : undefined,
    );
    const all = probes(sibling);
    t.diagnostic(JSON.stringify(all.filter((p) => p.op === 'ls' || p.op === 'self')));
    const self = all.find((p) => p.op === 'self');
    assert.equal(self?.value, 2, 'the program is pid 2 of its own PID namespace');
    const procs = all.find((p) => p.op === 'ls' && p.target === '/proc');
    assert.ok(procs?.ok);
    const visible = procs.value as number[];
    assert.ok(visible.length <= 3 && visible.every((p) => p <= 3), `ls /proc shows ${visible.join(' ')}`);
    const reads = all.filter((p) => p.op === 'read');
    assert.ok(reads.length >= 4);
    for (const r of reads) {
      assert.equal(r.ok, false, `${r.target} was readable: ${String(r.value)}`);
      assert.ok(r.code === 'ENOENT' || r.code === 'EACCES', `${r.target}: ${r.code}`);
    }
  });

  it('sees an empty, read-only state directory: no control or launcher socket to connect to', async (t) => {
    if (!isRoot) return skipOrFail(t, 'needs root (cgroups, namespaces)');
    const all = probes(`/${root}/sibling`);
    const ls = all.find((p) => p.op === 'ls' && p.target === stateDir);
    assert.deepEqual({ ok: ls?.ok, value: ls?.value }, { ok: true, value: [] });
    const write = all.find((p) => p.op === 'write' && p.target === `${stateDir}/x`);
    assert.deepEqual({ ok: write?.ok, code: write?.code }, { ok: false, code: 'EROFS' });
    for (const sock of ['control.sock', 'launcher.sock']) {
      const c = all.find((p) => p.op === 'connect' && p.target === join(stateDir, sock));
      assert.deepEqual({ ok: c?.ok, code: c?.code }, { ok: false, code: 'ENOENT' }, sock);
    }
  });

  it('cannot rewrite its own or its node’s cgroup limits (EROFS)', async (t) => {
    if (!isRoot) return skipOrFail(t, 'needs root (cgroups, namespaces)');
    const writes = probes(`/${root}/sibling`).filter(
      (p) => p.op === 'write' && p.target?.endsWith('cpu.cfs_quota_us'),
    );
    assert.equal(writes.length, 2, JSON.stringify(writes));
    for (const w of writes)
      assert.deepEqual({ ok: w.ok, code: w.code }, { ok: false, code: 'EROFS' }, w.target);
    // And the limit is what the grant says.
    const group = tree!.runtime.groupFor(`/${root}/sibling`);
    const cpuDir = group.dirs.find((d) => d.includes('/cpu/') || d.includes('/cpu,'));
    if (cpuDir) assert.equal(readFileSync(join(cpuDir, 'cpu.cfs_quota_us'), 'utf8').trim(), '20000');
  });

  it('serves its passed socket (LISTEN_FDS, LISTEN_PID inside its namespace) after notify-fd readiness', async (t) => {
    if (!isRoot) return skipOrFail(t, 'needs root (cgroups, namespaces)');
    const at = tree!.supervisor.locate(`/${root}/server`)!;
    assert.equal(at.supervisor.child(at.id)?.state, 'ready');
    const body = JSON.parse(await httpGet(port, { agent: false })) as Record<string, unknown>;
    assert.deepEqual(body, { pid: 2, LISTEN_PID: '2', LISTEN_FDS: '1', LISTEN_FDNAMES: 'http' });
  });

  it('stops gracefully on SIGTERM: the program sees it and exits 0 (shutdown, not killed)', async (t) => {
    if (!isRoot) return skipOrFail(t, 'needs root (cgroups, namespaces)');
    const path = `/${root}/sibling`;
    const at = tree!.supervisor.locate(path)!;
    const t0 = performance.now();
    await at.supervisor.stopChild(at.id);
    const ms = performance.now() - t0;
    const exit = await until('the sibling’s exit', () => exits.get(path));
    t.diagnostic(`stop took ${ms.toFixed(0)} ms`);
    assert.equal(exit.type === 'exited' ? exit.reason.kind : null, 'shutdown', JSON.stringify(exit));
    assert.ok(ms < 5000, `stop took ${ms} ms (deadline 10 s)`);
    assert.ok(
      probes(path).some((p) => p.op === 'term'),
      'the program did not see SIGTERM',
    );
  });
});
