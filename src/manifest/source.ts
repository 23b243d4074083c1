/**
 * Where things are in the manifest file. The loader keeps the parsed YAML document and a map
 * from each tree path to its place in the document, so any later layer (admission, reconcile)
 * can report its own errors as `file:line:col` in the same format as the loader.
 */
import { type Document, isAlias, isMap, isPair, isScalar, isSeq, type LineCounter, type Node } from 'yaml';
import type { ManifestError, YamlPath } from './types.ts';

export interface Position {
  line: number;
  col: number;
}

export interface ManifestSource {
  file: string;
  /** Absolute directory the manifest's relative paths are resolved against. */
  dir: string;
  doc: Document;
  lineCounter: LineCounter;
  /** Tree path (`/shop/db`) → YAML path of that node or child (`['children', 0]`). */
  nodes: Map<string, YamlPath>;
}

interface Found {
  node: Node | null;
  key: Node | null;
  /** How many segments of the path resolved. */
  depth: number;
}

function find(source: ManifestSource, path: YamlPath): Found {
  let node = source.doc.contents as Node | null;
  let key: Node | null = null;
  let depth = 0;
  for (const segment of path) {
    if (node && isAlias(node)) node = (node.resolve(source.doc) as Node | undefined) ?? null;
    if (node && isMap(node)) {
      const pair = node.items.find((item) => isPair(item) && keyText(item.key) === String(segment));
      if (!pair) break;
      key = (pair.key as Node | null) ?? null;
      node = (pair.value as Node | null) ?? null;
    } else if (node && isSeq(node) && typeof segment === 'number') {
      const item = node.items[segment] as Node | undefined;
      if (!item) break;
      key = null;
      node = item;
    } else {
      break;
    }
    depth++;
  }
  return { node, key, depth };
}

function keyText(key: unknown): string {
  if (isScalar(key)) return String(key.value);
  return String(key);
}

function at(source: ManifestSource, node: Node | null | undefined): Position | null {
  const offset = node?.range?.[0];
  if (offset === undefined) return null;
  const { line, col } = source.lineCounter.linePos(offset);
  return { line, col };
}

/**
 * Position of the value at `path` (or of its key with `which: 'key'`). Where the path does not
 * exist, e.g. a missing field, the position of the deepest part that does.
 */
export function positionOf(
  source: ManifestSource,
  path: YamlPath,
  which: 'value' | 'key' = 'value',
): Position {
  const found = find(source, path);
  const complete = found.depth === path.length;
  const preferKey = which === 'key' || !complete || (isScalar(found.node) && found.node.value === null);
  if (complete) {
    const position = preferKey ? (at(source, found.key) ?? at(source, found.node)) : at(source, found.node);
    if (position) return position;
  }
  // An incomplete path means the field is missing: point at the mapping that should hold it.
  const parent = find(source, path.slice(0, found.depth));
  return at(source, parent.node) ?? at(source, parent.key) ?? { line: 1, col: 1 };
}

/** Renders a path inside a child as people write it: `requires.cpu`, `ready.exec[0]`. */
export function fieldText(path: YamlPath): string {
  let text = '';
  for (const segment of path) {
    if (typeof segment === 'number') text += `[${segment}]`;
    else if (/^[A-Za-z0-9_-]+$/.test(segment)) text += text ? `.${segment}` : segment;
    else text += `['${segment}']`;
  }
  return text;
}

/** `fieldText` undone: `requires.services[0]` / `env['A.B']` back to a YAML path. */
export function fieldPath(field: string): YamlPath {
  const out: YamlPath = [];
  const re = /([^.[\]]+)|\[(\d+)\]|\['([^']*)'\]/g;
  for (let m = re.exec(field); m !== null; m = re.exec(field)) {
    if (m[1] !== undefined) out.push(m[1]);
    else if (m[2] !== undefined) out.push(Number(m[2]));
    else if (m[3] !== undefined) out.push(m[3]);
  }
  return out;
}

/** Position of `field` (a YAML path or text like `requires.cpu`, `ready.exec[0]`) of the tree node at `treePath`. */
export function locate(source: ManifestSource, treePath: string, field: string | YamlPath = []): Position {
  const base = source.nodes.get(treePath) ?? [];
  const rest = typeof field === 'string' ? fieldPath(field) : field;
  return positionOf(source, [...base, ...rest]);
}

/** An error about `field` of the node at `treePath`, in the loader's format; for layers above. */
export function errorAt(
  source: ManifestSource,
  treePath: string,
  field: string | YamlPath,
  message: string,
): ManifestError {
  const { line, col } = locate(source, treePath, field);
  return {
    file: source.file,
    line,
    col,
    path: treePath,
    field: typeof field === 'string' ? field : fieldText(field),
    message,
  };
}

// In their own module, free of `yaml`: the daemon formats errors without loading the parser.
export { formatError, formatErrors } from './format.ts';
