/**
 * A manifest built and started for a runtime test: written into a temporary directory, parsed,
 * `buildTree`d, its children's output and exits recorded per path, torn down after the file's tests.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import type { SupervisorEvent } from '../../src/core/index.ts';
import { buildTree, type RunningTree } from '../../src/daemon/build-tree.ts';
import { formatErrors, parseManifest } from '../../src/manifest/index.ts';
import { uniqueName } from './host.ts';

export type Cleanup = () => Promise<void> | void;

/** A list run last to first after the file's tests (call at the top level of a test file). */
export function cleanupsAfter(): Cleanup[] {
  const cleanups: Cleanup[] = [];
  after(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  return cleanups;
}

/** An argv as it is written in a manifest's `command:`. */
export function cmd(...argv: string[]): string {
  return JSON.stringify(argv);
}

/** One line a probe child printed (fixtures/enforcement/probe.mjs and the like). */
export interface Probe {
  op: string;
  target: string;
  ok: boolean;
  value?: unknown;
  code?: string;
}

/** Parses `yaml` as `<dir>/captree.yaml` (failing the test on manifest errors) and builds it. */
export async function buildManifest(dir: string, yaml: string, stateDir: string): Promise<RunningTree> {
  const parsed = parseManifest(yaml, join(dir, 'captree.yaml'), { baseDir: dir });
  if (!parsed.ok) assert.fail(formatErrors(parsed.errors));
  return buildTree(parsed.tree, { stateDir, source: parsed.source });
}

/** A tree's process output (by launcher key) and first exit (by path), as they come. */
export class Recorder {
  readonly output = new Map<string, string>();
  readonly exits = new Map<string, SupervisorEvent>();
  readonly #waiters = new Map<string, ((e: SupervisorEvent) => void)[]>();

  attach(tree: RunningTree): void {
    tree.runtime.launcher.on('output', ({ key, data }) => {
      this.output.set(key, (this.output.get(key) ?? '') + data.toString());
    });
    tree.supervisor.subscribe((e) => {
      if (e.type !== 'exited') return;
      if (!this.exits.has(e.path)) this.exits.set(e.path, e);
      for (const w of this.#waiters.get(e.path)?.splice(0) ?? []) w(e);
    });
  }

  /** Everything a process child wrote on stdout so far. */
  out(path: string): string {
    return this.output.get(`${path}#out`) ?? '';
  }

  /** The child's stdout parsed as JSON lines (the lines starting with `{`). */
  probes<P = Probe>(path: string): P[] {
    return this.out(path)
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as P);
  }

  /** Resolves with the child's first exit after this call was made... or before, if already seen. */
  exited(path: string): Promise<SupervisorEvent> {
    const seen = this.exits.get(path);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => {
      const list = this.#waiters.get(path) ?? [];
      list.push(resolve);
      this.#waiters.set(path, list);
    });
  }
}

export interface Running {
  tree: RunningTree;
  dir: string;
  stateDir: string;
  root: string;
  /** Everything a process child wrote on stdout so far. */
  out(path: string): string;
  /** Resolves with the child's first exit after this call was made... or before, if already seen. */
  exited(path: string): Promise<SupervisorEvent>;
  /** The child's stdout parsed as JSON lines (probe.mjs output). */
  probes(path: string): Probe[];
  /** Stops the tree, closes the runtime, runs `check` and removes the directory; idempotent. */
  down(): Promise<void>;
}

export interface UpOptions {
  /** Where `down` is registered (see `cleanupsAfter`). */
  cleanups: Cleanup[];
  /** The temporary directory's prefix, e.g. `captree-enf-`. */
  tmpPrefix: string;
  /** The root name's prefix, made unique (`ct-<name>-<pid>-<random>`). */
  name: string;
  /** Makes the directory 0755, for children that run as another user. */
  chmod?: boolean;
  /** Runs after the manifest is written, before it is parsed. */
  prepare?: (dir: string) => void;
  /** Runs in `down` once the runtime is closed, before the directory is removed. */
  check?: (stateDir: string) => void;
}

/**
 * Writes the manifest (`@NAME@` → a unique root name, `@STATE@` → the state directory, `@DIR@` → the
 * manifest's directory), builds and starts it.
 */
export async function upTree(template: string, o: UpOptions): Promise<Running> {
  const dir = mkdtempSync(join(tmpdir(), o.tmpPrefix));
  if (o.chmod) chmodSync(dir, 0o755);
  const root = uniqueName(o.name).replace('captree-test-', 'ct-');
  const stateDir = join(dir, '.captree');
  const yaml = template.replaceAll('@NAME@', root).replaceAll('@STATE@', stateDir).replaceAll('@DIR@', dir);
  writeFileSync(join(dir, 'captree.yaml'), yaml);
  o.prepare?.(dir);
  const tree = await buildManifest(dir, yaml, stateDir);
  let down: Promise<void> | undefined;
  const stop = () => {
    down ??= (async () => {
      await tree.supervisor.stop().catch(() => {});
      await tree.runtime.close();
      try {
        o.check?.(stateDir);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    })();
    return down;
  };
  o.cleanups.push(stop);
  const rec = new Recorder();
  rec.attach(tree);
  await tree.supervisor.start();
  return {
    tree,
    dir,
    stateDir,
    root,
    out: (path) => rec.out(path),
    exited: (path) => rec.exited(path),
    probes: (path) => rec.probes(path),
    down: stop,
  };
}
