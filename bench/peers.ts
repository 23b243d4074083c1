/**
 * captree as users run it, beside its peers as their users run them, in the same run.
 *
 * captree goes through its CLI (`captree up --detach`, `captree down`: the daemon and its
 * launcher, built JS); each peer through its own: runit (`runsvdir`), s6 (`s6-svscan`),
 * supervisord (`supervisord -c`), PM2 (`pm2 start`, from npm into bench/out/peers). Every tool
 * runs the same static C child, `stamp`, which appends "pid CLOCK_MONOTONIC-ns" to a file as its
 * first instruction, so every latency below ends at the replacement's first instruction whatever
 * the tool reports.
 *
 * Figures:
 *   kill   one service up ~1.3 s (runit and s6 hold back a restart of a service that ran < 1 s),
 *          then kill -9 of its pid; median and p90 of kill → the replacement's stamp.
 *   crash  the child exits 1 at once, restart delays off where the tool has them: restarts/s
 *          over a window, beside a C posix_spawn + waitpid loop of the same child (the ceiling).
 *   idle   N idle children: bring-up (start → N stamps), PSS of the tool's own processes
 *          (the children excluded), CPU and wake-ups (context switches) of those processes over
 *          an idle window, stop (stop command → every child gone).
 *
 *   npm run bench:peers [-- --rounds 9 --crash-s 4 --idle-n 1000 --idle-s 10 --only kill,crash,idle]
 *
 * Needs root (captree's cgroups), cc with a static libc. Installs what is missing: Debian runit,
 * s6, supervisor (apt-get), PM2 (npm, into bench/out/peers). A peer that cannot be installed is
 * skipped with the reason printed. Prints the load average beside every figure (2-core machine
 * shared with other jobs). Writes the results as JSON to bench/out/peers-<time>.json.
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
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values: opt } = parseArgs({
  options: {
    rounds: { type: 'string', default: '9' },
    'crash-s': { type: 'string', default: '4' },
    'idle-n': { type: 'string', default: '1000' },
    'idle-s': { type: 'string', default: '10' },
    only: { type: 'string', default: 'kill,crash,idle' },
    tools: { type: 'string', default: 'captree,runit,s6,supervisord,pm2' },
  },
});
const ROUNDS = Number(opt.rounds);
const CRASH_S = Number(opt['crash-s']);
const IDLE_N = Number(opt['idle-n']);
const IDLE_S = Number(opt['idle-s']);
const ONLY = new Set(opt.only.split(','));
const TOOLS = new Set(opt.tools.split(','));
const UP_MS = 1300;

const repo = fileURLToPath(new URL('..', import.meta.url));
const peersDir = join(repo, 'bench', 'out', 'peers');
const work = mkdtempSync(join(tmpdir(), 'captree-bench-peers-'));
const load = () => loadavg()[0]!.toFixed(2);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---- the child --------------------------------------------------------------------------------

/* stamp FILE sleep|CODE, or run as a tool's `run` symlink (cwd = the service directory; s6
   passes the service name as argv[1]): ../stamps and the mode built in. */
const stampSource = `#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  const char *file = argc > 2 ? argv[1] : "../stamps", *mode = argc > 2 ? argv[2] : MODE;
  char buf[64];
  int n = snprintf(buf, sizeof buf, "%d %lld\\n", getpid(), ts.tv_sec * 1000000000LL + ts.tv_nsec);
  int fd = open(file, O_WRONLY | O_APPEND | O_CREAT, 0644);
  if (fd >= 0) { (void)!write(fd, buf, n); close(fd); }
  /* As a \`run\` symlink: a readiness newline on fd 3 (s6's notification-fd; EBADF elsewhere). */
  if (mode[0] == 's' && argc <= 2) (void)!write(3, "\\n", 1);
  if (mode[0] == 's') for (;;) pause();
  return atoi(mode);
}
`;

/* The ceiling: posix_spawn + waitpid of the same child for SECS; prints the count. */
const ceilingSource = `#define _GNU_SOURCE
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <sys/wait.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {
  double secs = atof(argv[1]), t0 = now(); long n = 0;
  char *args[] = {argv[2], argv[3], "1", NULL}, *envp[] = {"PATH=/usr/bin:/bin", NULL};
  while (now() - t0 < secs) {
    pid_t p;
    if (posix_spawn(&p, argv[2], NULL, NULL, args, envp) != 0) return 1;
    waitpid(p, NULL, 0);
    n++;
  }
  printf("%ld %f\\n", n, now() - t0);
  return 0;
}
`;

const cc = process.env.CC ?? 'cc';
const stampSleep = join(work, 'stamp-sleep');
const stampCrash = join(work, 'stamp-crash');
const ceiling = join(work, 'ceiling');
writeFileSync(join(work, 'stamp.c'), stampSource);
writeFileSync(join(work, 'ceiling.c'), ceilingSource);
execFileSync(cc, ['-O2', '-static', '-DMODE="sleep"', '-o', stampSleep, join(work, 'stamp.c')]);
execFileSync(cc, ['-O2', '-static', '-DMODE="1"', '-o', stampCrash, join(work, 'stamp.c')]);
execFileSync(cc, ['-O2', '-o', ceiling, join(work, 'ceiling.c')]);

interface Stamp {
  pid: number;
  ns: bigint;
}
function readStamps(file: string): Stamp[] {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const out: Stamp[] = [];
  for (const line of text.split('\n')) {
    const [pid, ns] = line.split(' ');
    if (pid && ns) out.push({ pid: Number(pid), ns: BigInt(ns) });
  }
  return out;
}

/** Polls (the harness, not the thing measured: latencies come from the stamps) until `test` holds. */
async function until(test: () => boolean, timeoutMs: number, what: string, everyMs = 2): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!test()) {
    if (performance.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

// ---- /proc --------------------------------------------------------------------------------------

function procStat(pid: number): { ppid: number; cpuTicks: number } | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(f[1]), cpuTicks: Number(f[11]) + Number(f[12]) };
  } catch {
    return null;
  }
}

function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    const s = procStat(pid);
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

/** The children a tool runs: its descendants running a stamp binary (host pids, also for children
 * in their own PID namespace, whose stamps say 2). */
function kidsOf(root: number): number[] {
  return descendants(root).filter((p) => {
    try {
      return readlinkSync(`/proc/${p}/exe`).startsWith(join(work, 'stamp-'));
    } catch {
      return false;
    }
  });
}

function comm(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

/** Kernel memory of one spawner task: task_struct, signal and sighand (slabinfo), a 16 KiB kernel stack. */
function spawnerKernelKiB(): number {
  let bytes = 16 << 10;
  try {
    for (const line of readFileSync('/proc/slabinfo', 'utf8').split('\n')) {
      const f = line.split(/\s+/);
      if (['task_struct', 'signal_cache', 'sighand_cache', 'pid'].includes(f[0]!)) bytes += Number(f[3]);
    }
  } catch {
    bytes += 9 << 10;
  }
  return bytes / 1024;
}

function sumProc(pids: number[], file: string, re: RegExp): number {
  let total = 0;
  for (const pid of pids) {
    try {
      const text = readFileSync(`/proc/${pid}/${file}`, 'utf8');
      for (const m of text.matchAll(re)) total += Number(m[1]);
    } catch {
      // gone meanwhile
    }
  }
  return total;
}
const pssKiB = (pids: number[]) => sumProc(pids, 'smaps_rollup', /^Pss:\s+(\d+) kB/gm);
const switches = (pids: number[]) => sumProc(pids, 'status', /^(?:non)?voluntary_ctxt_switches:\s+(\d+)/gm);
const cpuMs = (pids: number[]) => (pids.reduce((s, p) => s + (procStat(p)?.cpuTicks ?? 0), 0) * 1000) / 100;

// ---- the tools ----------------------------------------------------------------------------------

/** One service the tool runs: `stamp FILE MODE`, or the `run` symlink for the tools that take a directory. */
interface Service {
  name: string;
  crash: boolean;
  file: string;
}
interface Running {
  /** The tool's own root process: it and its descendants that are not children are "the tool". */
  root: number;
  stop(): Promise<void>;
}
interface Tool {
  name: string;
  /** Why it cannot run here, or null. */
  missing(): string | null;
  start(dir: string, services: Service[]): Promise<Running>;
}

const argv = (s: Service) => [s.crash ? stampCrash : stampSleep, s.file, s.crash ? '1' : 'sleep'];

function serviceDirs(dir: string, services: Service[]): void {
  // One shared stamps file per run: the `run` symlink writes ../stamps, which is services[0].file.
  for (const s of services) {
    mkdirSync(join(dir, s.name), { recursive: true });
    symlinkSync(s.crash ? stampCrash : stampSleep, join(dir, s.name, 'run'));
  }
}

const captreeBin = join(repo, 'dist', 'cli', 'main.js');
const captree: Tool = {
  name: 'captree',
  missing: () => (process.getuid?.() === 0 ? null : 'needs root'),
  async start(dir, services) {
    const yaml = [
      `name: peers${process.pid}`,
      'strategy: one_for_one',
      'intensity: 1000000000',
      'period: 1s',
      'children:',
      ...services.map(
        (s) =>
          `  - { name: ${s.name}, command: ${JSON.stringify(argv(s))}, backoff: false, shutdown: brutal }`,
      ),
    ].join('\n');
    writeFileSync(join(dir, 'captree.yaml'), `${yaml}\n`);
    const cli = (...args: string[]) =>
      // Spawners are opt-in (docs/performance.md); CAPTREE_SPAWNERS=0 measures the default path.
      execFileSync(process.execPath, [captreeBin, ...args], {
        cwd: dir,
        stdio: 'pipe',
        env: { CAPTREE_SPAWNERS: '1', ...process.env },
      });
    cli('up', '--detach');
    const root = Number(readFileSync(join(dir, '.captree', 'daemon.pid'), 'utf8').trim());
    return {
      root,
      async stop() {
        cli('down');
        await until(() => !alive(root), 60_000, 'captree daemon exit', 5);
      },
    };
  },
};

const runit: Tool = {
  name: 'runit',
  missing: () => (existsSync('/usr/bin/runsvdir') ? null : 'apt-get install runit failed'),
  async start(dir, services) {
    const sv = join(dir, 'sv');
    serviceDirs(sv, services);
    const child = spawn('/usr/bin/runsvdir', ['-P', sv], { stdio: 'ignore', detached: true });
    const root = child.pid as number;
    return {
      root,
      async stop() {
        // runsvdir on SIGHUP sends TERM to every runsv, which stops its service and exits.
        process.kill(root, 'SIGHUP');
        await until(() => !alive(root), 60_000, 'runsvdir exit', 5);
      },
    };
  },
};

const s6: Tool = {
  name: 's6',
  missing: () => (existsSync('/usr/bin/s6-svscan') ? null : 'apt-get install s6 failed'),
  async start(dir, services) {
    const scan = join(dir, 'sv');
    serviceDirs(scan, services);
    // With a notification fd (the child writes a newline on fd 3): s6-supervise otherwise holds
    // back the restart of a service that never said it was ready by a second.
    for (const s of services) writeFileSync(join(scan, s.name, 'notification-fd'), '3\n');
    // -c: s6-svscan supervises at most 500 services unless told more (a log service counts too).
    const child = spawn('/usr/bin/s6-svscan', ['-c', String(2 * services.length + 16), scan], {
      stdio: 'ignore',
      detached: true,
    });
    const root = child.pid as number;
    return {
      root,
      async stop() {
        // s6-svscan on SIGTERM brings every service down and exits (s6-svscanctl -t).
        execFileSync('/usr/bin/s6-svscanctl', ['-t', scan]);
        await until(() => !alive(root), 60_000, 's6-svscan exit', 5);
      },
    };
  },
};

const supervisord: Tool = {
  name: 'supervisord',
  missing: () => (existsSync('/usr/bin/supervisord') ? null : 'apt-get install supervisor failed'),
  async start(dir, services) {
    const conf = [
      '[supervisord]',
      `logfile=${dir}/supervisord.log`,
      `pidfile=${dir}/supervisord.pid`,
      'nodaemon=true',
      `childlogdir=${dir}`,
      '[unix_http_server]',
      `file=${dir}/supervisor.sock`,
      '[rpcinterface:supervisor]',
      'supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface',
      '[supervisorctl]',
      `serverurl=unix://${dir}/supervisor.sock`,
      ...services.flatMap((s) => [
        `[program:${s.name}]`,
        `command=${argv(s).join(' ')}`,
        'autorestart=true',
        'startsecs=0',
        'startretries=1000000000',
        'stdout_logfile=NONE',
        'stderr_logfile=NONE',
      ]),
    ].join('\n');
    writeFileSync(join(dir, 'supervisord.conf'), `${conf}\n`);
    const child = spawn('/usr/bin/supervisord', ['-c', join(dir, 'supervisord.conf')], {
      stdio: 'ignore',
      detached: true,
    });
    const root = child.pid as number;
    return {
      root,
      async stop() {
        process.kill(root, 'SIGTERM');
        await until(() => !alive(root), 120_000, 'supervisord exit', 5);
      },
    };
  },
};

const pm2Bin = join(peersDir, 'node_modules', '.bin', 'pm2');
const pm2: Tool = {
  name: 'pm2',
  missing: () => (existsSync(pm2Bin) ? null : 'npm install pm2 failed'),
  async start(dir, services) {
    const env = { ...process.env, PM2_HOME: join(dir, 'pm2home') };
    const apps = services.map((s) => ({
      name: s.name,
      script: argv(s)[0],
      args: argv(s).slice(1),
      interpreter: 'none',
      autorestart: true,
      restart_delay: 0,
      min_uptime: 0,
      max_restarts: 1_000_000_000,
    }));
    writeFileSync(join(dir, 'ecosystem.json'), JSON.stringify({ apps }));
    execFileSync(pm2Bin, ['start', join(dir, 'ecosystem.json')], { env, stdio: 'pipe' });
    const root = Number(readFileSync(join(dir, 'pm2home', 'pm2.pid'), 'utf8').trim());
    return {
      root,
      async stop() {
        execFileSync(pm2Bin, ['kill'], { env, stdio: 'pipe' });
        await until(() => !alive(root), 120_000, 'PM2 daemon exit', 5);
      },
    };
  },
};

function install(): void {
  const apt: string[] = [];
  if (!existsSync('/usr/bin/runsvdir')) apt.push('runit');
  if (!existsSync('/usr/bin/s6-svscan')) apt.push('s6');
  if (!existsSync('/usr/bin/supervisord')) apt.push('supervisor');
  if (apt.length && TOOLS.size > 1) {
    console.error(`installing ${apt.join(' ')} (apt-get)`);
    try {
      execFileSync('apt-get', ['install', '-y', '--no-install-recommends', ...apt], {
        stdio: 'ignore',
        env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      });
    } catch (e) {
      console.error(`apt-get install ${apt.join(' ')}: ${(e as Error).message}`);
    }
  }
  if (!existsSync(pm2Bin) && TOOLS.has('pm2')) {
    console.error('installing pm2 (npm, into bench/out/peers)');
    mkdirSync(peersDir, { recursive: true });
    try {
      execFileSync('npm', ['install', '--no-audit', '--no-fund', '--prefix', peersDir, 'pm2'], {
        stdio: 'ignore',
      });
    } catch (e) {
      console.error(`npm install pm2: ${(e as Error).message}`);
    }
  }
  console.error('building captree (tsc -p tsconfig.json)');
  execFileSync(join(repo, 'node_modules', '.bin', 'tsc'), ['-p', join(repo, 'tsconfig.json')], {
    stdio: 'inherit',
  });
}

// ---- runs ---------------------------------------------------------------------------------------

let runSeq = 0;
/** Runs `body` against `tool` running `services`, and always stops it. */
async function withTool<T>(
  tool: Tool,
  n: number,
  crash: boolean,
  body: (r: Running, stamps: string, startedAt: number) => Promise<T>,
): Promise<T> {
  const dir = join(work, `${tool.name}-${++runSeq}`);
  mkdirSync(dir);
  const stamps = join(dir, 'sv', 'stamps');
  mkdirSync(dirname(stamps), { recursive: true });
  // runit's and s6's service dirs are sv/<name>: their `run` symlinks write ../stamps.
  const services = Array.from({ length: n }, (_, i) => ({ name: `c${i}`, crash, file: stamps }));
  const startedAt = performance.now();
  let running: Running | undefined;
  try {
    running = await tool.start(dir, services);
    return await body(running, stamps, startedAt);
  } finally {
    if (running) {
      try {
        await running.stop();
      } catch (e) {
        console.error(`${tool.name}: stop failed (${(e as Error).message}); SIGKILL ${running.root}`);
        for (const pid of [running.root, ...descendants(running.root)]) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {}
        }
      }
    }
  }
}

function pct(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

interface KillResult {
  medianMs: number;
  p90Ms: number;
  samples: number[];
  load: string;
}
async function killRun(tool: Tool): Promise<KillResult> {
  return withTool(tool, 1, false, async (r, stamps) => {
    await until(() => readStamps(stamps).length > 0, 30_000, `${tool.name}: first start`);
    const samples: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      await sleep(UP_MS);
      const all = readStamps(stamps);
      const kids = kidsOf(r.root);
      if (kids.length !== 1) throw new Error(`${tool.name}: ${kids.length} children, expected 1`);
      const victim = kids[0]!;
      const killedAt = process.hrtime.bigint(); // CLOCK_MONOTONIC, as the stamps
      process.kill(victim, 'SIGKILL');
      await until(() => readStamps(stamps).length > all.length, 10_000, `${tool.name}: replacement`, 1);
      const next = readStamps(stamps)[all.length]!;
      samples.push(Number(next.ns - killedAt) / 1e6);
    }
    return { medianMs: pct(samples, 50), p90Ms: pct(samples, 90), samples, load: load() };
  });
}

interface CrashResult {
  perS: number;
  load: string;
}
async function crashRun(tool: Tool): Promise<CrashResult> {
  return withTool(tool, 1, true, async (_r, stamps) => {
    await until(() => readStamps(stamps).length > 0, 30_000, `${tool.name}: first start`);
    const n0 = readStamps(stamps).length;
    const t0 = performance.now();
    await sleep(CRASH_S * 1000);
    const n1 = readStamps(stamps).length;
    return { perS: ((n1 - n0) * 1000) / (performance.now() - t0), load: load() };
  });
}

function ceilingRun(): CrashResult {
  const file = join(work, 'ceiling.stamps');
  const [n, secs] = execFileSync(ceiling, [String(CRASH_S), stampCrash, file], { encoding: 'utf8' })
    .trim()
    .split(' ')
    .map(Number);
  return { perS: n! / secs!, load: load() };
}

interface IdleResult {
  upMs: number;
  pssMiB: number;
  processes: number;
  spawners: number;
  idleCpuMs: number;
  wakeups: number;
  stopMs: number;
  load: string;
}
async function idleRun(tool: Tool): Promise<IdleResult> {
  let stopStart = 0;
  let kids: number[] = [];
  const r = await withTool(tool, IDLE_N, false, async (running, stamps, startedAt) => {
    // One stamp per child: nothing restarts while idle.
    await until(
      () => readStamps(stamps).length >= IDLE_N,
      300_000,
      `${tool.name}: ${IDLE_N} children up`,
      20,
    );
    const upMs = performance.now() - startedAt;
    kids = kidsOf(running.root);
    const kidSet = new Set(kids);
    const own = () => [running.root, ...descendants(running.root).filter((p) => !kidSet.has(p))];
    // Let the start-up settle (PM2 and supervisord log, captree collects once) before the window.
    await sleep(1000);
    const owned = own();
    // captree's spawners share the launcher's memory (CLONE_VM): their smaps are the launcher's,
    // counted once with it. What each costs apart is kernel memory: see spawnerKernelKiB.
    const spawners = owned.filter((p) => comm(p) === 'captree-spawner');
    const pss = pssKiB(owned.filter((p) => !spawners.includes(p))) / 1024;
    const cpu0 = cpuMs(owned);
    const sw0 = switches(owned);
    await sleep(IDLE_S * 1000);
    const idleCpuMs = cpuMs(owned) - cpu0;
    const wakeups = switches(owned) - sw0;
    stopStart = performance.now();
    return {
      upMs,
      pssMiB: pss,
      processes: owned.length,
      spawners: spawners.length,
      idleCpuMs,
      wakeups,
      stopMs: 0,
      load: load(),
    };
  });
  await until(() => kids.every((p) => !alive(p)), 120_000, `${tool.name}: children gone`, 5);
  r.stopMs = performance.now() - stopStart;
  return r;
}

// ---- main ---------------------------------------------------------------------------------------

install();
const tools = [captree, runit, s6, supervisord, pm2].filter((t) => TOOLS.has(t.name));
const usable: Tool[] = [];
for (const t of tools) {
  const why = t.missing();
  if (why) console.error(`${t.name}: skipped (${why})`);
  else usable.push(t);
}
const results: Record<string, unknown> = { date: new Date().toISOString(), rounds: ROUNDS, upMs: UP_MS };
const ratio = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(2)}×` : '-');
const fmt = (v: number, d = 2) =>
  v.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });

try {
  if (ONLY.has('kill')) {
    const kill: Record<string, KillResult> = {};
    for (const t of usable) {
      try {
        kill[t.name] = await killRun(t);
      } catch (e) {
        console.error(`${t.name}: kill run failed: ${(e as Error).message}`);
      }
    }
    results.kill = kill;
    const c = kill.captree;
    console.log(
      `\nkill -9 → replacement's first instruction, ${ROUNDS} rounds, child up ${UP_MS} ms before each kill`,
    );
    console.log('tool          median ms    p90 ms   captree/tool (median)   load');
    for (const [name, k] of Object.entries(kill))
      console.log(
        `${name.padEnd(12)} ${fmt(k.medianMs).padStart(10)} ${fmt(k.p90Ms).padStart(9)}   ${(c ? ratio(c.medianMs, k.medianMs) : '-').padStart(21)}   ${k.load}`,
      );
  }
  if (ONLY.has('crash')) {
    const crash: Record<string, CrashResult> = { 'C posix_spawn': ceilingRun() };
    for (const t of usable) {
      try {
        crash[t.name] = await crashRun(t);
      } catch (e) {
        console.error(`${t.name}: crash run failed: ${(e as Error).message}`);
      }
    }
    results.crash = crash;
    const limit = crash['C posix_spawn']!.perS;
    console.log(`\ncrash loop (the child exits 1 at once, restart delay off), ${CRASH_S} s each`);
    console.log('tool            restarts/s   of the C ceiling   load');
    for (const [name, k] of Object.entries(crash))
      console.log(
        `${name.padEnd(14)} ${fmt(k.perS, 0).padStart(11)}   ${`${((100 * k.perS) / limit).toFixed(1)}%`.padStart(16)}   ${k.load}`,
      );
  }
  if (ONLY.has('idle')) {
    const idle: Record<string, IdleResult> = {};
    for (const t of usable.filter((u) => u.name !== 'pm2')) {
      try {
        idle[t.name] = await idleRun(t);
      } catch (e) {
        console.error(`${t.name}: idle run failed: ${(e as Error).message}`);
      }
    }
    results.idle = idle;
    const c = idle.captree;
    console.log(`\n${IDLE_N} idle children, idle window ${IDLE_S} s (PM2 not run: minutes per 1,000)`);
    console.log(
      'tool            bring-up     PSS MiB  procs  idle CPU  wake-ups      stop   captree/tool (up / PSS / stop)   load',
    );
    for (const [name, k] of Object.entries(idle))
      console.log(
        `${name.padEnd(14)} ${`${fmt(k.upMs, 0)} ms`.padStart(9)} ${fmt(k.pssMiB, 1).padStart(11)} ${String(k.processes).padStart(6)} ${`${fmt(k.idleCpuMs, 0)} ms`.padStart(9)} ${String(k.wakeups).padStart(9)} ${`${fmt(k.stopMs, 0)} ms`.padStart(9)}   ${c ? `${ratio(c.upMs, k.upMs)} / ${ratio(c.pssMiB, k.pssMiB)} / ${ratio(c.stopMs, k.stopMs)}` : '-'}`.padEnd(
          110,
        ) + `   ${k.load}`,
      );
  }
  const sp = (results.idle as Record<string, IdleResult> | undefined)?.captree?.spawners ?? 0;
  if (sp > 0) {
    const kib = spawnerKernelKiB();
    results.spawnerKernelKiB = kib;
    console.log(
      `captree's ${sp} spawners (counted in procs, their memory is the launcher's): + ${fmt((sp * kib) / 1024, 1)} MiB of kernel memory (${fmt(kib, 1)} KiB each: task, kernel stack, signal tables), not in PSS`,
    );
  }
  mkdirSync(join(repo, 'bench', 'out'), { recursive: true });
  const out = join(repo, 'bench', 'out', `peers-${Date.now()}.json`);
  writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);
  console.log(
    `\n(${out}; node ${process.version}, ${readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()})`,
  );
} finally {
  rmSync(work, { recursive: true, force: true });
}
