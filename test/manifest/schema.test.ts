import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { manifestJsonSchema, manifestJsonSchemaText } from '../../src/manifest/index.ts';

test('the committed JSON Schema is what the generator writes', async () => {
  const committed = await readFile(new URL('../../schema/captree.schema.json', import.meta.url), 'utf8');
  assert.equal(committed, manifestJsonSchemaText(), 'stale schema: run node scripts/gen-schema.ts');
});

test('the schema describes nodes and processes with the same fields the loader checks', () => {
  const schema = manifestJsonSchema() as {
    properties: Record<string, unknown>;
    additionalProperties: boolean;
    definitions: Record<string, { properties: Record<string, unknown>; required: string[] }>;
  };
  assert.equal(schema.additionalProperties, false);
  assert.ok('strategy' in schema.properties && 'children' in schema.properties);
  const { node, process } = schema.definitions;
  assert.ok(node && process);
  assert.ok(node.required.includes('children'));
  assert.ok(process.required.includes('command'));
  for (const field of ['ready', 'liveness', 'backoff', 'stopSignal', 'logs', 'requires', 'provides']) {
    assert.ok(field in process.properties, field);
  }
});
