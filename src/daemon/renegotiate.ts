/**
 * Renegotiation on a running tree: a child asks its parent for more cpu, memory or pids (or gives
 * some back), and the grant changes live, in the capability tree and in the cgroups, without a
 * restart. The decision is the pure policy of `fairness.ts`; this module measures, commits and
 * writes.
 *
 * One request, in order (requests are serialised per tree):
 * 1. Validate; find the parent, the child's reservation and the parent's slack (caps).
 * 2. If slack is short: measure every sibling process that reserves the quantity (cgroup usage,
 *    cpu as a rate over the last sampling interval, ~1 s) and turn it into a demand (usage plus
 *    a margin) and, for memory and pids, a hard floor (usage plus margin: nothing is OOM-killed
 *    or refused a fork to make room). `planReclaim` decides; all quantities or none.
 * 3. Commit in caps: donors lowered first (that frees the parent's slack), then the requester
 *    raised (caps `renegotiate`), so the tree's sums stay exact at every step.
 * 4. Write the cgroups in the order cgroup v1 accepts: lower the donors (children first: any
 *    sub-group of a donor with a higher cpu quota is clamped before the donor), then raise the
 *    requester. A supervisor donor is first sent `reclaim` with a deadline, so it can shrink its
 *    own children; the limits are enforced when it acknowledges (`release`) or at the deadline.
 *    A failed write rolls caps and the writes done so far back, and the request is denied.
 * 5. The live limits and CAPTREE_GRANT of every changed child are updated (a later restart keeps
 *    the new grant), and each change is reported (`onChange`: the journal and `grant` messages).
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { childrenOf, grantOf, type Requires, remainingOf, renegotiate } from '../caps/index.ts';
import { type Delta, type GrantQuantities, MAX_CPU } from '../child/protocol.ts';
import type { ProcessSpec } from '../manifest/index.ts';
import type { Limits } from '../runtime/cgroup/index.ts';
import type { RunningTree } from './build-tree.ts';
import { type Donor, planReclaim, planReturn } from './fairness.ts';
import { liveChildren } from './live-limits.ts';

type Quantity = 'cpu' | 'memory' | 'pids';
const QUANTITIES: readonly Quantity[] = ['cpu', 'memory', 'pids'];

export type RenegotiationResult =
  | { ok: true; grant: GrantQuantities; changes: GrantChange[] }
  | { ok: false; reasons: string[] };

export interface GrantChange {
  path: string;
  grant: GrantQuantities;
  /**
   * `request`: the requester grew; `reclaim`: a sibling gave back for it; `release`: given back;
   * `return`: a lender got (some of) what it declared back, because it needs it or restarted.
   */
  cause: 'request' | 'reclaim' | 'release' | 'return';
  /** The path whose message caused it. */
  by: string;
}

export interface RenegotiatorOptions {
  /** Usage sampling interval, ms (default 1000). */
  sampleMs?: number;
  /** How long a supervisor donor gets to shrink its own children after `reclaim`, ms (default 250). */
  reclaimDeadlineMs?: number;
  /** Whether `path` is a supervisor child with a live channel (gets `reclaim`, `grant`). */
  isSupervisor?(path: string): boolean;
  /** Sends `reclaim` to a supervisor donor; resolves when it acknowledged or at the deadline. */
  reclaim?(path: string, amounts: Delta, deadlineMs: number): Promise<void>;
  /** Every grant change, after it is in caps and the cgroups. */
  onChange?(change: GrantChange): void;
}

interface Sample {
  usec: number;
  at: number;
}

/** Margins turning measured usage into a demand (and the memory/pids floor). */
const CPU_MARGIN_MILLI = 20;
const MEMORY_MARGIN_MIN = 16 * 2 ** 20;
const PIDS_MARGIN_MIN = 4;
/** A lender is busy when it uses this share of its lowered grant (cpu over ~1 s, memory now). */
const BUSY = 0.85;
/**
 * The least cpu a grant can be, in millicores: what the kernel enforces at least (cgroup v1 takes
 * no quota below 1 ms per 100 ms period, so 0.001 cores would run as 0.01). A grant is rounded up
 * to it, so what is reported is what is enforced.
 */
export const MIN_CPU_MILLI = 10;

export class Renegotiator {
  readonly #tree: RunningTree;
  readonly #options: RenegotiatorOptions;
  readonly #sampleMs: number;
  #samples = new Map<string, { last: Sample; prev: Sample | null }>();
  #timer: NodeJS.Timeout | null = null;
  #returning = false;
  /** Per lender, how much of each quantity siblings' requests took from it (internal units): what comes back. */
  readonly #lent = new Map<string, Partial<Record<Quantity, number>>>();
  #queue: Promise<unknown> = Promise.resolve();
  #specs: Map<string, ProcessSpec>;

  constructor(tree: RunningTree, options: RenegotiatorOptions = {}) {
    this.#tree = tree;
    this.#options = options;
    this.#sampleMs = options.sampleMs ?? 1000;
    this.#specs = processSpecs(tree);
  }

  /** Reads the tree's process children again (after an apply changed the manifest). */
  refresh(): void {
    this.#specs = processSpecs(this.#tree);
  }

  /** Samples cpu usage of every process child that could give back, each interval, from now on. */
  start(): void {
    if (this.#timer) return;
    this.#sampleAll();
    this.#timer = setInterval(() => {
      this.#sampleAll();
      this.#returnDue();
    }, this.#sampleMs);
    this.#timer.unref();
  }

  /**
   * A process child restarted: it starts from what it declared. A lender gets back what the
   * policy allows (as if it needed all it declared); a borrower gives back what it held above.
   */
  restarted(path: string): Promise<void> {
    if (!this.#specs.has(path)) return Promise.resolve();
    return this.#serial(async () => {
      const excess: Delta = {};
      for (const q of QUANTITIES) {
        const declared = this.#declared(path, q);
        const own = internal(q, grantOf(this.#tree.caps, path)?.[q].reserved ?? 0);
        if (declared > 0 && own > declared) excess[q] = toUser(q, own - declared);
      }
      if (Object.keys(excess).length > 0) await this.#release(path, excess);
      await this.#giveBack(path, 'restart');
      this.#lent.delete(path);
    });
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  /** The quantities `path` reserves now (null: none, it shares its parent's remainder). */
  grantOf(path: string): GrantQuantities {
    const g = grantOf(this.#tree.caps, path);
    const r = (x: { reserved: number } | undefined) => (x && x.reserved > 0 ? x.reserved : null);
    return { cpu: r(g?.cpu), memory: r(g?.memory), pids: r(g?.pids) };
  }

  /**
   * Why grants cannot change now (an apply of a changed manifest installs a whole new capability
   * tree, which would undo a change made meanwhile), or null. Set by the daemon.
   */
  pausedBy: (() => string | null) | null = null;

  /** `path` asks for more. Serialised with every other renegotiation of the tree. */
  request(path: string, delta: Delta): Promise<RenegotiationResult> {
    const paused = this.pausedBy?.();
    if (paused) return Promise.resolve({ ok: false, reasons: [paused] });
    return this.#serial(() => this.#request(path, delta));
  }

  /** `path` gives back. */
  release(path: string, delta: Delta): Promise<RenegotiationResult> {
    const paused = this.pausedBy?.();
    if (paused) return Promise.resolve({ ok: false, reasons: [paused] });
    return this.#serial(() => this.#release(path, delta));
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => {});
    return run;
  }

  async #request(path: string, delta: Delta): Promise<RenegotiationResult> {
    const caps = this.#tree.caps;
    const amounts = toInternal(delta);
    if (typeof amounts === 'string') return { ok: false, reasons: [amounts] };
    const cut = path.lastIndexOf('/');
    const parentPath = path.slice(0, cut);
    const current = requiresOf(this.#tree, path);
    if (cut <= 0 || !current || !this.#specs.has(path))
      return { ok: false, reasons: [`${path} is not a process child of this tree`] };
    const parentRemaining = remainingOf(caps, parentPath)!;
    const parentGrant = grantOf(caps, parentPath)!;
    const reasons: string[] = [];
    /** Per quantity: the requester's new reservation and the donors' new ones. */
    const plans = new Map<Quantity, { grant: number; takes: { id: string; grant: number }[] }>();
    let measured: Map<string, Measured> | null = null;
    for (const q of QUANTITIES) {
      const asked = amounts[q];
      if (asked === undefined) continue;
      if (parentGrant[q].reserved === 0) {
        reasons.push(
          `${q}: ${parentPath} reserves no ${q} (it shares its own parent's remainder), so it has none to hand out`,
        );
        continue;
      }
      const slack = internal(q, parentRemaining[q]);
      const own = internal(q, grantOf(caps, path)![q].reserved);
      // Round a tiny grant up to what the kernel enforces.
      const amount = q === 'cpu' ? Math.max(asked, MIN_CPU_MILLI - own) : asked;
      let donors: Donor[] = [];
      if (amount > slack) {
        measured ??= await this.#measureSiblings(parentPath, path);
        donors = this.#donors(q, measured);
      }
      const plan = planReclaim({
        slack,
        requester: { id: path, grant: own, weight: weightOf(this.#specs.get(path)) },
        amount,
        donors,
      });
      if (!plan.ok) {
        reasons.push(
          `${q}: asked +${show(q, amount)}, at most +${show(q, plan.available)} can be granted now ` +
            `(${parentPath} has ${show(q, slack)} unreserved; ` +
            (donors.length === 0
              ? 'no measured sibling reserves it'
              : plan.reclaimable === 0
                ? 'no sibling has any to spare: each uses what it holds or is at its fair share'
                : `siblings using less than they hold could give back ${show(q, plan.reclaimable)}`) +
            `; the fair share lets ${path} grow by ${show(q, Math.max(slack, plan.fairGrowth))})`,
        );
        continue;
      }
      plans.set(q, { grant: plan.grant, takes: plan.takes.map((t) => ({ id: t.id, grant: t.grant })) });
    }
    if (reasons.length > 0) return { ok: false, reasons };

    // New reservations per changed path.
    const donorGrants = new Map<string, Partial<Record<Quantity, number>>>();
    for (const [q, p] of plans)
      for (const t of p.takes) donorGrants.set(t.id, { ...donorGrants.get(t.id), [q]: t.grant });
    const requesterGrant: Partial<Record<Quantity, number>> = {};
    for (const [q, p] of plans) requesterGrant[q] = p.grant;

    // Supervisor donors may shrink their own children first.
    const deadline = this.#options.reclaimDeadlineMs ?? 250;
    await Promise.all(
      [...donorGrants].flatMap(([donor, grants]) => {
        if (!this.#options.isSupervisor?.(donor) || !this.#options.reclaim) return [];
        const give: Delta = {};
        for (const q of QUANTITIES) {
          const g = grants[q];
          if (g !== undefined) give[q] = toUser(q, internal(q, grantOf(caps, donor)![q].reserved) - g);
        }
        return [this.#options.reclaim(donor, give, deadline)];
      }),
    );

    const steps: Step[] = [
      ...[...donorGrants].map(([p, g]) => ({ path: p, grants: g, cause: 'reclaim' as const })),
      { path, grants: requesterGrant, cause: 'request' as const },
    ];
    const before = new Map([...donorGrants.keys()].map((d) => [d, grantOf(caps, d)!]));
    const failed = this.#apply(steps);
    if (failed) return { ok: false, reasons: [failed] };
    for (const [donor, grants] of donorGrants) {
      const was = before.get(donor)!;
      const lent = { ...this.#lent.get(donor) };
      for (const q of QUANTITIES) {
        const g = grants[q];
        if (g !== undefined) lent[q] = (lent[q] ?? 0) + internal(q, was[q].reserved) - g;
      }
      this.#lent.set(donor, lent);
    }
    const changes = steps.map((s) => ({
      path: s.path,
      grant: this.grantOf(s.path),
      cause: s.cause,
      by: path,
    }));
    for (const c of changes) this.#options.onChange?.(c);
    return { ok: true, grant: this.grantOf(path), changes };
  }

  async #release(path: string, delta: Delta): Promise<RenegotiationResult> {
    const amounts = toInternal(delta);
    if (typeof amounts === 'string') return { ok: false, reasons: [amounts] };
    const current = requiresOf(this.#tree, path);
    if (!current || !this.#specs.has(path))
      return { ok: false, reasons: [`${path} is not a process child of this tree`] };
    const grants: Partial<Record<Quantity, number>> = {};
    const reasons: string[] = [];
    for (const q of QUANTITIES) {
      const amount = amounts[q];
      if (amount === undefined) continue;
      const own = internal(q, grantOf(this.#tree.caps, path)![q].reserved);
      const least = q === 'cpu' ? MIN_CPU_MILLI : 1;
      if (own <= least || amount >= own)
        reasons.push(
          `${q}: cannot give back ${show(q, amount)} of a reservation of ${show(q, own)} (keep at least ${show(q, least)}${q === 'cpu' ? ', the least quota the kernel enforces' : ''})`,
        );
      // Giving back below what the kernel enforces keeps the enforced minimum.
      else grants[q] = Math.max(least, own - amount);
    }
    if (reasons.length > 0) return { ok: false, reasons };
    const step: Step = { path, grants, cause: 'release' };
    const failed = this.#apply([step]);
    if (failed) return { ok: false, reasons: [failed] };
    const change = { path, grant: this.grantOf(path), cause: 'release' as const, by: path };
    this.#options.onChange?.(change);
    return { ok: true, grant: change.grant, changes: [change] };
  }

  /**
   * Commits `steps` in caps, in order (shrinking ones first), then writes their cgroups in the same
   * order; on any failure undoes both and returns why.
   */
  #apply(steps: readonly Step[]): string | null {
    const caps = this.#tree.caps;
    const before = steps.map((s) => ({
      path: s.path,
      requires: requiresOf(this.#tree, s.path)!,
      limits: this.#currentLimits(s.path, limitsOf(s.grants)),
    }));
    const done: number[] = [];
    const undoCaps = () => {
      for (const i of done.reverse()) renegotiate(caps, before[i]!.path, before[i]!.requires);
    };
    for (const [i, s] of steps.entries()) {
      const next = withQuantities(before[i]!.requires, s.grants);
      const r = renegotiate(caps, s.path, next);
      if (!r.ok) {
        undoCaps();
        return `capability tree refused ${s.path}: ${r.reasons.map((x) => x.message).join('; ')}`;
      }
      done.push(i);
    }
    const written: { path: string; limits: Limits }[] = [];
    try {
      for (const [i, s] of steps.entries()) {
        const limits = limitsOf(s.grants);
        const group = this.#tree.runtime.groupFor(s.path);
        if (limits.cpu != null) clampCpuQuotas(group.dirs, limits.cpu);
        group.setLimits(limits);
        written.push({ path: s.path, limits: before[i]!.limits });
      }
    } catch (err) {
      // Back to what was there, in reverse (a raise undone before the lowering it relied on).
      for (const w of written.reverse()) {
        try {
          this.#tree.runtime.groupFor(w.path).setLimits(w.limits);
        } catch {
          // Best effort: the original failure is what the requester hears about.
        }
      }
      undoCaps();
      return `could not apply the new limits: ${(err as Error).message}`;
    }
    const live = liveChildren(this.#tree.runtime);
    for (const s of steps) {
      const entry = live.get(s.path);
      if (!entry) continue;
      Object.assign(entry.limits, limitsOf(s.grants));
      if (entry.env.CAPTREE_GRANT !== undefined)
        entry.env.CAPTREE_GRANT = JSON.stringify(this.grantOf(s.path));
    }
    return null;
  }

  /** The limits `path` holds now for the keys of `like` (to undo a write). */
  #currentLimits(path: string, like: Limits): Limits {
    const g = this.grantOf(path);
    const out: Limits = {};
    for (const q of QUANTITIES) if (like[q] !== undefined) out[q] = g[q];
    return out;
  }

  /** What `path`'s manifest declares of `q` (internal units; 0: none reserved). */
  #declared(path: string, q: Quantity): number {
    const r = this.#specs.get(path)?.requires;
    const v = r ? r[q] : null;
    return v === null || v === undefined ? 0 : internal(q, v);
  }

  /** Cores `path` used over the last sampling interval, or null before two samples. */
  #cpuRate(path: string): number | null {
    const s = this.#samples.get(path);
    if (!s?.prev || s.last.at <= s.prev.at) return null;
    return Math.max(0, (s.last.usec - s.prev.usec) / 1000 / (s.last.at - s.prev.at));
  }

  /** Each interval: lenders using (nearly) all of their lowered cpu or memory get some back. */
  #returnDue(): void {
    if (this.#returning) return;
    if (this.#lent.size === 0) return;
    const due = [...this.#lent.keys()].filter((p) => this.#needsBack(p) !== null);
    if (due.length === 0) return;
    this.#returning = true;
    void this.#serial(async () => {
      for (const p of due) await this.#giveBack(p, 'busy');
    }).finally(() => {
      this.#returning = false;
    });
  }

  /** Per quantity, what `path` needs now (internal units), where it holds less than it declared and is using it up. */
  #needsBack(path: string): Partial<Record<Quantity, number>> | null {
    // Only what siblings took comes back by itself: what a child released on its own stays released.
    const lent = this.#lent.get(path);
    if (!lent) return null;
    const g = grantOf(this.#tree.caps, path);
    if (!g) return null;
    const out: Partial<Record<Quantity, number>> = {};
    const cpuOwn = internal('cpu', g.cpu.reserved);
    const rate = this.#cpuRate(path);
    if ((lent.cpu ?? 0) > 0 && cpuOwn > 0 && rate !== null && rate * 1000 >= cpuOwn * BUSY)
      out.cpu = Math.ceil(rate * 1000 * 1.25) + CPU_MARGIN_MILLI;
    const memOwn = g.memory.reserved;
    if ((lent.memory ?? 0) > 0 && memOwn > 0) {
      let used: number | null = null;
      try {
        used = this.#tree.runtime.groupFor(path).usage().memoryBytes;
      } catch {}
      if (used !== null && used >= memOwn * BUSY)
        out.memory = used + Math.max(MEMORY_MARGIN_MIN, Math.ceil(used / 4));
    }
    return Object.keys(out).length > 0 ? out : null;
  }

  /** Gives `path` back what `planReturn` allows, per quantity, from slack, then from siblings above their share. */
  async #giveBack(path: string, why: 'busy' | 'restart'): Promise<void> {
    const caps = this.#tree.caps;
    const needs = why === 'busy' ? this.#needsBack(path) : null;
    if (why === 'busy' && !needs) return;
    const parentPath = path.slice(0, path.lastIndexOf('/'));
    let measured: Map<string, Measured> | null = null;
    for (const q of QUANTITIES) {
      const declared = this.#declared(path, q);
      const own = internal(q, grantOf(caps, path)?.[q].reserved ?? 0);
      if (declared === 0 || own === 0 || own >= declared) continue;
      const lent = this.#lent.get(path)?.[q] ?? 0;
      // Busy: back up to what was lent (never above what it declared); restarted: all it declared.
      const need = why === 'restart' ? declared : needs?.[q];
      if (need === undefined) continue;
      const demand = why === 'restart' ? need : Math.min(need, own + lent);
      const slack = internal(q, remainingOf(caps, parentPath)![q]);
      if (demand - own > slack) measured ??= await this.#measureSiblings(parentPath, path);
      const plan = planReturn({
        slack,
        lender: { id: path, grant: own, declared, demand, weight: weightOf(this.#specs.get(path)) },
        donors: measured ? this.#donors(q, measured) : [],
      });
      if (!plan) continue;
      const steps: Step[] = [
        ...plan.takes.map((t) => ({ path: t.id, grants: { [q]: t.grant }, cause: 'reclaim' as const })),
        { path, grants: { [q]: plan.grant }, cause: 'return' as const },
      ];
      if (this.#apply(steps)) continue;
      if (why === 'busy')
        this.#lent.set(path, { ...this.#lent.get(path), [q]: Math.max(0, lent - (plan.grant - own)) });
      for (const st of steps)
        this.#options.onChange?.({ path: st.path, grant: this.grantOf(st.path), cause: st.cause, by: path });
    }
  }

  /** Siblings that could give back `q`: measured, reserving some. */
  #donors(q: Quantity, measured: Map<string, Measured>): Donor[] {
    return [...measured.values()].flatMap((m) => {
      const grant = internal(q, grantOf(this.#tree.caps, m.path)![q].reserved);
      if (grant === 0) return [];
      const d = demandOf(q, m);
      if (d === null) return [];
      return [
        {
          id: m.path,
          grant,
          demand: d,
          weight: m.weight,
          priority: m.priority,
          floor: q === 'cpu' ? MIN_CPU_MILLI : floorOf(q, m),
        },
      ];
    });
  }

  #sampleAll(): void {
    const now = performance.now();
    for (const path of this.#specs.keys()) {
      let usec: number | null = null;
      try {
        usec = this.#tree.runtime.groupFor(path).usage().cpuUsec;
      } catch {
        continue;
      }
      if (usec === null) continue;
      const s = this.#samples.get(path);
      this.#samples.set(path, { last: { usec, at: now }, prev: s ? s.last : null });
    }
  }

  /** Usage of every sibling process of `path` (cpu as a rate over ~the last sampling interval). */
  async #measureSiblings(parentPath: string, path: string): Promise<Map<string, Measured>> {
    const names = childrenOf(this.#tree.caps, parentPath) ?? [];
    const siblings = names.map((n) => `${parentPath}/${n}`).filter((p) => p !== path && this.#specs.has(p));
    const read = () => {
      const at = performance.now();
      return new Map(
        siblings.map((p) => {
          try {
            return [p, { usage: this.#tree.runtime.groupFor(p).usage(), at }] as const;
          } catch {
            return [p, null] as const;
          }
        }),
      );
    };
    let now = read();
    const minWindow = Math.min(200, this.#sampleMs / 2);
    // The reference reading: the latest sample at least minWindow old; else measure for minWindow.
    const reference = new Map<string, Sample>();
    let missing = false;
    for (const p of siblings) {
      const s = this.#samples.get(p);
      const at = now.get(p)?.at ?? 0;
      const ref =
        s && at - s.last.at >= minWindow ? s.last : s?.prev && at - s.prev.at >= minWindow ? s.prev : null;
      if (ref) reference.set(p, ref);
      else missing = true;
    }
    if (missing) {
      for (const [p, r] of now)
        if (r?.usage.cpuUsec != null && !reference.has(p))
          reference.set(p, { usec: r.usage.cpuUsec, at: r.at });
      await new Promise((resolve) => setTimeout(resolve, minWindow));
      now = read();
    }
    const out = new Map<string, Measured>();
    for (const p of siblings) {
      const r = now.get(p);
      if (!r) continue;
      const ref = reference.get(p);
      const cpu =
        ref && r.usage.cpuUsec !== null && r.at > ref.at
          ? Math.max(0, (r.usage.cpuUsec - ref.usec) / 1000 / (r.at - ref.at))
          : null;
      const spec = this.#specs.get(p);
      out.set(p, {
        path: p,
        cpu,
        memory: r.usage.memoryBytes,
        pids: r.usage.pids,
        weight: weightOf(spec),
        priority: spec?.priority ?? 'normal',
      });
    }
    return out;
  }
}

interface Measured {
  path: string;
  /** Cores, averaged over the last interval. */
  cpu: number | null;
  memory: number | null;
  pids: number | null;
  weight: number;
  priority: 'high' | 'normal' | 'low';
}

interface Step {
  path: string;
  /** New reservations, internal units. */
  grants: Partial<Record<Quantity, number>>;
  cause: GrantChange['cause'];
}

/** Demand from measured usage (internal units); null when unmeasurable (then it is no donor). */
function demandOf(q: Quantity, m: Measured): number | null {
  if (q === 'cpu') return m.cpu === null ? null : Math.ceil(m.cpu * 1000 * 1.25) + CPU_MARGIN_MILLI;
  return floorOf(q, m) ?? null;
}

/** Hard floor: memory and pids never below current usage plus a margin. */
function floorOf(q: Quantity, m: Measured): number | undefined {
  if (q === 'memory')
    return m.memory === null ? undefined : m.memory + Math.max(MEMORY_MARGIN_MIN, Math.ceil(m.memory / 4));
  if (q === 'pids')
    return m.pids === null ? undefined : m.pids + Math.max(PIDS_MARGIN_MIN, Math.ceil(m.pids / 4));
  return undefined;
}

/** Weight under the policy: `cpuWeight` (100 = the default), for every quantity. */
function weightOf(spec: ProcessSpec | undefined): number {
  return spec?.requires.cpuWeight ?? 100;
}

function internal(q: Quantity, user: number): number {
  return q === 'cpu' ? Math.round(user * 1000) : user;
}

function toUser(q: Quantity, v: number): number {
  return q === 'cpu' ? v / 1000 : v;
}

function show(q: Quantity, v: number): string {
  if (q === 'cpu') return `${v / 1000} cores`;
  if (q === 'memory') return v % 2 ** 20 === 0 ? `${v / 2 ** 20}Mi` : `${v} bytes`;
  return String(v);
}

function toInternal(delta: Delta): Partial<Record<Quantity, number>> | string {
  const out: Partial<Record<Quantity, number>> = {};
  for (const q of QUANTITIES) {
    const v = delta[q];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) return `${q} must be a positive number`;
    if (v > (q === 'cpu' ? MAX_CPU : Number.MAX_SAFE_INTEGER))
      return `${q} ${v} is more than any host holds (at most ${q === 'cpu' ? MAX_CPU : Number.MAX_SAFE_INTEGER})`;
    const n = internal(q, v);
    if (q === 'cpu' && (n === 0 || Math.abs(n - v * 1000) > 1e-6))
      return `cpu must be a multiple of 0.001 core, got ${v}`;
    if (!Number.isSafeInteger(n)) return `${q} must be an integer`;
    out[q] = n;
  }
  if (Object.keys(out).length === 0) return 'give at least one of cpu, memory, pids';
  return out;
}

function limitsOf(grants: Partial<Record<Quantity, number>>): Limits {
  const out: Limits = {};
  for (const q of QUANTITIES) {
    const v = grants[q];
    if (v !== undefined) out[q] = toUser(q, v);
  }
  return out;
}

/** The node's current `requires` in the capability tree (what `renegotiate` replaces). */
function requiresOf(tree: RunningTree, path: string): Requires | undefined {
  return tree.caps.index.get(path)?.requires;
}

function withQuantities(requires: Requires, grants: Partial<Record<Quantity, number>>): Requires {
  const out: { -readonly [K in keyof Requires]: Requires[K] } = { ...requires };
  if (grants.cpu !== undefined) {
    const cores = grants.cpu / 1000;
    out.cpu = typeof requires.cpu === 'object' && requires.cpu !== null ? { ...requires.cpu, cores } : cores;
  }
  if (grants.memory !== undefined) out.memory = grants.memory;
  if (grants.pids !== undefined) out.pids = grants.pids;
  return out;
}

/** Every process child of the manifest, by path. */
function processSpecs(tree: RunningTree): Map<string, ProcessSpec> {
  const out = new Map<string, ProcessSpec>();
  const walk = (n: RunningTree['manifest']['root']) => {
    for (const c of n.children) {
      if (c.kind === 'process') out.set(c.path, c);
      else walk(c);
    }
  };
  walk(tree.manifest.root);
  return out;
}

/**
 * cgroup v1 refuses a parent cpu quota below a child's: before lowering a group to `cores`,
 * clamp every sub-group below it that allows more (deepest first). v2 caps children by itself.
 */
export function clampCpuQuotas(dirs: readonly string[], cores: number): void {
  for (const dir of dirs) {
    if (!existsSync(join(dir, 'cpu.cfs_quota_us'))) continue;
    for (const sub of subdirs(dir)) clampBelow(sub, cores);
  }
}

function clampBelow(dir: string, cores: number): void {
  for (const sub of subdirs(dir)) clampBelow(sub, cores);
  const quota = readInt(join(dir, 'cpu.cfs_quota_us'));
  const period = readInt(join(dir, 'cpu.cfs_period_us')) ?? 100_000;
  if (quota === null || quota < 0 || quota <= cores * period) return;
  writeFileSync(join(dir, 'cpu.cfs_quota_us'), String(Math.max(1000, Math.floor(cores * period))));
}

function subdirs(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => join(dir, e.name));
  } catch {
    return [];
  }
}

function readInt(file: string): number | null {
  try {
    const n = Number(readFileSync(file, 'utf8').trim());
    return Number.isFinite(n) ? n : null;
  } catch {
    return null;
  }
}
