/**
 * Property-based tests: random trees and random crash sequences never leave a child running
 * under a stopped supervisor, never exceed a supervisor's intensity without escalating, and always
 * stop children in reverse start order.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import fc from 'fast-check';
import {
  type ChildSpec,
  flushMicrotasks,
  node,
  type Strategy,
  Supervisor,
  type SupervisorEvent,
  VirtualClock,
} from '../../src/core/index.ts';
import { Probe } from './fixtures.ts';

interface NodeShape {
  strategy: Exclude<Strategy, 'dynamic'>;
  intensity: number;
  period: number;
  children: ({ leaf: true; restart: 'permanent' | 'transient' | 'temporary' } | NodeShape)[];
}

const leafArb = fc.record({
  leaf: fc.constant(true as const),
  restart: fc.constantFrom('permanent' as const, 'transient' as const, 'temporary' as const),
});

const treeArb: fc.Arbitrary<NodeShape> = fc.letrec<{ node: NodeShape }>((tie) => ({
  node: fc.record({
    strategy: fc.constantFrom('one_for_one' as const, 'one_for_all' as const, 'rest_for_one' as const),
    intensity: fc.integer({ min: 0, max: 3 }),
    period: fc.constantFrom(100, 1000, 5000),
    children: fc.array(fc.oneof({ depthSize: 'small', withCrossShrink: true }, leafArb, tie('node')), {
      minLength: 1,
      maxLength: 4,
    }),
  }),
})).node;

const actionArb = fc.oneof(
  fc.record({ kind: fc.constant('crash' as const), pick: fc.nat() }),
  fc.record({ kind: fc.constant('exit' as const), pick: fc.nat() }),
  fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 1, max: 3000 }) }),
);

interface Built {
  root: Supervisor;
  probes: Map<string, Probe>;
  /** Supervisor path → its shape and its children's paths in list order. */
  supervisors: Map<string, { shape: NodeShape; childPaths: string[] }>;
  log: string[];
}

function build(shape: NodeShape, clock: VirtualClock): Built {
  const probes = new Map<string, Probe>();
  const supervisors = new Map<string, { shape: NodeShape; childPaths: string[] }>();
  const log: string[] = [];
  const specOf = (s: NodeShape, path: string, name: string) => {
    const childPaths: string[] = [];
    supervisors.set(path, { shape: s, childPaths });
    const children: ChildSpec[] = s.children.map((c, i) => {
      const id = `c${i}`;
      const childPath = `${path}/${id}`;
      childPaths.push(childPath);
      if ('leaf' in c) {
        const probe = new Probe(childPath, log);
        probes.set(childPath, probe);
        return { id, driver: probe.driver, restart: c.restart };
      }
      return { id, driver: node(specOf(c, childPath, id)), restart: 'permanent' as const };
    });
    return { name, strategy: s.strategy, intensity: s.intensity, period: s.period, children };
  };
  const root = new Supervisor(specOf(shape, '/root', 'root'), { clock });
  return { root, probes, supervisors, log };
}

it('random trees under random crashes keep the supervision invariants', async () => {
  // Counted so the property cannot pass vacuously: the generators must reach escalations.
  let escalations = 0;
  let restarts = 0;
  await fc.assert(
    fc.asyncProperty(treeArb, fc.array(actionArb, { maxLength: 30 }), async (shape, actions) => {
      const clock = new VirtualClock();
      const { root, probes, supervisors, log } = build(shape, clock);
      const events: SupervisorEvent[] = [];
      root.subscribe((e) => events.push(e));
      await root.start();

      const checkNoOrphans = () => {
        const visible = new Set(root.tree().map((e) => e.path));
        for (const [path, probe] of probes) {
          if (probe.alive) assert.ok(visible.has(path), `${path} runs under a stopped supervisor`);
        }
        if (root.state === 'stopped') assert.ok(![...probes.values()].some((p) => p.alive));
      };

      for (const action of actions) {
        if (root.state !== 'ready') break;
        const alive = [...probes.values()].filter((p) => p.alive);
        if (action.kind === 'advance') await clock.advance(action.ms);
        else if (alive.length > 0) {
          const probe = alive[action.pick % alive.length] as Probe;
          if (action.kind === 'crash') probe.crash();
          else probe.exit({ kind: 'normal' });
        }
        await flushMicrotasks();
        checkNoOrphans();
      }

      // Intensity: within one life of a supervisor, no more than `intensity` restarts in any
      // window of `period`; the restart that would exceed it is an intensity_exceeded instead,
      // followed by the supervisor's own escalation.
      for (const [path, { shape: s }] of supervisors) {
        let times: number[] = [];
        let exceeded = false;
        for (const e of events) {
          if (e.path === path && e.type === 'starting') {
            times = [];
            exceeded = false;
          } else if (
            e.type === 'restarting' &&
            // A sibling restarted with the one that exited is reported, not counted (OTP).
            e.because === undefined &&
            e.path.slice(0, e.path.lastIndexOf('/')) === path
          ) {
            assert.equal(exceeded, false, `${path} restarted a child after exceeding its intensity`);
            times.push(e.at);
            restarts++;
            const k = times.length - 1;
            if (k >= s.intensity) {
              const t = times[k - s.intensity] as number;
              assert.ok(e.at - t >= s.period, `${path}: ${s.intensity + 1} restarts within ${s.period} ms`);
            }
          } else if (e.path === path && e.type === 'intensity_exceeded') {
            exceeded = true;
            escalations++;
          } else if (e.path === path && e.type === 'escalated') {
            assert.equal(exceeded, true);
          }
        }
      }

      // Stop order: every supervisor stops its children in reverse list order.
      const stopFrom = log.length;
      const aliveBefore = new Set([...probes].filter(([, p]) => p.alive).map(([path]) => path));
      await root.stop();
      await clock.advance(10_000);
      checkNoOrphans();
      const stopped = log
        .slice(stopFrom)
        .filter((l) => l.startsWith('stop:') || l.startsWith('kill:'))
        .map((l) => l.slice(5));
      assert.deepEqual(new Set(stopped), aliveBefore);
      for (const { childPaths } of supervisors.values()) {
        const order = stopped.filter((p) => childPaths.some((c) => p === c || p.startsWith(`${c}/`)));
        const firstIndex = (c: string) => order.findIndex((p) => p === c || p.startsWith(`${c}/`));
        const seen = childPaths
          .filter((c) => firstIndex(c) >= 0)
          .sort((x, y) => firstIndex(x) - firstIndex(y));
        assert.deepEqual(seen, childPaths.filter((c) => firstIndex(c) >= 0).reverse(), 'reverse start order');
      }
    }),
    { numRuns: 300 },
  );
  assert.ok(escalations > 20, `only ${escalations} escalations exercised`);
  assert.ok(restarts > 100, `only ${restarts} restarts exercised`);
});
