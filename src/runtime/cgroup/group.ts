/**
 * The cgroup driver: one group spread over every hierarchy the probe found (a single cgroup2
 * directory on v2; one directory per v1 controller hierarchy plus the unified cgroup2 directory on
 * hybrid; v1 directories only on old hosts). A nested group nests in every hierarchy, so the
 * kernel enforces "a child never exceeds its parent" by itself.
 *
 * Hazards:
 * - v2 no-internal-processes rule: a group whose `cgroup.subtree_control` enables controllers
 *   cannot hold processes, and controllers must be enabled in a parent before a child can use
 *   them. So groups with children are for grouping only; processes go in leaves. When our own
 *   cgroup holds processes (the supervisor itself, its shell), createRoot moves them into a
 *   `captree-supervisor` leaf next to the groups it creates, unless told not to.
 * - v1 cpu quota ordering (see `CgroupGroup.setLimits`), and v1 memsw must stay >= the memory
 *   limit, so those two are written in the order that keeps them valid.
 * - rmdir of a group that just emptied can briefly fail with EBUSY; remove() retries for a while.
 * - Killing without cgroup.kill (v1-only hosts) races forks: we SIGKILL until the group reads
 *   empty, which a determined fork loop can stretch; cgroup.kill has no such race.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { CgroupProbe } from './probe.ts';
import {
  type AppliedLimits,
  CgroupError,
  type CgroupGroup,
  type CreateOptions,
  type Limits,
  type Usage,
} from './types.ts';

const CPU_PERIOD_US = 100_000;
const MIN_QUOTA_US = 1_000;
const NAME_RE = /^[A-Za-z0-9_@:+-][A-Za-z0-9_.@:+-]{0,199}$/;

interface Node {
  kind: 'v1' | 'v2';
  controllers: readonly string[];
  dir: string;
}

function errCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e
    ? String((e as { code: unknown }).code)
    : undefined;
}

function readText(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    if (errCode(e) === 'ENOENT' || errCode(e) === 'ENODEV') return null;
    throw e;
  }
}

function readNumber(file: string): number | null {
  const t = readText(file);
  if (t === null) return null;
  const n = Number(t.trim());
  return Number.isFinite(n) ? n : null;
}

/** Reads `key value` lines (cgroup.events, memory.events, cpu.stat, memory.oom_control). */
export function readKeyed(file: string, key: string): number | null {
  const t = readText(file);
  if (t === null) return null;
  for (const line of t.split('\n')) {
    const sp = line.indexOf(' ');
    if (sp > 0 && line.slice(0, sp) === key) return Number(line.slice(sp + 1));
  }
  return null;
}

const HINTS: Record<string, string> = {
  'cpu.cfs_quota_us:EINVAL':
    'cgroup v1 rejects a cpu quota above the parent group, or a parent quota below an existing child: raise parents first, lower children first',
  'cgroup.subtree_control:EBUSY':
    'cgroup v2 forbids enabling controllers in a group that holds processes (no-internal-processes rule)',
  'cgroup.procs:EBUSY': 'cgroup v2 forbids processes in a group that has controllers enabled for children',
  'memory.limit_in_bytes:EBUSY':
    'the group uses more memory than the new limit and the kernel could not reclaim it',
  'memory.max:EBUSY': 'the group uses more memory than the new limit and the kernel could not reclaim it',
};

function writeFile(file: string, value: string): void {
  try {
    fs.writeFileSync(file, value);
  } catch (e) {
    const code = errCode(e);
    throw new CgroupError(
      `writing ${JSON.stringify(value)} to ${file} failed (${code ?? String(e)})`,
      file,
      code,
      HINTS[`${path.basename(file)}:${code}`],
      e,
    );
  }
}

function childDirs(dir: string): string[] {
  try {
    return fs
      .readdirSync(dir, { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => path.join(dir, d.name));
  } catch (e) {
    if (errCode(e) === 'ENOENT') return [];
    throw e;
  }
}

function readProcs(dir: string, into: Set<number>): void {
  const t = readText(path.join(dir, 'cgroup.procs'));
  if (t !== null) for (const s of t.split('\n')) if (s !== '') into.add(Number(s));
  for (const c of childDirs(dir)) readProcs(c, into);
}

async function rmdirTree(dir: string, deadline: number): Promise<void> {
  for (const c of childDirs(dir)) await rmdirTree(c, deadline);
  for (;;) {
    try {
      fs.rmdirSync(dir);
      return;
    } catch (e) {
      const code = errCode(e);
      if (code === 'ENOENT') return;
      if (code === 'EBUSY' && Date.now() < deadline) {
        await delay(10);
        continue;
      }
      throw new CgroupError(
        `rmdir ${dir} failed (${code})`,
        dir,
        code,
        code === 'EBUSY' ? 'the group still holds processes: kill() and waitEmpty() first' : undefined,
        e,
      );
    }
  }
}

function checkName(name: string): void {
  if (!NAME_RE.test(name) || name === '.' || name === '..' || name.startsWith('cgroup.')) {
    throw new RangeError(`invalid cgroup name ${JSON.stringify(name)}`);
  }
}

/** Which hierarchy carries each limit controller and each measurement, fixed per host. */
interface Routes {
  cpu: 'v2' | 'v1' | null;
  memory: 'v2' | 'v1' | null;
  pids: 'v2' | 'v1' | null;
  /** Controllers to enable in every parent's cgroup.subtree_control (v2 only). */
  v2Enable: string[];
}

export function routesFor(probe: CgroupProbe): Routes {
  const v2 = (c: string) => probe.unified?.controllers.includes(c) ?? false;
  const v1 = (c: string) => probe.v1.some((h) => h.controllers.includes(c));
  const route = (c: string) => (v2(c) ? 'v2' : v1(c) ? 'v1' : null);
  return {
    cpu: route('cpu'),
    memory: route('memory'),
    pids: route('pids'),
    v2Enable: ['cpu', 'memory', 'pids'].filter(v2),
  };
}

function enableSubtree(dir: string, controllers: string[]): void {
  if (controllers.length === 0) return;
  const have = (readText(path.join(dir, 'cgroup.subtree_control')) ?? '').trim().split(/\s+/);
  const missing = controllers.filter((c) => !have.includes(c));
  if (missing.length === 0) return;
  writeFile(path.join(dir, 'cgroup.subtree_control'), missing.map((c) => `+${c}`).join(' '));
}

/** Moves every process of `dir` into the leaf `dir/leaf` so `dir` may enable controllers. */
function evacuate(dir: string, leaf: string): void {
  const target = path.join(dir, leaf);
  fs.mkdirSync(target, { recursive: true });
  // Processes can fork while we move them; a few passes settle it, and whatever is left makes
  // the following subtree_control write fail with a precise error.
  for (let pass = 0; pass < 5; pass++) {
    const t = readText(path.join(dir, 'cgroup.procs')) ?? '';
    const pids = t.split('\n').filter((s) => s !== '');
    if (pids.length === 0) return;
    for (const pid of pids) {
      try {
        fs.writeFileSync(path.join(target, 'cgroup.procs'), pid);
      } catch (e) {
        if (errCode(e) !== 'ESRCH') throw e;
      }
    }
  }
}

export interface RootOptions extends CreateOptions {
  /**
   * v2 only: where to move the processes of our own cgroup when controllers cannot be enabled
   * in it because it holds processes. `false` refuses and throws instead. Default
   * `captree-supervisor`.
   */
  evacuateTo?: string | false;
}

/** Creates a root group directly under this process's own cgroup in every hierarchy. */
export function createRootGroup(probe: CgroupProbe, name: string, options: RootOptions = {}): CgroupGroup {
  checkName(name);
  if (probe.driver === 'none') throw new Error('createRootGroup needs a cgroup driver; use NoneGroup');
  const routes = routesFor(probe);
  const parents: Node[] = [];
  if (probe.unified)
    parents.push({ kind: 'v2', controllers: probe.unified.controllers, dir: probe.unified.selfDir });
  for (const h of probe.v1) parents.push({ kind: 'v1', controllers: h.controllers, dir: h.selfDir });
  if (probe.unified && routes.v2Enable.length > 0) {
    const base = probe.unified.selfDir;
    try {
      enableSubtree(base, routes.v2Enable);
    } catch (e) {
      const evac = options.evacuateTo ?? 'captree-supervisor';
      if (!(e instanceof CgroupError) || e.code !== 'EBUSY' || evac === false) throw e;
      evacuate(base, evac);
      enableSubtree(base, routes.v2Enable);
    }
  }
  return makeGroup(probe, routes, parents, name, name, options);
}

function makeGroup(
  probe: CgroupProbe,
  routes: Routes,
  parents: Node[],
  name: string,
  relPath: string,
  options: CreateOptions,
): CgroupGroup {
  const nodes: Node[] = [];
  try {
    for (const p of parents) {
      const dir = path.join(p.dir, name);
      try {
        fs.mkdirSync(dir);
      } catch (e) {
        const code = errCode(e);
        if (code === 'EEXIST' && options.reuse) {
          nodes.push({ kind: p.kind, controllers: p.controllers, dir });
          continue;
        }
        throw new CgroupError(
          `mkdir ${dir} failed (${code})`,
          dir,
          code,
          code === 'EEXIST' ? 'the group exists; pass { reuse: true } to adopt it' : undefined,
          e,
        );
      }
      nodes.push({ kind: p.kind, controllers: p.controllers, dir });
    }
  } catch (e) {
    for (const n of nodes.reverse()) {
      try {
        fs.rmdirSync(n.dir);
      } catch {
        // best effort: the original error is the one worth reporting
      }
    }
    throw e;
  }
  return new Group(probe, routes, nodes, name, relPath);
}

class Group implements CgroupGroup {
  readonly name: string;
  readonly path: string;
  readonly driver: CgroupProbe['driver'];
  readonly procsFiles: readonly string[];
  readonly dirs: readonly string[];
  #probe: CgroupProbe;
  #routes: Routes;
  #nodes: Node[];
  #unified: Node | undefined;

  constructor(probe: CgroupProbe, routes: Routes, nodes: Node[], name: string, relPath: string) {
    this.#probe = probe;
    this.#routes = routes;
    this.#nodes = nodes;
    this.#unified = nodes.find((n) => n.kind === 'v2');
    this.name = name;
    this.path = relPath;
    this.driver = probe.driver;
    this.dirs = nodes.map((n) => n.dir);
    // v1 first, unified last: on hybrid the unified membership is what kill and waitEmpty rely
    // on, so a launcher that fails part-way leaves a process we can still find in v1 tasks.
    const ordered = [...nodes.filter((n) => n.kind === 'v1'), ...nodes.filter((n) => n.kind === 'v2')];
    this.procsFiles = ordered.map((n) => path.join(n.dir, 'cgroup.procs'));
  }

  #v1(controller: string): Node | undefined {
    return this.#nodes.find((n) => n.kind === 'v1' && n.controllers.includes(controller));
  }

  createChild(name: string, options: CreateOptions = {}): CgroupGroup {
    checkName(name);
    if (this.#unified && this.#routes.v2Enable.length > 0)
      enableSubtree(this.#unified.dir, this.#routes.v2Enable);
    return makeGroup(this.#probe, this.#routes, this.#nodes, name, `${this.path}/${name}`, options);
  }

  setLimits(limits: Limits): AppliedLimits {
    validate(limits);
    const out: AppliedLimits = {};
    const u = this.#unified;
    if (limits.cpu !== undefined) {
      const cores = limits.cpu;
      if (this.#routes.cpu === 'v2' && u) {
        const quota =
          cores === null ? 'max' : String(Math.max(MIN_QUOTA_US, Math.round(cores * CPU_PERIOD_US)));
        writeFile(path.join(u.dir, 'cpu.max'), `${quota} ${CPU_PERIOD_US}`);
        out.cpu = 'cgroup v2';
      } else if (this.#routes.cpu === 'v1') {
        const n = this.#v1('cpu')!;
        const period = readNumber(path.join(n.dir, 'cpu.cfs_period_us')) ?? CPU_PERIOD_US;
        const quota = cores === null ? -1 : Math.max(MIN_QUOTA_US, Math.round(cores * period));
        writeFile(path.join(n.dir, 'cpu.cfs_quota_us'), String(quota));
        out.cpu = 'cgroup v1';
      } else out.cpu = 'not enforced';
    }
    if (limits.cpuWeight !== undefined) {
      const w = limits.cpuWeight ?? 100;
      if (this.#routes.cpu === 'v2' && u) {
        writeFile(path.join(u.dir, 'cpu.weight'), String(w));
        out.cpuWeight = 'cgroup v2';
      } else if (this.#routes.cpu === 'v1') {
        // v2 weight 100 is v1 shares 1024; the kernel maps between them the same way.
        const shares = Math.min(262_144, Math.max(2, Math.round((w * 1024) / 100)));
        writeFile(path.join(this.#v1('cpu')!.dir, 'cpu.shares'), String(shares));
        out.cpuWeight = 'cgroup v1';
      } else out.cpuWeight = 'not enforced';
    }
    if (limits.memory !== undefined) {
      const m = limits.memory;
      if (this.#routes.memory === 'v2' && u) {
        writeFile(path.join(u.dir, 'memory.max'), m === null ? 'max' : String(m));
        const swap = path.join(u.dir, 'memory.swap.max');
        if (fs.existsSync(swap)) writeFile(swap, m === null ? 'max' : '0');
        out.memory = 'cgroup v2';
      } else if (this.#routes.memory === 'v1') {
        const dir = this.#v1('memory')!.dir;
        const limitFile = path.join(dir, 'memory.limit_in_bytes');
        const memsw = path.join(dir, 'memory.memsw.limit_in_bytes');
        const value = m === null ? '-1' : String(m);
        if (fs.existsSync(memsw)) {
          // memsw >= limit must hold after every write: grow memsw first, shrink it last.
          const current = readNumber(limitFile) ?? 0;
          const growing = m === null || m >= current;
          if (growing) writeFile(memsw, value);
          writeFile(limitFile, value);
          if (!growing) writeFile(memsw, value);
        } else writeFile(limitFile, value);
        out.memory = 'cgroup v1';
      } else out.memory = 'not enforced';
    }
    if (limits.pids !== undefined) {
      const p = limits.pids === null ? 'max' : String(limits.pids);
      if (this.#routes.pids === 'v2' && u) {
        writeFile(path.join(u.dir, 'pids.max'), p);
        out.pids = 'cgroup v2';
      } else if (this.#routes.pids === 'v1') {
        writeFile(path.join(this.#v1('pids')!.dir, 'pids.max'), p);
        out.pids = 'cgroup v1';
      } else out.pids = 'not enforced';
    }
    return out;
  }

  enforced(): { cpu?: number | null; memory?: number | null; pids?: number | null } {
    const u = this.#unified;
    const out: { cpu?: number | null; memory?: number | null; pids?: number | null } = {};
    const read = (file: string): string | null => {
      try {
        return fs.readFileSync(file, 'utf8').trim();
      } catch {
        return null;
      }
    };
    if (this.#routes.cpu === 'v2' && u) {
      const [quota, period] = (read(path.join(u.dir, 'cpu.max')) ?? '').split(' ');
      if (quota !== undefined && period !== undefined)
        out.cpu = quota === 'max' ? null : Number(quota) / Number(period);
    } else if (this.#routes.cpu === 'v1') {
      const dir = this.#v1('cpu')!.dir;
      const quota = readNumber(path.join(dir, 'cpu.cfs_quota_us'));
      const period = readNumber(path.join(dir, 'cpu.cfs_period_us')) ?? CPU_PERIOD_US;
      if (quota !== null) out.cpu = quota < 0 ? null : quota / period;
    }
    if (this.#routes.memory === 'v2' && u) {
      const m = read(path.join(u.dir, 'memory.max'));
      if (m !== null) out.memory = m === 'max' ? null : Number(m);
    } else if (this.#routes.memory === 'v1') {
      const m = readNumber(path.join(this.#v1('memory')!.dir, 'memory.limit_in_bytes'));
      // v1 says "unlimited" with the largest page-aligned value.
      if (m !== null) out.memory = m >= 2 ** 62 ? null : m;
    }
    const pidsFile =
      this.#routes.pids === 'v2' && u
        ? path.join(u.dir, 'pids.max')
        : this.#routes.pids === 'v1'
          ? path.join(this.#v1('pids')!.dir, 'pids.max')
          : null;
    if (pidsFile) {
      const p = read(pidsFile);
      if (p !== null) out.pids = p === 'max' ? null : Number(p);
    }
    return out;
  }

  usage(): Usage {
    const u = this.#unified;
    let cpuUsec: number | null = null;
    const acct = this.#v1('cpuacct');
    if (acct) {
      const ns = readNumber(path.join(acct.dir, 'cpuacct.usage'));
      cpuUsec = ns === null ? null : Math.floor(ns / 1000);
    } else if (u) cpuUsec = readKeyed(path.join(u.dir, 'cpu.stat'), 'usage_usec');
    let memoryBytes: number | null = null;
    if (this.#routes.memory === 'v2' && u) memoryBytes = readNumber(path.join(u.dir, 'memory.current'));
    else if (this.#routes.memory === 'v1')
      memoryBytes = readNumber(path.join(this.#v1('memory')!.dir, 'memory.usage_in_bytes'));
    let pids: number | null = null;
    if (this.#routes.pids === 'v2' && u) pids = readNumber(path.join(u.dir, 'pids.current'));
    else if (this.#routes.pids === 'v1') {
      const current = readNumber(path.join(this.#v1('pids')!.dir, 'pids.current'));
      const members = new Set<number>();
      readProcs(this.#v1('pids')!.dir, members);
      if (current !== null) pids = Math.max(0, current - this.#spawners(members).length);
    }
    if (pids === null) pids = this.pids().length;
    return { cpuUsec, memoryBytes, pids };
  }

  oomKills(): number {
    if (this.#routes.memory === 'v2' && this.#unified) {
      // memory.events is hierarchical on v2 (unless mounted with memory_localevents).
      return readKeyed(path.join(this.#unified.dir, 'memory.events'), 'oom_kill') ?? 0;
    }
    const mem = this.#v1('memory');
    if (!mem) return 0;
    // v1 counts an OOM kill in the victim's own group only: sum the subtree.
    const sum = (dir: string): number =>
      (readKeyed(path.join(dir, 'memory.oom_control'), 'oom_kill') ?? 0) +
      childDirs(dir).reduce((a, c) => a + sum(c), 0);
    return sum(mem.dir);
  }

  pids(): number[] {
    const all = new Set<number>();
    for (const n of this.#nodes) readProcs(n.dir, all);
    for (const pid of this.#spawners(all)) all.delete(pid);
    return [...all].sort((a, b) => a - b);
  }

  /**
   * The launcher's spawners among `members` (native/launcher.c, "spawners"): in the v1 groups,
   * never in the cgroup2 group, named captree-spawner. Everything a child forks is in the cgroup2
   * group and cannot leave it, so a child cannot pass for one; a process of the child that is
   * exiting may already be missing from the cgroup2 list but keeps its own name.
   */
  #spawners(members: Set<number>): number[] {
    if (!this.#unified) return [];
    const child = new Set<number>();
    readProcs(this.#unified.dir, child);
    return [...members].filter(
      (p) => !child.has(p) && readText(`/proc/${p}/comm`)?.trim() === 'captree-spawner',
    );
  }

  track(_pid: number): void {}

  async kill(): Promise<void> {
    const u = this.#unified;
    if (u && fs.existsSync(path.join(u.dir, 'cgroup.kill'))) {
      writeFile(path.join(u.dir, 'cgroup.kill'), '1');
      return;
    }
    const deadline = Date.now() + 10_000;
    for (;;) {
      const pids = this.pids();
      if (pids.length === 0) return;
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch (e) {
          if (errCode(e) !== 'ESRCH') throw e;
        }
      }
      if (Date.now() > deadline) {
        throw new CgroupError(
          `${this.path}: processes keep appearing after SIGKILL`,
          this.dirs[0] ?? '',
          undefined,
          'no cgroup.kill on this host',
        );
      }
      await delay(5);
    }
  }

  isEmpty(): boolean {
    const u = this.#unified;
    if (u) {
      const populated = readKeyed(path.join(u.dir, 'cgroup.events'), 'populated');
      if (populated !== null) return populated === 0;
    }
    return this.pids().length === 0;
  }

  waitEmpty(signal?: AbortSignal): Promise<void> {
    const u = this.#unified;
    const events = u ? path.join(u.dir, 'cgroup.events') : null;
    if (events && fs.existsSync(events)) return waitPopulatedZero(events, signal);
    // v1-only host: no populated notification we can watch without a release agent, so poll.
    return pollUntil(() => this.pids().length === 0, 20, signal);
  }

  async remove(): Promise<void> {
    // A spawner keeps a v1 group busy (EBUSY): it is ours and goes with the group.
    const members = new Set<number>();
    for (const n of this.#nodes) readProcs(n.dir, members);
    for (const pid of this.#spawners(members)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch (e) {
        if (errCode(e) !== 'ESRCH') throw e;
      }
    }
    const deadline = Date.now() + 2_000;
    for (const n of this.#nodes) await rmdirTree(n.dir, deadline);
  }
}

function validate(l: Limits): void {
  const bad = (what: string, v: unknown) => new RangeError(`invalid ${what} limit ${String(v)}`);
  if (l.cpu != null && !(Number.isFinite(l.cpu) && l.cpu > 0)) throw bad('cpu', l.cpu);
  if (l.cpuWeight != null && !(Number.isInteger(l.cpuWeight) && l.cpuWeight >= 1 && l.cpuWeight <= 10_000))
    throw bad('cpuWeight', l.cpuWeight);
  if (l.memory != null && !(Number.isSafeInteger(l.memory) && l.memory > 0)) throw bad('memory', l.memory);
  if (l.pids != null && !(Number.isSafeInteger(l.pids) && l.pids > 0)) throw bad('pids', l.pids);
}

function abortError(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('aborted', 'AbortError');
}

/** Resolves on `populated 0`, re-reading the file on every inotify event (it also fires on freeze). */
export function waitPopulatedZero(eventsFile: string, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    let settled = false;
    let watcher: fs.FSWatcher | undefined;
    const finish = (err?: unknown) => {
      if (settled) return;
      settled = true;
      watcher?.close();
      signal?.removeEventListener('abort', onAbort);
      if (err === undefined) resolve();
      else reject(err);
    };
    const onAbort = () => finish(abortError(signal!));
    const check = () => {
      try {
        const populated = readKeyed(eventsFile, 'populated');
        // A vanished group cannot hold processes.
        if (populated === null || populated === 0) finish();
      } catch (e) {
        finish(e);
      }
    };
    try {
      watcher = fs.watch(eventsFile, check);
      watcher.on('error', (e) => (errCode(e) === 'ENOENT' ? finish() : finish(e)));
    } catch (e) {
      if (errCode(e) === 'ENOENT') return finish();
      return finish(e);
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    // The watch is armed before this read, so a change between them is not lost.
    check();
  });
}

/** Polls `done` every `ms`; only for hosts that offer no event to wait on. */
export async function pollUntil(done: () => boolean, ms: number, signal?: AbortSignal): Promise<void> {
  for (;;) {
    if (signal?.aborted) throw abortError(signal);
    if (done()) return;
    try {
      await delay(ms, undefined, signal ? { signal } : undefined);
    } catch {
      throw abortError(signal!);
    }
  }
}
