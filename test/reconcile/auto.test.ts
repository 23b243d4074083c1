/**
 * `reconcile: { mode: auto }` decided purely: the cron windows, the rules inherited down the
 * tree, and `decide` (mode, held, deny/allow windows, rate limit), with a fast-check property
 * that no interval of length `per` ever holds more than `maxActions` actions.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { formatErrors, parseManifest } from '../../src/manifest/index.ts';
import {
  type AutoAction,
  type AutoPolicy,
  checkInterval,
  cronMatches,
  DEFAULT_POLICY,
  decide,
  nextOpening,
  parseCron,
  plan,
  policyFor,
  type Recommendation,
  windowStart,
} from '../../src/reconcile/index.ts';
import { manifest, running } from './fixtures.ts';

const at = (iso: string) => Date.parse(iso);
const MIN = 60_000;

const required = (path = '/app/web', action = 'rewrite limit'): Recommendation => ({
  type: 'reconcile_required',
  path,
  drift: action === 'restart' ? 'missing' : 'limit',
  action,
  command: action === 'restart' ? `captree start ${path}` : 'captree apply captree.yaml',
  blastRadius: [],
  reason: 'test',
});

const auto = (over: Partial<AutoPolicy> = {}): AutoPolicy => ({
  ...DEFAULT_POLICY,
  mode: 'auto',
  scope: '/app',
  ...over,
});

describe('cron', () => {
  it('matches minute, hour, lists, ranges and steps in UTC', () => {
    const c = parseCron('0 2 * * *');
    assert.equal(cronMatches(c, at('2026-12-02T02:00:00Z')), true);
    assert.equal(cronMatches(c, at('2026-12-02T02:01:00Z')), false);
    assert.equal(cronMatches(c, at('2026-12-02T03:00:00Z')), false);
    const steps = parseCron('*/15 9-17 * * 1-5');
    assert.equal(cronMatches(steps, at('2026-12-02T09:45:00Z')), true); // a Wednesday
    assert.equal(cronMatches(steps, at('2026-12-02T09:50:00Z')), false);
    assert.equal(cronMatches(steps, at('2026-12-06T09:45:00Z')), false); // a Sunday
    const sunday = parseCron('0 0 * * 7');
    assert.equal(cronMatches(sunday, at('2026-12-06T00:00:00Z')), true);
    const list = parseCron('5,10 0 1 1,6 *');
    assert.equal(cronMatches(list, at('2026-06-01T00:10:00Z')), true);
    assert.equal(cronMatches(list, at('2026-07-01T00:10:00Z')), false);
  });

  it('both day fields restricted: either matches (as Vixie cron)', () => {
    const c = parseCron('0 0 13 * 5');
    assert.equal(cronMatches(c, at('2026-12-13T00:00:00Z')), true); // the 13th, a Sunday
    assert.equal(cronMatches(c, at('2026-12-04T00:00:00Z')), true); // a Friday
    assert.equal(cronMatches(c, at('2026-12-05T00:00:00Z')), false);
  });

  it('a window is open from its minute for its duration', () => {
    const c = parseCron('0 2 * * *');
    const hour = 60 * MIN;
    assert.equal(windowStart(c, hour, at('2026-12-02T02:00:00Z')), at('2026-12-02T02:00:00Z'));
    assert.equal(windowStart(c, hour, at('2026-12-02T02:59:59Z')), at('2026-12-02T02:00:00Z'));
    assert.equal(windowStart(c, hour, at('2026-12-02T03:00:00Z')), null);
    assert.equal(windowStart(c, hour, at('2026-12-02T01:59:59Z')), null);
    assert.equal(nextOpening(c, at('2026-12-02T03:00:00Z')), at('2026-12-03T02:00:00Z'));
  });

  it('rejects bad expressions, saying which field and why', () => {
    assert.throws(() => parseCron('0 2 * *'), /has 4 field\(s\); a cron expression has 5/);
    assert.throws(() => parseCron('60 2 * * *'), /minute '60' is outside 0-59/);
    assert.throws(() => parseCron('0 2 * * mon'), /day of week 'mon' is not/);
    assert.throws(() => parseCron('*/0 * * * *'), /step must be at least 1/);
    assert.throws(() => parseCron('0 5-2 * * *'), /hour '5-2' is outside 0-23 \(or its range is reversed\)/);
  });

  it('windowStart agrees with a minute-by-minute definition (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 59 }),
        fc.integer({ min: 0, max: 23 }),
        fc.integer({ min: 1, max: 600 }),
        fc.integer({ min: at('2026-01-01T00:00:00Z'), max: at('2027-01-01T00:00:00Z') }),
        (minute, hour, durationMin, t) => {
          const c = parseCron(`${minute} ${hour} * * *`);
          const duration = durationMin * MIN;
          const s = windowStart(c, duration, t);
          const day = Math.floor(t / (1440 * MIN)) * 1440 * MIN;
          const opens = [day - 1440 * MIN, day].map((d) => d + (hour * 60 + minute) * MIN);
          const open = opens.filter((o) => o <= t && t < o + duration);
          assert.equal(s, open.length > 0 ? Math.max(...open) : null);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('policyFor: reconcile rules inherited key by key', () => {
  const tree = manifest(`
name: app
reconcile: { mode: auto, maxActions: 2, per: 1h, deny: [{ cron: "0 9 * * 1-5", duration: 8h }] }
children:
  - name: web
    command: [sleep, infinity]
  - name: batch
    reconcile: { mode: recommend }
    children:
      - name: job
        command: [sleep, infinity]
  - name: cache
    reconcile: { maxActions: 5, checkEvery: 500ms }
    children:
      - name: redis
        command: [sleep, infinity]
`);

  it('a process gets its nearest nodes’ rules; defaults fill the rest', () => {
    assert.deepEqual(policyFor(tree, '/app/web'), {
      mode: 'auto',
      maxActions: 2,
      per: 3_600_000,
      allow: [],
      deny: [{ cron: '0 9 * * 1-5', duration: 8 * 3_600_000 }],
      checkEvery: 30_000,
      scope: '/app',
    });
    assert.equal(policyFor(tree, '/app/batch/job').mode, 'recommend');
    assert.equal(policyFor(tree, '/app/batch/job').scope, '/app/batch');
    const cache = policyFor(tree, '/app/cache/redis');
    assert.equal(cache.mode, 'auto');
    assert.equal(cache.maxActions, 5);
    assert.equal(cache.per, 3_600_000);
    assert.equal(cache.scope, '/app/cache');
    assert.equal(checkInterval(tree), 500);
  });

  it('no reconcile: anywhere: recommend, 3 per 10 min, no timer', () => {
    const plain = manifest('name: p\nchildren:\n  - name: a\n    command: [sleep, infinity]\n');
    assert.deepEqual(policyFor(plain, '/p/a'), { ...DEFAULT_POLICY, scope: '/p' });
    assert.equal(checkInterval(plain), null);
  });

  it('changing reconcile: is an update in place: nothing restarts', () => {
    const base = 'name: p\nchildren:\n  - name: a\n    command: [sleep, infinity]\n';
    const p = plan(
      manifest(base.replace('children:', 'reconcile: { mode: auto }\nchildren:')),
      running(manifest(base)),
    );
    assert.deepEqual(
      p.actions.filter((a) => a.action !== 'noop').map((a) => [a.path, a.action, a.because, a.restarts]),
      [['/p', 'update', ['reconcile'], []]],
    );
  });

  it('bad rules are refused at file:line:col, naming the fix', () => {
    const bad = (field: string) => {
      const r = parseManifest(
        `name: p\nreconcile: ${field}\nchildren:\n  - name: a\n    command: [sleep, infinity]\n`,
        'captree.yaml',
      );
      assert.equal(r.ok, false);
      return r.ok ? '' : formatErrors(r.errors);
    };
    assert.match(bad('{ mode: always }'), /captree\.yaml:2:\d+.*mode.*one of recommend \| auto/s);
    assert.match(
      bad('{ deny: [{ cron: "0 25 * * *", duration: 1h }] }'),
      /captree\.yaml:2:\d+.*hour '25' is outside 0-23/s,
    );
    assert.match(bad('{ allow: [{ cron: "0 2 * * *", duration: 10s }] }'), /between 1m and 7d/);
    assert.match(bad('{ maxActions: 0 }'), /maxActions.*an integer ≥ 1/s);
    assert.match(bad('{ mode: auto, every: 1s }'), /every/);
  });
});

describe('decide', () => {
  const none = { actions: [], holds: [] };
  const now = at('2026-12-02T12:00:00Z');

  it('acts on a required restart or limit rewrite in an auto subtree', () => {
    assert.deepEqual(decide(required(), auto(), none, now), { act: true });
    assert.deepEqual(decide(required('/app/web', 'restart'), auto(), none, now), { act: true });
  });

  it('recommend mode, or a recommendation for an operator, is not acted on', () => {
    assert.equal(decide(required(), { ...auto(), mode: 'recommend' }, none, now).act, false);
    const v = decide({ ...required(), type: 'reconcile_recommended', action: 'apply' }, auto(), none, now);
    assert.deepEqual(v.act ? null : v.guard, 'not_required');
    const diag = decide({ ...required(), action: 'diagnostics' }, auto(), none, now);
    assert.deepEqual(diag.act ? null : diag.guard, 'not_required');
  });

  it('held: a hold on the path or above it blocks, naming who', () => {
    const holds = [{ path: '/app', by: 'ada', reason: 'migration', at: 0 }];
    const v = decide(required(), auto(), { actions: [], holds }, now);
    assert.equal(v.act, false);
    if (!v.act) {
      assert.equal(v.guard, 'held');
      assert.match(v.reason, /\/app is held by ada \(migration\); release it with: captree release \/app/);
    }
  });

  it('deny windows win over allow windows; outside every allow window waits for the next', () => {
    const deny = [{ cron: '0 9 * * *', duration: 8 * 60 * MIN }];
    const d = decide(required(), auto({ deny }), none, now);
    assert.deepEqual(d.act ? null : [d.guard, d.retryAt], ['denied', at('2026-12-02T17:00:00Z')]);
    const allow = [{ cron: '0 2 * * *', duration: 60 * MIN }];
    const o = decide(required(), auto({ allow }), none, now);
    assert.deepEqual(o.act ? null : [o.guard, o.retryAt], ['outside_window', at('2026-12-03T02:00:00Z')]);
    if (!o.act) assert.match(o.reason, /the next opens at 2026-12-03T02:00:00Z/);
    assert.deepEqual(decide(required(), auto({ allow }), none, at('2026-12-03T02:30:00Z')), { act: true });
    const both = decide(
      required(),
      auto({ allow, deny: [{ cron: '0 2 * * *', duration: 10 * MIN }] }),
      none,
      at('2026-12-03T02:05:00Z'),
    );
    assert.equal(both.act ? null : both.guard, 'denied');
  });

  it('rate limit: maxActions per `per` in the policy’s scope, others’ actions do not count', () => {
    const policy = auto({ maxActions: 2, per: 10 * MIN });
    const taken: AutoAction[] = [
      { scope: '/app', path: '/app/a', at: now - 9 * MIN },
      { scope: '/app', path: '/app/b', at: now - 1 * MIN },
      { scope: '/other', path: '/other/c', at: now },
    ];
    const v = decide(required(), policy, { actions: taken, holds: [] }, now);
    assert.deepEqual(v.act ? null : [v.guard, v.retryAt], ['rate_limit', now + 1 * MIN]);
    if (!v.act) assert.match(v.reason, /2 of 2 automatic action\(s\) per 10m in \/app already taken/);
    assert.deepEqual(decide(required(), policy, { actions: taken, holds: [] }, now + 1 * MIN), { act: true });
  });

  it('a wall clock stepped back frees nothing: actions stamped later still count', () => {
    const policy = auto({ maxActions: 1, per: 10 * MIN });
    const later = [{ scope: '/app', path: '/app/web', at: now + 5 * MIN }];
    const v = decide(required(), policy, { actions: later, holds: [] }, now);
    assert.equal(v.act ? null : v.guard, 'rate_limit');
  });

  it('never more than maxActions in any interval of length per (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 1, max: 60 }),
        fc.array(fc.integer({ min: 0, max: 120 * MIN }), { minLength: 1, maxLength: 60 }),
        (maxActions, perMin, offsets) => {
          const per = perMin * MIN;
          const policy = auto({ maxActions, per });
          const actions: AutoAction[] = [];
          const times = offsets.map((o) => now + o).sort((a, b) => a - b);
          for (const t of times) {
            const v = decide(required(), policy, { actions, holds: [] }, t);
            if (v.act) actions.push({ scope: policy.scope, path: '/app/web', at: t });
            // A refusal names when it can act again, and it can then (nothing else taken meanwhile).
            else if (v.guard === 'rate_limit' && v.retryAt !== null)
              assert.deepEqual(decide(required(), policy, { actions, holds: [] }, v.retryAt), { act: true });
          }
          for (const a of actions) {
            const inside = actions.filter((b) => b.at >= a.at && b.at < a.at + per);
            assert.ok(inside.length <= maxActions, `${inside.length} actions within ${per} ms of ${a.at}`);
          }
          // And it is not stricter than it says: the first action is always taken.
          assert.ok(actions.length >= 1);
        },
      ),
      { numRuns: 300 },
    );
  });
});
