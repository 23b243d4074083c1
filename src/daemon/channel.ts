/**
 * The private channel between a tree and each of its supervisor children (`supervisor: true`),
 * protocol v1 (src/child/protocol.ts, docs/protocol.md).
 *
 * Each supervisor child gets its own unix stream socket, listened on by the daemon at
 * `<state>/ch/<hash of its path>.sock` (directory 0711, socket 0600, owned by the child's user),
 * named in its environment as CAPTREE_CHANNEL beside CAPTREE_GRANT (its grant) and
 * CAPTREE_CGROUP (its cgroup directories, its delegated subtree). Which socket a connection
 * arrived on says who is talking: there is no global address and no name to claim. A connection
 * counts only once its first line is `hello` with the child's token (CAPTREE_CHANNEL_TOKEN, an
 * HMAC of its path under a key only the daemon reads, so a re-adopted child's still works after a
 * daemon restart): a process that can reach the socket but was not started as that child (a
 * grandchild, a sibling, another local process) is denied and disconnected, and the child's own
 * connection stays. A new authenticated connection (the child's next instance) replaces the old.
 *
 * Every message each way is reported (`onEvent`: the daemon journals it as a `channel` event),
 * and every grant change as `grant_changed`. `request` and `release` go to the renegotiator;
 * the answer is `grant` (with the request's `id`) or `denied` with the reasons. When the tree
 * stops a supervisor child, the child is sent `shutdown` with its stop deadline first.
 *
 * The token is in the child's environment only: its descendants do not inherit it (the library
 * removes it), and no other child can read that environment (PID namespaces).
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  lchownSync,
  mkdirSync,
  readdirSync,
  renameSync,
  rmSync,
} from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { basename, join } from 'node:path';
import type { Grant } from '../caps/index.ts';
import {
  type ChildMessage,
  type Delta,
  encode,
  type GrantQuantities,
  idOf,
  LineSplitter,
  MAX_STATUS,
  type ParentMessage,
  parseChildMessage,
} from '../child/protocol.ts';
import type { ProcessSpec } from '../manifest/index.ts';
import { type HostRuntime, logName } from '../runtime/host-runtime.ts';
import { launcherBinary } from '../runtime/launcher/build.ts';
import { type RunningTree, resolveId } from './build-tree.ts';
import { readPrivate, writeAtomic } from './private-fs.ts';
import { type GrantChange, type RenegotiationResult, Renegotiator } from './renegotiate.ts';

/** What the daemon journals about channels (see `DaemonEvent` in journal.ts). */
export type ChannelEvent =
  | {
      readonly type: 'channel';
      readonly path: string;
      readonly at: number;
      readonly from: 'child' | 'parent';
      readonly message:
        | ChildMessage
        | ParentMessage
        | { readonly invalid: string }
        /** How many channel messages of this child were not journaled (over the rate limit). */
        | { readonly suppressed: number };
    }
  | {
      readonly type: 'grant_changed';
      readonly path: string;
      readonly at: number;
      readonly grant: GrantQuantities;
      readonly cause: GrantChange['cause'];
      readonly by: string;
    };

/** Where the channel of the supervisor child at `path` listens (short: sockaddr_un holds 107 bytes). */
export function channelPath(stateDir: string, path: string): string {
  return join(stateDir, 'ch', `${createHash('sha256').update(path).digest('hex').slice(0, 16)}.sock`);
}

/** The key channel tokens are made with: `<state>/channel.key`, made once (0600), read by the daemon alone. */
function channelKey(stateDir: string): Buffer {
  const file = join(stateDir, 'channel.key');
  const existing = readPrivate(file)?.trim() ?? '';
  if (/^[0-9a-f]{64}$/.test(existing)) return Buffer.from(existing, 'hex');
  const key = randomBytes(32);
  writeAtomic(file, key.toString('hex'));
  return key;
}

const keys = new Map<string, Buffer>();

/** What the supervisor child at `path` proves it is with: the same for every instance and every daemon of this state dir. */
export function channelToken(stateDir: string, path: string): string {
  let key = keys.get(stateDir);
  if (!key) {
    key = channelKey(stateDir);
    keys.set(stateDir, key);
  }
  return createHmac('sha256', key).update(path).digest('base64url');
}

function sameToken(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** `<state>/bin`: the launcher binary supervisor children start, readable by any user. */
export function childBinDir(stateDir: string): string {
  return join(stateDir, 'bin');
}

/** Puts this daemon's launcher binary where supervisor children find it (`CAPTREE_CACHE_DIR`). */
async function shareLauncher(stateDir: string): Promise<void> {
  const bin = await launcherBinary();
  const dir = childBinDir(stateDir);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  chmodSync(dir, 0o755);
  const target = join(dir, basename(bin));
  if (existsSync(target)) return;
  const tmp = `${target}.tmp-${process.pid}`;
  copyFileSync(bin, tmp);
  chmodSync(tmp, 0o755);
  renameSync(tmp, target);
}

/** Grant quantities as the child sees them: reserved amounts, null where it reserves none. */
export function grantQuantities(grant: Grant | undefined): GrantQuantities {
  const r = (x: { reserved: number } | undefined) => (x && x.reserved > 0 ? x.reserved : null);
  return { cpu: r(grant?.cpu), memory: r(grant?.memory), pids: r(grant?.pids) };
}

/** The environment a supervisor child gets (empty for other children). */
export function supervisorEnv(
  runtime: HostRuntime,
  spec: ProcessSpec,
  grant: Grant | undefined,
): Record<string, string> {
  if (!spec.supervisor) return {};
  return {
    CAPTREE_CHANNEL: channelPath(runtime.stateDir, spec.path),
    CAPTREE_CHANNEL_TOKEN: channelToken(runtime.stateDir, spec.path),
    CAPTREE_GRANT: JSON.stringify(grantQuantities(grant)),
    CAPTREE_CGROUP: runtime.groupFor(spec.path).dirs.join(':'),
    // Where its own children's logs go (created by the child library).
    CAPTREE_LOGS: join(runtime.logsDir, `${logName(spec.path)}.children`),
    // The launcher its runtime starts, built by the daemon: a child running as another user
    // cannot build one in (or even reach) the daemon's ~/.cache.
    CAPTREE_CACHE_DIR: childBinDir(runtime.stateDir),
  };
}

export interface ChannelsOptions {
  /** Every message and grant change, for the journal. */
  onEvent?(event: ChannelEvent): void;
  /** Usage sampling interval for renegotiation, ms (default 1000). */
  sampleMs?: number;
  /** How long a supervisor donor gets to shrink its children after `reclaim`, ms (default 250). */
  reclaimDeadlineMs?: number;
}

interface Endpoint {
  path: string;
  spec: ProcessSpec;
  file: string;
  server: Server;
  socket: Socket | null;
  /** Resolves a pending `reclaim` when the child acknowledges it with `release`. */
  reclaimAck: (() => void) | null;
  status: string | null;
  ready: boolean;
  exposed: Map<string, unknown>;
  /** Journal budget (token bucket): what a child can make the daemon write is bounded. */
  tokens: number;
  refilledAt: number;
  suppressed: number;
}

/**
 * Channel messages journaled per child: a burst, then a steady rate; the rest are counted and
 * reported as one `suppressed` event. Bounds the journal (and daemon.log) against a child that
 * floods `status` or invalid lines: at most (burst + rate × seconds) events of at most
 * ~MAX_STATUS + 200 bytes each.
 */
const JOURNAL_BURST = 200;
const JOURNAL_PER_SECOND = 50;

export class Channels {
  readonly renegotiator: Renegotiator;
  readonly #tree: RunningTree;
  readonly #endpoints = new Map<string, Endpoint>();
  readonly #listeners = new Set<(event: ChannelEvent) => void>();
  #unsubscribe: (() => void) | null = null;
  #closed = false;

  private constructor(tree: RunningTree, options: ChannelsOptions) {
    this.#tree = tree;
    if (options.onEvent) this.#listeners.add(options.onEvent);
    this.renegotiator = new Renegotiator(tree, {
      sampleMs: options.sampleMs,
      reclaimDeadlineMs: options.reclaimDeadlineMs,
      isSupervisor: (path) => this.#endpoints.get(path)?.socket != null,
      reclaim: (path, amounts, deadlineMs) => this.#reclaim(path, amounts, deadlineMs),
      onChange: (change) => this.#onChange(change),
    });
  }

  /**
   * Listens for every supervisor child of `tree` (call before `supervisor.start()`), and starts
   * sampling usage for renegotiation.
   */
  static async open(tree: RunningTree, options: ChannelsOptions = {}): Promise<Channels> {
    const channels = new Channels(tree, options);
    try {
      for (const spec of supervisorSpecs(tree)) await channels.#listen(spec);
    } catch (err) {
      await channels.close();
      throw err;
    }
    const started = new Set<string>();
    channels.#unsubscribe = tree.supervisor.subscribe((e) => {
      // A restart (any start after the first) starts from the declared grant: lent budget
      // back, borrowed budget returned.
      if (e.type === 'started') {
        if (started.has(e.path)) void channels.renegotiator.restarted(e.path);
        started.add(e.path);
      }
      if (e.type !== 'stopping') return;
      const ep = channels.#endpoints.get(e.path);
      if (!ep?.socket) return;
      const s = ep.spec.shutdown;
      channels.send(e.path, {
        v: 1,
        type: 'shutdown',
        deadlineMs: typeof s === 'number' ? s : s === 'brutal' ? 0 : null,
      });
    });
    channels.renegotiator.start();
    return channels;
  }

  /** Supervisor children with a channel. */
  paths(): string[] {
    return [...this.#endpoints.keys()];
  }

  /** Whether the child at `path` is connected now. */
  connected(path: string): boolean {
    return this.#endpoints.get(path)?.socket != null;
  }

  /** The last `status` text, `ready` and exposed services of a supervisor child. */
  info(path: string): { status: string | null; ready: boolean; exposed: Record<string, unknown> } | null {
    const ep = this.#endpoints.get(path);
    return ep ? { status: ep.status, ready: ep.ready, exposed: Object.fromEntries(ep.exposed) } : null;
  }

  subscribe(fn: (event: ChannelEvent) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** Sends `message` to the child at `path`; false if it is not connected. */
  send(path: string, message: ParentMessage): boolean {
    const ep = this.#endpoints.get(path);
    if (!ep?.socket || ep.socket.destroyed) return false;
    ep.socket.write(encode(message));
    this.#emit({ type: 'channel', path, at: this.#now(), from: 'parent', message });
    return true;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.renegotiator.stop();
    this.#unsubscribe?.();
    await Promise.all(
      [...this.#endpoints.values()].map(
        (ep) =>
          new Promise<void>((resolve) => {
            ep.socket?.destroy();
            ep.server.close(() => resolve());
          }),
      ),
    );
    for (const ep of this.#endpoints.values()) rmSync(ep.file, { force: true });
    this.#endpoints.clear();
  }

  #now(): number {
    return this.#tree.supervisor.clock.now();
  }

  #emit(event: ChannelEvent): void {
    for (const fn of this.#listeners) fn(event);
  }

  async #listen(spec: ProcessSpec): Promise<void> {
    await shareLauncher(this.#tree.runtime.stateDir);
    const file = channelPath(this.#tree.runtime.stateDir, spec.path);
    mkdirSync(join(this.#tree.runtime.stateDir, 'ch'), { recursive: true, mode: 0o711 });
    rmSync(file, { force: true });
    const ep: Endpoint = {
      path: spec.path,
      spec,
      file,
      server: createServer((socket) => this.#accept(ep, socket)),
      socket: null,
      reclaimAck: null,
      status: null,
      ready: false,
      exposed: new Map(),
      tokens: JOURNAL_BURST,
      refilledAt: this.#now(),
      suppressed: 0,
    };
    await new Promise<void>((resolve, reject) => {
      ep.server.once('error', reject);
      ep.server.listen(file, () => {
        ep.server.off('error', reject);
        resolve();
      });
    });
    this.#endpoints.set(spec.path, ep);
    chmodSync(file, 0o600);
    if (spec.user !== null || spec.group !== null) {
      const uid = spec.user === null ? -1 : resolveId(spec.user, '/etc/passwd', 'user');
      const gid = spec.group === null ? -1 : resolveId(spec.group, '/etc/group', 'group');
      chownSync(file, uid, gid);
      delegate(this.#tree.runtime.groupFor(spec.path).dirs, uid, gid);
      const logs = join(this.#tree.runtime.logsDir, `${logName(spec.path)}.children`);
      mkdirSync(logs, { recursive: true, mode: 0o700 });
      // All of it: a state dir reused after adding `user:` holds root's files from before.
      chownTree(logs, uid, gid);
    }
  }

  #accept(ep: Endpoint, socket: Socket): void {
    socket.setEncoding('utf8');
    const lines = new LineSplitter(
      (line) => {
        if (ep.socket === socket) this.#onLine(ep, socket, line);
        else this.#authenticate(ep, socket, line);
      },
      () => {
        if (ep.socket === socket)
          this.#reply(ep, socket, {
            v: 1,
            type: 'denied',
            re: 'invalid',
            reasons: ['message longer than 64 KiB (65536 bytes of UTF-8 before the newline)'],
          });
        socket.end();
      },
    );
    socket.on('data', (chunk: string) => lines.push(chunk));
    socket.on('error', () => {});
    socket.on('close', () => {
      if (ep.socket !== socket) return;
      ep.socket = null;
      ep.reclaimAck?.();
    });
  }

  /**
   * A connection's first line: `hello` with the child's token makes it the child's current
   * connection (replacing its previous instance's); anything else is denied and closed, and
   * changes nothing.
   */
  #authenticate(ep: Endpoint, socket: Socket, line: string): void {
    const parsed = parseChildMessage(line);
    const expected = channelToken(this.#tree.runtime.stateDir, ep.path);
    if (typeof parsed === 'string' || parsed.type !== 'hello' || !sameToken(parsed.token ?? '', expected)) {
      this.#journal(ep, 'child', { invalid: 'a connection without the child’s token was refused' });
      socket.end(
        encode({
          v: 1,
          type: 'denied',
          re: 'unauthenticated',
          reasons: ['the first message must be hello with this child’s token (CAPTREE_CHANNEL_TOKEN)'],
        }),
      );
      return;
    }
    ep.socket?.destroy();
    ep.socket = socket;
    ep.ready = false;
    this.#onLine(ep, socket, line);
  }

  #reply(ep: Endpoint, socket: Socket, message: ParentMessage): void {
    if (ep.socket !== socket || socket.destroyed) return;
    socket.write(encode(message));
    this.#journal(ep, 'parent', message);
  }

  /** Reports a channel message of `ep` unless its journal budget is spent (then counts it). */
  #journal(
    ep: Endpoint,
    from: 'child' | 'parent',
    message: Extract<ChannelEvent, { type: 'channel' }>['message'],
  ): void {
    const now = this.#now();
    ep.tokens = Math.min(JOURNAL_BURST, ep.tokens + ((now - ep.refilledAt) * JOURNAL_PER_SECOND) / 1000);
    ep.refilledAt = now;
    if (ep.tokens < 1) {
      ep.suppressed++;
      return;
    }
    if (ep.suppressed > 0 && ep.tokens >= 2) {
      ep.tokens--;
      this.#emit({
        type: 'channel',
        path: ep.path,
        at: now,
        from: 'child',
        message: { suppressed: ep.suppressed },
      });
      ep.suppressed = 0;
    }
    ep.tokens--;
    this.#emit({ type: 'channel', path: ep.path, at: now, from, message });
  }

  #onLine(ep: Endpoint, socket: Socket, line: string): void {
    const parsed = parseChildMessage(line);
    if (typeof parsed === 'string') {
      this.#journal(ep, 'child', { invalid: line.slice(0, 200) });
      // The request's id, when it has one, so a waiting caller settles.
      const id = idOf(line);
      this.#reply(ep, socket, {
        v: 1,
        type: 'denied',
        ...(id === undefined ? {} : { id }),
        re: 'invalid',
        reasons: [parsed],
      });
      return;
    }
    const message =
      parsed.type === 'status' && parsed.text.length > MAX_STATUS
        ? { ...parsed, text: `${parsed.text.slice(0, MAX_STATUS)}… (${parsed.text.length} characters)` }
        : parsed.type === 'hello' && parsed.token !== undefined
          ? { ...parsed, token: '(checked)' } // never journaled: the journal is readable by the operator's tools
          : parsed;
    this.#journal(ep, 'child', message);
    void this.#handle(ep, socket, message);
  }

  async #handle(ep: Endpoint, socket: Socket, m: ChildMessage): Promise<void> {
    switch (m.type) {
      case 'hello':
        this.#reply(ep, socket, { v: 1, type: 'grant', ...this.renegotiator.grantOf(ep.path) });
        return;
      case 'ready':
        ep.ready = true;
        return;
      case 'status':
        ep.status = m.text;
        return;
      case 'expose':
        ep.exposed.set(m.service, m.endpoint);
        return;
      case 'request':
      case 'release': {
        const delta: Delta = {};
        if (m.cpu !== undefined) delta.cpu = m.cpu;
        if (m.memory !== undefined) delta.memory = m.memory;
        if (m.pids !== undefined) delta.pids = m.pids;
        if (m.type === 'release' && ep.reclaimAck) {
          // The acknowledgement of a reclaim under way: the parent enforces what it decided.
          ep.reclaimAck();
          return;
        }
        let result: RenegotiationResult;
        try {
          result =
            m.type === 'request'
              ? await this.renegotiator.request(ep.path, delta)
              : await this.renegotiator.release(ep.path, delta);
        } catch (err) {
          result = { ok: false, reasons: [(err as Error).message] };
        }
        const id = m.id === undefined ? {} : { id: m.id };
        if (result.ok) this.#reply(ep, socket, { v: 1, type: 'grant', ...id, ...result.grant });
        else this.#reply(ep, socket, { v: 1, type: 'denied', ...id, re: m.type, reasons: result.reasons });
        return;
      }
    }
  }

  #onChange(change: GrantChange): void {
    this.#emit({
      type: 'grant_changed',
      path: change.path,
      at: this.#now(),
      grant: change.grant,
      cause: change.cause,
      by: change.by,
    });
    // The requester hears through its reply; a supervisor donor through a `grant` of its own.
    if (change.cause === 'reclaim') this.send(change.path, { v: 1, type: 'grant', ...change.grant });
  }

  #reclaim(path: string, amounts: Delta, deadlineMs: number): Promise<void> {
    const ep = this.#endpoints.get(path);
    if (!ep?.socket) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        if (ep.reclaimAck === done) ep.reclaimAck = null;
        resolve();
      };
      const timer = setTimeout(done, deadlineMs);
      ep.reclaimAck = done;
      this.send(path, { v: 1, type: 'reclaim', ...amounts, deadlineMs });
    });
  }
}

/**
 * The daemon's entry point: channels for a tree built on this host (`build-tree.ts`), or null for
 * a tree without supervisor children or without a capability tree (an in-process test tree).
 */
export async function openChannels(
  tree: import('./types.ts').RunningTree,
  onEvent: (event: ChannelEvent) => void,
): Promise<Channels | null> {
  if (!('caps' in tree) || !('manifest' in tree)) return null;
  const built = tree as RunningTree;
  if (supervisorSpecs(built).length === 0) return null;
  return Channels.open(built, { onEvent });
}

/**
 * Delegation by ownership (the cgroup v2 model, applied to every hierarchy): a non-root supervisor
 * child owns its group's directory and the files that move processes and enable controllers, so
 * it can create groups below it and set their limits, but not its own group's limits (those files
 * stay root's). The kernel keeps whatever it creates inside its group.
 */
/** `dir` and everything below it (never following a symlink) to `uid`:`gid`. */
function chownTree(dir: string, uid: number, gid: number): void {
  lchownSync(dir, uid, gid);
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) chownTree(p, uid, gid);
    else lchownSync(p, uid, gid);
  }
}

function delegate(dirs: readonly string[], uid: number, gid: number): void {
  for (const dir of dirs) {
    chownSync(dir, uid, gid);
    for (const f of ['cgroup.procs', 'tasks', 'cgroup.threads', 'cgroup.subtree_control']) {
      try {
        chownSync(join(dir, f), uid, gid);
      } catch {
        // Not in this hierarchy.
      }
    }
  }
}

function supervisorSpecs(tree: RunningTree): ProcessSpec[] {
  const out: ProcessSpec[] = [];
  const walk = (n: RunningTree['manifest']['root']) => {
    for (const c of n.children) {
      if (c.kind === 'process') {
        if (c.supervisor) out.push(c);
      } else walk(c);
    }
  };
  walk(tree.manifest.root);
  return out;
}
