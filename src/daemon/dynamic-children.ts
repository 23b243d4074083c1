/**
 * Children admitted at run time into a node that declares `admission:` (`captree admit`,
 * `POST /v1/nodes/{node}/children`), and their lifetime: admission, durability, restoration
 * after a daemon restart, and the return of their budget.
 *
 * Admission of one request, in order:
 * 1. The request id: an id seen before returns the answer given then (a retry after a timeout
 *    admits nothing twice); the same id with a different request is a conflict. A request still
 *    in flight is joined, not repeated.
 * 2. The node: it must exist, be a node, declare `admission:` and be running; the caller's
 *    token (if any node from the root down to it declares `tokens`) must belong to it or to an
 *    ancestor: a token for `/site/dev` opens `/site/dev` and below, nothing else.
 * 3. The spec: the node's `template` is merged under the request (the request wins, mappings
 *    merge, lists are replaced), then validated by the manifest loader exactly as a child of a
 *    manifest; `restart` must be `temporary` (the default) or `transient`.
 * 4. Limits (`maxChildren`, `maxGrant`), the name, and caps `admit` against the live tree: one
 *    synchronous step, so concurrent requests see each other's reservations and the sums stay
 *    exact; every caps reason is reported, in `captree check`'s words.
 * 5. The grant is written to `state.json` (fsync) and journalled (`admitted`) before the child
 *    starts; the `201` goes out once it runs (ready, if it declares readiness). A child that
 *    fails to start gives its budget back (`revoked`) and the request gets the failure.
 *
 * What `state.json` holds (section `admission`): `admitted`, one record per live admission (request id, node, path,
 * the merged spec as written). A restarted daemon (after `kill -9` too) re-admits each record
 * against the rebuilt caps tree before anything starts, and re-adds the child when its node is
 * ready: the process driver adopts the instance the launcher kept. A crash between "granted" and
 * "started" therefore leaves a record whose child is started on restart; a crash before the
 * write leaves nothing, so no budget is ever held by a child that does not exist. A record that
 * can no longer be admitted (the manifest shrank) is dropped and journalled as `revoked`.
 *
 * An admission ends, and its budget returns to the node, when it is revoked
 * (`DELETE /v1/children/{path}`), when a temporary child exits (or is stopped by an operator),
 * or when a transient child exits normally or fails permanently. A node that restarts gets its
 * admitted children back once it is up again.
 */
import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  admit,
  type CapTree,
  childrenOf,
  formatBytes,
  formatCores,
  type Grant,
  grantOf as grantOfPath,
  type HostCapabilities,
  release,
} from '../caps/index.ts';
import { type ChildSpec as EngineChild, type Supervisor, SupervisorError } from '../core/index.ts';
import type {
  AdmissionRules,
  ManifestError,
  ManifestSource,
  ManifestTree,
  NodeSpec,
  ProcessSpec,
} from '../manifest/index.ts';
import type { errorsOfReasons } from './admission.ts';
import { baseRequestOf, endpointText, exceedsTemplate } from './admission-bounds.ts';
import { contractOf } from './contracts.ts';
import { digest } from './http-util.ts';
import type { JournalEvent } from './journal.ts';
import type { DurableState } from './state.ts';
import type { RunningTree } from './types.ts';

/**
 * The manifest layer (`yaml`, `zod`) parses admitted specs and positions their errors. The
 * daemon does not load it to start a tree: only with the first admission, or at start-up when
 * `state.json` holds admissions to restore.
 */
interface ManifestLayer {
  parseChild: typeof import('../manifest/parse.ts').parseChild;
  errorsOfReasons: typeof errorsOfReasons;
}
let manifestLayer: ManifestLayer | undefined;

async function loadManifestLayer(): Promise<ManifestLayer> {
  if (!manifestLayer) {
    const [{ parseChild }, admission] = await Promise.all([
      import('../manifest/parse.ts'),
      import('./admission.ts'),
    ]);
    manifestLayer = { parseChild, errorsOfReasons: admission.errorsOfReasons };
  }
  return manifestLayer;
}

function loadedManifestLayer(): ManifestLayer {
  if (!manifestLayer)
    throw new Error('internal: the manifest layer is not loaded (see DynamicChildren.create)');
  return manifestLayer;
}

/** What admission needs beyond the daemon's view of a tree (the host runtime's tree has it). */
export interface AdmittingTree extends RunningTree {
  readonly caps: CapTree;
  readonly host: HostCapabilities;
  readonly manifest: ManifestTree;
  dynamicChild(spec: ProcessSpec, grant: Grant): Promise<EngineChild>;
  forgetChild(path: string): Promise<void>;
}

export function canAdmit(tree: RunningTree): tree is AdmittingTree {
  const t = tree as Partial<AdmittingTree>;
  return t.caps !== undefined && t.manifest !== undefined && typeof t.dynamicChild === 'function';
}

/** One live admission, as kept in `state.json` (`admitted`). */
export interface AdmittedRecord {
  requestId: string;
  node: string;
  path: string;
  /** The request's child merged with the node's template, as written (manifest form). */
  spec: Record<string, unknown>;
  /** ms epoch. */
  at: number;
}

/** The HTTP answer to an admission request, kept per request id. */
export interface Answer {
  status: number;
  body: unknown;
}

interface RequestRecord {
  id: string;
  /** Hash of node + spec: the same id with another request is a conflict. */
  hash: string;
  answer: Answer;
}

/** A rejection reason as the API reports it. */
export interface ApiReason {
  path: string;
  field: string;
  message: string;
}

export interface DynamicOptions {
  tree: AdmittingTree;
  durable: DurableState;
  /** Journals a daemon event. */
  record(event: JournalEvent): void;
  /** Recent request ids remembered (default 1024). */
  maxRequests?: number;
}

/**
 * Answers kept in `state.json` (the in-memory map keeps `maxRequests`): enough for the retries
 * of requests in flight when a daemon died. An admission that is still live is found by its
 * request id in its record whatever this bound.
 */
const PERSISTED_REQUESTS = 64;

const REQUEST_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

function failure(status: number, code: string, message: string, reasons?: ApiReason[]): Answer {
  return { status, body: { error: { code, message }, ...(reasons ? { reasons } : {}) } };
}

/** `path field: message`: `captree check`'s line without the file position (a request has no file). */
/** The answer to an API revocation while `pausedBy` says why not. */
export function pausedAnswer(reason: string): Answer {
  return failure(409, 'apply_in_progress', reason);
}

export function reasonText(r: ApiReason): string {
  const subject = [r.path, r.field].filter((p) => p !== '').join(' ');
  return `${subject ? `${subject}: ` : ''}${r.message}`;
}

function reasonsOf(errors: readonly ManifestError[]): ApiReason[] {
  return errors.map((e) => ({ path: e.path, field: e.field, message: e.message }));
}

function rejected(status: number, code: string, reasons: ApiReason[]): Answer {
  return failure(status, code, reasons.map(reasonText).join('\n'), reasons);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The template under the request: mappings merge key by key, anything else the request wins. */
export function mergeTemplate(template: unknown, request: Record<string, unknown>): Record<string, unknown> {
  if (!isRecord(template)) return structuredClone(request);
  const out: Record<string, unknown> = structuredClone(template);
  for (const [key, value] of Object.entries(request)) {
    out[key] =
      isRecord(value) && isRecord(out[key]) ? mergeTemplate(out[key], value) : structuredClone(value);
  }
  return out;
}

function stableJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableJson).join(',')}]`;
  if (isRecord(value))
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stableJson(value[k])}`)
      .join(',')}}`;
  return JSON.stringify(value) ?? 'null';
}

function reserved(grant: Grant): { cpu: number; memory: number; pids: number } {
  return { cpu: grant.cpu.reserved, memory: grant.memory.reserved, pids: grant.pids.reserved };
}

export class DynamicChildren {
  readonly #tree: AdmittingTree;
  readonly #durable: DurableState;
  readonly #record: (event: JournalEvent) => void;
  readonly #maxRequests: number;
  readonly #nodes = new Map<string, NodeSpec>();
  readonly #admitted = new Map<string, AdmittedRecord>();
  /** Parsed specs of live admissions, by path. */
  readonly #specs = new Map<string, ProcessSpec>();
  readonly #requests = new Map<string, RequestRecord>();
  readonly #inflight = new Map<string, { hash: string; answer: Promise<Answer> }>();
  readonly #revoking = new Map<string, Promise<Answer>>();
  /** Cgroup removals under way, by path: a new child of the same name waits for its own. */
  readonly #cleanups = new Map<string, Promise<void>>();
  /** Re-adds under way (recovery, a node restarted). */
  readonly #pending = new Set<Promise<void>>();

  /** Loads the manifest layer first if `state.json` holds admissions to restore. */
  static async create(options: DynamicOptions): Promise<DynamicChildren> {
    const section = options.durable.section('admission');
    if (isRecord(section) && Array.isArray(section.admitted) && section.admitted.length > 0)
      await loadManifestLayer();
    return new DynamicChildren(options);
  }

  constructor(options: DynamicOptions) {
    this.#tree = options.tree;
    this.#durable = options.durable;
    this.#record = options.record;
    this.#maxRequests = options.maxRequests ?? 1024;
    this.refresh();
    this.#load();
    this.#tree.supervisor.subscribe((event) => {
      if (event.type === 'ready' && this.#nodes.has(event.path)) this.#restoreInto(event.path);
      else if (event.type === 'child_deleted' && this.#admitted.has(event.path)) this.#ended(event.path);
      else if (
        (event.type === 'exited' &&
          !event.expected &&
          this.#specs.get(event.path)?.restart === 'transient') ||
        (event.type === 'permanent_failure' && this.#admitted.has(event.path))
      ) {
        const reason = event.reason;
        if (event.type === 'permanent_failure' || reason.kind === 'normal' || reason.kind === 'shutdown')
          this.#deleteLater(event.path);
      }
    });
  }

  /** Live admissions, oldest first. */
  list(): AdmittedRecord[] {
    return [...this.#admitted.values()];
  }

  /** The parsed spec of each live admission (reconciliation re-admits them with a new manifest). */
  admittedSpecs(): { node: string; spec: ProcessSpec }[] {
    return [...this.#admitted.values()].flatMap((r) => {
      const spec = this.#specs.get(r.path);
      return spec ? [{ node: r.node, spec }] : [];
    });
  }

  /** Reads the nodes and their admission rules again from the tree's manifest (after an apply). */
  refresh(): void {
    this.#nodes.clear();
    const walk = (n: NodeSpec) => {
      this.#nodes.set(n.path, n);
      for (const c of n.children) if (c.kind === 'node') walk(c);
    };
    walk(this.#tree.manifest.root);
  }

  /** Resolves once every re-add under way (restoration after a restart) is done. */
  async settled(): Promise<void> {
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
  }

  // ---- admission ------------------------------------------------------------------------------

  /**
   * Answers `POST /v1/nodes/{node}/children`; `token` is the bearer token, if any. `trusted`: the
   * caller holds the whole tree (the TCP admin token), so no node's token is asked for.
   */
  /**
   * Why admissions and revocations asked through the API must wait now (an apply under way), or
   * null. Set by the daemon; the apply's own revocations go on.
   */
  pausedBy: (() => string | null) | null = null;

  admit(node: string, body: unknown, token: string | undefined, trusted = false): Promise<Answer> {
    const paused = this.pausedBy?.();
    if (paused) return Promise.resolve(failure(409, 'apply_in_progress', paused));
    if (!isRecord(body))
      return Promise.resolve(failure(400, 'bad_request', 'expected a JSON object { requestId, spec }'));
    const { requestId, spec } = body;
    const extra = Object.keys(body).filter((k) => k !== 'requestId' && k !== 'spec');
    if (extra.length > 0)
      return Promise.resolve(
        failure(400, 'bad_request', `unknown field ${extra[0]}; expected { requestId, spec }`),
      );
    if (typeof requestId !== 'string' || !REQUEST_ID_RE.test(requestId))
      return Promise.resolve(
        failure(
          400,
          'bad_request_id',
          "requestId must be 1-128 characters: letters, digits, '.', '_', ':', '-'",
        ),
      );
    if (!isRecord(spec))
      return Promise.resolve(
        failure(400, 'bad_request', 'spec must be a child in manifest form (a JSON object)'),
      );
    // The token is part of the request's identity only through its outcome: a retry carries it again.
    const hash = digest(stableJson({ node, spec })).toString('hex');
    const known = this.#requests.get(requestId);
    if (known) return Promise.resolve(known.hash === hash ? known.answer : this.#reused(requestId));
    const live = this.#admittedBy(requestId);
    if (live) return Promise.resolve(this.#remember(requestId, hash, this.#granted(live)));
    const running = this.#inflight.get(requestId);
    if (running) return running.hash === hash ? running.answer : Promise.resolve(this.#reused(requestId));
    // The manifest layer is loaded once, before the synchronous part of `#admit` runs.
    const admitting = manifestLayer
      ? this.#admit(node, spec, trusted ? true : token, requestId)
      : loadManifestLayer().then(() => this.#admit(node, spec, trusted ? true : token, requestId));
    const answer = admitting.then(
      (a) => this.#remember(requestId, hash, a),
      (err: unknown) => this.#remember(requestId, hash, failure(500, 'internal', (err as Error).message)),
    );
    this.#inflight.set(requestId, { hash, answer });
    void answer.finally(() => this.#inflight.delete(requestId));
    return answer;
  }

  #reused(id: string): Answer {
    return failure(409, 'request_id_reused', `request id ${id} was already used for a different request`);
  }

  #admittedBy(requestId: string): AdmittedRecord | undefined {
    for (const r of this.#admitted.values()) if (r.requestId === requestId) return r;
    return undefined;
  }

  #remember(id: string, hash: string, answer: Answer): Answer {
    // A server fault is not an answer to keep: a retry may succeed.
    if (answer.status >= 500) return answer;
    this.#requests.delete(id);
    this.#requests.set(id, { id, hash, answer });
    while (this.#requests.size > this.#maxRequests) {
      const oldest = this.#requests.keys().next().value as string;
      this.#requests.delete(oldest);
    }
    return answer;
  }

  #granted(r: AdmittedRecord): Answer {
    const grant = grantOfPath(this.#tree.caps, r.path);
    const spec = this.#specs.get(r.path);
    return {
      status: 201,
      body: { requestId: r.requestId, path: r.path, node: r.node, ...grantBody(grant, spec) },
    };
  }

  /** Everything up to the durable grant is synchronous: concurrent requests cannot interleave. */
  async #admit(
    nodePath: string,
    raw: Record<string, unknown>,
    token: string | undefined | true,
    requestId: string,
  ) {
    const node = this.#nodes.get(nodePath);
    if (!node) {
      const exists = this.#tree.supervisor.tree().some((e) => e.path === nodePath);
      return exists
        ? failure(409, 'not_a_node', `${nodePath} is a process; children are admitted into nodes`)
        : failure(404, 'not_found', `no node ${nodePath} in this tree (see: captree ps)`);
    }
    const rules = node.admission;
    if (rules === null)
      return failure(
        409,
        'admission_closed',
        `${nodePath} is not open to admission (it declares no \`admission:\`)`,
      );
    const denied = token === true ? null : this.#authorize(nodePath, token);
    if (denied) return denied;
    const sup = this.#supervisorOf(nodePath);
    if (sup?.state !== 'ready')
      return failure(
        409,
        'node_not_running',
        `${nodePath} is ${sup?.state ?? 'not running'}; try again once it is up`,
      );

    const parsed = this.#parse(node, rules, raw);
    if ('status' in parsed) return parsed;
    const { spec, source } = parsed;
    const over = overMaxGrant(spec, rules);
    const count = this.list().filter((r) => r.node === nodePath).length;
    if (rules.maxChildren !== undefined && count >= rules.maxChildren)
      return failure(
        409,
        'max_children',
        `${nodePath} already holds ${count} admitted children (admission.maxChildren: ${rules.maxChildren})`,
      );
    if ((childrenOf(this.#tree.caps, nodePath) ?? []).includes(spec.name) || sup.child(spec.name))
      return failure(409, 'duplicate_name', `${spec.path} already exists; choose another name`);
    const granted = admit(this.#tree.caps, nodePath, contractOf(spec));
    if (!granted.ok || over.length > 0) {
      // Over maxGrant: caps is still asked (and undone at once) so that every reason is reported.
      if (granted.ok) release(this.#tree.caps, spec.path);
      const siblings = new Map(node.children.map((c) => [c.path, c] as const));
      const reasons = granted.ok
        ? []
        : reasonsOf(loadedManifestLayer().errorsOfReasons(granted.reasons, spec, source, siblings));
      return rejected(422, over.length > 0 ? 'over_max_grant' : 'rejected', [...over, ...reasons]);
    }
    const record: AdmittedRecord = {
      requestId,
      node: nodePath,
      path: spec.path,
      // With its restart type as admitted: restored as `temporary` (the default), never as the
      // manifest's default `permanent`, so a one-shot job is not rerun after a daemon restart.
      spec: { ...mergeTemplate(rules.template, raw), restart: spec.restart },
      at: Date.now(),
    };
    this.#admitted.set(spec.path, record);
    this.#specs.set(spec.path, spec);
    try {
      this.#save();
    } catch (err) {
      this.#admitted.delete(spec.path);
      this.#specs.delete(spec.path);
      release(this.#tree.caps, spec.path);
      throw err;
    }
    this.#record({
      type: 'admitted',
      path: spec.path,
      at: this.#tree.supervisor.clock.now(),
      requestId,
      grant: reserved(granted.grant),
    });
    try {
      await this.#cleanups.get(spec.path);
      const child = await this.#tree.dynamicChild(spec, granted.grant);
      await sup.addChild(child);
    } catch (err) {
      // Nothing runs: the budget goes back and the request learns why.
      if (this.#admitted.has(spec.path)) this.#end(spec.path, `failed to start: ${(err as Error).message}`);
      if (err instanceof SupervisorError) {
        const status = err.code === 'start_failed' ? 422 : err.code === 'not_found' ? 404 : 409;
        return failure(status, err.code, err.message);
      }
      return failure(422, 'start_failed', `${spec.path} failed to start: ${(err as Error).message}`);
    }
    return this.#granted(record);
  }

  #parse(
    node: NodeSpec,
    rules: AdmissionRules,
    raw: Record<string, unknown>,
  ): { spec: ProcessSpec; source: ManifestSource } | Answer {
    if ('children' in raw)
      return rejected(422, 'invalid_spec', [
        {
          path: `${node.path}/${typeof raw.name === 'string' ? raw.name : '?'}`,
          field: 'children',
          message: 'only processes (with `command`) can be admitted at run time, not nodes',
        },
      ]);
    const merged = mergeTemplate(rules.template, raw);
    merged.restart ??= 'temporary';
    const result = loadedManifestLayer().parseChild(merged, node.path, {
      fileName: 'request',
      baseDir: this.#tree.manifest.dir,
      parentAutoShutdown: node.autoShutdown,
    });
    if (!result.ok) return rejected(422, 'invalid_spec', reasonsOf(result.errors));
    const spec = result.spec;
    if (spec.kind !== 'process') return failure(422, 'invalid_spec', 'only processes can be admitted');
    // What the template gives on its own: the request may only narrow it.
    const baseRaw = mergeTemplate(rules.template, baseRequestOf(raw));
    baseRaw.restart ??= 'temporary';
    const base = loadedManifestLayer().parseChild(baseRaw, node.path, {
      fileName: 'template',
      baseDir: this.#tree.manifest.dir,
      parentAutoShutdown: node.autoShutdown,
    });
    if (!base.ok) return rejected(422, 'exceeds_template', reasonsOf(base.errors));
    if (base.spec.kind === 'process') {
      const tpl = rules.template?.requires;
      const templateRequires = new Set(isRecord(tpl) ? Object.keys(tpl) : []);
      const over = exceedsTemplate(node.path, base.spec, spec, templateRequires);
      if (over.length > 0) return rejected(422, 'exceeds_template', over);
    }
    if (spec.restart === 'permanent')
      return rejected(422, 'invalid_spec', [
        {
          path: spec.path,
          field: 'restart',
          message: "an admitted child is 'temporary' (the default) or 'transient', not 'permanent'",
        },
      ]);
    return { spec, source: result.source };
  }

  /** Null when allowed; else the 403. */
  #authorize(nodePath: string, token: string | undefined): Answer | null {
    const chain: NodeSpec[] = [];
    for (let p = nodePath; p !== ''; p = p.slice(0, p.lastIndexOf('/'))) {
      const n = this.#nodes.get(p);
      if (n) chain.push(n);
    }
    const tokens = chain.flatMap((n) => (n.admission?.tokens ?? []).map((t) => ({ ...t, node: n.path })));
    if (tokens.length === 0 && token === undefined) return null;
    if (token === undefined)
      return failure(
        403,
        'token_required',
        `${nodePath} admits only holders of a token (Authorization: Bearer …)`,
      );
    const presented = digest(token);
    for (const t of tokens) if (tokenIn(t.file, presented)) return null;
    return failure(
      403,
      'token_rejected',
      `the token presented does not admit into ${nodePath} (a token opens its own node and the nodes below it)`,
    );
  }

  /**
   * The nodes whose `admission.tokens` hold `token` (read from the files now, so a rotated file
   * takes effect at once): what a TCP caller presenting it may reach.
   */
  scopesOf(token: string): string[] {
    const presented = digest(token);
    const out: string[] = [];
    for (const [path, n] of this.#nodes)
      if ((n.admission?.tokens ?? []).some((t) => tokenIn(t.file, presented))) out.push(path);
    return out;
  }

  #supervisorOf(nodePath: string): Supervisor | undefined {
    const root = this.#tree.supervisor;
    if (nodePath === root.path) return root;
    const at = this.#tree.locate(nodePath);
    return at?.supervisor.nested(at.id);
  }

  // ---- revocation -----------------------------------------------------------------------------

  /** Answers `DELETE /v1/children/{path}`: stops the child and returns its budget. */
  revoke(path: string): Promise<Answer> {
    const running = this.#revoking.get(path);
    if (running) return running;
    const record = this.#admitted.get(path);
    if (!record) {
      const exists = this.#tree.supervisor.tree().some((e) => e.path === path);
      return Promise.resolve(
        exists
          ? failure(
              409,
              'not_admitted',
              `${path} was not admitted at run time; stop it with: captree stop ${path}`,
            )
          : failure(404, 'not_found', `no admitted child ${path} (see: captree ps)`),
      );
    }
    const answer = (async (): Promise<Answer> => {
      const at = this.#tree.locate(path);
      if (at) {
        try {
          await at.supervisor.stopChild(at.id);
        } catch (err) {
          // Still running (its stop could not be recorded: a full disk): nothing is returned, and
          // the caller is told so rather than acknowledged.
          if (at.supervisor.child(at.id)?.state !== 'stopped' && this.#admitted.has(path))
            return failure(503, 'not_stopped', `${path} could not be stopped: ${(err as Error).message}`);
        }
        if (at.supervisor.child(at.id)) await at.supervisor.deleteChild(at.id).catch(() => {});
      }
      const returned = this.#admitted.has(path) ? this.#end(path, 'revoked') : { cpu: 0, memory: 0, pids: 0 };
      await this.#cleanups.get(path);
      return { status: 200, body: { path, requestId: record.requestId, returned } };
    })();
    this.#revoking.set(path, answer);
    void answer.finally(() => this.#revoking.delete(path));
    return answer;
  }

  // ---- lifetime -------------------------------------------------------------------------------

  /** Its supervisor removed it (a temporary child exited, or was stopped). */
  #ended(path: string): void {
    if (this.#revoking.has(path)) return;
    this.#end(path, 'exited');
  }

  #deleteLater(path: string): void {
    const at = this.#tree.locate(path);
    if (!at) return;
    // Queued behind the exit handling, so the child is stopped by then.
    void at.supervisor.deleteChild(at.id).catch(() => {});
  }

  /** Returns the budget, forgets the child, durably; journals `revoked`. */
  #end(path: string, why: string): { cpu: number; memory: number; pids: number } {
    const record = this.#admitted.get(path);
    const released = release(this.#tree.caps, path);
    const returned = released.ok ? released.returned : { cpu: 0, memory: 0, pids: 0 };
    this.#admitted.delete(path);
    this.#specs.delete(path);
    const cleanup = this.#tree
      .forgetChild(path)
      .catch((err: unknown) =>
        this.#record({
          type: 'cleanup_failed',
          path,
          at: this.#tree.supervisor.clock.now(),
          why: (err as Error).message,
        }),
      )
      .finally(() => {
        if (this.#cleanups.get(path) === cleanup) this.#cleanups.delete(path);
      });
    this.#cleanups.set(path, cleanup);
    this.#saveSoon();
    this.#record({
      type: 'revoked',
      path,
      at: this.#tree.supervisor.clock.now(),
      requestId: record?.requestId ?? '',
      why,
      returned,
    });
    return returned;
  }

  // ---- durability and restoration ---------------------------------------------------------------

  /** One write (fsync) of `state.json`: live admissions and the most recent answers. */
  #save(): void {
    this.#durable.setSection('admission', {
      admitted: this.list(),
      requests: [...this.#requests.values()].slice(-PERSISTED_REQUESTS),
    });
    this.#retry?.cancel();
    this.#retry = null;
  }

  #retry: { cancel(): void } | null = null;

  /**
   * `#save()` where nothing waits for it (an admission ended): a write that fails (a full disk)
   * must not fail the caller, an engine listener (one that throws is detached, and admissions
   * would go unrecorded from then on). It is tried again each second until one succeeds or the
   * tree stops; a daemon killed meanwhile finds the ended child still in state.json.
   */
  #saveSoon(): void {
    try {
      this.#save();
    } catch {
      if (this.#retry !== null) return;
      const timer = setInterval(() => {
        const state = this.#tree.supervisor.state;
        if (state === 'stopping' || state === 'stopped') {
          this.#retry?.cancel();
          this.#retry = null;
          return;
        }
        try {
          this.#save();
        } catch {
          // Still no space: next second.
        }
      }, 1000);
      timer.unref();
      this.#retry = { cancel: () => clearInterval(timer) };
    }
  }

  /** Re-admits what an earlier daemon acknowledged, before the tree starts. */
  #load(): void {
    const section = this.#durable.section('admission');
    const { admitted: saved, requests } = isRecord(section) ? section : { admitted: [], requests: [] };
    if (Array.isArray(requests))
      for (const r of requests as RequestRecord[])
        if (r && typeof r.id === 'string' && typeof r.hash === 'string' && isRecord(r.answer))
          this.#requests.set(r.id, r);
    if (!Array.isArray(saved) || saved.length === 0) return;
    let dropped = false;
    for (const r of saved as AdmittedRecord[]) {
      const why = this.#readmit(r);
      if (why === null) continue;
      dropped = true;
      this.#record({
        type: 'revoked',
        path: String(r?.path ?? ''),
        at: this.#tree.supervisor.clock.now(),
        requestId: String(r?.requestId ?? ''),
        why,
        returned: { cpu: 0, memory: 0, pids: 0 },
      });
    }
    if (dropped) this.#saveSoon();
  }

  /** Null when re-admitted; else why not. */
  #readmit(r: AdmittedRecord): string | null {
    if (!isRecord(r) || typeof r.node !== 'string' || typeof r.path !== 'string' || !isRecord(r.spec))
      return 'not restorable: a malformed record in state.json';
    const node = this.#nodes.get(r.node);
    if (!node || node.admission === null) return `not restorable: ${r.node} is no longer open to admission`;
    // Records written before the restart type was kept: an admission's default is temporary.
    const result = loadedManifestLayer().parseChild({ restart: 'temporary', ...r.spec }, r.node, {
      fileName: 'state.json',
      baseDir: this.#tree.manifest.dir,
      parentAutoShutdown: node.autoShutdown,
    });
    if (!result.ok || result.spec.kind !== 'process' || result.spec.path !== r.path)
      return `not restorable: ${result.ok ? 'its spec changed meaning' : reasonText(reasonsOf(result.errors)[0]!)}`;
    const granted = admit(this.#tree.caps, r.node, contractOf(result.spec));
    if (!granted.ok) return `not restorable: ${granted.reasons.map((x) => x.message).join('; ')}`;
    this.#admitted.set(r.path, r);
    this.#specs.set(r.path, result.spec);
    return null;
  }

  /** A node is (again) up: its admitted children that it lacks are added back. */
  #restoreInto(nodePath: string): void {
    const sup = this.#supervisorOf(nodePath);
    if (!sup) return;
    for (const r of this.list()) {
      if (r.node !== nodePath || sup.child(r.path.slice(nodePath.length + 1))) continue;
      const spec = this.#specs.get(r.path);
      const grant = grantOfPath(this.#tree.caps, r.path);
      if (!spec || !grant) continue;
      // Acknowledged only once it ran, and no launcher runs it now: it ended (or died with its
      // launcher) while no daemon ran. A temporary child never runs twice.
      if (spec.restart === 'temporary' && this.#tree.adoptable?.(r.path) === false) {
        this.#end(r.path, 'ended while no daemon ran (temporary: not run again)');
        continue;
      }
      const p = (async () => {
        try {
          await sup.addChild(await this.#tree.dynamicChild(spec, grant));
        } catch (err) {
          if (this.#admitted.has(r.path)) this.#end(r.path, `not restorable: ${(err as Error).message}`);
        }
      })();
      this.#pending.add(p);
      void p.finally(() => this.#pending.delete(p));
    }
  }
}

/** The token file `file` holds the token whose digest is `presented` (unreadable or empty: no). */
function tokenIn(file: string, presented: Buffer): boolean {
  let content: string;
  try {
    content = readFileSync(file, 'utf8').trim();
  } catch {
    return false;
  }
  return content !== '' && timingSafeEqual(digest(content), presented);
}

/** The 201 body's grant: quantities as `ps` shows them, and every capability granted. */
function grantBody(
  grant: Grant | undefined,
  spec: ProcessSpec | undefined,
): { grant: unknown; capabilities: unknown; identity: unknown } {
  if (!grant) return { grant: null, capabilities: null, identity: null };
  const q = (v: { reserved: number }) => (v.reserved === 0 ? null : v.reserved);
  // Every socket made for the child (unix ones included, which caps does not track), by name.
  const listen = spec
    ? Object.fromEntries(Object.entries(spec.requires.listen).map(([n, ep]) => [n, endpointText(ep)]))
    : grant.listen;
  return {
    grant: { cpu: q(grant.cpu), memory: q(grant.memory), pids: q(grant.pids) },
    // Who the child runs as and what it takes from the daemon's environment.
    identity: spec
      ? {
          user: spec.user,
          group: spec.group,
          inheritEnv: spec.inheritEnv,
          env: Object.keys(spec.env),
          supervisor: spec.supervisor,
          priority: spec.priority,
        }
      : null,
    capabilities: {
      net: grant.net,
      listen,
      services: grant.services.map((s) => ({ name: s.name, from: s.from })),
      paths: grant.paths,
      secrets: grant.secrets,
      env: grant.env,
      privileges: grant.privileges,
      advisory: grant.advisory,
    },
  };
}

function overMaxGrant(spec: ProcessSpec, rules: AdmissionRules): ApiReason[] {
  const max = rules.maxGrant;
  if (!max) return [];
  const out: ApiReason[] = [];
  const r = spec.requires;
  const node = spec.path.slice(0, spec.path.lastIndexOf('/'));
  const check = (q: 'cpu' | 'memory' | 'pids', asked: number | null, show: (n: number) => string) => {
    const limit = max[q];
    if (limit === undefined || asked === null || asked <= limit) return;
    out.push({
      path: spec.path,
      field: `requires.${q}`,
      message: `requires ${q} ${show(asked)}, more than one request may reserve (${node} admission.maxGrant.${q}: ${show(limit)})`,
    });
  };
  check('cpu', r.cpu, (n) => formatCores(Math.round(n * 1000)));
  check('memory', r.memory, formatBytes);
  check('pids', r.pids, String);
  return out;
}
