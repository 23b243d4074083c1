/**
 * The none driver: no cgroups (unprivileged, no delegation, or no hierarchy mounted). A group is a
 * set of process groups: the launcher starts each child as a process-group leader and the
 * supervisor calls `track(pid)`. Limits are recorded as `not enforced`, never silently dropped.
 *
 * Hazards: a process that calls setsid() or setpgid() leaves its process group and is no longer
 * seen or killed here; emptiness is polled from /proc because no event exists. This is the
 * weakest containment captree offers, and admission must refuse it unless advisory mode is on.
 */
import * as fs from 'node:fs';
import { pollUntil } from './group.ts';
import type { AppliedLimits, CgroupGroup, CreateOptions, Limits, Usage } from './types.ts';

function errCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e
    ? String((e as { code: unknown }).code)
    : undefined;
}

/** Pids of live (non-zombie) processes whose process group is in `pgids`. */
function scanProc(pgids: ReadonlySet<number>): number[] {
  if (pgids.size === 0) return [];
  const out: number[] = [];
  for (const ent of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(ent)) continue;
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${ent}/stat`, 'utf8');
    } catch {
      continue;
    }
    // comm may contain spaces and parentheses: fields start after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const state = rest[0];
    const pgrp = Number(rest[2]);
    if (state !== 'Z' && pgids.has(pgrp)) out.push(Number(ent));
  }
  return out.sort((a, b) => a - b);
}

export class NoneGroup implements CgroupGroup {
  readonly name: string;
  readonly path: string;
  readonly driver = 'none' as const;
  readonly procsFiles: readonly string[] = [];
  readonly dirs: readonly string[] = [];
  #pgids = new Set<number>();
  #children = new Map<string, NoneGroup>();
  #parent: NoneGroup | null;

  constructor(name: string, parent: NoneGroup | null = null) {
    this.name = name;
    this.path = parent ? `${parent.path}/${name}` : name;
    this.#parent = parent;
  }

  createChild(name: string, options: CreateOptions = {}): CgroupGroup {
    const existing = this.#children.get(name);
    if (existing) {
      if (options.reuse) return existing;
      throw new Error(`group ${this.path}/${name} exists`);
    }
    const g = new NoneGroup(name, this);
    this.#children.set(name, g);
    return g;
  }

  setLimits(limits: Limits): AppliedLimits {
    const out: AppliedLimits = {};
    for (const k of Object.keys(limits) as (keyof Limits)[])
      if (limits[k] !== undefined) out[k] = 'not enforced';
    return out;
  }

  #allPgids(into = new Set<number>()): Set<number> {
    for (const p of this.#pgids) into.add(p);
    for (const c of this.#children.values()) c.#allPgids(into);
    return into;
  }

  enforced(): { cpu?: number | null; memory?: number | null; pids?: number | null } {
    return {};
  }

  usage(): Usage {
    return { cpuUsec: null, memoryBytes: null, pids: this.pids().length };
  }

  oomKills(): number {
    return 0;
  }

  pids(): number[] {
    return scanProc(this.#allPgids());
  }

  track(pid: number): void {
    this.#pgids.add(pid);
  }

  async kill(): Promise<void> {
    for (const pgid of this.#allPgids()) {
      try {
        process.kill(-pgid, 'SIGKILL');
      } catch (e) {
        if (errCode(e) !== 'ESRCH') throw e;
      }
    }
  }

  isEmpty(): boolean {
    return this.pids().length === 0;
  }

  waitEmpty(signal?: AbortSignal): Promise<void> {
    return pollUntil(() => this.isEmpty(), 50, signal);
  }

  async remove(): Promise<void> {
    if (this.#parent) this.#parent.#children.delete(this.name);
    this.#children.clear();
    this.#pgids.clear();
  }
}
