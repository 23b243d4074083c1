/** Shared fixtures for caps tests: a host that can enforce everything, and a small shop tree. */
import assert from 'node:assert/strict';
import { type CapTree, createTree, type HostCapabilities, type Rejected } from '../../src/caps/index.ts';

export const Mi = 1024 ** 2;
export const Gi = 1024 ** 3;

export const fullHost: HostCapabilities = {
  cpu: 8,
  memory: 16 * Gi,
  pids: 4096,
  cpuLimits: true,
  memoryLimits: true,
  pidsLimits: true,
  netNamespaces: true,
  mountNamespaces: true,
  networks: { lan: {}, wan: { internet: true } },
  secrets: ['PII', 'DB_PASSWORD', 'API_KEY'],
  env: ['HOME', 'LANG'],
};

/** A tree rooted at /shop with the given root requires (default cpu 1.0, memory 1Gi, pids 512). */
export function shop(requires: object = { cpu: 1, memory: Gi, pids: 512 }, extra: object = {}): CapTree {
  const r = createTree({ name: 'shop', requires, ...extra }, fullHost);
  assert.ok(r.ok, r.ok ? '' : JSON.stringify(r.reasons));
  return r.tree;
}

export function rejected(r: { ok: boolean }): Rejected {
  assert.equal(r.ok, false, 'expected a rejection');
  return r as Rejected;
}

export function codes(r: Rejected): string[] {
  return r.reasons.map((x) => x.code);
}
