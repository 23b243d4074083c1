/**
 * Spawn cost: sequential spawn -> exit round trips of /bin/true per second through the launcher
 * and through Node's child_process.spawn, at a small heap and at a 256 MiB heap, against a C
 * fork+exec+waitpid loop compiled in the same run. Shows why captree spawns through a launcher:
 * Node's spawn forks the whole Node process, so its cost follows the supervisor's memory.
 *
 *   node_modules/.bin/node bench/spawn.ts [seconds-per-case=2]
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Launcher } from '../src/runtime/launcher/client.ts';

const seconds = Number(process.argv[2] ?? 2);
const env = { PATH: '/usr/bin:/bin' };

interface Result {
  name: string;
  perSec: number;
  n: number;
  rssMiB: number;
}

async function timed(name: string, once: () => Promise<void>): Promise<Result> {
  for (let i = 0; i < 20; i++) await once(); // warm up: build, JIT, page cache
  const deadline = performance.now() + seconds * 1000;
  const t0 = performance.now();
  let n = 0;
  while (n < 20 || performance.now() < deadline) {
    await once();
    n++;
  }
  const elapsed = (performance.now() - t0) / 1000;
  return { name, perSec: n / elapsed, n, rssMiB: process.memoryUsage().rss / 2 ** 20 };
}

function nodeSpawnOnce(): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = spawn('/bin/true', [], { stdio: 'ignore', env });
    c.once('error', reject);
    c.once('exit', () => resolve());
  });
}

function cLoop(dir: string): Result {
  const src = join(dir, 'forkloop.c');
  writeFileSync(
    src,
    `#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
int main(int argc, char **argv) {
  double secs = atof(argv[1]);
  char *args[] = {"/bin/true", NULL}, *envp[] = {"PATH=/usr/bin:/bin", NULL};
  struct timespec a, b;
  long n = 0;
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (;;) {
    pid_t p = fork();
    if (p == 0) { execve(args[0], args, envp); _exit(127); }
    waitpid(p, NULL, 0);
    n++;
    clock_gettime(CLOCK_MONOTONIC, &b);
    double t = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
    if (t >= secs) { printf("%ld %f\\n", n, n / t); return 0; }
  }
}
`,
  );
  const bin = join(dir, 'forkloop');
  execFileSync(process.env.CC ?? 'cc', ['-O2', '-o', bin, src]);
  const [n, rate] = execFileSync(bin, [String(seconds)], { encoding: 'utf8' })
    .trim()
    .split(' ')
    .map(Number);
  return { name: '(e) C fork+exec+waitpid loop', perSec: rate!, n: n!, rssMiB: Number.NaN };
}

/** Keeps ~`mib` MiB of live JS objects on the heap, touched, as a grown supervisor would. */
function growHeap(mib: number): unknown[] {
  const keep: unknown[] = [];
  while (process.memoryUsage().heapUsed < mib * 2 ** 20) {
    keep.push(Array.from({ length: 1 << 16 }, (_, i) => ({ i, s: `x${i}` })));
  }
  return keep;
}

const dir = mkdtempSync(join(tmpdir(), 'captree-bench-spawn-'));
const launcher = await Launcher.start();
const viaLauncher = async (): Promise<void> => {
  await (await launcher.spawn({ argv: ['/bin/true'], env })).exited;
};

// A confined child as `net: none` + a routed service gets it: its own network namespace with
// only lo, no new privileges and no capabilities, a private mount namespace hiding a directory
// with one entry bound back and /sys/fs/cgroup read-only, and its own PID namespace (an outer
// process, an init that mounts a fresh /proc, the program).
const hidden = join(dir, 'services');
const granted = join(hidden, 'granted');
mkdirSync(granted, { recursive: true });
const confined = async (): Promise<void> => {
  await (
    await launcher.spawn({
      argv: ['/bin/true'],
      env,
      newNetNs: true,
      noNewPrivs: true,
      mounts: { hide: [hidden], bind: [granted] },
    })
  ).exited;
};

// What every child gets by default since least authority (docs/security.md): no capabilities,
// no_new_privs, the state dir covered in a private mount namespace, cgroupfs read-only, its own
// PID namespace; the host's network.
const defaultChild = async (): Promise<void> => {
  await (await launcher.spawn({ argv: ['/bin/true'], env, noNewPrivs: true, mounts: { hide: [hidden] } }))
    .exited;
};

// The same, with a narrowed filesystem view (`requires.paths`): a new root holding one granted
// directory, the system read-only, a fresh /dev, /tmp and /proc, /sys read-only, then pivot_root.
const data = join(dir, 'data');
mkdirSync(data);
const narrowed = async (): Promise<void> => {
  await (
    await launcher.spawn({
      argv: ['/bin/true'],
      env,
      cwd: data,
      newNetNs: true,
      noNewPrivs: true,
      mounts: { hide: [hidden], bind: [granted], view: { rw: [data] } },
    })
  ).exited;
};

const results: Result[] = [];
results.push(await timed('(a) launcher, small client heap', viaLauncher));
// The default child as the daemon spawns it since privileges (issue 9): also the host's
// filesystem read-only but for its cwd and the scratch directories (mount_setattr + open_tree).
const protectedChild = async (): Promise<void> => {
  await (
    await launcher.spawn({
      argv: ['/bin/true'],
      env,
      noNewPrivs: true,
      mounts: { hide: [hidden] },
      writableOnly: ['/tmp', '/var/tmp', '/dev/shm', process.cwd()],
    })
  ).exited;
};
results.push(await timed('(h) launcher, default child (mnt+pid ns)', defaultChild));
results.push(await timed('(i) default child + read-only host fs (not granted root)', protectedChild));
results.push(await timed('(f) launcher, confined (net+mnt+pid ns)', confined));
results.push(await timed('(g) launcher, confined + narrowed paths', narrowed));
results.push(await timed('(b) child_process.spawn, small heap', nodeSpawnOnce));
const ballast = growHeap(256);
results.push(await timed('(c) child_process.spawn, 256 MiB heap', nodeSpawnOnce));
results.push(await timed('(d) launcher, 256 MiB client heap', viaLauncher));
results.push(cLoop(dir));
await launcher.close();
rmSync(dir, { recursive: true, force: true });

const base = results[0]!.perSec;
const c = results.find((r) => r.name.startsWith('(e)'))!.perSec;
console.log(`node ${process.version}, ${seconds} s per case, sequential spawn -> exit of /bin/true`);
console.log(
  `${'case'.padEnd(42)}${'spawns/s'.padStart(10)}${'ms each'.padStart(10)}${'vs (a)'.padStart(9)}${'vs C'.padStart(8)}${'RSS MiB'.padStart(10)}`,
);
for (const r of results) {
  console.log(
    r.name.padEnd(42) +
      r.perSec.toFixed(0).padStart(10) +
      (1000 / r.perSec).toFixed(3).padStart(10) +
      `${(r.perSec / base).toFixed(2)}x`.padStart(9) +
      `${(r.perSec / c).toFixed(2)}x`.padStart(8) +
      (Number.isNaN(r.rssMiB) ? '-' : r.rssMiB.toFixed(0)).padStart(10),
  );
}
void ballast.length;
