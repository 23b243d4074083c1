/**
 * What a change of one field costs, the table at the heart of planning (docs/reconcile.md):
 *
 * | field | process | node |
 * |---|---|---|
 * | `requires.cpu`, `cpuWeight`, `memory`, `pids` | live (cgroup rewritten) | live |
 * | `restart`, `shutdown`, `significant`, `backoff`, `priority`, `reload` | in place (next use) | in place |
 * | `strategy`, `intensity`, `period`, `autoShutdown`, `maxChildren` | - | in place (`dynamic` ↔ other: restart) |
 * | `policy`, `admission`, the node's other `requires`, `provides` | - | in place (children whose grant changes restart) |
 * | anything else: `command`, `env`, `cwd`, `user`, `ready`, `liveness`, `requires.net`, `provides`, ... | restart | - |
 *
 * A process restarts for what it runs with; a node is not a process, so what changes on a node
 * reaches its children through their grants (compared after re-admission), never by restarting
 * the node itself, except when its strategy changes to or from `dynamic` (OTP cannot either).
 */
import { formatBytes, formatCores } from '../caps/index.ts';
import type { ChildSpec, NodeSpec } from '../manifest/index.ts';

export type Spec = NodeSpec | ChildSpec;

/** `live`: rewritten with no restart; `inplace`: the engine's copy, no restart; `restart`. */
export type FieldClass = 'live' | 'inplace' | 'restart';

export interface FieldChange {
  /** Dotted path into the spec: `command`, `env.DB_URL`, `requires.cpu`. */
  field: string;
  cls: FieldClass;
  /** For people: `cpu 0.2 → 0.4`, `command changed`. */
  detail: string;
}

/** Not compared: identity (`name`, `path`), structure (`children`, compared child by child), `kind` (separately). */
const SKIPPED = new Set(['name', 'path', 'kind', 'children']);
const QUANTITY_FIELDS = new Set(['requires.cpu', 'requires.cpuWeight', 'requires.memory', 'requires.pids']);
/** Read from the spec when used (the engine's at the next start or stop, the daemon's on `reload`). */
const ENGINE_FIELDS = ['restart', 'shutdown', 'significant', 'backoff', 'priority', 'reload'];
const NODE_FLAGS = ['strategy', 'intensity', 'period', 'autoShutdown', 'maxChildren'];

export function isQuantityField(field: string): boolean {
  return QUANTITY_FIELDS.has(field);
}

function under(field: string, top: string): boolean {
  return field === top || field.startsWith(`${top}.`);
}

export function classify(kind: 'node' | 'process', field: string): FieldClass {
  if (QUANTITY_FIELDS.has(field)) return 'live';
  if (ENGINE_FIELDS.some((f) => under(field, f))) return 'inplace';
  if (kind === 'node') return 'inplace';
  return 'restart';
}

/** True when the node flag `field` changes in place on a running supervisor (not `policy`, `admission`...). */
export function isNodeFlag(field: string): boolean {
  return NODE_FLAGS.includes(field);
}

/** Every leaf field that differs between `before` and `after` (same path), classified. */
export function changedFields(before: Spec, after: Spec): FieldChange[] {
  if (before.kind !== after.kind) {
    return [{ field: 'kind', cls: 'restart', detail: `kind ${before.kind} → ${after.kind}` }];
  }
  // Most children of a large tree do not change: one comparison of their own fields says so.
  if (ownJson(before) === ownJson(after)) return [];
  const out: FieldChange[] = [];
  diff(before as unknown as Record<string, unknown>, after as unknown as Record<string, unknown>, '', out);
  for (const c of out) c.cls = classify(after.kind, c.field);
  if (after.kind === 'node' && before.kind === 'node') {
    const wasDynamic = before.strategy === 'dynamic';
    if (wasDynamic !== (after.strategy === 'dynamic')) {
      const s = out.find((c) => c.field === 'strategy');
      if (s) {
        s.cls = 'restart';
        s.detail = `${s.detail} (to or from dynamic: the node restarts)`;
      }
    }
  }
  return out;
}

/** A spec's own fields as JSON, its children left out (the parser builds keys in one order). */
function ownJson(spec: Spec): string {
  return JSON.stringify(spec.kind === 'node' ? { ...spec, children: spec.children.length } : spec);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function diff(
  a: Record<string, unknown>,
  b: Record<string, unknown>,
  prefix: string,
  out: FieldChange[],
): void {
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
  for (const key of keys) {
    if (prefix === '' && SKIPPED.has(key)) continue;
    const field = prefix === '' ? key : `${prefix}.${key}`;
    const x = a[key];
    const y = b[key];
    if (isPlainObject(x) && isPlainObject(y)) {
      diff(x, y, field, out);
      continue;
    }
    if (same(x, y)) continue;
    out.push({ field, cls: 'restart', detail: describe(field, x, y) });
  }
}

function same(x: unknown, y: unknown): boolean {
  if (x === y) return true;
  if (x === undefined || y === undefined) return false;
  return JSON.stringify(x) === JSON.stringify(y);
}

/** `cpu 0.2 → 0.4`, `memory 256Mi → 512Mi`, `env.MODE 'a' → 'b'`, `ready added`. */
function describe(field: string, x: unknown, y: unknown): string {
  const name = field.startsWith('requires.') ? field.slice('requires.'.length) : field;
  if (QUANTITY_FIELDS.has(field)) return `${name} ${quantity(field, x)} → ${quantity(field, y)}`;
  if (x === undefined || x === null) return `${name} added: ${short(y)}`;
  if (y === undefined || y === null) return `${name} removed (was ${short(x)})`;
  return `${name} ${short(x)} → ${short(y)}`;
}

function quantity(field: string, v: unknown): string {
  if (typeof v !== 'number') return 'none';
  if (field === 'requires.cpu') return formatCores(Math.round(v * 1000));
  if (field === 'requires.memory') return formatBytes(v);
  return String(v);
}

function short(v: unknown): string {
  const text = typeof v === 'string' ? `'${v}'` : JSON.stringify(v);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
