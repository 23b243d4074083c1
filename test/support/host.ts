/**
 * Test-side host checks. Where this host lacks a kernel feature a runtime test may skip with the
 * reason printed; under CAPTREE_STRICT=1 (CI) a skip is a failure, so a missing feature cannot
 * hide behind a green run.
 */
import type { TestContext } from 'node:test';

export const strict = process.env.CAPTREE_STRICT === '1';

/** Skips the test with `reason`, or fails it when CAPTREE_STRICT=1. */
export function skipOrFail(t: TestContext, reason: string): void {
  if (strict) throw new Error(`CAPTREE_STRICT=1 forbids skipping: ${reason}`);
  t.skip(reason);
}

/** A name unique to this test process, for cgroups, namespaces and sockets. */
export function uniqueName(prefix: string): string {
  return `captree-test-${prefix}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
}

export const isRoot = process.getuid?.() === 0;

/** A `needRoot(t)` for a file: true as root, else skips (or fails, strict) with `reason`. */
export function rootOr(reason: string): (t: TestContext) => boolean {
  return (t) => {
    if (isRoot) return true;
    skipOrFail(t, reason);
    return false;
  };
}
