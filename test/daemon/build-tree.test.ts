/** Building a running tree from a manifest: order from the contract graph, admission first. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { AdmissionError, buildTree, type RunningTree } from '../../src/daemon/build-tree.ts';
import { parseManifest } from '../../src/manifest/index.ts';

const dir = mkdtempSync(join(tmpdir(), 'captree-build-'));
const trees: RunningTree[] = [];
after(async () => {
  for (const t of trees) await t.runtime.close();
  rmSync(dir, { recursive: true, force: true });
});

function parse(yaml: string) {
  const parsed = parseManifest(yaml, join(dir, 'captree.yaml'), { baseDir: dir });
  assert.ok(parsed.ok, parsed.ok ? '' : JSON.stringify(parsed.errors));
  return parsed;
}

it('children start providers first, list order breaking ties', async () => {
  const parsed = parse(`
name: order${process.pid}
children:
  - { name: api, command: [sleep, '1'], requires: { services: [db.kv] } }
  - { name: other, command: [sleep, '1'] }
  - { name: db, command: [sleep, '1'], provides: { db.kv: { tcp: 127.0.0.1:15999 } } }
`);
  if (!parsed.ok) return;
  const tree = await buildTree(parsed.tree, { stateDir: join(dir, 'a'), source: parsed.source });
  trees.push(tree);
  assert.deepEqual(
    tree.supervisor.children().map((c) => c.id),
    // api waits for db; among the children free to start, list order decides.
    ['other', 'db', 'api'],
  );
});

it('a manifest that admission rejects builds nothing and says why, with positions', async () => {
  const parsed = parse(`
name: reject${process.pid}
requires: { cpu: 0.5 }
children:
  - { name: big, command: [sleep, '1'], requires: { cpu: 0.8 } }
`);
  if (!parsed.ok) return;
  await assert.rejects(
    buildTree(parsed.tree, { stateDir: join(dir, 'b'), source: parsed.source }),
    (err: unknown) =>
      err instanceof AdmissionError &&
      /captree\.yaml:5:\d+: \/reject\d+\/big requires\.cpu/.test(err.message),
  );
});
