/** `captree check FILE`: validates a manifest without starting anything. */
import { existsSync } from 'node:fs';
import { checkTree } from '../../daemon/check.ts';
import {
  formatErrors,
  loadManifest,
  type ManifestError,
  type ManifestTree,
  type NodeSpec,
} from '../../manifest/index.ts';
import { CliError, type Command, jsonOption } from '../cli.ts';
import { reachErrors } from '../reach.ts';

/** Counts nodes (the root included) and processes. */
export function countTree(root: NodeSpec): { nodes: number; processes: number } {
  let nodes = 1;
  let processes = 0;
  for (const child of root.children) {
    if (child.kind === 'node') {
      const sub = countTree(child);
      nodes += sub.nodes;
      processes += sub.processes;
    } else processes++;
  }
  return { nodes, processes };
}

/** Loads and checks a manifest: the tree, or every error found. Shared with `up`. */
export async function validate(
  file: string,
): Promise<{ tree: ManifestTree; errors: [] } | { tree: null; errors: ManifestError[] }> {
  if (!existsSync(file)) {
    throw new CliError(`no manifest at ${file} (create one, or name it: captree check FILE)`);
  }
  const parsed = await loadManifest(file);
  if (!parsed.ok) return { tree: null, errors: parsed.errors };
  const errors = [
    ...(await checkTree(parsed.tree, parsed.source)),
    ...reachErrors(parsed.tree.root, parsed.source),
  ];
  errors.sort((a, b) => a.line - b.line || a.col - b.col);
  return errors.length > 0 ? { tree: null, errors } : { tree: parsed.tree, errors: [] };
}

export const check: Command = {
  name: 'check',
  summary: 'validate a manifest and print every error with file:line:col',
  usage: 'captree check [FILE] [--json]',
  help: `
Parses and checks the manifest (default: captree.yaml) without starting anything. Prints every
error at once, one per line as file:line:col: /path field: message, and exits 1; or prints a
one-line summary and exits 0. With --json: {ok, file, errors: [{file, line, col, path, field,
message}], nodes, processes}.

Example:
  captree check examples/demo/captree.yaml`,
  options: { ...jsonOption },
  positionals: [0, 1],
  async run({ values, positionals }, io) {
    const file = positionals[0] ?? 'captree.yaml';
    const result = await validate(file);
    const counts = result.tree ? countTree(result.tree.root) : null;
    if (values.json) {
      io.stdout.write(
        `${JSON.stringify({ ok: result.tree !== null, file, errors: result.errors, nodes: counts?.nodes ?? null, processes: counts?.processes ?? null }, null, 2)}\n`,
      );
      return result.tree ? 0 : 1;
    }
    if (!result.tree) {
      io.stdout.write(`${formatErrors(result.errors)}\n`);
      io.stderr.write(`captree: ${result.errors.length} error(s) in ${file}\n`);
      return 1;
    }
    const n = counts!;
    io.stdout.write(
      `${file}: OK: tree ${result.tree.root.path}, ${n.nodes} node${n.nodes === 1 ? '' : 's'}, ${n.processes} process${n.processes === 1 ? '' : 'es'}\n`,
    );
    return 0;
  },
};
