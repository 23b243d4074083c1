/**
 * Controllable children for engine tests: a `Probe` is a child driver whose instances the test
 * crashes, readies or lets exit at will, and every start and stop lands in one shared log so
 * tests can assert exact orders.
 */
import type { ChildDriver, ChildEvents, ExitReason, SupervisorEvent } from '../../src/core/index.ts';
import {
  EventSink,
  flushMicrotasks,
  Supervisor,
  type SupervisorSpec,
  VirtualClock,
} from '../../src/core/index.ts';

export type StopBehavior = 'exit' | 'ignore';

export interface Instance {
  readonly n: number;
  events: ChildEvents;
  alive: boolean;
  stopAsked: boolean;
  killed: boolean;
}

export class Probe {
  readonly id: string;
  readonly log: string[];
  readonly instances: Instance[] = [];
  /** `sync`: ready inside start; `manual`: ready when the test says; `fail`: exits during start. */
  readiness: 'sync' | 'manual' | 'fail' = 'sync';
  onStop: StopBehavior = 'exit';
  /** Number of upcoming starts that fail. */
  failNext = 0;

  constructor(id: string, log: string[]) {
    this.id = id;
    this.log = log;
  }

  get starts(): number {
    return this.instances.length;
  }

  get current(): Instance | undefined {
    const last = this.instances.at(-1);
    return last?.alive ? last : undefined;
  }

  get alive(): boolean {
    return this.current !== undefined;
  }

  readonly driver: ChildDriver = {
    kind: 'task',
    start: (_ctx, events) => {
      const inst: Instance = {
        n: this.instances.length + 1,
        events,
        alive: true,
        stopAsked: false,
        killed: false,
      };
      this.instances.push(inst);
      this.log.push(`start:${this.id}`);
      if (this.failNext > 0 || this.readiness === 'fail') {
        if (this.failNext > 0) this.failNext--;
        inst.alive = false;
        this.log.push(`failed:${this.id}`);
        events.exited({ kind: 'crashed', message: 'start failed' });
      } else if (this.readiness === 'sync') {
        events.ready(true);
      }
      return {
        pid: null,
        stop: () => {
          inst.stopAsked = true;
          if (this.onStop === 'exit') this.#end(inst, { kind: 'shutdown' }, 'stop');
        },
        kill: () => {
          inst.killed = true;
          this.#end(inst, { kind: 'killed' }, 'kill');
        },
      };
    },
  };

  #end(inst: Instance, reason: ExitReason, tag: string): void {
    if (!inst.alive) return;
    inst.alive = false;
    this.log.push(`${tag}:${this.id}`);
    inst.events.exited(reason);
  }

  ready(): void {
    this.current?.events.ready(true);
  }

  crash(message = 'boom'): void {
    const inst = this.current;
    if (!inst) throw new Error(`${this.id} is not running`);
    this.#end(inst, { kind: 'crashed', message }, 'crash');
  }

  exit(reason: ExitReason = { kind: 'normal' }): void {
    const inst = this.current;
    if (!inst) throw new Error(`${this.id} is not running`);
    this.#end(inst, reason, 'exit');
  }
}

export interface Harness {
  clock: VirtualClock;
  sink: EventSink;
  events: SupervisorEvent[];
  log: string[];
  probes: Map<string, Probe>;
  probe(id: string): Probe;
  settle(): Promise<void>;
  supervisor(spec: SupervisorSpec): Supervisor;
}

export function harness(): Harness {
  const clock = new VirtualClock();
  const events: SupervisorEvent[] = [];
  const log: string[] = [];
  const probes = new Map<string, Probe>();
  const h: Harness = {
    clock,
    sink: new EventSink(),
    events,
    log,
    probes,
    probe(id) {
      let p = probes.get(id);
      if (!p) {
        p = new Probe(id, log);
        probes.set(id, p);
      }
      return p;
    },
    settle: () => flushMicrotasks(),
    supervisor(spec) {
      const sup = new Supervisor(spec, { clock });
      sup.subscribe((e) => events.push(e));
      return sup;
    },
  };
  return h;
}

/** Event types for one path, in order. */
export function typesFor(events: readonly SupervisorEvent[], path: string): string[] {
  return events.filter((e) => e.path === path).map((e) => e.type);
}
