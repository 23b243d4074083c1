/** Manifests and running trees for the pure reconciliation tests: no daemon, no processes. */
import assert from 'node:assert/strict';
import type { HostCapabilities } from '../../src/caps/index.ts';
import { formatErrors, type ManifestTree, parseManifest } from '../../src/manifest/index.ts';
import { type Actual, indexTree } from '../../src/reconcile/index.ts';

export const host: HostCapabilities = {
  cpu: 8,
  memory: 16 * 1024 ** 3,
  pids: 4096,
  cpuLimits: true,
  memoryLimits: true,
  pidsLimits: true,
  netNamespaces: true,
  mountNamespaces: true,
  secrets: ['DB_PASSWORD', 'API_KEY'],
  env: ['HOME', 'LANG'],
};

export function manifest(text: string, file = 'captree.yaml'): ManifestTree {
  const r = parseManifest(text, file, { baseDir: '/srv/app' });
  if (!r.ok) assert.fail(formatErrors(r.errors));
  return r.tree;
}

/** The running tree of `tree`: every child running (pid = its depth-first index + 100), or as told. */
export function running(
  tree: ManifestTree,
  overrides: Partial<Actual> = {},
  states: Record<string, string> = {},
): Actual {
  const children: Actual['children'] = {};
  let pid = 100;
  for (const [path, spec] of indexTree(tree)) {
    const state = states[path] ?? (spec.kind === 'node' ? 'ready' : 'running');
    children[path] = {
      kind: spec.kind,
      state: state === 'held' ? 'stopped' : state,
      pid: spec.kind === 'node' || state === 'stopped' || state === 'held' ? null : pid++,
      held: state === 'held',
    };
  }
  return { generation: 1, tree, host, order: {}, reserved: {}, admitted: [], children, ...overrides };
}

/** `{ path: action }` of every action that is not a noop. */
export function changed(p: { actions: { path: string; action: string }[] }): Record<string, string> {
  return Object.fromEntries(p.actions.filter((a) => a.action !== 'noop').map((a) => [a.path, a.action]));
}

export function restartSet(p: { actions: { restarts: string[] }[] }): string[] {
  return [...new Set(p.actions.flatMap((a) => a.restarts))].sort();
}

export const shop = `
name: shop
strategy: rest_for_one
requires: { cpu: 2, memory: 2Gi, pids: 512 }
children:
  - name: db
    command: [postgres]
    requires: { cpu: 0.5, memory: 512Mi }
    provides: { db.sql: { tcp: 127.0.0.1:5432 } }
  - name: api
    command: [node, api.js]
    env: { MODE: prod }
    requires: { cpu: 0.5, memory: 256Mi, services: [db.sql] }
  - name: worker
    command: [node, worker.js]
    requires: { cpu: 0.2, memory: 128Mi }
`;
