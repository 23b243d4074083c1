/**
 * Writes `schema/captree.schema.json` from the zod definitions the loader validates with, so
 * editors and the loader can never disagree. `--check` only reports whether the file is stale.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { manifestJsonSchemaText } from '../src/manifest/schema.ts';

const target = fileURLToPath(new URL('../schema/captree.schema.json', import.meta.url));
const text = manifestJsonSchemaText();

if (process.argv.includes('--check')) {
  const current = await readFile(target, 'utf8').catch(() => '');
  if (current !== text) {
    console.error(`${target} is stale; run: node scripts/gen-schema.ts`);
    process.exit(1);
  }
} else {
  await writeFile(target, text);
  console.log(`wrote ${target}`);
}
