/**
 * Loads a manifest: YAML text → validated, fully defaulted `ManifestTree`, or every error in the
 * file at once, each with `file:line:col`. Children are validated one by one (their kind is
 * chosen by `command` or `children`), so an error in one child never hides errors in another.
 */

import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { Document, isScalar, LineCounter, parseDocument, visit } from 'yaml';
import type { z } from 'zod';
import { parsePrivilege } from '../caps/privileges.ts';
import { interpolate, interpolationLookup, type Lookup, readEnvFile } from './env.ts';
import { fieldHint, restartHint } from './hints.ts';
import {
  NAME_RE,
  type NodeInput,
  nodeSchema,
  type ProcessInput,
  processSchema,
  type requiresSchema,
  rootNetworksSchema,
  show,
} from './schema.ts';
import { fieldText, type ManifestSource, positionOf } from './source.ts';
import type {
  AdmissionRules,
  ChildSpec,
  Endpoint,
  Liveness,
  ManifestError,
  ManifestTree,
  NetworkSpec,
  NodeSpec,
  PathGrant,
  ProcessSpec,
  ProvidedService,
  Ready,
  ReconcileRules,
  Reload,
  Requires,
  YamlPath,
} from './types.ts';

export type ParseResult =
  | { ok: true; tree: ManifestTree; source: ManifestSource }
  | { ok: false; errors: ManifestError[]; source: ManifestSource };

export interface ParseOptions {
  /** Directory relative paths (cwd, requires.paths) resolve against; default: the file's. */
  baseDir?: string;
  /** What `${VAR}` reads (then `.env` beside the manifest); default: this process's environment. */
  env?: NodeJS.ProcessEnv;
  /** false: leave `$` alone (default: interpolate, as docker compose does). */
  interpolate?: boolean;
}

/**
 * `${VAR}` in every string value (keys stay as written). A plain scalar is re-read after
 * substitution, so `port: ${PORT}` is a number as if written `port: 8080`.
 */
function interpolateDocument(
  doc: Document.Parsed,
  lookup: Lookup,
  error: (at: number, message: string) => ManifestError,
): ManifestError[] {
  const errors: ManifestError[] = [];
  visit(doc, {
    Scalar(key, node) {
      if (key === 'key' || typeof node.value !== 'string' || !node.value.includes('$')) return;
      const result = interpolate(node.value, lookup);
      if ('error' in result) {
        errors.push(error(node.range?.[0] ?? 0, result.error));
        return;
      }
      if (node.type === 'PLAIN') {
        const reread = parseDocument(result.value).contents;
        node.value = isScalar(reread) ? reread.value : result.value;
      } else node.value = result.value;
    },
  });
  return errors;
}

export const DEFAULT_MANIFEST = 'captree.yaml';

/** Reads and parses a manifest file (default `captree.yaml` in the current directory). */
export async function loadManifest(path = DEFAULT_MANIFEST): Promise<ParseResult> {
  const text = await readFile(path, 'utf8');
  return parseManifest(text, path, { baseDir: dirname(resolve(path)) });
}

/** Parses manifest text; `fileName` is what errors are reported against. */
export function parseManifest(text: string, fileName: string, options: ParseOptions = {}): ParseResult {
  const lineCounter = new LineCounter();
  // logLevel 'error': the library's warnings go to process.emitWarning (stderr), not to our errors.
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true, logLevel: 'error' });
  const source: ManifestSource = {
    file: fileName,
    dir: options.baseDir ?? dirname(resolve(fileName)),
    doc,
    lineCounter,
    nodes: new Map(),
  };
  const errors: ManifestError[] = [];
  const indentation = indentationError(text, doc.errors, lineCounter, fileName);
  // One broken indentation makes the parser report several confusing errors, often on the line
  // before; the structure after it is a guess, so this one error is all there is to say.
  if (indentation) return { ok: false, errors: [indentation], source };
  for (const error of doc.errors) {
    const start = lineCounter.linePos(error.pos[0]);
    const message = (error.message.split('\n')[0] ?? error.message).replace(
      / at line \d+, column \d+:?$/,
      '',
    );
    errors.push({
      file: fileName,
      line: start.line,
      col: start.col,
      path: '',
      field: '',
      message: `YAML: ${message}`,
    });
  }
  if (errors.length === 0 && options.interpolate !== false)
    errors.push(
      ...interpolateDocument(
        doc,
        interpolationLookup(options.env ?? process.env, resolve(source.dir, '.env')),
        (range, message) => {
          const at = lineCounter.linePos(range);
          return { file: fileName, line: at.line, col: at.col, path: '', field: '', message };
        },
      ),
    );
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 1000 });
    // toJS stringifies a collection used as a key with a warning on stderr; say it ourselves.
    if (raw !== null && typeof raw === 'object')
      for (const pair of (doc.contents as { items?: { key?: unknown }[] } | null)?.items ?? [])
        if (pair.key !== null && typeof pair.key === 'object' && 'items' in pair.key) {
          const at = lineCounter.linePos((pair.key as { range?: number[] }).range?.[0] ?? 0);
          errors.push({
            file: fileName,
            line: at.line,
            col: at.col,
            path: '',
            field: '',
            message: 'YAML: a list or mapping cannot be a key; check the indentation',
          });
        }
  } catch (error) {
    errors.push({
      file: fileName,
      line: 1,
      col: 1,
      path: '',
      field: '',
      message: `YAML: ${(error as Error).message}`,
    });
    return { ok: false, errors: sortErrors(errors), source };
  }
  const checked: ManifestError[] = [];
  const checker = new Checker(source, checked);
  const root = checker.root(raw);
  // After a syntax error the recovered document is a guess; only what precedes it is reliable.
  const firstBroken = Math.min(...errors.map((error) => error.line));
  errors.push(...checked.filter((error) => error.line < firstBroken));
  if (errors.length > 0 || !root) return { ok: false, errors: sortErrors(errors), source };
  const networks = checker.networks;
  return {
    ok: true,
    tree: { file: fileName, dir: source.dir, root, ...(networks ? { networks } : {}) },
    source,
  };
}

export type ChildParseResult =
  | { ok: true; spec: ChildSpec; source: ManifestSource }
  | { ok: false; errors: ManifestError[]; source: ManifestSource };

/**
 * Validates one child given as data (a run-time admission request) exactly as the loader
 * validates a child of a manifest: same fields, defaults and messages. Errors name the field;
 * their positions are 1:1 (there is no text), so callers with the text re-locate them.
 */
export function parseChild(
  raw: unknown,
  parentPath: string,
  options: { fileName: string; baseDir: string; parentAutoShutdown?: string },
): ChildParseResult {
  const source: ManifestSource = {
    file: options.fileName,
    dir: options.baseDir,
    doc: new Document(raw),
    lineCounter: new LineCounter(),
    nodes: new Map(),
  };
  const errors: ManifestError[] = [];
  const spec = new Checker(source, errors).single(raw, parentPath, {
    autoShutdown: options.parentAutoShutdown ?? 'never',
  });
  if (errors.length > 0 || !spec) return { ok: false, errors, source };
  return { ok: true, spec, source };
}

const indentationCodes = new Set([
  'BAD_INDENT',
  'TAB_AS_INDENT',
  'BLOCK_AS_IMPLICIT_KEY',
  'MULTILINE_IMPLICIT_KEY',
  'MISSING_CHAR',
]);

/**
 * The line whose indentation broke the document: the first non-blank line, from just before
 * the parser's first error, whose indentation no line above it opened (a key's column, or the
 * column after a `- `). Null when the errors are not about indentation.
 */
function indentationError(
  text: string,
  errors: readonly { code: string; pos: [number, number]; message: string }[],
  lineCounter: LineCounter,
  file: string,
): ManifestError | null {
  const first = errors[0];
  if (!first || !indentationCodes.has(first.code)) return null;
  if (first.code === 'MISSING_CHAR' && !/without - indicator|followed by map values/.test(first.message))
    return null;
  const lines = text.split('\n');
  const reported = lineCounter.linePos(first.pos[0]).line;
  const opened = new Set<number>([0]);
  let opener = false;
  let scalar: number | null = null;
  let prevIndent = 0;
  const error = (i: number, indent: number, message: string): ManifestError => ({
    file,
    line: i + 1,
    col: indent + 1,
    path: '',
    field: '',
    message: `YAML: ${message}`,
  });
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === '' || line.trimStart().startsWith('#')) continue;
    const indent = line.length - line.trimStart().length;
    if (scalar !== null && indent > scalar) continue; // inside a `|` or `>` block
    scalar = null;
    const candidate = i + 1 >= reported - 1;
    if (candidate && /^ *\t/.test(line))
      return error(i, indent, `tabs cannot indent; use spaces on line ${i + 1}`);
    if (candidate && !opened.has(indent) && !(opener && indent > prevIndent))
      return error(i, indent, `expected a mapping here; check the indentation of line ${i + 1}`);
    // A shallower line closes the levels deeper than it; a deeper one opens its own.
    for (const o of [...opened]) if (o > indent) opened.delete(o);
    opened.add(indent);
    const item = /^( *)((?:- +)+)/.exec(line);
    if (item) opened.add(item[1]!.length + item[2]!.length);
    opener = /:\s*(#.*)?$/.test(line) || /^\s*-\s*$/.test(line);
    if (/:\s*[|>][-+0-9]*\s*(#.*)?$/.test(line)) scalar = indent;
    prevIndent = item ? item[1]!.length + item[2]!.length : indent;
  }
  const at = lineCounter.linePos(first.pos[0]);
  return {
    file,
    line: at.line,
    col: at.col,
    path: '',
    field: '',
    message: `YAML: expected a mapping here; check the indentation of line ${at.line}`,
  };
}

function sortErrors(errors: ManifestError[]): ManifestError[] {
  return errors.sort((a, b) => a.line - b.line || a.col - b.col);
}

type Issue = z.core.$ZodIssue;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Walks the raw document child by child, collecting errors and building specs. */
class Checker {
  private readonly source: ManifestSource;
  private readonly errors: ManifestError[];
  /** The root's `networks:`, once `root()` has read them. */
  networks: Record<string, NetworkSpec> | null = null;

  constructor(source: ManifestSource, errors: ManifestError[]) {
    this.source = source;
    this.errors = errors;
  }

  root(raw: unknown): NodeSpec | null {
    if (raw === null || raw === undefined) {
      this.fail([], '', '', 'the manifest is empty; it needs at least `name:` and `children:`');
      return null;
    }
    if (!isRecord(raw)) {
      this.fail([], '', '', `the manifest must be a mapping (the root node), got ${show(raw)}`);
      return null;
    }
    const treePath = typeof raw.name === 'string' && NAME_RE.test(raw.name) ? `/${raw.name}` : '/';
    if ('command' in raw) {
      this.fail(
        ['command'],
        treePath,
        'command',
        'the root is a node and cannot run a command; move it into `children:` as a process',
        'key',
      );
      const { command: _, ...rest } = raw;
      raw = rest;
    }
    if (isRecord(raw) && 'networks' in raw) {
      const { networks, ...rest } = raw;
      raw = rest;
      const input = this.validate(rootNetworksSchema, { networks }, [], treePath);
      if (input) this.networks = input.networks as Record<string, NetworkSpec>;
    }
    return this.node(raw as Record<string, unknown>, [], treePath);
  }

  private fail(
    at: YamlPath,
    treePath: string,
    field: string,
    message: string,
    which: 'value' | 'key' = 'value',
  ) {
    const { line, col } = positionOf(this.source, at, which);
    this.errors.push({ file: this.source.file, line, col, path: treePath, field, message });
  }

  private child(
    raw: unknown,
    at: YamlPath,
    parentPath: string,
    index: number,
    parent: Record<string, unknown>,
  ) {
    const named = isRecord(raw) && typeof raw.name === 'string' && NAME_RE.test(raw.name);
    const prefix = parentPath === '/' ? '' : parentPath;
    const treePath = named ? `${prefix}/${raw.name}` : `${prefix}/children[${index}]`;
    if (!isRecord(raw)) {
      this.fail(
        at,
        treePath,
        '',
        `must be a mapping with \`command\` (a process) or \`children\` (a node), got ${show(raw)}`,
      );
      return null;
    }
    const hasCommand = 'command' in raw;
    const hasChildren = 'children' in raw;
    if (hasCommand && hasChildren) {
      this.fail(
        [...at, 'children'],
        treePath,
        'children',
        '`command` makes this a process and `children` makes it a node; keep one (a process cannot have children)',
        'key',
      );
      return null;
    }
    if (!hasCommand && !hasChildren) {
      this.fail(
        at,
        treePath,
        '',
        'needs `command` (a process) or `children` (a node; `children: []` if empty)',
      );
      return null;
    }
    const spec = hasCommand ? this.process(raw, at, treePath) : this.node(raw, at, treePath);
    if (spec) this.checkSignificant(spec, at, treePath, parent);
    return spec;
  }

  /** `parent` is raw so these rules are still checked when the parent has errors of its own. */
  private checkSignificant(spec: ChildSpec, at: YamlPath, treePath: string, parent: Record<string, unknown>) {
    if (!spec.significant) return;
    if (spec.restart === 'permanent') {
      this.fail(
        [...at, 'significant'],
        treePath,
        'significant',
        'a permanent child cannot be significant (OTP rule: it never exits for good); set `restart: transient` or `temporary`, or remove `significant`',
      );
    }
    if ((parent.autoShutdown ?? 'never') === 'never') {
      this.fail(
        [...at, 'significant'],
        treePath,
        'significant',
        "has no effect under a parent with `autoShutdown: never` (OTP rule); set the parent's `autoShutdown: any_significant` or `all_significant`, or remove `significant`",
      );
    }
  }

  /** Validates `raw` against `schema`, reporting every issue; the parsed value on success. */
  private validate<S extends z.ZodType>(
    schema: S,
    raw: unknown,
    at: YamlPath,
    treePath: string,
  ): z.output<S> | null {
    const result = schema.safeParse(raw, { error: defaultMessage, reportInput: true });
    if (result.success) return result.data;
    for (const issue of result.error.issues) this.report(issue, schema, raw, at, treePath);
    return null;
  }

  private report(issue: Issue, schema: z.ZodType, raw: unknown, at: YamlPath, treePath: string) {
    const path = issue.path.filter((part): part is string | number => typeof part !== 'symbol');
    if (issue.code === 'invalid_union') {
      // When only one alternative matched the value's type, its own complaint is the precise one.
      const typed = issue.errors.filter(
        (branch) => !branch.every((inner) => inner.code === 'invalid_type' && inner.path.length === 0),
      );
      if (typed.length === 1 && typed[0]) {
        for (const inner of typed[0]) {
          this.report({ ...inner, path: [...issue.path, ...inner.path] } as Issue, schema, raw, at, treePath);
        }
        return;
      }
    }
    if (issue.code === 'unrecognized_keys') {
      const known = keysAt(schema, path);
      for (const key of issue.keys) {
        const hint = suggest(key, known);
        const other = fieldHint(key);
        // A plural or a case slip (cpus, Restart) is a typo; other words come from other tools.
        const slip = hint !== undefined && [hint, `${hint}s`].includes(key.toLowerCase());
        const help =
          hint && (slip || !other)
            ? `did you mean '${hint}'?`
            : other
              ? other
              : known.length > 0
                ? `known fields: ${known.join(', ')}`
                : 'it takes none (write {})';
        this.fail(
          [...at, ...path, key],
          treePath,
          fieldText([...path, key]),
          `unknown field; ${help}`,
          'key',
        );
      }
      return;
    }
    if (issue.code === 'invalid_key') {
      this.fail(
        [...at, ...path],
        treePath,
        fieldText(path),
        `key ${issue.issues[0]?.message ?? issue.message}`,
        'key',
      );
      return;
    }
    if (issue.code === 'invalid_type' && !hasPath(raw, path)) {
      this.fail(
        [...at, ...path],
        treePath,
        fieldText(path),
        `is required: ${issue.message.replace(/, got nothing$/, '')}`,
      );
      return;
    }
    let message = issue.message;
    if (issue.code === 'invalid_value' && typeof issue.input === 'string') {
      const hint = suggest(
        issue.input,
        issue.values.filter((value): value is string => typeof value === 'string'),
      );
      const restart = path.at(-1) === 'restart' ? restartHint(issue.input) : undefined;
      if (restart) message += `; ${restart}`;
      else if (hint) message += `; did you mean '${hint}'?`;
    }
    this.fail([...at, ...path], treePath, fieldText(path), message);
  }

  private node(raw: Record<string, unknown>, at: YamlPath, treePath: string): NodeSpec | null {
    this.source.nodes.set(treePath, at);
    if (at.length > 0 && 'networks' in raw) {
      this.fail(
        [...at, 'networks'],
        treePath,
        'networks',
        'networks are declared at the root only; a node narrows what its subtree holds with `requires.net`',
        'key',
      );
      const { networks: _, ...rest } = raw;
      raw = rest;
    }
    const input = this.validate(nodeSchema, raw, at, treePath);
    const rawChildren = Array.isArray(raw.children) ? raw.children : [];
    const children: (ChildSpec | null)[] = rawChildren.map((child, index) =>
      this.child(child, [...at, 'children', index], treePath, index, raw),
    );
    this.checkDuplicates(rawChildren, at, treePath);
    if (!input) return null;
    if (input.maxChildren !== undefined) {
      if (input.strategy !== 'dynamic') {
        this.fail(
          [...at, 'maxChildren'],
          treePath,
          'maxChildren',
          `only applies to \`strategy: dynamic\` (this node is ${input.strategy}); remove it or make the node dynamic`,
        );
      } else if (rawChildren.length > input.maxChildren) {
        this.fail(
          [...at, 'maxChildren'],
          treePath,
          'maxChildren',
          `is ${input.maxChildren} but the node already lists ${rawChildren.length} children; raise it`,
        );
      }
    }
    if (children.some((child) => child === null)) return null;
    return {
      kind: 'node',
      name: input.name,
      path: treePath,
      strategy: input.strategy,
      intensity: input.intensity,
      period: input.period,
      autoShutdown: input.autoShutdown,
      maxChildren: input.maxChildren ?? null,
      restart: input.restart,
      shutdown: input.shutdown,
      significant: input.significant,
      requires: this.requires(input.requires),
      provides: provides(input.provides),
      policy: {
        never: input.policy.never,
        maxDepth: input.policy.maxDepth ?? null,
        allowAdvisory: input.policy.allowAdvisory,
      },
      admission: input.admission === undefined ? null : this.admission(input.admission, raw.admission),
      ...(input.reconcile === undefined ? {} : { reconcile: reconcileRules(input.reconcile) }),
      children: children as ChildSpec[],
    };
  }

  /** The rules as validated, with the template kept as written and token files made absolute. */
  private admission(input: NonNullable<NodeInput['admission']>, raw: unknown): AdmissionRules {
    const out: AdmissionRules = {};
    if (input.maxChildren !== undefined) out.maxChildren = input.maxChildren;
    if (input.maxGrant !== undefined) {
      const { cpu, memory, pids } = input.maxGrant;
      out.maxGrant = {
        ...(cpu !== undefined ? { cpu } : {}),
        ...(memory !== undefined ? { memory } : {}),
        ...(pids !== undefined ? { pids } : {}),
      };
    }
    const template = isRecord(raw) ? raw.template : undefined;
    if (isRecord(template)) out.template = structuredClone(template);
    if (input.tokens !== undefined)
      out.tokens = input.tokens.map((t) => ({ name: t.name, file: resolve(this.source.dir, t.file) }));
    return out;
  }

  /** One child outside a manifest (a run-time admission request), to go under `parentPath`. */
  single(raw: unknown, parentPath: string, parent: Record<string, unknown>): ChildSpec | null {
    return this.child(raw, [], parentPath, 0, parent);
  }

  private checkDuplicates(rawChildren: unknown[], at: YamlPath, treePath: string) {
    const seen = new Map<string, number>();
    rawChildren.forEach((child, index) => {
      if (!isRecord(child) || typeof child.name !== 'string') return;
      const first = seen.get(child.name);
      if (first === undefined) {
        seen.set(child.name, index);
        return;
      }
      const line = positionOf(this.source, [...at, 'children', first, 'name']).line;
      this.fail(
        [...at, 'children', index, 'name'],
        `${treePath}/${child.name}`,
        'name',
        `duplicate name '${child.name}' (also at line ${line}); names must be unique within a node`,
      );
    });
  }

  private process(raw: Record<string, unknown>, at: YamlPath, treePath: string): ProcessSpec | null {
    this.source.nodes.set(treePath, at);
    const input = this.validate(processSchema, raw, at, treePath);
    if (!input) return null;
    const fromFiles: Record<string, string> = {};
    const envFiles = input.envFile === undefined ? [] : [input.envFile].flat();
    for (const [i, file] of envFiles.entries()) {
      const read = readEnvFile(resolve(this.source.dir, file));
      if ('vars' in read) Object.assign(fromFiles, read.vars);
      else
        this.fail(
          typeof input.envFile === 'string' ? [...at, 'envFile'] : [...at, 'envFile', i],
          treePath,
          'envFile',
          read.error,
        );
    }
    return {
      kind: 'process',
      name: input.name,
      path: treePath,
      command: argv(input.command),
      env: {
        ...fromFiles,
        ...Object.fromEntries(Object.entries(input.env).map(([key, value]) => [key, String(value)])),
      },
      inheritEnv: input.inheritEnv,
      cwd: resolve(this.source.dir, input.cwd ?? '.'),
      user: input.user ?? null,
      group: input.group ?? null,
      restart: input.restart,
      shutdown: input.shutdown,
      stopSignal: input.stopSignal,
      // Only when declared: the spec of a child without one stays as it was before `reload:` existed.
      ...(input.reload === undefined ? {} : { reload: reload(input.reload) }),
      killMode: input.killMode,
      pidFile: input.pidFile === undefined ? null : resolve(this.source.dir, input.cwd ?? '.', input.pidFile),
      significant: input.significant,
      backoff: input.backoff === false ? null : input.backoff,
      permanentExitCodes: input.permanentExitCodes,
      ready: ready(input.ready),
      liveness: liveness(input.liveness),
      watchdog: input.watchdog ?? null,
      logs: input.logs,
      requires: this.requires(input.requires),
      provides: provides(input.provides),
      supervisor: input.supervisor,
      priority: input.priority,
    };
  }

  private requires(input: z.output<typeof requiresSchema> | undefined): Requires {
    const paths: PathGrant[] = [];
    const rawPaths = input?.paths;
    if (Array.isArray(rawPaths)) {
      for (const entry of rawPaths) {
        paths.push(
          typeof entry === 'string'
            ? { path: resolve(this.source.dir, entry), mode: 'ro' }
            : { path: resolve(this.source.dir, entry.path), mode: entry.mode },
        );
      }
    } else if (rawPaths) {
      for (const [path, mode] of Object.entries(rawPaths))
        paths.push({ path: resolve(this.source.dir, path), mode });
    }
    return {
      cpu: input?.cpu ?? null,
      cpuWeight: input?.cpuWeight ?? null,
      memory: input?.memory ?? null,
      pids: input?.pids ?? null,
      net: input?.net ?? null,
      services: input?.services ?? [],
      listen: Object.fromEntries(
        Object.entries(input?.listen ?? {}).map(([name, value]) => [
          name,
          // A unix socket is created where the manifest says, not where the daemon happens to run.
          typeof value === 'string'
            ? tcp(value)
            : ({ type: 'unix', path: resolve(this.source.dir, value.unix) } as const),
        ]),
      ),
      paths,
      secrets: input?.secrets ?? [],
      env: input?.env ?? [],
      privileges: input?.privileges
        ? [
            ...new Set(
              input.privileges.map((p) => {
                const parsed = parsePrivilege(p);
                return parsed.ok ? parsed.privilege : p;
              }),
            ),
          ]
        : null,
    };
  }
}

function argv(command: string | string[]): string[] {
  return typeof command === 'string' ? ['/bin/sh', '-c', command] : command;
}

/** A port alone means loopback: nothing is exposed beyond the host unless written out. */
function tcp(value: number | string): { type: 'tcp'; host: string; port: number } {
  if (typeof value === 'number') return { type: 'tcp', host: '127.0.0.1', port: value };
  const colon = value.lastIndexOf(':');
  const host = value.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
  return { type: 'tcp', host, port: Number(value.slice(colon + 1)) };
}

function provides(input: ProcessInput['provides']): Record<string, ProvidedService> {
  const out: Record<string, ProvidedService> = {};
  for (const [name, service] of Object.entries(input ?? {})) {
    const endpoint: Endpoint =
      service.unix !== undefined ? { type: 'unix', path: service.unix } : tcp(service.tcp as number | string);
    out[name] = { endpoint, kind: service.kind ?? null };
  }
  return out;
}

function ready(input: ProcessInput['ready']): Ready | null {
  if (!input) return null;
  const { timeout } = input;
  if (input.notify !== undefined) {
    const fd = input.notify === 'fd' ? 3 : typeof input.notify === 'number' ? input.notify : input.notify.fd;
    return { type: 'notify', fd, timeout };
  }
  if (input.sd_notify) return { type: 'sd_notify', timeout };
  if (input.tcp !== undefined) return { ...tcp(input.tcp), timeout };
  if (input.http !== undefined) return { type: 'http', url: input.http, timeout };
  if (input.exec !== undefined) return { type: 'exec', command: argv(input.exec), timeout };
  return { type: 'log', pattern: input.log ?? '', timeout };
}

function reload(input: NonNullable<ProcessInput['reload']>): Reload {
  if (typeof input === 'string') return { type: 'signal', signal: input };
  if (Array.isArray(input)) return { type: 'exec', command: input, timeout: 30_000 };
  if (input.signal !== undefined) return { type: 'signal', signal: input.signal };
  return { type: 'exec', command: argv(input.exec ?? []), timeout: input.timeout };
}

function liveness(input: ProcessInput['liveness']): Liveness | null {
  if (!input) return null;
  const { interval, timeout, failures } = input;
  if (input.http !== undefined) return { type: 'http', url: input.http, interval, timeout, failures };
  if (input.tcp !== undefined) return { ...tcp(input.tcp), interval, timeout, failures };
  return { type: 'exec', command: argv(input.exec ?? []), interval, timeout, failures };
}

function hasPath(raw: unknown, path: YamlPath): boolean {
  let value = raw;
  for (const part of path) {
    if (typeof value !== 'object' || value === null || !(part in value)) return false;
    value = (value as Record<string | number, unknown>)[part];
  }
  return true;
}

const TYPE_NAMES: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'true or false',
  array: 'a list',
  object: 'a mapping',
  record: 'a mapping',
};

/** Messages for checks that carry none of their own, in the same "must be …, got …" voice. */
function defaultMessage(issue: z.core.$ZodRawIssue): string | undefined {
  const got = `got ${show(issue.input)}`;
  switch (issue.code) {
    case 'invalid_type':
      return `must be ${TYPE_NAMES[issue.expected] ?? issue.expected}, ${got}`;
    case 'too_small':
      if (issue.origin === 'array') return `must list at least ${issue.minimum} item(s)`;
      if (issue.origin === 'string') return 'must not be empty';
      return `must be ≥ ${issue.minimum}, ${got}`;
    case 'too_big':
      return `must be ≤ ${issue.maximum}, ${got}`;
    case 'invalid_value':
      return `must be ${issue.values.map((value) => show(value)).join(' | ')}, ${got}`;
    case 'invalid_format':
      return `must match ${issue.pattern ?? issue.format}, ${got}`;
    default:
      return undefined;
  }
}

/** The field names an object schema at `path` accepts, looking through wrappers and unions. */
function keysAt(schema: z.ZodType, path: YamlPath): string[] {
  const walk = (current: unknown, depth: number): string[] => {
    const def = (current as { _zod?: { def?: Record<string, unknown> } })?._zod?.def;
    if (!def) return [];
    switch (def.type) {
      case 'object': {
        const shape = def.shape as Record<string, unknown>;
        if (depth === path.length) return Object.keys(shape);
        const next = shape[String(path[depth])];
        return next ? walk(next, depth + 1) : [];
      }
      case 'optional':
      case 'nullable':
      case 'default':
      case 'prefault':
      case 'readonly':
      case 'nonoptional':
        return walk(def.innerType, depth);
      case 'pipe':
        return walk(def.in, depth);
      case 'union':
        return [...new Set((def.options as unknown[]).flatMap((option) => walk(option, depth)))];
      case 'array':
        return depth < path.length ? walk(def.element, depth + 1) : [];
      case 'record':
        return depth < path.length ? walk(def.valueType, depth + 1) : [];
      default:
        return [];
    }
  };
  return walk(schema, 0);
}

/** The closest known word, by case- and underscore-blind comparison, then edit distance. */
export function suggest(word: string, known: readonly string[]): string | undefined {
  const squash = (text: string) => text.toLowerCase().replace(/[_-]/g, '');
  const exact = known.find((candidate) => squash(candidate) === squash(word));
  if (exact) return exact;
  let best: string | undefined;
  let bestDistance = Math.max(1, Math.floor(word.length / 3)) + 1;
  for (const candidate of known) {
    const distance = editDistance(squash(word), squash(candidate));
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current.push(
        Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, (previous[j - 1] ?? 0) + cost),
      );
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

/** The keys as written (none defaulted here: a key left out is inherited, see src/reconcile/auto.ts). */
function reconcileRules(input: NonNullable<NodeInput['reconcile']>): ReconcileRules {
  const out: ReconcileRules = {};
  if (input.mode !== undefined) out.mode = input.mode;
  if (input.maxActions !== undefined) out.maxActions = input.maxActions;
  if (input.per !== undefined) out.per = input.per;
  if (input.allow !== undefined) out.allow = input.allow.map((w) => ({ cron: w.cron, duration: w.duration }));
  if (input.deny !== undefined) out.deny = input.deny.map((w) => ({ cron: w.cron, duration: w.duration }));
  if (input.checkEvery !== undefined) out.checkEvery = input.checkEvery;
  return out;
}
