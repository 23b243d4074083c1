/** Shared helpers for the manifest tests: parse text and get formatted errors or the tree. */
import assert from 'node:assert/strict';
import { formatErrors, parseManifest } from '../../src/manifest/index.ts';
import type { ManifestTree } from '../../src/manifest/types.ts';

/** The formatted error lines for `text`, or a failure if it parses. */
export function errorsOf(text: string): string[] {
  const result = parseManifest(text, 'captree.yaml', { baseDir: '/srv/app' });
  assert.equal(result.ok, false, 'expected the manifest to be rejected');
  if (result.ok) return [];
  return formatErrors(result.errors).split('\n');
}

/** The tree for `text`, or a failure listing the errors. */
export function treeOf(text: string): ManifestTree {
  const result = parseManifest(text, 'captree.yaml', { baseDir: '/srv/app' });
  if (!result.ok) assert.fail(formatErrors(result.errors));
  return result.tree;
}

/** Lines joined, so tests can write manifests as arrays with visible indentation. */
export function yaml(...lines: string[]): string {
  return `${lines.join('\n')}\n`;
}
