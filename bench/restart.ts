/**
 * Restart latency through the whole stack (engine + process driver + launcher + cgroups), printed
 * beside the physical limit measured in the same run:
 *
 * (a) crash loop: a child that stamps CLOCK_MONOTONIC and exits 1 at once, no backoff, intensity
 *     out of reach: restarts/s sustained over `seconds`, and the gap from one instance's reap (the
 *     launcher's exit `atNs`) to the next instance's own first instruction (its stamp).
 * (b) kill -9 of a running child -> replacement: over `rounds`, the time from the kill syscall to
 *     the replacement's stamp (its first instruction) and to its `started` event in the engine.
 * (c) the same two things as a C fork+exec+waitpid loop of the same program, without and with
 *     the per-child `cgroup.procs` writes the launcher does.
 *
 * The child is `stamp`, a static C program compiled here: its own start costs one static exec
 * (no dynamic loader), one clock_gettime and one O_APPEND write.
 *
 *   node_modules/.bin/node bench/restart.ts [seconds=3] [rounds=200]
 *
 * Needs root (cgroups), `cc` with a static libc. Removes everything it created.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Supervisor, type SupervisorEvent } from '../src/core/index.ts';
import { HostRuntime } from '../src/runtime/host-runtime.ts';
import type { ExitEvent, SpawnResult, SpawnSpec } from '../src/runtime/launcher/client.ts';
import { type ProcessOptions, processDriver, processOptions } from '../src/runtime/process-driver.ts';

const seconds = Number(process.argv[2] ?? 3);
const rounds = Number(process.argv[3] ?? 200);
const now = () => process.hrtime.bigint();

// ---- the child and the C reference loops ------------------------------------------------------

const stampSource = `#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
/* stamp FILE exit-code | stamp FILE sleep [notify-fd] */
int main(int argc, char **argv) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  char buf[64];
  int n = snprintf(buf, sizeof buf, "%d %lld\\n", getpid(), ts.tv_sec * 1000000000LL + ts.tv_nsec);
  int fd = open(argv[1], O_WRONLY | O_APPEND | O_CREAT, 0644);
  if (fd >= 0) { (void)!write(fd, buf, n); close(fd); }
  if (argv[2][0] == 's') {
    if (argc > 3) (void)!write(atoi(argv[3]), "\\n", 1);
    for (;;) pause();
  }
  return atoi(argv[2]);
}
`;

/* The physical limit: the same child, forked, exec'd and reaped by a minimal C parent. */
const limitSource = `#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
static long long ns(void) {
  struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000LL + t.tv_nsec;
}
static char **procs; static int nprocs;
static void place(void) {
  char b[32]; int n = snprintf(b, sizeof b, "%d", getpid());
  for (int i = 0; i < nprocs; i++) {
    int fd = open(procs[i], O_WRONLY);
    if (fd < 0 || write(fd, b, n) != n) _exit(126);
    close(fd);
  }
}
/* limit crash SECS STAMP FILE [procs...]: prints "restarts secs" then one reap time per line
   limit kill ROUNDS STAMP FILE [procs...]: prints one kill time per line */
int main(int argc, char **argv) {
  const char *mode = argv[1]; double arg = atof(argv[2]);
  char *stamp = argv[3], *file = argv[4];
  procs = argv + 5; nprocs = argc - 5;
  char *envp[] = {"PATH=/usr/bin:/bin", NULL};
  if (strcmp(mode, "crash") == 0) {
    char *args[] = {stamp, file, "1", NULL};
    long long t0 = ns(), n = 0, cap = 1 << 22, *reaped = malloc(cap * sizeof *reaped);
    for (;;) {
      pid_t p = fork();
      if (p == 0) { place(); execve(stamp, args, envp); _exit(127); }
      waitpid(p, NULL, 0);
      long long t = ns();
      if (n < cap) reaped[n] = t;
      n++;
      if (t - t0 >= arg * 1e9) {
        printf("%lld %f\\n", n, (t - t0) / 1e9);
        for (long long i = 0; i < n && i < cap; i++) printf("%lld\\n", reaped[i]);
        return 0;
      }
    }
  }
  char *args[] = {stamp, file, "sleep", "3", NULL};
  pid_t p = 0;
  for (int r = 0; r <= (int)arg; r++) {
    int pfd[2]; (void)!pipe(pfd);
    long long killed = 0;
    if (p) { killed = ns(); kill(p, SIGKILL); waitpid(p, NULL, 0); }
    p = fork();
    if (p == 0) { place(); dup2(pfd[1], 3); execve(stamp, args, envp); _exit(127); }
    close(pfd[1]);
    char c; (void)!read(pfd[0], &c, 1); close(pfd[0]);
    if (killed) printf("%lld\\n", killed);
  }
  kill(p, SIGKILL); waitpid(p, NULL, 0);
  return 0;
}
`;

const dir = mkdtempSync(join(tmpdir(), 'captree-bench-restart-'));
const cc = process.env.CC ?? 'cc';
const stamp = join(dir, 'stamp');
const limit = join(dir, 'limit');
writeFileSync(`${stamp}.c`, stampSource);
writeFileSync(`${limit}.c`, limitSource);
execFileSync(cc, ['-O2', '-static', '-o', stamp, `${stamp}.c`]);
execFileSync(cc, ['-O2', '-o', limit, `${limit}.c`]);

/** pid -> CLOCK_MONOTONIC ns of the stamps in `file`, in file order. */
function readStamps(file: string): { pid: number; ns: bigint }[] {
  return readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [pid, ns] = l.split(' ');
      return { pid: Number(pid), ns: BigInt(ns!) };
    });
}

// ---- statistics ----------------------------------------------------------------------------------

function pct(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}
const ms = (ns: bigint) => Number(ns) / 1e6;
const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;

// ---- the engine ------------------------------------------------------------------------------

const name = `restartbench${process.pid}`;
const runtime = await HostRuntime.open({ stateDir: join(dir, 'state'), name });

/** Every spawn the driver asks of the launcher: when asked, when forked, when answered. */
interface SpawnRecord {
  pid: number;
  askedNs: bigint;
  forkedAtNs: bigint;
  answeredNs: bigint;
}
const spawns = new Map<number, SpawnRecord>();
const launcherSpawn = runtime.launcher.spawn.bind(runtime.launcher);
runtime.launcher.spawn = async (spec: SpawnSpec): Promise<SpawnResult> => {
  const askedNs = now();
  const r = await launcherSpawn(spec);
  spawns.set(r.pid, { pid: r.pid, askedNs, forkedAtNs: r.forkedAtNs, answeredNs: now() });
  return r;
};
/** Launcher exit events: reaped at `atNs` (launcher), received at `seenNs` (this process). */
const exits = new Map<number, ExitEvent & { seenNs: bigint }>();
runtime.launcher.on('exited', (e) => exits.set(e.pid, { ...e, seenNs: now() }));

function options(command: string[], o: Partial<ProcessOptions> = {}): ProcessOptions {
  return processOptions(command, { cwd: '/', logs: { maxSize: 10 << 20, keep: 1 }, ...o });
}

interface Timed {
  event: SupervisorEvent;
  ns: bigint;
}

// (a) crash loop -------------------------------------------------------------------------------

const crashStamps = join(dir, 'crash.stamps');
const crash = new Supervisor({
  name,
  intensity: 1e9,
  period: 1000,
  children: [
    { id: 'crasher', backoff: false, driver: processDriver(runtime, options([stamp, crashStamps, '1'])) },
  ],
});
const crashEvents: Timed[] = [];
crash.subscribe((event) => crashEvents.push({ event, ns: now() }));
await crash.start();
const elu0 = performance.eventLoopUtilization();
const t0 = now();
await new Promise((r) => setTimeout(r, seconds * 1000));
const t1 = now();
const crashElu = performance.eventLoopUtilization(elu0).utilization;
await crash.stop();
const crashWindow = crashEvents.filter((e) => e.ns >= t0 && e.ns < t1);
const crashRestarts = crashWindow.filter((e) => e.event.type === 'exited').length;
const crashRate = crashRestarts / (ms(t1 - t0) / 1000);

// Per restart: reap of instance i -> stages -> stamp of instance i+1.
const startedPids = crashEvents.flatMap((e) =>
  e.event.type === 'started' && e.event.pid !== null ? [{ pid: e.event.pid, ns: e.ns }] : [],
);
const exitedAt = crashEvents.filter((e) => e.event.type === 'exited').map((e) => e.ns);
const stampOf = new Map(readStamps(crashStamps).map((s) => [s.pid, s.ns]));
const stages = {
  reapToNode: [] as number[],
  nodeToExited: [] as number[],
  exitedToSpawn: [] as number[],
  spawnToFork: [] as number[],
  forkToStamp: [] as number[],
  reapToStamp: [] as number[],
  reapToStarted: [] as number[],
  stampToReap: [] as number[],
};
for (let i = 0; i + 1 < startedPids.length && i < exitedAt.length; i++) {
  const prev = startedPids[i]!;
  const next = startedPids[i + 1]!;
  const exit = exits.get(prev.pid);
  const sp = spawns.get(next.pid);
  const st = stampOf.get(next.pid);
  const exitedNs = exitedAt[i]!;
  if (!exit || !sp || st === undefined || exitedNs < prev.ns) continue;
  stages.reapToNode.push(ms(exit.seenNs - exit.atNs));
  stages.nodeToExited.push(ms(exitedNs - exit.seenNs));
  stages.exitedToSpawn.push(ms(sp.askedNs - exitedNs));
  stages.spawnToFork.push(ms(sp.forkedAtNs - sp.askedNs));
  stages.forkToStamp.push(ms(st - sp.forkedAtNs));
  stages.reapToStamp.push(ms(st - exit.atNs));
  stages.reapToStarted.push(ms(next.ns - exit.atNs));
  const ownStamp = stampOf.get(prev.pid);
  if (ownStamp !== undefined) stages.stampToReap.push(ms(exit.atNs - ownStamp));
}

// (b) kill -9 -> replacement ---------------------------------------------------------------------

const killStamps = join(dir, 'kill.stamps');
const victimSup = new Supervisor({
  name,
  intensity: 1e9,
  period: 1000,
  children: [
    {
      id: 'victim',
      backoff: false,
      driver: processDriver(
        runtime,
        options([stamp, killStamps, 'sleep', '3'], { ready: { type: 'notify', fd: 3, timeout: 5000 } }),
      ),
    },
  ],
});
const victimEvents: Timed[] = [];
let wake: (() => void) | null = null;
victimSup.subscribe((event) => {
  victimEvents.push({ event, ns: now() });
  wake?.();
});
/** The first event of `type` at index >= `from` (already seen or still to come). */
async function eventAfter(type: SupervisorEvent['type'], from: number): Promise<Timed> {
  for (;;) {
    const found = victimEvents.slice(from).find((e) => e.event.type === type);
    if (found) return found;
    await new Promise<void>((resolve) => {
      wake = resolve;
    });
    wake = null;
  }
}
await victimSup.start();
const kills: { pid: number; killNs: bigint; startedNs: bigint; readyNs: bigint; newPid: number }[] = [];
for (let r = 0; r < rounds + 10; r++) {
  const pid = victimSup.child('victim')!.pid!;
  const from = victimEvents.length;
  const killNs = now();
  process.kill(pid, 'SIGKILL');
  const s = await eventAfter('started', from);
  const rd = await eventAfter('ready', from);
  if (r >= 10) {
    const newPid = (s.event as Extract<SupervisorEvent, { type: 'started' }>).pid!;
    kills.push({ pid, killNs, startedNs: s.ns, readyNs: rd.ns, newPid });
  }
}
await victimSup.stop();
const killStampOf = new Map(readStamps(killStamps).map((s) => [s.pid, s.ns]));
const killToStamp = kills.map((k) => ms(killStampOf.get(k.newPid)! - k.killNs));
const killToStarted = kills.map((k) => ms(k.startedNs - k.killNs));
const killToReady = kills.map((k) => ms(k.readyNs - k.killNs));
const killStages = {
  killToReap: kills.map((k) => ms(exits.get(k.pid)!.atNs - k.killNs)),
  reapToNode: kills.map((k) => ms(exits.get(k.pid)!.seenNs - exits.get(k.pid)!.atNs)),
  nodeToSpawn: kills.map((k) => ms(spawns.get(k.newPid)!.askedNs - exits.get(k.pid)!.seenNs)),
  spawnToFork: kills.map((k) => ms(spawns.get(k.newPid)!.forkedAtNs - spawns.get(k.newPid)!.askedNs)),
  forkToStamp: kills.map((k) => ms(killStampOf.get(k.newPid)! - spawns.get(k.newPid)!.forkedAtNs)),
};

// (c) the physical limit, with and without the cgroup placement ----------------------------------

const cgroupProcs = runtime.groupFor(`/${name}/limit`).procsFiles;

function cCrash(procs: readonly string[]): { rate: number; gaps: number[] } {
  const file = join(dir, `c-crash-${procs.length}.stamps`);
  const out = execFileSync(limit, ['crash', String(seconds), stamp, file, ...procs], {
    encoding: 'utf8',
    maxBuffer: 1 << 28,
  })
    .trim()
    .split('\n');
  const [n, secs] = out[0]!.split(' ').map(Number);
  const reaped = out.slice(1).map(BigInt);
  const st = readStamps(file).map((s) => s.ns);
  const gaps: number[] = [];
  for (let i = 0; i + 1 < st.length && i < reaped.length; i++) gaps.push(ms(st[i + 1]! - reaped[i]!));
  return { rate: n! / secs!, gaps };
}

function cKill(procs: readonly string[]): number[] {
  const file = join(dir, `c-kill-${procs.length}.stamps`);
  const killed = execFileSync(limit, ['kill', String(rounds), stamp, file, ...procs], { encoding: 'utf8' })
    .trim()
    .split('\n')
    .map(BigInt);
  const st = readStamps(file).map((s) => s.ns);
  return killed.map((k, i) => ms(st[i + 1]! - k));
}

const cPlain = cCrash([]);
const cGroup = cCrash(cgroupProcs);
const cKillPlain = cKill([]);
const cKillGroup = cKill(cgroupProcs);

await runtime.close();
rmSync(dir, { recursive: true, force: true });

// ---- report ------------------------------------------------------------------------------------

const f = (v: number, d = 2) => (Number.isFinite(v) ? v.toFixed(d) : '-');
console.log(
  `node ${process.version}, ${seconds} s crash loop, ${rounds} kill rounds; child: static C \`stamp\` ` +
    `(clock_gettime + one O_APPEND write); cgroup layout: ${runtime.root.driver}, ${cgroupProcs.length} cgroup.procs writes per spawn`,
);
console.log();
console.log('(a) crash loop, backoff off');
console.log(
  `${'case'.padEnd(46)}${'restarts/s'.padStart(11)}${'gap p50 ms'.padStart(12)}${'gap p99 ms'.padStart(12)}${'vs C'.padStart(8)}`,
);
const rowA = (label: string, rate: number, gaps: number[]) =>
  console.log(
    label.padEnd(46) +
      f(rate, 0).padStart(11) +
      f(pct(gaps, 50), 3).padStart(12) +
      f(pct(gaps, 99), 3).padStart(12) +
      `${f(rate / cPlain.rate)}x`.padStart(8),
  );
rowA('captree (engine + driver + launcher + cgroups)', crashRate, stages.reapToStamp);
rowA('C fork+exec+waitpid', cPlain.rate, cPlain.gaps);
rowA('C fork+exec+waitpid + cgroup.procs writes', cGroup.rate, cGroup.gaps);
console.log(`captree's event loop was busy ${(crashElu * 100).toFixed(0)}% of the crash loop`);
console.log('target: > 1,000 restarts/s; PM2 ~230/s; s6, runit, supervisord ~1/s by design');
console.log();
console.log('(b) kill -9 -> replacement');
console.log(`${'case'.padEnd(46)}${'p50 ms'.padStart(10)}${'p99 ms'.padStart(10)}${'vs C'.padStart(8)}`);
const cKillP50 = pct(cKillPlain, 50);
const rowB = (label: string, v: number[]) =>
  console.log(
    label.padEnd(46) +
      f(pct(v, 50), 3).padStart(10) +
      f(pct(v, 99), 3).padStart(10) +
      `${f(pct(v, 50) / cKillP50)}x`.padStart(8),
  );
rowB('captree: kill -> replacement runs (its stamp)', killToStamp);
rowB("captree: kill -> replacement's started event", killToStarted);
rowB('captree: kill -> ready (notify fd)', killToReady);
rowB('C kill+waitpid+fork+exec', cKillPlain);
rowB('C kill+waitpid+fork+exec + cgroup.procs writes', cKillGroup);
console.log('target: p50 < 2 ms; runit 2.4 ms, s6 2.8 ms, PM2 6.4 ms, supervisord ~1 s (measured earlier)');
console.log();
console.log('where the time goes (ms, p50 / mean)');
const rowS = (label: string, v: number[]) =>
  console.log(label.padEnd(58) + f(pct(v, 50), 3).padStart(9) + f(mean(v), 3).padStart(9));
console.log('crash loop, per restart:');
rowS('  launcher reaps -> Node receives the exit event', stages.reapToNode);
rowS("  exit event -> engine's exited event (driver: cgroup empty)", stages.nodeToExited);
rowS('  exited event -> driver asks the launcher to spawn', stages.exitedToSpawn);
rowS('  spawn request -> launcher forks', stages.spawnToFork);
rowS('  fork -> child runs (cgroup writes, exec)', stages.forkToStamp);
rowS('  = reap -> next child runs', stages.reapToStamp);
rowS("  reap -> next child's started event", stages.reapToStarted);
rowS('  child runs -> exits -> launcher reaps it', stages.stampToReap);
console.log('kill -9, per round:');
rowS('  kill syscall -> launcher reaps', killStages.killToReap);
rowS('  launcher reaps -> Node receives the exit event', killStages.reapToNode);
rowS('  exit event -> driver asks the launcher to spawn', killStages.nodeToSpawn);
rowS('  spawn request -> launcher forks', killStages.spawnToFork);
rowS('  fork -> child runs (cgroup writes, exec)', killStages.forkToStamp);
