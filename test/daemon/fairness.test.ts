/** The renegotiation policy (src/daemon/fairness.ts): examples, edge cases and properties. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  type Donor,
  fairShare,
  maxMinFair,
  planReclaim,
  planReturn,
  type ReclaimInput,
} from '../../src/daemon/fairness.ts';

const sum = (xs: readonly number[]) => xs.reduce((s, x) => s + x, 0);

describe('maxMinFair', () => {
  it('gives everyone its demand when the pool is large enough', () => {
    assert.deepEqual(
      maxMinFair(100, [
        { demand: 10, weight: 1 },
        { demand: 20, weight: 1 },
      ]),
      [10, 20],
    );
  });

  it('splits equally among parties that all want more', () => {
    assert.deepEqual(
      maxMinFair(90, [
        { demand: 100, weight: 1 },
        { demand: 100, weight: 1 },
        { demand: 100, weight: 1 },
      ]),
      [30, 30, 30],
    );
  });

  it('redistributes what a small demand leaves', () => {
    // Equal share 33; the first wants 10, so the other two split 90.
    assert.deepEqual(
      maxMinFair(100, [
        { demand: 10, weight: 1 },
        { demand: 100, weight: 1 },
        { demand: 100, weight: 1 },
      ]),
      [10, 45, 45],
    );
  });

  it('weights the split', () => {
    assert.deepEqual(
      maxMinFair(100, [
        { demand: 1000, weight: 3 },
        { demand: 1000, weight: 1 },
      ]),
      [75, 25],
    );
  });

  it('hands out leftover units without passing a demand and conserves the pool', () => {
    const a = maxMinFair(10, [
      { demand: 5, weight: 1 },
      { demand: 5, weight: 1 },
      { demand: 5, weight: 1 },
    ]);
    assert.equal(sum(a), 10);
    for (const x of a) assert.ok(x >= 3 && x <= 4);
  });

  it('handles nothing to share and nobody to share with', () => {
    assert.deepEqual(maxMinFair(0, [{ demand: 5, weight: 1 }]), [0]);
    assert.deepEqual(maxMinFair(50, []), []);
    assert.deepEqual(maxMinFair(50, [{ demand: 0, weight: 1 }]), [0]);
  });

  it('stays exact with byte amounts times large weights', () => {
    const gib = 2 ** 30;
    const a = maxMinFair(64 * gib + 1, [
      { demand: 64 * gib, weight: 10000 },
      { demand: 64 * gib, weight: 9999 },
    ]);
    assert.equal(sum(a), 64 * gib + 1);
  });

  it('rejects non-integers, negative amounts and zero weights', () => {
    assert.throws(() => maxMinFair(1.5, []), RangeError);
    assert.throws(() => maxMinFair(10, [{ demand: -1, weight: 1 }]), RangeError);
    assert.throws(() => maxMinFair(10, [{ demand: 1, weight: 0 }]), RangeError);
  });

  it('properties: within demand, conserves min(pool, Σdemand), nobody below min(demand, fair share)', () => {
    fc.assert(
      fc.property(
        fc.nat({ max: 1_000_000 }),
        fc.array(
          fc.record({ demand: fc.nat({ max: 1_000_000 }), weight: fc.integer({ min: 1, max: 10000 }) }),
          {
            maxLength: 12,
          },
        ),
        (capacity, claims) => {
          const a = maxMinFair(capacity, claims);
          const totalWeight = sum(claims.map((c) => c.weight));
          assert.equal(sum(a), Math.min(capacity, sum(claims.map((c) => c.demand))));
          claims.forEach((c, i) => {
            assert.ok(Number.isInteger(a[i]));
            assert.ok(a[i]! <= c.demand);
            assert.ok(a[i]! >= Math.min(c.demand, fairShare(capacity, c.weight, totalWeight)));
          });
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('property: max-min: a party below its demand gets at least the level of every other per unit of weight', () => {
    fc.assert(
      fc.property(
        fc.nat({ max: 100_000 }),
        fc.array(fc.record({ demand: fc.nat({ max: 100_000 }), weight: fc.integer({ min: 1, max: 100 }) }), {
          minLength: 1,
          maxLength: 8,
        }),
        (capacity, claims) => {
          const a = maxMinFair(capacity, claims);
          claims.forEach((c, i) => {
            if (a[i]! >= c.demand) return;
            // i is constrained: no one gets more per weight than i, beyond rounding by one unit.
            claims.forEach((d, j) => {
              assert.ok((a[j]! - 1) * c.weight <= (a[i]! + 1) * d.weight, `${i} vs ${j}: ${a}`);
            });
          });
        },
      ),
      { numRuns: 2000 },
    );
  });
});

const donor = (id: string, grant: number, demand: number, extra: Partial<Donor> = {}): Donor => ({
  id,
  grant,
  demand,
  weight: 1,
  priority: 'normal',
  ...extra,
});

describe('planReclaim', () => {
  it('grants from slack first, touching nobody', () => {
    const plan = planReclaim({
      slack: 300,
      requester: { id: 'r', grant: 200, weight: 1 },
      amount: 300,
      donors: [donor('a', 500, 10)],
    });
    assert.deepEqual(plan, { ok: true, grant: 500, fromSlack: 300, takes: [], slack: 0 });
  });

  it('reclaims from an idle sibling what slack lacks, low priority first', () => {
    const plan = planReclaim({
      slack: 0,
      requester: { id: 'busy', grant: 200, weight: 1 },
      amount: 500,
      donors: [donor('idle2', 200, 50), donor('idle', 600, 50, { priority: 'low' })],
    });
    assert.ok(plan.ok);
    assert.equal(plan.grant, 700);
    assert.deepEqual(plan.takes, [{ id: 'idle', amount: 500, grant: 100 }]);
  });

  it('takes from several donors when one is not enough, high priority last', () => {
    const plan = planReclaim({
      slack: 100,
      requester: { id: 'r', grant: 100, weight: 1 },
      amount: 500,
      donors: [donor('h', 400, 0, { priority: 'high' }), donor('n', 300, 100)],
    });
    assert.ok(plan.ok);
    assert.deepEqual(plan.takes, [
      { id: 'n', amount: 200, grant: 100 },
      { id: 'h', amount: 200, grant: 200 },
    ]);
    assert.equal(plan.fromSlack, 100);
  });

  it('denies a request beyond what exists, saying how much could be had', () => {
    const plan = planReclaim({
      slack: 0,
      requester: { id: 'r', grant: 200, weight: 1 },
      amount: 2000,
      donors: [donor('a', 800, 50)],
    });
    assert.equal(plan.ok, false);
    if (!plan.ok) assert.equal(plan.available, 750);
  });

  it('denies growth past the fair share of busy siblings', () => {
    // Both siblings use all they hold: the pool of 1000 split three ways leaves the requester
    // a fair 333, so it may not take 400 more.
    const plan = planReclaim({
      slack: 0,
      requester: { id: 'r', grant: 200, weight: 1 },
      amount: 400,
      donors: [donor('a', 400, 400), donor('b', 400, 400)],
    });
    assert.equal(plan.ok, false);
    if (!plan.ok) {
      assert.equal(plan.fairGrowth, 133);
      assert.equal(plan.available, 134);
    }
  });

  it('never takes memory below a donor floor (usage + margin), whatever fairness says', () => {
    const plan = planReclaim({
      slack: 0,
      requester: { id: 'r', grant: 100, weight: 1 },
      amount: 500,
      donors: [donor('a', 900, 0, { floor: 600 })],
    });
    assert.equal(plan.ok, false);
    if (!plan.ok) assert.equal(plan.reclaimable, 300);
  });

  const arbInput: fc.Arbitrary<ReclaimInput> = fc.record({
    slack: fc.nat({ max: 5000 }),
    requester: fc.record({
      id: fc.constant('requester'),
      grant: fc.nat({ max: 5000 }),
      weight: fc.integer({ min: 1, max: 300 }),
    }),
    amount: fc.integer({ min: 1, max: 8000 }),
    donors: fc.uniqueArray(
      fc.record({
        id: fc.string({ minLength: 1, maxLength: 4 }),
        grant: fc.nat({ max: 5000 }),
        demand: fc.nat({ max: 6000 }),
        weight: fc.integer({ min: 1, max: 300 }),
        priority: fc.constantFrom('high' as const, 'normal' as const, 'low' as const),
        floor: fc.nat({ max: 5000 }),
      }),
      { maxLength: 8, selector: (d) => d.id },
    ),
  });

  it('properties: sums conserved, all or nothing, donors only shrink, nobody below min(demand, fair share) or its floor', () => {
    fc.assert(
      fc.property(arbInput, (input) => {
        const plan = planReclaim(input);
        const before = input.slack + input.requester.grant + sum(input.donors.map((d) => d.grant));
        if (!plan.ok) {
          assert.ok(plan.available < input.amount);
          assert.ok(plan.available >= Math.min(input.slack, input.amount));
          return;
        }
        assert.equal(plan.grant, input.requester.grant + input.amount);
        const taken = new Map(plan.takes.map((t) => [t.id, t]));
        const after =
          plan.slack + plan.grant + sum(input.donors.map((d) => taken.get(d.id)?.grant ?? d.grant));
        assert.equal(after, before, 'slack + grants conserved');
        assert.equal(plan.fromSlack + sum(plan.takes.map((t) => t.amount)), input.amount);
        // Slack goes first: nothing is reclaimed while slack remains.
        if (plan.takes.length > 0) assert.equal(plan.slack, 0);
        const pool = before;
        const totalWeight = input.requester.weight + sum(input.donors.map((d) => d.weight));
        for (const t of plan.takes) {
          const d = input.donors.find((x) => x.id === t.id)!;
          assert.ok(t.amount > 0 && t.grant === d.grant - t.amount);
          assert.ok(t.grant >= (d.floor ?? 0), 'never below the floor');
          assert.ok(
            t.grant >= Math.min(d.grant, d.demand, fairShare(pool, d.weight, totalWeight)),
            'never below min(demand, fair share)',
          );
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('property: priority order: no higher-priority donor gives while a lower one could still give', () => {
    fc.assert(
      fc.property(arbInput, (input) => {
        const plan = planReclaim(input);
        if (!plan.ok || plan.takes.length === 0) return;
        const rank = { low: 0, normal: 1, high: 2 } as const;
        const ranks = plan.takes.map((t) => rank[input.donors.find((d) => d.id === t.id)!.priority]);
        for (let i = 1; i < ranks.length; i++) assert.ok(ranks[i - 1]! <= ranks[i]!);
      }),
      { numRuns: 2000 },
    );
  });

  it('property: a denial names the most that can be had: asking for it succeeds, one more fails', () => {
    fc.assert(
      fc.property(arbInput, (input) => {
        const plan = planReclaim(input);
        if (plan.ok) return;
        assert.ok(plan.available < input.amount);
        assert.ok(plan.available >= Math.min(input.slack, input.amount));
        if (plan.available > 0) assert.ok(planReclaim({ ...input, amount: plan.available }).ok);
        assert.equal(planReclaim({ ...input, amount: plan.available + 1 }).ok, false);
      }),
      { numRuns: 2000 },
    );
  });

  it('property: feasibility is monotone: if an amount is granted, every smaller one is', () => {
    fc.assert(
      fc.property(arbInput, fc.nat(), (input, k) => {
        if (!planReclaim(input).ok) return;
        const smaller = 1 + (k % input.amount);
        assert.ok(planReclaim({ ...input, amount: smaller }).ok);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('planReturn: lent budget comes back', () => {
  /**
   * Random busy/idle sequences over a parent's children: each step one child asks for more
   * (`planReclaim`, from slack and idle siblings), demands change at random (busy or idle), then
   * every child below what it declared gets what `planReturn` allows. After every step: no child
   * stays below min(declared, demand) while its parent has unreserved budget, and slack + Σ
   * grants is the parent's capacity.
   */
  it('no child stays below min(declared, demand) while its parent has slack', () => {
    const arbChild = fc.record({
      declared: fc.integer({ min: 10, max: 400 }),
      weight: fc.integer({ min: 1, max: 300 }),
    });
    const arbStep = fc.record({
      asker: fc.nat(),
      ask: fc.integer({ min: 1, max: 500 }),
      demands: fc.array(fc.integer({ min: 0, max: 600 }), { minLength: 4, maxLength: 4 }),
    });
    fc.assert(
      fc.property(
        fc.array(arbChild, { minLength: 2, maxLength: 4 }),
        fc.integer({ min: 0, max: 300 }),
        fc.array(arbStep, { minLength: 1, maxLength: 25 }),
        (children, extra, steps) => {
          const capacity = children.reduce((s, c) => s + c.declared, 0) + extra;
          const grant = children.map((c) => c.declared);
          let slack = capacity - grant.reduce((s, g) => s + g, 0);
          let demand = children.map(() => 0);
          const donors = (except: number) =>
            children.flatMap((c, j) =>
              j === except
                ? []
                : [
                    {
                      id: String(j),
                      grant: grant[j]!,
                      demand: demand[j]!,
                      weight: c.weight,
                      priority: 'normal' as const,
                      floor: 1,
                    },
                  ],
            );
          const applyTakes = (takes: readonly { id: string; grant: number }[]) => {
            for (const t of takes) grant[Number(t.id)] = t.grant;
          };
          for (const step of steps) {
            const i = step.asker % children.length;
            const p = planReclaim({
              slack,
              requester: { id: String(i), grant: grant[i]!, weight: children[i]!.weight },
              amount: step.ask,
              donors: donors(i),
            });
            if (p.ok) {
              applyTakes(p.takes);
              grant[i] = p.grant;
              slack = p.slack;
            }
            demand = children.map((_, j) => step.demands[j]!);
            for (const [j, c] of children.entries()) {
              const r = planReturn({
                slack,
                lender: {
                  id: String(j),
                  grant: grant[j]!,
                  declared: c.declared,
                  demand: demand[j]!,
                  weight: c.weight,
                },
                donors: donors(j),
              });
              if (!r) continue;
              applyTakes(r.takes);
              grant[j] = r.grant;
              slack = r.slack;
            }
            assert.equal(slack + grant.reduce((s, g) => s + g, 0), capacity);
            if (slack > 0)
              for (const [j, c] of children.entries())
                assert.ok(
                  grant[j]! >= Math.min(c.declared, demand[j]!),
                  `child ${j} holds ${grant[j]} < min(declared ${c.declared}, demand ${demand[j]}) with ${slack} slack`,
                );
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
