import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { formatErrors, loadManifest } from '../../src/manifest/index.ts';

const examples = fileURLToPath(new URL('../../examples/', import.meta.url));

test('every example parses', async () => {
  const names = (await readdir(examples, { withFileTypes: true })).filter((entry) => entry.isDirectory());
  assert.ok(names.length >= 3);
  for (const entry of names) {
    const result = await loadManifest(`${examples}${entry.name}/captree.yaml`);
    if (!result.ok) assert.fail(`${entry.name}:\n${formatErrors(result.errors)}`);
  }
});

test('the demo: db, api, worker under rest_for_one with readiness and budgets', async () => {
  const result = await loadManifest(`${examples}demo/captree.yaml`);
  assert.ok(result.ok);
  const { root } = result.tree;
  assert.equal(root.strategy, 'rest_for_one');
  assert.deepEqual(
    root.children.map((child) => child.path),
    ['/demo/db', '/demo/api', '/demo/worker'],
  );
  for (const child of root.children) {
    assert.ok(child.kind === 'process');
    assert.equal(child.cwd, `${examples}demo`);
    assert.ok(child.requires.cpu !== null && child.requires.memory !== null && child.requires.pids !== null);
  }
  const [db, api] = root.children;
  assert.equal(db?.kind === 'process' && db.ready?.type, 'tcp');
  assert.equal(api?.kind === 'process' && api.ready?.type, 'http');
});

test('confined: no network, a passed listening socket', async () => {
  const result = await loadManifest(`${examples}confined/captree.yaml`);
  assert.ok(result.ok);
  const web = result.tree.root.children[0];
  assert.equal(web?.requires.net, 'none');
  assert.deepEqual(web?.requires.listen, { http: { type: 'tcp', host: '127.0.0.1', port: 18081 } });
});

test('dev-shell: a dynamic node open to admission, no network, no secrets', async () => {
  const result = await loadManifest(`${examples}dev-shell/captree.yaml`);
  assert.ok(result.ok);
  const shells = result.tree.root.children.find((c) => c.name === 'shells');
  assert.ok(shells?.kind === 'node');
  assert.equal(shells.strategy, 'dynamic');
  assert.deepEqual(Object.keys(shells.admission ?? { closed: true }), ['template']);
  assert.equal(shells.requires.net, 'none');
  assert.deepEqual(shells.requires.secrets, []);
  assert.deepEqual(shells.requires.services, ['docs.http']);
});
