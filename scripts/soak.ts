/**
 * The soak: a real tree (the bin, root, cgroups) under random faults for `--minutes`, checking
 * issue 11's invariants after every step. Steps, drawn at random (`--seed` makes them repeatable):
 * `kill -9` of a child, of the launcher, of the daemon (then `up` again), of the daemon in the
 * middle of an admission (then `up`, and the same request retried by its id), admissions of
 * permanent and of temporary children, revocations, and a full-disk episode (the state directory
 * is a 64 MiB tmpfs, filled to the last byte, then freed).
 *
 * After each step, once the tree has settled:
 * - no process outside supervision: every process in the tree's cgroups is in the group of a
 *   running child, every process that carries this tree's CAPTREE_PATH is in the tree's cgroups,
 *   and every running child's pid is alive in its own group;
 * - no lost or doubled acknowledged admission: the admitted children are exactly those whose
 *   admission was acknowledged and not revoked (transient ones are restarted after a kill or a
 *   launcher loss; a temporary one may have ended), and a retried request id gives the same child;
 * - no temporary child rerun: each one's start count (a file it appends to) is at most 1;
 * - budgets equal to the sum of grants: every few steps a probe asking for exactly the memory the
 *   node has left is admitted, and one asking for 1 MiB more is refused;
 * - the journal readable: every record of every file parses, `seq` strictly increasing, and
 *   `captree events -n 20 --json` answers.
 * At the end `down` must leave no process and no cgroup. Exit 1 on the first violation.
 *
 *   npm run soak -- --minutes 3 [--seed N] [--no-disk]
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const repo = resolve(import.meta.dirname, '..');
const bin = join(repo, 'src/cli/main.ts');
const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '3' },
    seed: { type: 'string' },
    'no-disk': { type: 'boolean', default: false },
  },
});
const minutes = Number(values.minutes);
let seed = values.seed !== undefined ? Number(values.seed) : Date.now() % 1_000_000;
const initialSeed = seed;
/** mulberry32: small, seeded, good enough to pick faults. */
function random(): number {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)] as T;
/** One of the names, with a chance proportional to its weight. */
function weighted(choices: readonly [string, number][]): string {
  let roll = random() * choices.reduce((s, [, w]) => s + w, 0);
  for (const [choice, w] of choices) {
    roll -= w;
    if (roll < 0) return choice;
  }
  return choices[0]![0];
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}
function captree(args: string[], timeout = 60_000): Promise<Result> {
  return new Promise((res) =>
    execFile(
      process.execPath,
      [bin, ...args],
      { cwd: dir, timeout, maxBuffer: 64 << 20 },
      (err, stdout, stderr) =>
        res({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    ),
  );
}

interface Entry {
  path: string;
  kind: string;
  state: string;
  pid: number | null;
  grant: { cpu: number | null; memory: number | null; pids: number | null };
}

class Violation extends Error {}
function violated(what: string): never {
  throw new Violation(what);
}

const dir = mkdtempSync(join(tmpdir(), 'captree-soak-'));
const name = `soak${process.pid}`;
const state = join(dir, '.captree');
const runs = join(dir, 'runs');
mkdirSync(runs);
mkdirSync(state, { mode: 0o700 });
let tmpfs = false;
if (!values['no-disk']) {
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64m,mode=0700', 'tmpfs', state]);
  tmpfs = true;
}
const NODE_MEMORY = 1024 * 2 ** 20;
writeFileSync(
  join(dir, 'captree.yaml'),
  `name: ${name}
intensity: 50
period: 10s
children:
  - name: plain
    command: [sleep, infinity]
  - name: confined
    command: [sleep, infinity]
    requires: { net: none }
  - name: pair
    strategy: rest_for_one
    intensity: 50
    children:
      - name: first
        command: [sleep, infinity]
      - name: second
        command: [sh, -c, 'exec sleep infinity']
  - name: jobs
    strategy: dynamic
    intensity: 50
    admission: {}
    requires: { cpu: 1.0, memory: ${NODE_MEMORY / 2 ** 20}Mi, pids: 400 }
    children: []
`,
);

/**
 * Acknowledged, not revoked: name → kind and memory reserved. Admitted children are `transient`
 * (restarted after a kill or a launcher loss) or `temporary` (never run twice).
 */
const admitted = new Map<string, { temporary: boolean; memory: number }>();
let nextJob = 0;
const counts: Record<string, number> = {};
let diskFull = false;
let steps = 0;
let checks = 0;

function jobSpec(job: string, temporary: boolean, memoryMi: number): string {
  const file = join(dir, `${job}.yaml`);
  // A temporary job records each start, then ends by itself a little later.
  const command = temporary
    ? `[sh, -c, 'echo start >> ${join(runs, job)}; exec sleep ${1 + Math.floor(random() * 4)}']`
    : '[sleep, infinity]';
  writeFileSync(
    file,
    `name: ${job}\ncommand: ${command}\nrestart: ${temporary ? 'temporary' : 'transient'}\nrequires: { cpu: 0.01, memory: ${memoryMi}Mi, pids: 8 }\n`,
  );
  return file;
}

function daemonPid(): number | null {
  try {
    return Number(readFileSync(join(state, 'daemon.pid'), 'utf8'));
  } catch {
    return null;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * The tree's launcher: the process listening at `<state>/launcher.sock` (by its command line: a
 * re-attached one is no longer the current daemon's child).
 */
function launcher(): number | undefined {
  const socket = join(state, 'launcher.sock');
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const argv = readFileSync(`/proc/${p}/cmdline`, 'latin1').split('\0');
      if (argv[0]?.includes('captree-launcher') && argv.includes(socket)) return Number(p);
    } catch {
      // gone
    }
  }
  return undefined;
}

/** The tree's root group in the pids hierarchy (found by name), or null. */
function rootGroup(): string | null {
  const find = (at: string, depth: number): string | null => {
    if (depth > 6) return null;
    let entries: string[];
    try {
      entries = readdirSync(at, { withFileTypes: true })
        .filter((e) => e.isDirectory())
        .map((e) => e.name);
    } catch {
      return null;
    }
    for (const e of entries) if (e.startsWith(`captree-${name}-`)) return join(at, e);
    for (const e of entries) {
      const found = find(join(at, e), depth + 1);
      if (found) return found;
    }
    return null;
  };
  return find('/sys/fs/cgroup/pids', 0);
}

function procsBelow(group: string, rel = ''): { rel: string; pid: number }[] {
  const out: { rel: string; pid: number }[] = [];
  const at = join(group, rel);
  try {
    for (const l of readFileSync(join(at, 'cgroup.procs'), 'utf8').split('\n'))
      if (l !== '') out.push({ rel, pid: Number(l) });
    for (const e of readdirSync(at, { withFileTypes: true }))
      if (e.isDirectory()) out.push(...procsBelow(group, rel === '' ? e.name : `${rel}/${e.name}`));
  } catch {
    // removed meanwhile
  }
  return out;
}

async function ps(): Promise<Entry[]> {
  const r = await captree(['ps', '--json']);
  if (r.code !== 0) throw new Error(`ps: ${r.stderr.trim()}`);
  return JSON.parse(r.stdout) as Entry[];
}

const manifestProcesses = ['plain', 'confined', 'pair/first', 'pair/second'].map((p) => `/${name}/${p}`);

/** Polls until the tree is up with every child it should run running; returns that listing. */
async function settled(): Promise<Entry[]> {
  const deadline = Date.now() + 45_000;
  let last = '';
  for (;;) {
    try {
      const entries = await ps();
      const byPath = new Map(entries.map((e) => [e.path, e]));
      const wanted = [
        ...manifestProcesses,
        ...[...admitted].filter(([, a]) => !a.temporary).map(([job]) => `/${name}/jobs/${job}`),
      ];
      const missing = wanted.filter((p) => {
        const e = byPath.get(p);
        return !e || e.pid === null || (e.state !== 'running' && e.state !== 'ready');
      });
      const moving = entries.filter((e) => ['starting', 'restarting', 'stopping'].includes(e.state));
      if (byPath.get(`/${name}`)?.state === 'ready' && missing.length === 0 && moving.length === 0)
        return entries;
      last = `missing ${missing.join(', ') || '-'}; moving ${moving.map((e) => `${e.path}:${e.state}`).join(', ') || '-'}`;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > deadline) violated(`the tree did not settle in 45 s: ${last}`);
    await sleep(200);
  }
}

async function check(entries: Entry[], probeBudget: boolean): Promise<void> {
  checks++;
  // Admissions: exactly the acknowledged ones (a temporary one may have ended), never another.
  const jobs = entries
    .filter((e) => e.path.startsWith(`/${name}/jobs/`))
    .map((e) => e.path.slice(name.length + 7));
  for (const job of jobs)
    if (!admitted.has(job)) violated(`${job} runs but no admission of it is acknowledged`);
  for (const [job, a] of admitted)
    if (!a.temporary && !jobs.includes(job)) violated(`acknowledged admission ${job} is lost`);
  for (const [job, a] of admitted) {
    if (!a.temporary) continue;
    const started = existsSync(join(runs, job))
      ? readFileSync(join(runs, job), 'utf8').split('\n').length - 1
      : 0;
    if (started > 1) violated(`temporary ${job} ran ${started} times`);
    // Ended for good (by itself, a kill, a launcher loss): forgotten; its budget came back (the
    // probe checks) and should it ever run again, it runs unacknowledged, which is caught above.
    if (!jobs.includes(job)) admitted.delete(job);
  }
  // Supervision: running children alive in their own groups; nothing else in the tree's groups.
  const root = rootGroup();
  if (root === null) violated('the tree has no cgroup');
  const running = new Map<string, Entry>();
  for (const e of entries) {
    if (e.kind !== 'process' || e.pid === null) continue;
    running.set(e.path.slice(name.length + 2), e);
  }
  const procs = procsBelow(root);
  const inTree = new Set(procs.map((p) => p.pid));
  const temporary = (rel: string) =>
    admitted.get(rel.slice(5))?.temporary === true && rel.startsWith('jobs/');
  for (const [rel, e] of running) {
    // A temporary job may end by itself between the listing and this check.
    if (!alive(e.pid as number) && temporary(rel)) continue;
    if (!alive(e.pid as number)) violated(`${e.path}: pid ${e.pid} is not alive`);
    if (!procs.some((p) => p.pid === e.pid && p.rel === rel) && !(temporary(rel) && !alive(e.pid as number)))
      violated(`${e.path}: pid ${e.pid} is not in its own group ${rel}`);
  }
  for (const p of procs) {
    const owner = [...running.keys()].find((rel) => p.rel === rel || p.rel.startsWith(`${rel}/`));
    if (owner === undefined && alive(p.pid))
      violated(`pid ${p.pid} in group '${p.rel}' belongs to no running child`);
  }
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    let env: string;
    try {
      env = readFileSync(`/proc/${p}/environ`, 'latin1');
    } catch {
      continue;
    }
    if (!env.includes(`CAPTREE_PATH=/${name}/`)) continue;
    if (!inTree.has(Number(p)) && alive(Number(p))) {
      const path = env.split('\0').find((x) => x.startsWith('CAPTREE_PATH='));
      violated(`pid ${p} (${path}) runs outside the tree's cgroups: unsupervised`);
    }
  }
  // The journal: every record of every file parses, seq strictly increasing.
  const files = [join(state, 'journal.jsonl')];
  for (let i = 1; existsSync(join(state, `journal.jsonl.${i}`)); i++)
    files.unshift(join(state, `journal.jsonl.${i}`));
  let seq = 0;
  for (const f of files) {
    const lines = readFileSync(f, 'utf8').split('\n');
    for (const [i, line] of lines.entries()) {
      if (line === '') continue;
      let r: { seq: number };
      try {
        r = JSON.parse(line);
      } catch {
        // A torn line is legal only where a write failed: a full disk.
        if (counts.disk === undefined) violated(`${f}:${i + 1}: not JSON`);
        continue;
      }
      if (r.seq <= seq) violated(`${f}:${i + 1}: seq ${r.seq} after ${seq}`);
      seq = r.seq;
    }
  }
  const tail = await captree(['events', '-n', '20', '--json']);
  if (tail.code !== 0) violated(`events -n 20: ${tail.stderr.trim()}`);
  JSON.parse(tail.stdout);
  // The budget: what the node has left is what its grant minus the live grants say, exactly. A
  // temporary job may end (and give its share back) at any moment: the probe that must fit asks
  // for what is left with them running, the one that must not for 1 MiB more than without them.
  if (probeBudget && !diskFull) {
    const now = await ps();
    const share = (temporary: boolean) =>
      now
        .filter((e) => e.path.startsWith(`/${name}/jobs/`))
        .filter((e) => (admitted.get(e.path.slice(name.length + 7))?.temporary ?? false) === temporary)
        .reduce((sum, e) => sum + (e.grant.memory ?? 0), 0);
    const held = share(false);
    const passing = share(true);
    if (held % 2 ** 20 !== 0 || passing % 2 ** 20 !== 0)
      violated(`live grants of ${held} + ${passing} bytes, not whole MiB`);
    const most = (NODE_MEMORY - held) / 2 ** 20;
    const least = (NODE_MEMORY - held - passing) / 2 ** 20;
    const over = await captree(['admit', `/${name}/jobs`, jobSpec('probe-over', false, most + 1)]);
    if (over.code === 0)
      violated(`a probe asking ${most + 1} MiB with at most ${most} MiB left was admitted`);
    const fits = await captree(['admit', `/${name}/jobs`, jobSpec('probe', false, least)]);
    if (fits.code !== 0) violated(`a probe asking the ${least} MiB left was refused: ${fits.stderr.trim()}`);
    const gone = await captree(['revoke', `/${name}/jobs/probe`]);
    if (gone.code !== 0) violated(`revoking the probe: ${gone.stderr.trim()}`);
  }
}

async function up(): Promise<void> {
  const r = await captree(['up', '--detach']);
  if (r.code !== 0) violated(`up --detach: ${r.stderr.trim()}`);
}

async function killDaemon(): Promise<void> {
  const pid = daemonPid();
  if (pid === null) violated('no daemon pid');
  process.kill(pid, 'SIGKILL');
  while (alive(pid)) await sleep(10);
}

async function admit(temporary: boolean): Promise<void> {
  if (admitted.size >= 12) return;
  const job = `j${nextJob++}`;
  const r = await captree(['admit', `/${name}/jobs`, jobSpec(job, temporary, 16)]);
  if (r.code === 0) admitted.set(job, { temporary, memory: 16 });
  else if (!diskFull) violated(`admitting ${job}: ${r.stderr.trim()}`);
}

/** A daemon killed while an admission is in flight; then `up`, and the request retried by its id. */
async function admitThroughCrash(): Promise<void> {
  const job = `j${nextJob++}`;
  const id = `soak-${job}`;
  const spec = jobSpec(job, false, 16);
  const child = spawn(process.execPath, [bin, 'admit', `/${name}/jobs`, spec, '--id', id], {
    cwd: dir,
    stdio: 'ignore',
  });
  const first = new Promise<number>((res) => child.on('exit', (code) => res(code ?? 1)));
  await sleep(random() * 600);
  await killDaemon();
  const firstCode = await first;
  await up();
  const again = await captree(['admit', `/${name}/jobs`, spec, '--id', id]);
  if (firstCode === 0 && again.code !== 0)
    violated(`${job} was acknowledged, then its retry failed: ${again.stderr}`);
  if (again.code === 0) admitted.set(job, { temporary: false, memory: 16 });
}

async function revoke(): Promise<void> {
  const perm = [...admitted].filter(([, a]) => !a.temporary).map(([job]) => job);
  if (perm.length === 0) return;
  const job = pick(perm);
  const r = await captree(['revoke', `/${name}/jobs/${job}`]);
  if (r.code === 0) admitted.delete(job);
  else if (!diskFull) violated(`revoking ${job}: ${r.stderr.trim()}`);
}

async function killChild(entries: Entry[]): Promise<void> {
  const victims = entries.filter((e) => e.kind === 'process' && e.pid !== null);
  if (victims.length === 0) return;
  const v = pick(victims);
  try {
    process.kill(v.pid as number, 'SIGKILL');
  } catch {
    // ended meanwhile
  }
}

async function killLauncher(): Promise<void> {
  const pid = launcher();
  if (pid === undefined) violated('no launcher found');
  process.kill(pid, 'SIGKILL');
}

function toggleDisk(): void {
  const filler = join(state, 'filler');
  if (diskFull) {
    rmSync(filler, { force: true });
    diskFull = false;
    return;
  }
  // Fill the filesystem to its last byte: everything the daemon writes fails with ENOSPC.
  try {
    execFileSync('dd', ['if=/dev/zero', `of=${filler}`, 'bs=1M'], { stdio: 'ignore' });
  } catch {
    // dd ends with ENOSPC: full, as wanted.
  }
  diskFull = true;
}

const started = Date.now();
let failure: Error | null = null;
try {
  await up();
  let entries = await settled();
  await check(entries, true);
  while (Date.now() - started < minutes * 60_000) {
    steps++;
    const actions: [string, number][] = [
      ['kill_child', 30],
      ['kill_launcher', 8],
      ['kill_daemon', diskFull ? 0 : 8],
      ['admit_through_crash', diskFull ? 0 : 5],
      ['admit', 14],
      ['admit_temporary', 10],
      ['revoke', 14],
      ['disk', tmpfs ? 4 : 0],
    ];
    const action = weighted(actions);
    counts[action] = (counts[action] ?? 0) + 1;
    switch (action) {
      case 'kill_child':
        await killChild(entries);
        break;
      case 'kill_launcher':
        await killLauncher();
        break;
      case 'kill_daemon':
        await killDaemon();
        await up();
        break;
      case 'admit_through_crash':
        await admitThroughCrash();
        break;
      case 'admit':
        await admit(false);
        break;
      case 'admit_temporary':
        await admit(true);
        break;
      case 'revoke':
        await revoke();
        break;
      case 'disk':
        toggleDisk();
        break;
    }
    entries = await settled();
    await check(entries, steps % 5 === 0);
  }
  if (diskFull) toggleDisk();
  entries = await settled();
  await check(entries, true);
} catch (err) {
  failure = err as Error;
} finally {
  if (failure) {
    // What the tree looked like when it failed, before it is taken down.
    const [listing, recent] = await Promise.all([captree(['ps']), captree(['events', '-n', '60'])]);
    console.error(`ps:\n${listing.stdout}${listing.stderr}\nlast events:\n${recent.stdout}${recent.stderr}`);
  }
  const daemon = daemonPid();
  const down = await captree(['down']);
  if (!failure && down.code !== 0) failure = new Violation(`down: ${down.stderr.trim()}`);
  if (!failure && rootGroup() !== null) failure = new Violation('a cgroup outlived down');
  if (!failure && daemon !== null) {
    // `down` is answered just before the daemon exits.
    const deadline = Date.now() + 10_000;
    while (alive(daemon) && Date.now() < deadline) await sleep(20);
    if (alive(daemon)) failure = new Violation('the daemon outlived down by 10 s');
  }
  if (failure) {
    // Keep what explains it.
    try {
      execFileSync('cp', ['-r', state, `${dir}/state-copy`]);
    } catch {
      // nothing to keep
    }
  }
  if (tmpfs) execFileSync('umount', ['-l', state]);
  if (!failure) rmSync(dir, { recursive: true, force: true });
}
const summary = `${steps} steps, ${checks} checks in ${((Date.now() - started) / 60_000).toFixed(1)} min (seed ${initialSeed}): ${Object.entries(
  counts,
)
  .sort()
  .map(([a, n]) => `${a} ${n}`)
  .join(', ')}`;
if (failure) {
  console.error(`soak FAILED after ${summary}\n${failure.stack ?? failure.message}\nstate kept in ${dir}`);
  process.exit(1);
}
console.log(`soak passed: ${summary}; every invariant held after every step`);
