/**
 * What an admission request may set: a node's `admission.template` bounds every field that
 * carries authority, and a request can only narrow it. Pure: it compares two parsed specs, the
 * one the template gives on its own (`base`) and the one the request asks for (`requested`).
 *
 * Fields that carry no authority over anything but the child's own process (its command, cwd,
 * readiness, stop signal, backoff, its own variables not fixed by the template) are the
 * request's to choose; quantities are bounded by `maxGrant` and the node's budget elsewhere.
 * Everything else fails closed: a field this module does not know (a capability added later)
 * must equal the template's, or be a subset of it when it is a list.
 */
import type { Endpoint, PathGrant, ProcessSpec, Requires } from '../manifest/index.ts';

export interface BoundReason {
  path: string;
  field: string;
  message: string;
}

/** The request's own choice; nothing of the node's authority. */
const FREE_FIELDS = new Set([
  'kind',
  'name',
  'path',
  'command',
  'cwd',
  'restart',
  'shutdown',
  'significant',
  'stopSignal',
  'killMode',
  'pidFile',
  'backoff',
  'permanentExitCodes',
  'ready',
  'liveness',
  'watchdog',
  'logs',
]);
/** Bounded by `maxGrant` and by caps admission against the node's budget. */
const QUANTITIES = new Set(['cpu', 'cpuWeight', 'memory', 'pids']);

const PRIORITY_RANK: Record<string, number> = { low: 0, normal: 1, high: 2 };

/**
 * The request's top-level fields that `base` (the template alone) leaves unchanged: a request that
 * names only these asks for nothing the template did not already fix.
 */
export function baseRequestOf(request: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(request)) {
    if (FREE_FIELDS.has(key)) out[key] = value;
    else if (key === 'requires' && isRecord(value)) {
      const quantities = Object.fromEntries(Object.entries(value).filter(([k]) => QUANTITIES.has(k)));
      if (Object.keys(quantities).length > 0) out.requires = quantities;
    }
  }
  return out;
}

/**
 * Capabilities caps admission already bounds by what the node holds: when the template says
 * nothing of one, the node's holdings are its bound; when it does, the request can only narrow it.
 */
const HELD_BY_NODE = new Set(['net', 'services', 'secrets', 'paths', 'env']);

/**
 * Every way `requested` exceeds `base` (the template), each with the field named.
 * `templateRequires`: the `requires` keys the template itself writes.
 */
export function exceedsTemplate(
  node: string,
  base: ProcessSpec,
  requested: ProcessSpec,
  templateRequires: ReadonlySet<string>,
): BoundReason[] {
  const out: BoundReason[] = [];
  const refuse = (field: string, message: string) => out.push({ path: requested.path, field, message });
  const fixed = (what: string, value: unknown) =>
    value === null || value === undefined || (Array.isArray(value) && value.length === 0)
      ? `the template of ${node} grants no ${what}, so a request cannot ask for one`
      : `the template of ${node} fixes ${what} ${show(value)}; a request can only narrow it`;

  for (const key of Object.keys(requested) as (keyof ProcessSpec)[]) {
    if (FREE_FIELDS.has(key)) continue;
    const want = requested[key];
    const have = base[key];
    switch (key) {
      case 'requires':
        requiresWithin(base.requires, requested.requires, templateRequires, refuse, fixed);
        break;
      case 'env':
        for (const [name, value] of Object.entries(base.env))
          if (requested.env[name] !== value)
            refuse(`env.${name}`, `the template of ${node} fixes env ${name}; a request cannot change it`);
        break;
      case 'inheritEnv':
        if (base.inheritEnv === true) break;
        if (requested.inheritEnv === true)
          refuse('inheritEnv', fixed('inheritEnv', base.inheritEnv.length ? base.inheritEnv : null));
        else {
          const extra = requested.inheritEnv.filter((n) => !(base.inheritEnv as string[]).includes(n));
          if (extra.length > 0)
            refuse('inheritEnv', `${fixed('inheritEnv', base.inheritEnv)} (asked: ${extra.join(', ')})`);
        }
        break;
      case 'priority':
        if ((PRIORITY_RANK[requested.priority] ?? 1) > (PRIORITY_RANK[base.priority] ?? 1))
          refuse('priority', fixed('priority', base.priority));
        break;
      case 'supervisor':
        if (requested.supervisor && !base.supervisor)
          refuse('supervisor', fixed('a supervisor channel', null));
        break;
      default:
        if (!within(have, want)) refuse(String(key), fixed(String(key), have));
    }
  }
  return out;
}

function requiresWithin(
  base: Requires,
  want: Requires,
  templateRequires: ReadonlySet<string>,
  refuse: (field: string, message: string) => void,
  fixed: (what: string, value: unknown) => string,
): void {
  for (const key of Object.keys(want) as (keyof Requires)[]) {
    if (QUANTITIES.has(key)) continue;
    if (HELD_BY_NODE.has(key) && !templateRequires.has(key)) continue;
    const field = `requires.${key}`;
    switch (key) {
      case 'net':
        // `none` narrows any network; anything else must be what the template says.
        if (want.net !== base.net && want.net !== 'none') refuse(field, fixed('net', base.net));
        break;
      case 'listen':
        for (const [name, ep] of Object.entries(want.listen)) {
          // A TCP address is checked against the node's holdings by caps; a unix socket is a
          // file the daemon creates on the host, so only the template can grant one.
          if (ep.type === 'tcp' && !templateRequires.has('listen')) continue;
          const allowed = base.listen[name];
          if (!allowed || !sameEndpoint(allowed, ep))
            refuse(`${field}.${name}`, fixed(`listen ${name}`, allowed ? endpointText(allowed) : null));
        }
        break;
      case 'paths':
        pathsWithin(base.paths, want.paths, field, refuse, fixed);
        break;
      case 'privileges': {
        // root, capabilities, users: only those the template names (caps then checks the node holds them).
        const extra = (want.privileges ?? []).filter((p) => !(base.privileges ?? []).includes(p));
        if (extra.length > 0)
          refuse(field, `${fixed('privileges', base.privileges)} (asked: ${extra.join(', ')})`);
        break;
      }
      default: {
        const have = base[key];
        const asked = want[key];
        if (Array.isArray(asked) && Array.isArray(have)) {
          const extra = asked.filter((v) => !have.some((h) => equal(h, v)));
          if (extra.length > 0) refuse(field, `${fixed(key, have)} (asked: ${extra.map(show).join(', ')})`);
        } else if (!equal(have, asked)) refuse(field, fixed(key, have));
      }
    }
  }
}

/**
 * A template without `paths` leaves the node's whole view: any narrower view is fine (caps checks
 * it against the node). A template with paths: each requested path lies under one of them, read-only
 * where the template says so; asking for no paths at all would widen the view back.
 */
function pathsWithin(
  base: readonly PathGrant[],
  want: readonly PathGrant[],
  field: string,
  refuse: (field: string, message: string) => void,
  fixed: (what: string, value: unknown) => string,
): void {
  if (base.length === 0) return;
  const shown = base.map((p) => `${p.path} (${p.mode})`);
  if (want.length === 0) {
    refuse(field, `${fixed('paths', shown)} (the request asks for the whole view)`);
    return;
  }
  for (const p of want) {
    const ok = base.some(
      (b) =>
        (p.path === b.path || p.path.startsWith(`${b.path.replace(/\/$/, '')}/`)) &&
        (b.mode === 'rw' || p.mode === 'ro'),
    );
    if (!ok) refuse(field, `${fixed('paths', shown)} (asked: ${p.path} ${p.mode})`);
  }
}

/** `want` asks for nothing beyond `have`: equal, or a list whose items `have` all holds. */
function within(have: unknown, want: unknown): boolean {
  if (equal(have, want)) return true;
  if (Array.isArray(want) && Array.isArray(have)) return want.every((v) => have.some((h) => equal(h, v)));
  return false;
}

function sameEndpoint(a: Endpoint, b: Endpoint): boolean {
  return equal(a, b);
}

export function endpointText(ep: Endpoint): string {
  return ep.type === 'unix'
    ? `unix:${ep.path}`
    : `${ep.host.includes(':') ? `[${ep.host}]` : ep.host}:${ep.port}`;
}

function equal(a: unknown, b: unknown): boolean {
  return stable(a) === stable(b);
}

function stable(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stable).join(',')}]`;
  if (isRecord(value))
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stable(value[k])}`)
      .join(',')}}`;
  return JSON.stringify(value) ?? 'null';
}

function show(value: unknown): string {
  if (typeof value === 'string' || typeof value === 'number') return String(value);
  if (Array.isArray(value)) return value.map(show).join(', ');
  return JSON.stringify(value);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
