/**
 * The renegotiation policy, pure: who gives back how much when a child asks its parent for more
 * of one quantity (cpu, memory or pids) than the parent has unreserved. No I/O, no clock; every
 * amount is an integer in internal units (millicores, bytes, count), so sums are exact.
 *
 * Policy: weighted max-min fair share (water-filling).
 * - The pool is the parent's slack plus the reservations of the requester and of every candidate
 *   donor (its siblings whose usage was measured). Each party has a demand (the requester: its
 *   grant plus what it asks; a sibling: its measured usage plus a margin) and a weight.
 * - `maxMinFair` divides the pool: every party gets its demand or an equal level per unit of
 *   weight, whichever is less, the level chosen so the pool (or the total demand) is used up.
 *   So nobody gets less than min(demand, fair share), fair share = pool × weight / Σ weights.
 * - Slack is handed out first. A request that slack alone cannot meet is met by reclaiming from
 *   siblings holding more than their allocation, and only if the requester's allocation covers
 *   what it asked; otherwise it is denied, with the most that could be granted now. All or
 *   nothing: a request is never half-granted.
 * - A donor gives back at most `grant - max(allocation, floor)`: never below min(its demand, its
 *   fair share), never below its hard floor (memory: current usage + margin, so nothing is
 *   OOM-killed to make room; pids: current count + margin), and never more than is needed.
 * - Order of giving back: priority `low` first, then `normal`, then `high`; within a priority the
 *   largest excess first, then by id. A donor's grant only ever goes down, the requester's only up,
 *   and slack + Σ grants is the same before and after (tested with fast-check in
 *   test/daemon/fairness.test.ts).
 */

export type Priority = 'high' | 'normal' | 'low';

export interface Claim {
  /** Integer, >= 0. */
  readonly demand: number;
  /** Integer, >= 1. */
  readonly weight: number;
}

/**
 * Weighted max-min fair division of `capacity` among `claims` (integers): the result `a` has
 * `a[i] <= demand[i]`, `Σa = min(capacity, Σdemand)` and `a[i] >= min(demand[i], ⌊capacity ×
 * weight[i] / Σweight⌋)`. Exact: the comparisons use BigInt, so bytes × weights cannot overflow.
 */
export function maxMinFair(capacity: number, claims: readonly Claim[]): number[] {
  checkInt(capacity, 'capacity', 0);
  for (const c of claims) {
    checkInt(c.demand, 'demand', 0);
    checkInt(c.weight, 'weight', 1);
  }
  const out = claims.map(() => 0);
  // Ascending by demand per unit of weight: the parties that saturate first.
  const order = claims
    .map((_, i) => i)
    .sort((a, b) => {
      const ca = claims[a]!;
      const cb = claims[b]!;
      const l = BigInt(ca.demand) * BigInt(cb.weight);
      const r = BigInt(cb.demand) * BigInt(ca.weight);
      return l < r ? -1 : l > r ? 1 : a - b;
    });
  let remaining = BigInt(capacity);
  let weights = claims.reduce((s, c) => s + BigInt(c.weight), 0n);
  let k = 0;
  // Saturate every party whose demand is below the current level (remaining / weights).
  for (; k < order.length; k++) {
    const c = claims[order[k]!]!;
    if (BigInt(c.demand) * weights > remaining * BigInt(c.weight)) break;
    out[order[k]!] = c.demand;
    remaining -= BigInt(c.demand);
    weights -= BigInt(c.weight);
  }
  if (k === order.length) return out;
  // The rest share what is left by weight; each one's demand is above its share, so the
  // leftover units (fewer than the parties left) can go one each without passing a demand.
  const rest = order.slice(k);
  let given = 0n;
  for (const i of rest) {
    const share = (remaining * BigInt(claims[i]!.weight)) / weights;
    out[i] = Number(share);
    given += share;
  }
  let leftover = remaining - given;
  for (const i of rest) {
    if (leftover === 0n) break;
    out[i]! += 1;
    leftover -= 1n;
  }
  return out;
}

/** The floor of an equal split by weight, what `maxMinFair` guarantees to whoever demands it. */
export function fairShare(capacity: number, weight: number, totalWeight: number): number {
  return Number((BigInt(capacity) * BigInt(weight)) / BigInt(totalWeight));
}

export interface Donor {
  readonly id: string;
  /** Current reservation. */
  readonly grant: number;
  /** Measured usage plus margin: what it would keep if the pool were large enough. */
  readonly demand: number;
  readonly weight: number;
  readonly priority: Priority;
  /** Hard minimum whatever fairness says (memory: usage + margin). Default 0. */
  readonly floor?: number;
}

export interface ReclaimInput {
  /** The parent's unreserved remainder. */
  readonly slack: number;
  readonly requester: { readonly id: string; readonly grant: number; readonly weight: number };
  /** How much more the requester asks for (> 0). */
  readonly amount: number;
  readonly donors: readonly Donor[];
}

export interface Take {
  readonly id: string;
  readonly amount: number;
  /** The donor's reservation afterwards. */
  readonly grant: number;
}

export type ReclaimPlan =
  | {
      readonly ok: true;
      /** The requester's reservation afterwards: its grant plus `amount`. */
      readonly grant: number;
      readonly fromSlack: number;
      readonly takes: readonly Take[];
      /** Slack afterwards. */
      readonly slack: number;
    }
  | {
      readonly ok: false;
      /** The most the requester could be granted now (< amount): asking for it succeeds. */
      readonly available: number;
      /** Of which from slack. */
      readonly slack: number;
      /** For the amount asked: what the siblings could give back above their floors and fair allocations. */
      readonly reclaimable: number;
      /** For the amount asked: the requester's allocation under the policy, minus its grant. */
      readonly fairGrowth: number;
    };

const priorityRank: Record<Priority, number> = { low: 0, normal: 1, high: 2 };

/** Decides one request (see the module comment). */
export function planReclaim(input: ReclaimInput): ReclaimPlan {
  const { slack, requester, amount, donors } = input;
  checkInt(slack, 'slack', 0);
  checkInt(requester.grant, 'requester grant', 0);
  checkInt(amount, 'amount', 1);
  for (const d of donors) {
    checkInt(d.grant, `${d.id} grant`, 0);
    checkInt(d.floor ?? 0, `${d.id} floor`, 0);
  }
  if (amount <= slack) {
    return { ok: true, grant: requester.grant + amount, fromSlack: amount, takes: [], slack: slack - amount };
  }
  const asked = evaluate(input, amount);
  if (asked.ok) return commit(input, amount, asked.gives);
  // The most that could be granted now. Feasibility is monotone in the amount (asking less frees
  // at most as much of the donors' allocations as it lowers the need), so bisect.
  let lo = slack;
  let hi = amount - 1;
  while (lo < hi) {
    const mid = lo + Math.ceil((hi - lo) / 2);
    if (evaluate(input, mid).ok) lo = mid;
    else hi = mid - 1;
  }
  return {
    ok: false,
    available: lo,
    slack,
    reclaimable: asked.reclaimable,
    fairGrowth: asked.fairGrowth,
  };
}

/** Whether `amount` (> slack) can be granted: the requester's allocation covers it and the donors can give the rest. */
function evaluate(
  input: ReclaimInput,
  amount: number,
): { ok: boolean; gives: number[]; reclaimable: number; fairGrowth: number } {
  const { slack, requester, donors } = input;
  const pool = slack + requester.grant + donors.reduce((s, d) => s + d.grant, 0);
  const alloc = maxMinFair(pool, [
    { demand: requester.grant + amount, weight: requester.weight },
    ...donors.map((d) => ({ demand: d.demand, weight: d.weight })),
  ]);
  const gives = donors.map((d, i) => Math.max(0, d.grant - Math.max(alloc[i + 1]!, d.floor ?? 0)));
  const reclaimable = gives.reduce((s, g) => s + g, 0);
  const fairGrowth = Math.max(0, alloc[0]! - requester.grant);
  const ok = amount <= slack || (amount <= fairGrowth && amount - slack <= reclaimable);
  return { ok, gives, reclaimable, fairGrowth };
}

function commit(input: ReclaimInput, amount: number, gives: readonly number[]): ReclaimPlan {
  const { slack, requester, donors } = input;
  let need = amount - slack;
  const order = donors
    .map((d, i) => ({ d, give: gives[i]! }))
    .filter((x) => x.give > 0)
    .sort(
      (a, b) =>
        priorityRank[a.d.priority] - priorityRank[b.d.priority] ||
        b.give - a.give ||
        (a.d.id < b.d.id ? -1 : a.d.id > b.d.id ? 1 : 0),
    );
  const takes: Take[] = [];
  for (const { d, give } of order) {
    if (need === 0) break;
    const take = Math.min(give, need);
    takes.push({ id: d.id, amount: take, grant: d.grant - take });
    need -= take;
  }
  return { ok: true, grant: requester.grant + amount, fromSlack: slack, takes, slack: 0 };
}

function checkInt(v: number, what: string, min: number): void {
  if (!Number.isSafeInteger(v) || v < min)
    throw new RangeError(`${what} must be an integer >= ${min}, got ${v}`);
}

export interface ReturnInput {
  readonly slack: number;
  /** A child whose reservation is below what it declared (it lent some, or a restart reset it). */
  readonly lender: {
    readonly id: string;
    readonly grant: number;
    /** What its manifest declares: a return never goes above it. */
    readonly declared: number;
    /** What it needs now (measured usage plus a margin, or `declared` after a restart). */
    readonly demand: number;
    readonly weight: number;
  };
  readonly donors: readonly Donor[];
}

/**
 * Lent budget coming back: a lender that needs more than it holds gets up to
 * min(declared, demand) − grant, from the parent's slack first, then from siblings holding more
 * than their fair allocation, by the same policy as a request (`planReclaim`), but never all or
 * nothing: the most that fits now. Null when nothing is due or nothing can be given. So no lender
 * stays below min(declared, demand) while its parent has unreserved budget.
 */
export function planReturn(input: ReturnInput): (ReclaimPlan & { ok: true }) | null {
  const { lender } = input;
  const want = Math.min(lender.declared, lender.demand) - lender.grant;
  if (want <= 0) return null;
  const request = {
    slack: input.slack,
    requester: { id: lender.id, grant: lender.grant, weight: lender.weight },
    donors: input.donors,
  };
  const plan = planReclaim({ ...request, amount: want });
  if (plan.ok) return plan;
  if (plan.available <= 0) return null;
  const partial = planReclaim({ ...request, amount: plan.available });
  return partial.ok ? partial : null;
}
