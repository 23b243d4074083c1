/**
 * 1,000 idle process children under captree, supervisord and runit, in the same run:
 * time to bring all up, memory of the supervisor's own processes (PSS), CPU used while idle,
 * and time to stop all. Peers are measured only when installed (`apt-get install supervisor
 * runit`); the issue's earlier figures are printed beside them for reference.
 *
 * Run: `node bench/daemon.ts [children=1000] [idleSeconds=20]`.
 * captree runs as users run it: the built bin (`npm run build`), `up --detach` and `down`; its
 * memory is the daemon process plus its launcher.
 */
import { execFileSync, spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const N = Number(process.argv[2] ?? 1000);
const IDLE_S = Number(process.argv[3] ?? 20);
const CLK_TCK = 100;

interface Result {
  name: string;
  upMs: number;
  pssMiB: number;
  processes: number;
  idleCpuMs: number;
  stopMs: number;
}

function stat(pid: number): { ppid: number; cpuTicks: number } | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(f[1]), cpuTicks: Number(f[11]) + Number(f[12]) };
  } catch {
    return null;
  }
}

/** All descendants of `root`, from one scan of /proc. */
function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    const s = stat(pid);
    if (!s) continue;
    const list = children.get(s.ppid) ?? [];
    list.push(pid);
    children.set(s.ppid, list);
  }
  const out: number[] = [];
  const stack = [root];
  while (stack.length) {
    for (const c of children.get(stack.pop() as number) ?? []) {
      out.push(c);
      stack.push(c);
    }
  }
  return out;
}

function comm(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

function pssKiB(pids: number[]): number {
  let total = 0;
  for (const pid of pids) {
    try {
      const m = /Pss:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
      total += Number(m?.[1] ?? 0);
    } catch {
      // gone
    }
  }
  return total;
}

function cpuTicks(pids: number[]): number {
  return pids.reduce((sum, pid) => sum + (stat(pid)?.cpuTicks ?? 0), 0);
}

/** Waits (polling /proc every 20 ms: this is the benchmark harness, not the supervisor) until `test` holds. */
async function until(test: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!test()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const sleepers = (root: number) => descendants(root).filter((p) => comm(p) === 'sleep').length;

async function idleCpuMs(pids: () => number[]): Promise<number> {
  const before = cpuTicks(pids());
  await new Promise((r) => setTimeout(r, IDLE_S * 1000));
  return ((cpuTicks(pids()) - before) * 1000) / CLK_TCK;
}

/** captree as users run it: the built bin, `up --detach`, then `down`. */
async function captree(dir: string): Promise<Result> {
  const bin = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
  if (!existsSync(bin)) throw new Error('build first: npm run build');
  const yaml = [
    'name: benchtree',
    'strategy: one_for_one',
    'intensity: 10',
    'children:',
    ...Array.from({ length: N }, (_, i) => `  - { name: c${i}, command: [sleep, infinity] }`),
  ].join('\n');
  writeFileSync(join(dir, 'captree.yaml'), yaml);
  const cli = (...args: string[]) =>
    execFileSync(process.execPath, [bin, ...args], { cwd: dir, stdio: 'pipe' });
  const t0 = performance.now();
  cli('up', '--detach');
  const daemon = Number(readFileSync(join(dir, '.captree', 'daemon.pid'), 'utf8').trim());
  await until(() => sleepers(daemon) === N, 120_000, 'captree children');
  const upMs = performance.now() - t0;
  const own = () => [daemon, ...descendants(daemon).filter((p) => comm(p) !== 'sleep')];
  const owned = own();
  const pss = pssKiB(owned);
  const idle = await idleCpuMs(own);
  const t1 = performance.now();
  cli('down');
  await until(() => stat(daemon) === null && sleepers(daemon) === 0, 60_000, 'captree stop');
  return {
    name: 'captree',
    upMs,
    pssMiB: pss / 1024,
    processes: owned.length,
    idleCpuMs: idle,
    stopMs: performance.now() - t1,
  };
}

async function supervisord(dir: string): Promise<Result | null> {
  if (!existsSync('/usr/bin/supervisord')) return null;
  const conf = [
    '[supervisord]',
    `logfile=${dir}/supervisord.log`,
    `pidfile=${dir}/supervisord.pid`,
    'nodaemon=true',
    'minfds=4096',
    ...Array.from({ length: N }, (_, i) =>
      [
        `[program:c${i}]`,
        'command=sleep infinity',
        'startsecs=0',
        'autorestart=true',
        'stdout_logfile=NONE',
        'stderr_logfile=NONE',
      ].join('\n'),
    ),
  ].join('\n');
  writeFileSync(join(dir, 'supervisord.conf'), conf);
  const t0 = performance.now();
  const child = spawn('/usr/bin/supervisord', ['-c', join(dir, 'supervisord.conf')], { stdio: 'ignore' });
  const pid = child.pid as number;
  await until(() => sleepers(pid) === N, 120_000, 'supervisord children');
  const upMs = performance.now() - t0;
  const own = () => [pid];
  const pss = pssKiB(own());
  const idle = await idleCpuMs(own);
  const t1 = performance.now();
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
  await until(() => sleepers(pid) === 0, 60_000, 'supervisord stop');
  return {
    name: 'supervisord',
    upMs,
    pssMiB: pss / 1024,
    processes: 1,
    idleCpuMs: idle,
    stopMs: performance.now() - t1,
  };
}

async function runit(dir: string): Promise<Result | null> {
  if (!existsSync('/usr/bin/runsvdir')) return null;
  const svdir = join(dir, 'service');
  mkdirSync(svdir);
  for (let i = 0; i < N; i++) {
    const d = join(svdir, `c${i}`);
    mkdirSync(d);
    writeFileSync(join(d, 'run'), '#!/bin/sh\nexec sleep infinity\n', { mode: 0o755 });
  }
  const t0 = performance.now();
  const child = spawn('/usr/bin/runsvdir', ['-P', svdir], { stdio: 'ignore' });
  const pid = child.pid as number;
  await until(() => sleepers(pid) === N, 120_000, 'runit children');
  const upMs = performance.now() - t0;
  const own = () => [pid, ...descendants(pid).filter((p) => comm(p) === 'runsv')];
  const owned = own();
  const pss = pssKiB(owned);
  const idle = await idleCpuMs(own);
  const t1 = performance.now();
  // runsvdir on SIGHUP sends TERM to every runsv, which stops its service and exits.
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGHUP');
  await exited;
  const leftovers = () =>
    readdirSync('/proc').filter(
      (p) => /^\d+$/.test(p) && comm(Number(p)) === 'sleep' && isUnder(Number(p), svdir),
    ).length;
  await until(() => leftovers() === 0, 60_000, 'runit stop');
  return {
    name: 'runit',
    upMs,
    pssMiB: pss / 1024,
    processes: owned.length,
    idleCpuMs: idle,
    stopMs: performance.now() - t1,
  };
}

/** A sleep started by runsv has its service directory as its working directory. */
function isUnder(pid: number, dir: string): boolean {
  try {
    return readlinkSync(`/proc/${pid}/cwd`).startsWith(dir);
  } catch {
    return false;
  }
}

const reference = [
  'earlier, same machine kind (issue): supervisord 44 MiB / 6.0 s up / 4.1 s stop;',
  'runit 92 MiB (1,001 processes) / 1.2 s / 0.5 s; s6 124 MiB / 1.3 s / 0.7 s; PM2 142 MiB / 6.0 s / >60 s',
].join(' ');

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'captree-bench-daemon-'));
  try {
    const results: Result[] = [];
    for (const run of [captree, supervisord, runit]) {
      const sub = join(dir, run.name);
      mkdirSync(sub);
      const r = await run(sub);
      if (r) results.push(r);
      else console.error(`${run.name}: not installed, skipped (apt-get install supervisor runit)`);
    }
    const ours = results[0] as Result;
    console.log(`${N} idle children (sleep infinity), idle window ${IDLE_S} s, node ${process.version}`);
    console.log(
      `${'supervisor'.padEnd(12)} ${'up'.padStart(9)} ${'PSS'.padStart(10)} ${'procs'.padStart(6)} ${'idle CPU'.padStart(10)} ${'stop'.padStart(9)}   vs captree (up / PSS / stop)`,
    );
    for (const r of results) {
      const ratio = (a: number, b: number) => (b / a).toFixed(2);
      console.log(
        `${r.name.padEnd(12)} ${`${r.upMs.toFixed(0)} ms`.padStart(9)} ${`${r.pssMiB.toFixed(1)} MiB`.padStart(10)} ${String(r.processes).padStart(6)} ${`${r.idleCpuMs.toFixed(0)} ms`.padStart(10)} ${`${r.stopMs.toFixed(0)} ms`.padStart(9)}   ${r === ours ? '' : `${ratio(ours.upMs, r.upMs)}× / ${ratio(ours.pssMiB, r.pssMiB)}× / ${ratio(ours.stopMs, r.stopMs)}×`}`,
      );
    }
    console.log(reference);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
