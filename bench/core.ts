/**
 * Engine benchmarks, printed beside Erlang/OTP measured in the same run when `erl` is installed
 * (`apt-get install erlang-base`), else beside the reference figures from the issue (OTP 25 on a
 * machine of this kind), and beside the design targets. Run: `node --expose-gc bench/core.ts`.
 *
 * What is measured:
 * - restarts/s of a crash-looping in-process child (task rejects right after it starts);
 * - heap bytes per supervised idle child at 10,000 and 100,000 children, for the task driver
 *   (AbortController + pending promise) and for a bare driver (the engine's own overhead);
 * - time to start and to stop 100,000 children;
 * - latency of an escalation: leaf crash → its supervisor gives up → the parent sees the exit;
 * - one supervision decision (restart type + strategy), ns;
 * - the same crash loop and idle cost for `worker()` children (one worker_threads thread each):
 *   restarts/s, and RSS bytes per idle worker (its own isolate and heap, which `heapUsed` of the
 *   supervisor's thread does not see) at 50 workers.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type ChildDriver,
  childrenToStart,
  decideExit,
  node,
  Supervisor,
  siblingsToStop,
  task,
} from '../src/core/index.ts';
import { worker } from '../src/workers/index.ts';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) {
  console.error('run with --expose-gc: node --expose-gc bench/core.ts');
  process.exit(2);
}

const idle = task(({ signal }) => new Promise((resolve) => signal.addEventListener('abort', resolve)));

/** The engine's own cost: a child that holds nothing. */
const bare: ChildDriver = {
  kind: 'task',
  start(_ctx, events) {
    events.ready(false);
    return {
      pid: null,
      stop: () => events.exited({ kind: 'shutdown' }),
      kill: () => events.exited({ kind: 'killed' }),
    };
  },
};

async function restartsPerSecond(ms: number): Promise<number> {
  const crashing = task(() => Promise.reject(new Error('crash')));
  const sup = new Supervisor({
    name: 'bench',
    intensity: 1_000_000_000,
    period: 1000,
    children: [{ id: 'loop', driver: crashing }],
  });
  let restarts = 0;
  sup.subscribe((e) => {
    if (e.type === 'restarting') restarts++;
  });
  await sup.start();
  await new Promise((r) => setTimeout(r, ms));
  await sup.stop();
  return restarts / (ms / 1000);
}

/** Worker modules for the bench, written to a temp dir (removed at exit). */
const workerDir = mkdtempSync(join(tmpdir(), 'captree-bench-workers-'));
process.on('exit', () => rmSync(workerDir, { recursive: true, force: true }));
function workerModule(name: string, source: string): string {
  const file = join(workerDir, `${name}.mjs`);
  writeFileSync(file, source);
  return file;
}

async function workerRestartsPerSecond(ms: number): Promise<number> {
  const crashing = worker(workerModule('crash', "export default () => { throw new Error('crash'); };\n"));
  const sup = new Supervisor({
    name: 'bench',
    intensity: 1_000_000_000,
    period: 1000,
    children: [{ id: 'loop', driver: crashing }],
  });
  let restarts = 0;
  sup.subscribe((e) => {
    if (e.type === 'restarting') restarts++;
  });
  await sup.start();
  await new Promise((r) => setTimeout(r, ms));
  await sup.stop();
  return restarts / (ms / 1000);
}

async function perWorker(n: number): Promise<{ rss: number; heap: number }> {
  const idleWorker = worker(
    workerModule(
      'idle',
      "export default ({ signal }) => new Promise((r) => signal.addEventListener('abort', r));\n",
    ),
  );
  const children = Array.from({ length: n }, (_, i) => ({ id: `w${i}`, driver: idleWorker }));
  gc!();
  const before = process.memoryUsage();
  const sup = new Supervisor({ name: 'bench', strategy: 'one_for_one', children });
  await sup.start();
  gc!();
  const after = process.memoryUsage();
  await sup.stop();
  return { rss: (after.rss - before.rss) / n, heap: (after.heapUsed - before.heapUsed) / n };
}

async function perChild(
  n: number,
  driver: ChildDriver,
): Promise<{ bytes: number; startMs: number; stopMs: number }> {
  const children = Array.from({ length: n }, (_, i) => ({
    id: `c${i}`,
    driver,
    shutdown: 'brutal' as const,
  }));
  gc!();
  const before = process.memoryUsage().heapUsed;
  const sup = new Supervisor({ name: 'bench', strategy: 'one_for_one', children });
  const t0 = performance.now();
  await sup.start();
  const startMs = performance.now() - t0;
  gc!();
  const after = process.memoryUsage().heapUsed;
  const t1 = performance.now();
  await sup.stop();
  const stopMs = performance.now() - t1;
  // Spec objects are the caller's; charge them to the child too (they are per child here).
  return { bytes: (after - before) / n, startMs, stopMs };
}

async function escalationLatencyUs(rounds: number): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < rounds; i++) {
    let crash: () => void = () => {};
    const leaf = task(
      () =>
        new Promise((_, reject) => {
          crash = () => reject(new Error('boom'));
        }),
    );
    const parent = new Supervisor({
      name: 'parent',
      intensity: 0,
      children: [
        {
          id: 'child',
          driver: node({ name: 'child', intensity: 0, children: [{ id: 'leaf', driver: leaf }] }),
        },
      ],
    });
    let t0 = 0;
    const seen = new Promise<number>((resolve) =>
      parent.subscribe((e) => {
        if (e.type === 'exited' && e.path === '/parent/child') resolve(performance.now() - t0);
      }),
    );
    await parent.start();
    t0 = performance.now();
    crash();
    samples.push(await seen);
    await parent.whenStopped();
  }
  samples.sort((a, b) => a - b);
  return (samples[Math.floor(samples.length / 2)] as number) * 1000;
}

function decisionNs(): number {
  const n = 2_000_000;
  const reason = { kind: 'crashed' as const, message: 'x' };
  let sink = 0;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    if (decideExit('transient', reason) === 'restart') {
      sink +=
        siblingsToStop('rest_for_one', 8, i & 7).length + childrenToStart('rest_for_one', 8, i & 7).length;
    }
  }
  const ns = ((performance.now() - t0) * 1e6) / n;
  if (sink < 0) console.log(sink);
  return ns;
}

/** Erlang/OTP in the same run, if installed: the same four measurements with supervisor.erl. */
function erlangPeer(): Record<string, number> | null {
  try {
    execFileSync('erl', ['-version'], { stdio: 'ignore' });
  } catch {
    return null;
  }
  // Keep a crash dump, if any, out of the working tree.
  const dir = mkdtempSync(join(tmpdir(), 'captree-bench-erl-'));
  try {
    writeFileSync(join(dir, 'otp_bench.erl'), erlangSource);
    execFileSync('erlc', ['-o', dir, join(dir, 'otp_bench.erl')]);
    const out = execFileSync(
      'erl',
      ['-noshell', '-pa', dir, '-s', 'otp_bench', 'main', '-s', 'init', 'stop'],
      {
        encoding: 'utf8',
        timeout: 300_000,
        cwd: dir,
      },
    );
    return JSON.parse(out.trim().split('\n').at(-1) as string);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const erlangSource = String.raw`
-module(otp_bench).
-behaviour(supervisor).
-export([main/0, init/1, start_crasher/0, start_idle/0, idle/0]).

init({Strategy, Intensity, Specs}) -> {ok, {#{strategy => Strategy, intensity => Intensity, period => 1}, Specs}}.

%% Each crashing instance counts itself, so the count is exactly the number of starts.
start_crasher() ->
  C = persistent_term:get(otp_bench_counter),
  {ok, spawn_link(fun() -> counters:add(C, 1, 1), exit(crash) end)}.
idle() -> receive stop -> ok end.
start_idle() -> {ok, spawn_link(fun idle/0)}.

restarts(Ms) ->
  process_flag(trap_exit, true),
  C = counters:new(1, []),
  persistent_term:put(otp_bench_counter, C),
  Spec = #{id => loop, start => {?MODULE, start_crasher, []}},
  {ok, Sup} = supervisor:start_link(?MODULE, {one_for_one, 1000000000, [Spec]}),
  T0 = counters:get(C, 1),
  timer:sleep(Ms),
  N = counters:get(C, 1) - T0,
  unlink(Sup), exit(Sup, kill),
  N / (Ms / 1000).

children(N) ->
  process_flag(trap_exit, true),
  Specs = [#{id => I, start => {?MODULE, start_idle, []}, shutdown => brutal_kill} || I <- lists:seq(1, N)],
  erlang:garbage_collect(),
  M0 = erlang:memory(total),
  T0 = erlang:monotonic_time(microsecond),
  {ok, Sup} = supervisor:start_link(?MODULE, {one_for_one, 1, Specs}),
  T1 = erlang:monotonic_time(microsecond),
  M1 = erlang:memory(total),
  unlink(Sup),
  Ref = monitor(process, Sup),
  exit(Sup, shutdown),
  receive {'DOWN', Ref, _, _, _} -> ok end,
  T2 = erlang:monotonic_time(microsecond),
  {(M1 - M0) / N, (T1 - T0) / 1000, (T2 - T1) / 1000}.

main() ->
  R = restarts(1000),
  {B10k, _, _} = children(10000),
  {B100k, S100k, E100k} = children(100000),
  io:format("{\"restartsPerSecond\":~p,\"bytesPerChild10k\":~p,\"bytesPerChild100k\":~p,\"start100kMs\":~p,\"stop100kMs\":~p}~n",
            [R, B10k, B100k, S100k, E100k]).
`;

const reference = {
  restartsPerSecond: 6400,
  bytesPerChild10k: 2700,
  bytesPerChild100k: 2700,
  start100kMs: 630,
  stop100kMs: 1800,
};

async function main() {
  const restarts = await restartsPerSecond(1000);
  const t10 = await perChild(10_000, idle);
  const b10 = await perChild(10_000, bare);
  const t100 = await perChild(100_000, idle);
  const b100 = await perChild(100_000, bare);
  const escalation = await escalationLatencyUs(500);
  const decision = decisionNs();
  const workerRestarts = await workerRestartsPerSecond(2000);
  const w50 = await perWorker(50);
  let peer: Record<string, number> | null = null;
  let peerName = 'OTP 25 (issue reference)';
  try {
    peer = erlangPeer();
    if (peer) peerName = 'Erlang/OTP (same run)';
  } catch (err) {
    console.error(`erlang peer failed: ${(err as Error).message}`);
  }
  const p = peer ?? reference;
  const row = (name: string, ours: number, theirs: number | null, unit: string, higherIsBetter: boolean) => {
    let verdict = '';
    if (theirs !== null) {
      const ratio = higherIsBetter ? ours / theirs : theirs / ours;
      verdict = ratio >= 1 ? `${ratio.toFixed(1)}× better` : `${(1 / ratio).toFixed(1)}× worse`;
    }
    const peer = theirs === null ? '—' : fmt(theirs);
    console.log(
      `${name.padEnd(44)} ${fmt(ours).padStart(12)} ${unit.padEnd(4)} ${peer.padStart(12)}  ${verdict}`,
    );
  };
  console.log(`node ${process.version}, ${new Date().toISOString()}`);
  console.log(
    `${'measure'.padEnd(44)} ${'captree'.padStart(12)} ${'unit'.padEnd(9)} ${peerName.padStart(12)}`,
  );
  row('crash-loop restarts per second', restarts, p.restartsPerSecond ?? null, '/s', true);
  row('bytes per idle child, 10k (task driver)', t10.bytes, p.bytesPerChild10k ?? null, 'B', false);
  row('bytes per idle child, 100k (task driver)', t100.bytes, p.bytesPerChild100k ?? null, 'B', false);
  row('bytes per idle child, 10k (engine only)', b10.bytes, 128, 'B', false);
  row('bytes per idle child, 100k (engine only)', b100.bytes, 128, 'B', false);
  row('start 100,000 children (task driver)', t100.startMs, p.start100kMs ?? null, 'ms', false);
  row('stop 100,000 children (task driver)', t100.stopMs, p.stop100kMs ?? null, 'ms', false);
  row('escalation to the parent, median', escalation, 100, 'µs', false);
  row('supervision decision', decision, 1000, 'ns', false);
  row('worker(): crash-loop restarts per second', workerRestarts, p.restartsPerSecond ?? null, '/s', true);
  row('worker(): RSS bytes per idle worker, 50', w50.rss, p.bytesPerChild10k ?? null, 'B', false);
  row('worker(): main-heap bytes per idle worker, 50', w50.heap, p.bytesPerChild10k ?? null, 'B', false);
  console.log(
    `(a worker costs ${fmt(w50.rss / t10.bytes)}× an idle task in memory; a worker restart is ${fmt(restarts / workerRestarts)}× slower than a task restart)`,
  );
  console.log(
    '(engine-only and escalation/decision rows compare with the design targets: 128 B, 100 µs, 1 µs)',
  );
}

function fmt(n: number): string {
  return n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(2);
}

await main();
