/**
 * Renegotiation round trip: a supervisor child's `request` written on its channel → the `grant`
 * line read back, with the capability tree updated and the cgroup files rewritten in between;
 * p50/p99 over N requests, beside the raw cost of the same cgroup writes alone.
 * Run (root, cgroups): node_modules/.bin/node bench/renegotiate.ts [requests=500]
 *
 * Tree: root 1 core; `a` and `c` (supervisor: true) 0.4 core each, `b` 0.2 core (priority high,
 * so it gives back last), all idle `sleep`s: the parent has no slack. The bench plays `a` and `c`
 * on their channels (answering a `reclaim` with `release` at once, as the child library lets a
 * supervisor do):
 * - plain donor: `a` asks +0.05 core while `c` has no channel connected: each request measures the
 *   siblings (cgroup usage reads), runs the fairness policy, lowers `c` and raises `a` (two cpu
 *   quota writes, in v1 order). Between requests `c` takes it back in-process (not timed).
 * - supervisor donor: `a` and `c` both connected, taking turns: the donor is first sent `reclaim`
 *   and the writes wait for its `release` (one more channel round trip).
 * - slack: `a` gives 0.05 back, then asks for it again; only the requests are timed (one write).
 * Raw: the same quota writes through `CgroupGroup.setLimits` (lower one group, raise another; or
 * raise one), timed alone.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { buildTree } from '../src/daemon/build-tree.ts';
import { Channels, channelPath } from '../src/daemon/channel.ts';
import { parseManifest } from '../src/manifest/index.ts';

const n = Number(process.argv[2] ?? 500);
const dir = mkdtempSync(join(tmpdir(), 'captree-bench-rn-'));
const name = `bench-rn${process.pid}`;
const parsed = parseManifest(
  `
name: ${name}
requires: { cpu: 1.0, memory: 1Gi, pids: 512 }
children:
  - { name: a, command: [sleep, infinity], supervisor: true, requires: { cpu: 0.4 } }
  - { name: b, command: [sleep, infinity], priority: high, requires: { cpu: 0.2 } }
  - { name: c, command: [sleep, infinity], supervisor: true, requires: { cpu: 0.4 } }
`,
  join(dir, 'captree.yaml'),
  { baseDir: dir },
);
if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
const tree = await buildTree(parsed.tree, { stateDir: join(dir, 'state'), source: parsed.source });
const channels = await Channels.open(tree);

/** A client playing a child on its channel: one request at a time, timed to its reply. */
class Client {
  readonly #sock: Socket;
  #buf = '';
  #waiting: { id: unknown; resolve: (line: Record<string, unknown>) => void } | null = null;
  constructor(path: string) {
    this.#sock = connect(channelPath(tree.runtime.stateDir, path));
    this.#sock.setNoDelay(true);
    this.#sock.setEncoding('utf8');
    this.#sock.on('data', (d: string) => {
      this.#buf += d;
      for (let nl = this.#buf.indexOf('\n'); nl >= 0; nl = this.#buf.indexOf('\n')) {
        const line = JSON.parse(this.#buf.slice(0, nl)) as Record<string, unknown>;
        this.#buf = this.#buf.slice(nl + 1);
        // A reclaim is acknowledged at once; grants without an id (announcements) are ignored.
        if (line.type === 'reclaim')
          this.#sock.write(`${JSON.stringify({ v: 1, type: 'release', cpu: line.cpu })}\n`);
        const w = this.#waiting;
        if (w && line.id === w.id) {
          this.#waiting = null;
          w.resolve(line);
        }
      }
    });
  }
  ask(message: Record<string, unknown>): Promise<{ ms: number; reply: Record<string, unknown> }> {
    return new Promise((resolve) => {
      const t0 = performance.now();
      this.#waiting = { id: message.id, resolve: (reply) => resolve({ ms: performance.now() - t0, reply }) };
      this.#sock.write(`${JSON.stringify({ v: 1, ...message })}\n`);
    });
  }
  close(): void {
    this.#sock.destroy();
  }
}

function stats(xs: number[]): { p50: number; p99: number; mean: number } {
  const s = [...xs].sort((x, y) => x - y);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
  return { p50: at(0.5), p99: at(0.99), mean: xs.reduce((a, b) => a + b, 0) / xs.length };
}

const fmt = (ms: number) => `${(ms * 1000).toFixed(0).padStart(6)} µs`;

try {
  await tree.supervisor.start();
  // Two usage samples (1 s apart) so requests find a reference sample and never wait to measure.
  await delay(1300);
  const a = new Client(`/${name}/a`);
  await a.ask({ type: 'hello' });
  const plain: number[] = [];
  for (let i = 0; i < n + 20; i++) {
    const { ms, reply } = await a.ask({ type: 'request', id: `p${i}`, cpu: 0.05 });
    if (reply.type !== 'grant') throw new Error(`request ${i} denied: ${JSON.stringify(reply)}`);
    const back = await channels.renegotiator.request(`/${name}/c`, { cpu: 0.05 });
    if (!back.ok) throw new Error(`c could not take it back: ${back.reasons}`);
    if (i >= 20) plain.push(ms);
  }
  const c = new Client(`/${name}/c`);
  await c.ask({ type: 'hello' });
  const reclaim: number[] = [];
  for (let i = 0; i < n + 20; i++) {
    const { ms, reply } = await (i % 2 === 0 ? a : c).ask({ type: 'request', id: `r${i}`, cpu: 0.05 });
    if (reply.type !== 'grant') throw new Error(`reclaim request ${i} denied: ${JSON.stringify(reply)}`);
    if (i >= 20) reclaim.push(ms);
  }
  // Back to a slack of 0.05 for the slack mode: `a` gives some back first.
  const slack: number[] = [];
  for (let i = 0; i < n + 20; i++) {
    const { reply } = await a.ask({ type: 'release', id: `s${i}`, cpu: 0.05 });
    if (reply.type !== 'grant') throw new Error(`release ${i} denied: ${JSON.stringify(reply)}`);
    const { ms, reply: r } = await a.ask({ type: 'request', id: `q${i}`, cpu: 0.05 });
    if (r.type !== 'grant') throw new Error(`slack request ${i} denied: ${JSON.stringify(r)}`);
    if (i >= 20) slack.push(ms);
  }
  a.close();
  c.close();

  // Raw: the same writes, alone.
  const ga = tree.runtime.groupFor(`/${name}/a`);
  const gc = tree.runtime.groupFor(`/${name}/c`);
  ga.setLimits({ cpu: 0.3 });
  gc.setLimits({ cpu: 0.2 });
  const rawPair: number[] = [];
  const rawOne: number[] = [];
  for (let i = 0; i < n + 20; i++) {
    const up = i % 2 === 0;
    const t0 = performance.now();
    // Lower one group, raise the other (v1 order), as a reclaim does.
    if (up) {
      gc.setLimits({ cpu: 0.15 });
      ga.setLimits({ cpu: 0.35 });
    } else {
      ga.setLimits({ cpu: 0.3 });
      gc.setLimits({ cpu: 0.2 });
    }
    const t1 = performance.now();
    ga.setLimits({ cpu: up ? 0.3 : 0.35 });
    const t2 = performance.now();
    if (i >= 20) {
      rawPair.push(t1 - t0);
      rawOne.push(t2 - t1);
    }
  }

  const rows: [string, number[], number[]][] = [
    ['reclaim, plain donor', plain, rawPair],
    ['reclaim, supervisor donor', reclaim, rawPair],
    ['from the parent\u2019s slack', slack, rawOne],
  ];
  console.log(
    `renegotiation round trip, ${n} requests each (request written → grant read; cgroup rewritten)`,
  );
  console.log(
    `${'path'.padEnd(30)} ${'p50'.padStart(9)} ${'p99'.padStart(9)}   raw writes p50 / p99    ratio p50`,
  );
  for (const [label, xs, raw] of rows) {
    const s = stats(xs);
    const r = stats(raw);
    console.log(
      `${label.padEnd(30)} ${fmt(s.p50)} ${fmt(s.p99)}   ${fmt(r.p50)} / ${fmt(r.p99)}   ${(s.p50 / r.p50).toFixed(1)}×`,
    );
  }
} finally {
  await channels.close();
  await tree.supervisor.stop().catch(() => {});
  await tree.runtime.close();
  rmSync(dir, { recursive: true, force: true });
}
