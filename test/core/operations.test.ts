/** Auto-shutdown, checkpoints, operations on children, dynamic supervisors, bad specs, the task driver. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type ChildSpec,
  InvalidSpecError,
  node,
  PermanentFailure,
  Supervisor,
  type SupervisorEvent,
  task,
  VirtualClock,
} from '../../src/core/index.ts';
import { harness } from './fixtures.ts';

describe('auto-shutdown', () => {
  it('any_significant: a significant child exiting by itself shuts the supervisor down', async () => {
    const h = harness();
    const sup = h.supervisor({
      name: 'root',
      autoShutdown: 'any_significant',
      children: [
        { id: 'a', driver: h.probe('a').driver },
        { id: 's', driver: h.probe('s').driver, restart: 'transient', significant: true },
      ],
    });
    await sup.start();
    h.probe('s').exit({ kind: 'normal' });
    await h.settle();
    assert.equal(sup.state, 'stopped');
    assert.deepEqual(await sup.whenStopped(), { kind: 'shutdown' });
    assert.ok(h.events.some((e) => e.type === 'auto_shutdown' && e.trigger === '/root/s'));
  });

  it('all_significant: only when the last significant child has exited', async () => {
    const h = harness();
    const sup = h.supervisor({
      name: 'root',
      autoShutdown: 'all_significant',
      children: [
        { id: 's1', driver: h.probe('s1').driver, restart: 'temporary', significant: true },
        { id: 's2', driver: h.probe('s2').driver, restart: 'temporary', significant: true },
      ],
    });
    await sup.start();
    h.probe('s1').exit();
    await h.settle();
    assert.equal(sup.state, 'ready');
    h.probe('s2').crash();
    await h.settle();
    assert.equal(sup.state, 'stopped');
  });

  it('is triggered only by a child’s own exit, never by stopChild', async () => {
    const h = harness();
    const sup = h.supervisor({
      name: 'root',
      autoShutdown: 'any_significant',
      children: [{ id: 's', driver: h.probe('s').driver, restart: 'transient', significant: true }],
    });
    await sup.start();
    await sup.stopChild('s');
    assert.equal(sup.state, 'ready');
  });

  it('is not triggered by a sibling restart stopping a significant child', async () => {
    const h = harness();
    const sup = h.supervisor({
      name: 'root',
      strategy: 'one_for_all',
      autoShutdown: 'any_significant',
      children: [
        { id: 'a', driver: h.probe('a').driver },
        { id: 's', driver: h.probe('s').driver, restart: 'transient', significant: true },
      ],
    });
    await sup.start();
    h.probe('a').crash();
    await h.settle();
    assert.equal(sup.state, 'ready');
    assert.equal(h.probe('s').starts, 2);
  });

  it('a transient significant child that crashes is restarted, not a shutdown trigger', async () => {
    const h = harness();
    const sup = h.supervisor({
      name: 'root',
      autoShutdown: 'any_significant',
      children: [{ id: 's', driver: h.probe('s').driver, restart: 'transient', significant: true }],
    });
    await sup.start();
    h.probe('s').crash();
    await h.settle();
    assert.equal(sup.state, 'ready');
    assert.equal(h.probe('s').starts, 2);
  });
});

describe('checkpoints', () => {
  it('a replacement receives the last saved state and its predecessor’s exit reason', async () => {
    const seen: { checkpoint: unknown; previous: unknown }[] = [];
    let crashes = 0;
    const sup = new Supervisor(
      {
        name: 'root',
        intensity: 5,
        children: [
          {
            id: 'agent',
            driver: task(async (ctx) => {
              seen.push({ checkpoint: ctx.checkpoint, previous: ctx.previousExit });
              const step = ((ctx.checkpoint as number | undefined) ?? 0) + 1;
              ctx.save(step);
              if (crashes++ < 2) throw new Error(`crash at step ${step}`);
              await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve));
            }),
          },
        ],
      },
      { clock: new VirtualClock() },
    );
    await sup.start();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(seen, [
      { checkpoint: undefined, previous: undefined },
      { checkpoint: 1, previous: { kind: 'crashed', message: 'crash at step 1' } },
      { checkpoint: 2, previous: { kind: 'crashed', message: 'crash at step 2' } },
    ]);
    await sup.stop();
  });

  it('a durable store given by the caller receives saves and seeds the first start', async () => {
    const store = new Map<string, unknown>([['/root/a', 41]]);
    let got: unknown;
    const sup = new Supervisor(
      {
        name: 'root',
        children: [
          {
            id: 'a',
            driver: task(async (ctx) => {
              got = ctx.checkpoint;
              ctx.save(42);
            }),
            restart: 'transient',
          },
        ],
      },
      {
        clock: new VirtualClock(),
        checkpoints: {
          load: (p) => (store.has(p) ? { state: store.get(p) } : undefined),
          save: (p, s) => store.set(p, s),
        },
      },
    );
    await sup.start();
    await new Promise((r) => setImmediate(r));
    assert.equal(got, 41);
    assert.equal(store.get('/root/a'), 42);
  });
});

describe('operations', () => {
  it('stopChild holds a child stopped; startChild starts it again; deleteChild removes it', async () => {
    const h = harness();
    const sup = h.supervisor({
      name: 'root',
      children: ['a', 'b'].map((id) => ({ id, driver: h.probe(id).driver })),
    });
    await sup.start();
    await sup.stopChild('a');
    assert.equal(sup.child('a')?.state, 'stopped');
    await assert.rejects(sup.deleteChild('b'), /running; stop it first/);
    await sup.startChild('a');
    assert.equal(sup.child('a')?.state, 'ready');
    await sup.stopChild('a');
    await sup.deleteChild('a');
    assert.deepEqual(
      sup.children().map((c) => c.id),
      ['b'],
    );
    await assert.rejects(sup.startChild('a'), /has no child a/);
  });

  it('a hold store records stop/start and holds children at start (nested ones too)', async () => {
    const h = harness();
    const held = new Set<string>(['/root/n/y']);
    const writes: string[] = [];
    const holds = {
      isHeld: (path: string) => held.has(path),
      setHeld: (path: string, on: boolean) => {
        writes.push(`${on ? '+' : '-'}${path}`);
        if (on) held.add(path);
        else held.delete(path);
      },
    };
    const nested = {
      name: 'n',
      children: ['x', 'y'].map((id) => ({ id, driver: h.probe(id).driver })),
    };
    const sup = new Supervisor(
      {
        name: 'root',
        children: [
          { id: 'a', driver: h.probe('a').driver },
          { id: 'n', driver: node(nested, { holds }) },
        ],
      },
      { clock: h.clock, holds },
    );
    await sup.start();
    assert.equal(h.probe('y').starts, 0, 'held at start: not started');
    assert.equal(h.probe('x').starts, 1);
    await sup.stopChild('a');
    assert.deepEqual(writes, ['+/root/a']);
    await sup.startChild('a');
    assert.deepEqual(writes, ['+/root/a', '-/root/a']);
    const inner = sup.nested('n');
    await inner?.startChild('y');
    assert.equal(h.probe('y').starts, 1);
    assert.deepEqual(writes.at(-1), '-/root/n/y');
    await sup.stop();
  });

  it('a child held stopped by an operator stays stopped through a sibling group restart', async () => {
    const h = harness();
    const sup = h.supervisor({
      name: 'root',
      strategy: 'one_for_all',
      children: ['a', 'b'].map((id) => ({ id, driver: h.probe(id).driver })),
    });
    await sup.start();
    await sup.stopChild('b');
    h.probe('a').crash();
    await h.settle();
    assert.equal(h.probe('b').starts, 1);
    assert.equal(sup.child('b')?.state, 'stopped');
  });

  it('restartChild applies the strategy without counting against the intensity', async () => {
    const h = harness();
    const sup = h.supervisor({
      name: 'root',
      strategy: 'rest_for_one',
      intensity: 0,
      children: ['a', 'b', 'c'].map((id) => ({ id, driver: h.probe(id).driver })),
    });
    await sup.start();
    h.log.length = 0;
    await sup.restartChild('b');
    await sup.restartChild('b');
    // Stopped in reverse start order (c before b), started in start order.
    assert.deepEqual(h.log, [
      'stop:c',
      'stop:b',
      'start:b',
      'start:c',
      'stop:c',
      'stop:b',
      'start:b',
      'start:c',
    ]);
    assert.equal(sup.state, 'ready');
  });

  it('addChild appends and starts; a child failing to start is discarded', async () => {
    const h = harness();
    const sup = h.supervisor({ name: 'root', children: [{ id: 'a', driver: h.probe('a').driver }] });
    await sup.start();
    await sup.addChild({ id: 'b', driver: h.probe('b').driver });
    assert.equal(sup.child('b')?.state, 'ready');
    h.probe('c').readiness = 'fail';
    await assert.rejects(sup.addChild({ id: 'c', driver: h.probe('c').driver }), /failed to start/);
    assert.equal(sup.child('c'), undefined);
    await assert.rejects(sup.addChild({ id: 'b', driver: h.probe('b').driver }), /already has a child b/);
  });

  it('countChildren and children list state, kind and restarts', async () => {
    const h = harness();
    const sup = h.supervisor({
      name: 'root',
      children: [
        { id: 'a', driver: h.probe('a').driver },
        { id: 'n', driver: node({ name: 'n', children: [{ id: 'x', driver: h.probe('x').driver }] }) },
      ],
    });
    await sup.start();
    await sup.stopChild('a');
    assert.deepEqual(sup.countChildren(), { specs: 2, active: 1, supervisors: 1, workers: 1 });
    assert.deepEqual(
      sup.tree().map((e) => [e.path, e.kind, e.state]),
      [
        ['/root', 'node', 'ready'],
        ['/root/a', 'task', 'stopped'],
        ['/root/n', 'node', 'ready'],
        ['/root/n/x', 'task', 'ready'],
      ],
    );
  });
});

describe('dynamic supervisors', () => {
  it('add children from a template up to maxChildren, and stop them all at once', async () => {
    const h = harness();
    const sup = h.supervisor({
      name: 'pool',
      strategy: 'dynamic',
      maxChildren: 2,
      template: { restart: 'temporary' },
    });
    await sup.start();
    const w1 = await sup.addChild({ driver: h.probe('w1').driver });
    await sup.addChild({ id: 'w2', driver: h.probe('w2').driver });
    assert.equal(w1.id, 'pool-1');
    assert.equal(w1.restart, 'temporary');
    await assert.rejects(sup.addChild({ id: 'w3', driver: h.probe('w3').driver }), /maxChildren/);
    h.probe('w1').onStop = 'ignore';
    h.probe('w2').onStop = 'ignore';
    const stopped = sup.stop();
    await h.settle();
    // Both were asked before either finished: no ordering between dynamic children.
    assert.equal(h.probe('w1').current?.stopAsked, true);
    assert.equal(h.probe('w2').current?.stopAsked, true);
    h.probe('w1').exit({ kind: 'shutdown' });
    h.probe('w2').exit({ kind: 'shutdown' });
    await stopped;
  });

  it('a crashed dynamic child restarts alone', async () => {
    const h = harness();
    const sup = h.supervisor({ name: 'pool', strategy: 'dynamic', intensity: 3 });
    await sup.start();
    await sup.addChild({ id: 'a', driver: h.probe('a').driver });
    await sup.addChild({ id: 'b', driver: h.probe('b').driver });
    h.probe('a').crash();
    await h.settle();
    assert.equal(h.probe('a').starts, 2);
    assert.equal(h.probe('b').starts, 1);
  });
});

describe('bad input is rejected when given and changes nothing', () => {
  const driver = task(async () => {});
  const cases: [string, () => unknown, RegExp][] = [
    [
      'duplicate id',
      () =>
        new Supervisor({
          name: 'r',
          children: [
            { id: 'a', driver },
            { id: 'a', driver },
          ],
        }),
      /children\[1\]\.id.*duplicate/,
    ],
    [
      'significant permanent child',
      () =>
        new Supervisor({
          name: 'r',
          autoShutdown: 'any_significant',
          children: [{ id: 'a', driver, significant: true }],
        }),
      /significant.*permanent/,
    ],
    [
      'significant child under autoShutdown never',
      () =>
        new Supervisor({
          name: 'r',
          children: [{ id: 'a', driver, restart: 'transient', significant: true }],
        }),
      /autoShutdown `never`/,
    ],
    [
      'negative intensity',
      () => new Supervisor({ name: 'r', intensity: -1 }),
      /`intensity` to be an integer ≥ 0, got `-1`/,
    ],
    [
      'unknown strategy',
      () => new Supervisor({ name: 'r', strategy: 'one_for_some' as never }),
      /`strategy` to be one of .*got `one_for_some`/,
    ],
    [
      'maxChildren on a static supervisor',
      () => new Supervisor({ name: 'r', maxChildren: 3 }),
      /maxChildren/,
    ],
    [
      'bad shutdown',
      () => new Supervisor({ name: 'r', children: [{ id: 'a', driver, shutdown: -5 }] }),
      /children\[0\]\.shutdown/,
    ],
    ['bad nested spec', () => node({ name: 'n', period: 0 }), /`period` to be ms > 0/],
  ];
  for (const [name, make, message] of cases) {
    it(name, () => {
      assert.throws(make, (err: unknown) => err instanceof InvalidSpecError && message.test(err.message));
    });
  }

  it('every problem is reported at once', () => {
    try {
      new Supervisor({ name: 'r', intensity: -1, period: -1, strategy: 'x' as never });
      assert.fail('expected a throw');
    } catch (err) {
      assert.ok(err instanceof InvalidSpecError);
      assert.deepEqual(
        err.problems.map((p) => p.field),
        ['strategy', 'intensity', 'period'],
      );
    }
  });

  it('an invalid addChild leaves the running supervisor untouched', async () => {
    const h = harness();
    const sup = h.supervisor({ name: 'root', children: [{ id: 'a', driver: h.probe('a').driver }] });
    await sup.start();
    const before = JSON.stringify(sup.tree());
    await assert.rejects(sup.addChild({ id: 'bad id!', driver } as ChildSpec), InvalidSpecError);
    await assert.rejects(sup.addChild({ id: 'a', driver }), /already has a child a/);
    assert.equal(JSON.stringify(sup.tree()), before);
  });
});

describe('task driver', () => {
  it('resolving is a normal exit, rejecting a crash, PermanentFailure a permanent failure', async () => {
    const events: SupervisorEvent[] = [];
    const sup = new Supervisor(
      {
        name: 'root',
        children: [
          { id: 'ok', driver: task(async () => 'done'), restart: 'transient' },
          { id: 'perm', driver: task(async () => Promise.reject(new PermanentFailure('bad config'))) },
        ],
      },
      { clock: new VirtualClock() },
    );
    sup.subscribe((e) => events.push(e));
    await sup.start();
    await new Promise((r) => setImmediate(r));
    const exits = events
      .filter((e) => e.type === 'exited')
      .map((e) => (e.type === 'exited' ? [e.path, e.reason.kind] : []));
    assert.deepEqual(exits, [
      ['/root/ok', 'normal'],
      ['/root/perm', 'permanent_failure'],
    ]);
    assert.equal(sup.child('perm')?.state, 'failed');
    await sup.stop();
  });

  it('stop aborts the signal and a task that honours it exits as shutdown', async () => {
    let aborted = false;
    const sup = new Supervisor({
      name: 'root',
      children: [
        {
          id: 't',
          driver: task(async ({ signal }) => {
            await new Promise((resolve) => signal.addEventListener('abort', resolve));
            aborted = true;
          }),
        },
      ],
    });
    const events: SupervisorEvent[] = [];
    sup.subscribe((e) => events.push(e));
    await sup.start();
    await sup.stop();
    assert.equal(aborted, true);
    const exit = events.find((e) => e.type === 'exited');
    assert.deepEqual(exit?.type === 'exited' && exit.reason, { kind: 'shutdown' });
  });

  it('a task that ignores its signal is abandoned as killed after its shutdown deadline', async () => {
    const clock = new VirtualClock();
    const sup = new Supervisor(
      { name: 'root', children: [{ id: 't', shutdown: 100, driver: task(() => new Promise(() => {})) }] },
      { clock },
    );
    await sup.start();
    const stopped = sup.stop();
    await clock.advance(100);
    await stopped;
    assert.deepEqual(sup.child('t')?.lastExit, { kind: 'killed' });
  });

  it('manual readiness: the start waits for ctx.ready()', async () => {
    let ready: () => void = () => {};
    const sup = new Supervisor({
      name: 'root',
      children: [
        {
          id: 't',
          driver: task(
            (ctx) => {
              ready = ctx.ready;
              return new Promise((r) => ctx.signal.addEventListener('abort', r));
            },
            { readiness: 'manual' },
          ),
        },
      ],
    });
    let started = false;
    const p = sup.start().then(() => {
      started = true;
    });
    await new Promise((r) => setImmediate(r));
    assert.equal(started, false);
    assert.equal(sup.child('t')?.state, 'starting');
    ready();
    await p;
    assert.equal(sup.child('t')?.state, 'ready');
    await sup.stop();
  });
});
