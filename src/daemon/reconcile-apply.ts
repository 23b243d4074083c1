/**
 * Carrying a plan's steps out on the running tree (the steps and their order are the pure
 * planner's, src/reconcile/plan.ts). One step at a time, each awaited (a start waits for its
 * child's readiness), so planned restarts are paced by readiness and never overlap.
 *
 * - `limits`: the cgroup is rewritten (sub-groups clamped first when a cpu quota is lowered, as
 *   cgroup v1 wants) and the child's live limits updated, so its next start keeps them.
 * - `stop`: `stopChild` without a hold: the child is stopped (consumers before providers, the
 *   plan's order), not counted as a failure nor against intensity.
 * - `remove`: the engine forgets it, then its cgroups and listening sockets go; an admitted
 *   child is revoked (its budget returns).
 * - `revise`: the child's engine spec is rebuilt from the desired manifest, confined by the
 *   re-admitted grants (a renegotiated quantity the manifest left alone is kept).
 * - `flags`: a node's strategy, intensity, period... in place.
 * - `add`: inserted at its place in start order, then started; `start`: started.
 *
 * A node whose children changed without restarting is given a rebuilt driver at the end, so its
 * next restart starts the desired children (`finish`). A child whose supervisor is not running
 * (a held node) gets only that: it starts as desired when its node does.
 */
import type { ChildSpec as EngineChild, Supervisor, SupervisorSpec } from '../core/index.ts';
import type { ChildSpec, ManifestTree, NodeSpec } from '../manifest/index.ts';
import { indexTree, type LimitChange, type Spec, type Step } from '../reconcile/index.ts';
import type { Readmitted, RunningTree } from './build-tree.ts';
import { grantQuantities } from './channel.ts';
import type { DynamicChildren } from './dynamic-children.ts';
import { liveChildren } from './live-limits.ts';
import { clampCpuQuotas } from './renegotiate.ts';

export interface StepContext {
  tree: RunningTree;
  desired: ManifestTree;
  admitted: Readmitted;
  dynamic?: DynamicChildren | undefined;
  /** Paths the plan stops to start again (nodes among them are rebuilt whole). */
  restarting: ReadonlySet<string>;
  /** Finishing an apply after a daemon restart: the tree was built from `desired` already. */
  resumed?: boolean;
}

export class StepRunner {
  readonly #ctx: StepContext;
  readonly #desired: Map<string, Spec>;
  /** Engine specs built by this apply, by path (a node's rebuilt driver picks them up). */
  readonly #built = new Map<string, EngineChild>();
  /** Nodes whose children changed without the node restarting. */
  readonly #touched = new Set<string>();
  #installed = false;

  constructor(ctx: StepContext) {
    this.#ctx = ctx;
    this.#desired = indexTree(ctx.desired);
  }

  get #root(): string {
    return this.#ctx.tree.supervisor.path;
  }

  async run(step: Step): Promise<void> {
    if (
      step.op !== 'limits' &&
      step.op !== 'stop' &&
      step.op !== 'remove' &&
      step.op !== 'revise' &&
      step.op !== 'flags'
    )
      this.install();
    switch (step.op) {
      case 'limits':
        return this.#limits(step.path, step.limits);
      case 'stop':
        return this.#stop(step.path);
      case 'remove':
        return this.#remove(step.path);
      case 'revise':
        return this.#revise(step.path);
      case 'flags':
        return this.#flags(step.path);
      case 'add':
        return this.#add(step.path);
      case 'start':
        return this.#start(step.path);
    }
  }

  /** The tree runs the desired manifest from now on (caps swapped); once. */
  install(): void {
    if (this.#installed || this.#ctx.resumed) return;
    this.#installed = true;
    this.#ctx.tree.install(this.#ctx.desired, this.#ctx.admitted);
  }

  /** After the last step: rebuilt drivers for nodes whose children changed, and the tree installed. */
  async finish(): Promise<void> {
    this.install();
    const nodes = [...this.#touched].sort((a, b) => b.split('/').length - a.split('/').length);
    const done = new Set<string>();
    while (nodes.length > 0) {
      const path = nodes.shift() as string;
      if (done.has(path) || path === this.#root) continue;
      done.add(path);
      await this.#respec(path);
      const parent = parentOf(path);
      if (parent !== this.#root && !done.has(parent)) {
        nodes.push(parent);
        nodes.sort((a, b) => b.split('/').length - a.split('/').length);
      }
    }
    this.#ctx.dynamic?.refresh();
  }

  #limits(path: string, limits: LimitChange): void {
    const runtime = this.#ctx.tree.runtime;
    const group = runtime.groupFor(path);
    if (limits.cpu != null) clampCpuQuotas(group.dirs, limits.cpu);
    group.setLimits(limits);
    const live = liveChildren(runtime).get(path);
    if (!live) return;
    Object.assign(live.limits, limits);
    // A supervisor child reads its grant from its environment at its next start, as after a
    // renegotiation.
    if (live.env.CAPTREE_GRANT !== undefined)
      live.env.CAPTREE_GRANT = JSON.stringify(grantQuantities(this.#ctx.admitted.grants.get(path)));
  }

  async #stop(path: string): Promise<void> {
    // An admitted child below a node that goes is revoked first: its budget returns.
    if (!this.#desired.has(path) && this.#ctx.dynamic) {
      for (const r of this.#ctx.dynamic.list())
        if (r.path.startsWith(`${path}/`)) await this.#ctx.dynamic.revoke(r.path);
    }
    const at = this.#ctx.tree.locate(path);
    if (!at) return;
    await at.supervisor.stopChild(at.id, { hold: false });
  }

  async #remove(path: string): Promise<void> {
    const dynamic = this.#ctx.dynamic;
    if (dynamic?.list().some((r) => r.path === path)) {
      await dynamic.revoke(path);
      return;
    }
    this.#touched.add(parentOf(path));
    const at = this.#ctx.tree.locate(path);
    if (at) {
      const info = at.supervisor.child(at.id);
      if (info && info.state !== 'stopped' && info.state !== 'failed')
        await at.supervisor.stopChild(at.id, { hold: false });
      await at.supervisor.deleteChild(at.id);
    }
    await this.#ctx.tree.forgetManifestChild(path);
  }

  async #revise(path: string): Promise<void> {
    const spec = this.#desired.get(path);
    if (!spec || path === this.#root) return;
    this.#touched.add(parentOf(path));
    if (spec.kind === 'node' && !this.#ctx.restarting.has(path)) {
      // Running on: only its engine entry (restart type, shutdown) and driver change, at the end.
      this.#touched.add(path);
      return;
    }
    const engine = await this.#engineChild(spec);
    const at = this.#ctx.tree.locate(path);
    if (at) await at.supervisor.reviseChild(engine);
  }

  #flags(path: string): void {
    const spec = this.#desired.get(path);
    if (spec?.kind !== 'node') return;
    this.#touched.add(path);
    this.#supervisorOf(path)?.revise(flagsOf(spec));
  }

  async #add(path: string): Promise<void> {
    const spec = this.#desired.get(path);
    if (!spec) return;
    const node = parentOf(path);
    this.#touched.add(node);
    const engine = await this.#engineChild(spec);
    const sup = this.#supervisorOf(node);
    if (sup?.state !== 'ready') return;
    if (!sup.child(engine.id))
      await sup.addChild(engine, { index: this.#indexIn(sup, node, engine.id), start: false });
    await sup.startChild(engine.id);
  }

  async #start(path: string): Promise<void> {
    const at = this.#ctx.tree.locate(path);
    if (at?.supervisor.state !== 'ready') return;
    const info = at.supervisor.child(at.id);
    if (!info || (info.state !== 'stopped' && info.state !== 'failed')) return;
    await at.supervisor.startChild(at.id);
  }

  /** A node's engine entry rebuilt around the children it now has (see the module comment). */
  async #respec(path: string): Promise<void> {
    const spec = this.#desired.get(path);
    const at = this.#ctx.tree.locate(path);
    if (spec?.kind !== 'node' || !at) return;
    const entry = at.supervisor.childSpec(at.id);
    const base = entry?.driver.spec;
    const nested = at.supervisor.nested(at.id);
    const order = this.#ctx.admitted.startOrder.get(path) ?? spec.children.map((c) => c.name);
    const children: EngineChild[] = [];
    for (const name of order) {
      const child = `${path}/${name}`;
      const known =
        this.#built.get(child) ?? nested?.childSpec(name) ?? base?.children?.find((c) => c.id === name);
      const desired = this.#desired.get(child);
      if (known) children.push(known);
      else if (desired) children.push(await this.#engineChild(desired));
    }
    const supervisorSpec: SupervisorSpec = { name: spec.name, ...flagsOf(spec), children };
    const rebuilt: EngineChild = {
      id: spec.name,
      restart: spec.restart,
      shutdown: spec.shutdown,
      significant: spec.significant,
      driver: this.#ctx.tree.nodeDriver(supervisorSpec),
    };
    this.#built.set(path, rebuilt);
    await at.supervisor.reviseChild(rebuilt);
  }

  async #engineChild(spec: Spec): Promise<EngineChild> {
    const engine = await this.#ctx.tree.engineChild(
      withGrants(spec as ChildSpec, this.#ctx.admitted),
      this.#ctx.admitted,
    );
    this.#built.set(spec.path, engine);
    return engine;
  }

  #supervisorOf(path: string): Supervisor | undefined {
    if (path === this.#root) return this.#ctx.tree.supervisor;
    const at = this.#ctx.tree.locate(path);
    return at ? at.supervisor.nested(at.id) : undefined;
  }

  /** Where a new child goes among the live children: after every one the desired order puts before it. */
  #indexIn(sup: Supervisor, node: string, name: string): number {
    const order = this.#ctx.admitted.startOrder.get(node) ?? [];
    const mine = order.indexOf(name);
    const live = sup.children().map((c) => c.id);
    let at = 0;
    live.forEach((id, i) => {
      const rank = order.indexOf(id);
      if (rank >= 0 && rank < mine) at = i + 1;
    });
    return at;
  }
}

function parentOf(path: string): string {
  return path.slice(0, path.lastIndexOf('/'));
}

function flagsOf(
  spec: NodeSpec,
): Pick<SupervisorSpec, 'strategy' | 'intensity' | 'period' | 'autoShutdown' | 'maxChildren'> {
  return {
    strategy: spec.strategy,
    intensity: spec.intensity,
    period: spec.period,
    autoShutdown: spec.autoShutdown,
    maxChildren: spec.maxChildren ?? undefined,
  };
}

/**
 * The manifest child with the quantities its re-admitted grant reserves: a reservation
 * renegotiated at run time, which the manifest left alone, survives the rebuild.
 */
export function withGrants(spec: ChildSpec, admitted: Readmitted): ChildSpec {
  const g = admitted.grants.get(spec.path);
  const reserved = (x: { reserved: number } | undefined) => (x && x.reserved > 0 ? x.reserved : null);
  const requires = g
    ? { ...spec.requires, cpu: reserved(g.cpu), memory: reserved(g.memory), pids: reserved(g.pids) }
    : spec.requires;
  if (spec.kind === 'node')
    return { ...spec, requires, children: spec.children.map((c) => withGrants(c, admitted)) };
  return { ...spec, requires };
}
