/**
 * The cgroup counters a metrics scrape reads (cpu time, throttling, memory, OOM kills, pids), for
 * many groups at once and only when asked: nothing here runs between scrapes.
 *
 * Each counter file is opened once and re-read with `pread` at offset 0 (cgroupfs regenerates
 * the text on every read from offset 0). Measured at 1,000 groups × 5 files on this v1 host:
 * open + read + close 22 ms a pass, `readFileSync` 45–60 ms, `pread` on held descriptors 10 ms.
 * A group whose directory went away answers ENODEV/ENOENT: its descriptors are closed and it
 * reads as unknown until it exists again. `retain` closes descriptors of groups gone for good.
 * Numbers are parsed from the bytes read, without making a string of each file.
 *
 * OOM kills are not re-read while none happened on the host: the kernel counts each OOM kill in
 * `/proc/vmstat` `oom_kill` in the same function that counts it in the victim's memory cgroup
 * (mm/oom_kill.c, since 4.13), so while that one number stands still no group's count moved. A
 * pass (`beginPass`) reads it once; groups' counts are re-read in a pass where it moved and in
 * the pass after (a kill counted between the two increments is not missed).
 *
 * A read can ask for some of the counters only (`want`): `captree top` reads every group's cpu
 * to sort by it, and the rest only for the rows it shows.
 *
 * Which files exist says which controller owns a quantity (a controller's files appear only in
 * the hierarchy it is attached to), so the same reader serves v2, v1 and hybrid layouts:
 * - cpu time: v1 `cpuacct.usage` (ns), else v2 `cpu.stat` `usage_usec`;
 * - throttling: v1 `cpu.stat` `throttled_time` (ns), v2 `cpu.stat` `throttled_usec`;
 * - memory: v1 `memory.usage_in_bytes`, v2 `memory.current`;
 * - OOM kills: v1 `memory.oom_control` `oom_kill` (this group only), v2 `memory.events` `oom_kill`;
 * - pids: `pids.current`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Null where this host does not measure the quantity for the group (or it was not asked for). */
export interface Counters {
  cpuSeconds: number | null;
  throttledSeconds: number | null;
  /** CFS periods in which the group was throttled. */
  throttledPeriods: number | null;
  memoryBytes: number | null;
  oomKills: number | null;
  /** v1: `oomKills` counts this group only (sum a subtree yourself); v2: it is hierarchical. */
  oomKillsLocal: boolean;
  pids: number | null;
}

/** What a read asks for, as bits: `Want.all` or any of the others or'ed together. */
export const Want = {
  cpu: 1,
  throttling: 2,
  memory: 4,
  oomKills: 8,
  pids: 16,
  all: 31,
} as const;

type Reader = (buf: Buffer, n: number, into: Counters) => void;

const NEWLINE = 10;
const SPACE = 32;

/** The unsigned decimal at `from` (up to a space or newline), or null. */
function number(buf: Buffer, from: number, n: number): number | null {
  let value = 0;
  let digits = 0;
  for (let i = from; i < n; i++) {
    const c = buf[i] as number;
    if (c >= 48 && c <= 57) {
      value = value * 10 + (c - 48);
      digits++;
    } else if (c === NEWLINE || c === SPACE) {
      break;
    } else {
      return null;
    }
  }
  return digits > 0 ? value : null;
}

/** The value of line `key value` in a flat-keyed file (cpu.stat, memory.events, ...), or null. */
function keyed(buf: Buffer, n: number, key: Uint8Array): number | null {
  let line = 0;
  while (line < n) {
    let i = 0;
    while (i < key.length && line + i < n && buf[line + i] === key[i]) i++;
    if (i === key.length && buf[line + i] === SPACE) return number(buf, line + i + 1, n);
    const end = buf.indexOf(NEWLINE, line);
    if (end < 0 || end >= n) return null;
    line = end + 1;
  }
  return null;
}

const key = (k: string): Uint8Array => Buffer.from(k, 'latin1');
const THROTTLED_TIME = key('throttled_time');
const NR_THROTTLED = key('nr_throttled');
const USAGE_USEC = key('usage_usec');
const THROTTLED_USEC = key('throttled_usec');
const OOM_KILL = key('oom_kill');

/**
 * Candidate files in order of preference; `needs` skips a file whose text lacks the key; `kind`
 * is what it gives (a read not wanting it skips the file). v1 throttling is read only for a group
 * with a cpu quota (without one nothing throttles it).
 */
const files: {
  name: string;
  needs?: string;
  /** Not looked for once this file was found (it gives the same quantity). */
  unless?: string;
  kind: number;
  quotaOnly?: boolean;
  read: Reader;
}[] = [
  {
    name: 'cpuacct.usage',
    kind: Want.cpu,
    read: (b, n, c) => {
      const ns = number(b, 0, n);
      c.cpuSeconds = ns === null ? null : ns / 1e9;
    },
  },
  {
    // v1 cpu controller: throttling only (usage is cpuacct's).
    name: 'cpu.stat',
    needs: 'throttled_time',
    kind: Want.throttling,
    quotaOnly: true,
    read: (b, n, c) => {
      const ns = keyed(b, n, THROTTLED_TIME);
      c.throttledSeconds = ns === null ? null : ns / 1e9;
      c.throttledPeriods = keyed(b, n, NR_THROTTLED);
    },
  },
  {
    // v2: usage always, throttling where the cpu controller is enabled.
    name: 'cpu.stat',
    needs: 'usage_usec',
    kind: Want.cpu | Want.throttling,
    read: (b, n, c) => {
      if (c.cpuSeconds === null) {
        const us = keyed(b, n, USAGE_USEC);
        c.cpuSeconds = us === null ? null : us / 1e6;
      }
      const us = keyed(b, n, THROTTLED_USEC);
      if (us !== null) {
        c.throttledSeconds = us / 1e6;
        c.throttledPeriods = keyed(b, n, NR_THROTTLED);
      }
    },
  },
  {
    name: 'memory.usage_in_bytes',
    kind: Want.memory,
    read: (b, n, c) => {
      c.memoryBytes = number(b, 0, n);
    },
  },
  {
    name: 'memory.current',
    unless: 'memory.usage_in_bytes',
    kind: Want.memory,
    read: (b, n, c) => {
      c.memoryBytes ??= number(b, 0, n);
    },
  },
  {
    name: 'memory.oom_control',
    kind: Want.oomKills,
    read: (b, n, c) => {
      c.oomKills = keyed(b, n, OOM_KILL);
      c.oomKillsLocal = true;
    },
  },
  {
    name: 'memory.events',
    unless: 'memory.oom_control',
    kind: Want.oomKills,
    read: (b, n, c) => {
      c.oomKills ??= keyed(b, n, OOM_KILL);
    },
  },
  {
    name: 'pids.current',
    kind: Want.pids,
    read: (b, n, c) => {
      c.pids ??= number(b, 0, n);
    },
  },
];

interface Open {
  fd: number;
  read: Reader;
  kind: number;
  quotaOnly: boolean;
}

interface Group {
  /** Null: not found yet (the directories do not exist); retried on the next read. */
  open: Open[] | null;
  /** The OOM figures last read, reused while the host counted no OOM kill. */
  oom: { kills: number | null; local: boolean } | null;
}

const gone = new Set(['ENOENT', 'ENODEV', 'ESTALE']);
const exhausted = new Set(['EMFILE', 'ENFILE']);

function code(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | null)?.code;
}

function empty(): Counters {
  return {
    cpuSeconds: null,
    throttledSeconds: null,
    throttledPeriods: null,
    memoryBytes: null,
    oomKills: null,
    oomKillsLocal: false,
    pids: null,
  };
}

/** The host's count of OOM kills (`/proc/vmstat` `oom_kill`), held open; null where unknown. */
class HostOomKills {
  #fd: number | null | undefined;
  readonly #buf = Buffer.allocUnsafe(16384);

  read(): number | null {
    if (this.#fd === undefined) {
      try {
        this.#fd = fs.openSync('/proc/vmstat', 'r');
      } catch {
        this.#fd = null;
      }
    }
    if (this.#fd === null) return null;
    try {
      return keyed(this.#buf, fs.readSync(this.#fd, this.#buf, 0, this.#buf.length, 0), OOM_KILL);
    } catch {
      return null;
    }
  }

  close(): void {
    if (typeof this.#fd === 'number') fs.closeSync(this.#fd);
    this.#fd = undefined;
  }
}

export class CounterReader {
  readonly #groups = new Map<string, Group>();
  readonly #buf = Buffer.allocUnsafe(4096);
  /** False once opening failed for want of descriptors: from then on nothing is held. */
  #hold = true;
  /** A group's directory list is one array for its life: its key is joined once. */
  readonly #keys = new WeakMap<readonly string[], string>();
  readonly #byDirs = new WeakMap<readonly string[], Group>();
  /** Per parent directory in a v1 hierarchy: the files of its child groups (see `#exists`). */
  readonly #v1Files = new Map<string, Set<string> | null>();
  readonly #hostOom = new HostOomKills();
  /** The host's OOM kill count at the last two passes' starts. */
  #oomSeen: [number | null, number | null] = [null, null];
  /** Whether groups' OOM counts must be read in this pass (true outside passes). */
  #oomFresh = true;
  #reads = 0;

  #key(dirs: readonly string[]): string {
    let key = this.#keys.get(dirs);
    if (key === undefined) {
      key = dirs.join('\0');
      this.#keys.set(dirs, key);
    }
    return key;
  }

  /**
   * Starts a pass over many groups (one scrape): reads the host's OOM kill count, so groups' own
   * counts are re-read only if it moved in this pass or the one before. Reads outside a pass
   * (`endPass`) always read them.
   */
  beginPass(): void {
    const now = this.#hostOom.read();
    const [before, last] = this.#oomSeen;
    this.#oomFresh = now === null || last === null || before === null || now !== last || last !== before;
    this.#oomSeen = [last, now];
  }

  endPass(): void {
    this.#oomFresh = true;
  }

  /**
   * Counters of the group whose directories (one per hierarchy) are `dirs`. `quota`: it has a cpu
   * limit, so v1 throttling is worth a read (a fifth of the reads of a tree without quotas).
   * `want`: which counters (`Want` bits); the others read as null.
   */
  read(dirs: readonly string[], quota = true, want: number = Want.all): Counters {
    if (!this.#hold) return this.#readOnce(dirs, quota, want);
    // By the list's identity first (a scrape reads a thousand groups: a string-keyed lookup
    // each was a twentieth of its time), by its text when the list is new.
    // A group retained away or closed has `open` null: it is looked up again by its text.
    let group = this.#byDirs.get(dirs);
    if (group === undefined || group.open === null) {
      group = this.#groups.get(this.#key(dirs));
      if (group && group.open !== null) this.#byDirs.set(dirs, group);
    }
    if (!group || group.open === null) {
      const key = this.#key(dirs);
      try {
        group = { open: this.#openAll(dirs), oom: null };
      } catch (e) {
        if (!exhausted.has(code(e) ?? '')) throw e;
        // Out of descriptors (a low RLIMIT_NOFILE): give them all back and read as `ps` does.
        this.close();
        this.#hold = false;
        return this.#readOnce(dirs, quota, want);
      }
      this.#groups.set(key, group);
      this.#byDirs.set(dirs, group);
    }
    if (group.open === null) return empty();
    const out = this.#readAll(group, quota, want);
    if (out === null) this.#close(group);
    return out ?? empty();
  }

  /** Reads held files; null when the group went away. */
  #readAll(group: Group, quota: boolean, want: number): Counters | null {
    const out = empty();
    const reuseOom = !this.#oomFresh && group.oom !== null;
    for (const f of group.open ?? []) {
      if ((f.kind & want) === 0 || (f.quotaOnly && !quota)) continue;
      if (f.kind === Want.oomKills && reuseOom) continue;
      let n: number;
      this.#reads++;
      try {
        n = fs.readSync(f.fd, this.#buf, 0, this.#buf.length, 0);
      } catch (e) {
        if (!gone.has(code(e) ?? '')) throw e;
        return null;
      }
      f.read(this.#buf, n, out);
    }
    if (want & Want.oomKills) {
      if (reuseOom && group.oom) {
        out.oomKills = group.oom.kills;
        out.oomKillsLocal = group.oom.local;
      } else {
        group.oom = { kills: out.oomKills, local: out.oomKillsLocal };
      }
    }
    return out;
  }

  /** Opens, reads and closes (once descriptors ran out). */
  #readOnce(dirs: readonly string[], quota: boolean, want: number): Counters {
    const group: Group = { open: this.#openAll(dirs), oom: null };
    try {
      return (group.open && this.#readAll(group, quota, want)) ?? empty();
    } finally {
      this.#close(group);
    }
  }

  /** Closes the descriptors of groups not in `keep` (directory lists as given to `read`). */
  retain(keep: Iterable<readonly string[]>): void {
    const live = new Set<string>();
    for (const dirs of keep) live.add(this.#key(dirs));
    for (const [key, group] of this.#groups) {
      if (live.has(key)) continue;
      this.#close(group);
      this.#groups.delete(key);
    }
    if (this.#groups.size === 0) {
      this.#v1Files.clear();
      this.#hostOom.close();
      this.#oomSeen = [null, null];
    }
  }

  /** Counter files read so far (for benchmarks and tests). */
  get fileReads(): number {
    return this.#reads;
  }

  /** Descriptors held now (for benchmarks and tests). */
  get openFiles(): number {
    let n = 0;
    for (const g of this.#groups.values()) n += g.open?.length ?? 0;
    return n;
  }

  close(): void {
    for (const g of this.#groups.values()) this.#close(g);
    this.#groups.clear();
    this.#v1Files.clear();
    this.#hostOom.close();
    this.#oomSeen = [null, null];
  }

  #close(group: Group): void {
    for (const f of group.open ?? []) {
      try {
        fs.closeSync(f.fd);
      } catch {
        // already closed by the kernel's view of it; nothing to give back
      }
    }
    group.open = null;
    group.oom = null;
  }

  /**
   * Whether a group's directory has a file. Most candidates are absent from most hierarchies, and
   * asking costs a path walk each (a thrown ENOENT from `open` ten times that: 1,000 groups'
   * first scrape took 800 ms). A v1 hierarchy gives all its groups the same files, so one
   * listing per parent directory answers for all its child groups; a v2 group's files depend on
   * its parent's `subtree_control`, so those are asked one by one.
   */
  #exists(dir: string, name: string): boolean {
    const parent = path.dirname(dir);
    let known = this.#v1Files.get(parent);
    if (known === undefined) {
      known = null;
      try {
        const names = fs.readdirSync(dir);
        if (!names.includes('cgroup.controllers')) known = new Set(names);
      } catch {
        // Not there (yet): asked file by file.
      }
      this.#v1Files.set(parent, known);
    }
    return known ? known.has(name) : fs.existsSync(path.join(dir, name));
  }

  #openAll(dirs: readonly string[]): Open[] | null {
    const open: Open[] = [];
    const kept = new Set<string>();
    let hasCpuacct = false;
    let found = false;
    for (const candidate of files) {
      if (candidate.unless !== undefined && kept.has(candidate.unless)) continue;
      for (const dir of dirs) {
        if (!this.#exists(dir, candidate.name)) continue;
        const file = path.join(dir, candidate.name);
        let fd: number;
        try {
          fd = fs.openSync(file, 'r');
        } catch (e) {
          if (gone.has(code(e) ?? '') || code(e) === 'EACCES') continue;
          for (const o of open) fs.closeSync(o.fd);
          throw e;
        }
        found = true;
        let keep = true;
        if (candidate.needs !== undefined) {
          let text = '';
          try {
            const n = fs.readSync(fd, this.#buf, 0, this.#buf.length, 0);
            text = this.#buf.toString('latin1', 0, n);
          } catch {
            keep = false;
          }
          if (!text.includes(candidate.needs)) keep = false;
          // A hybrid host's cgroup2 cpu.stat (usage only) duplicates cpuacct: not worth a read.
          if (candidate.needs === 'usage_usec' && hasCpuacct && !text.includes('throttled_usec'))
            keep = false;
        }
        if (!keep) {
          fs.closeSync(fd);
          continue;
        }
        if (candidate.name === 'cpuacct.usage') hasCpuacct = true;
        kept.add(candidate.name);
        open.push({
          fd,
          read: candidate.read,
          kind: candidate.kind,
          quotaOnly: candidate.quotaOnly === true,
        });
        break;
      }
    }
    return found ? open : null;
  }
}
