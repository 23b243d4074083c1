/**
 * The library for a supervisor that runs as a captree child (`supervisor: true` in its parent's
 * manifest): the same engine as at the root (`Supervisor` from src/core), inside its grant.
 *
 *   const me = fromEnvironment();               // path, grant, cgroup subtree, parent channel
 *   const runtime = await me.runtime();         // own launcher + groups under the delegated subtree
 *   const sup = new Supervisor({ name: 'app', strategy: 'rest_for_one', children: [
 *     processChild(runtime, { id: 'db', command: [...], ready: { type: 'notify', fd: 3, timeout: 10_000 } }),
 *     processChild(runtime, { id: 'api', command: [...] }),
 *   ] }, { path: me.path });                     // children are /<parent path>/<id>
 *   await sup.start();                           // db ready before api starts
 *   me.channel.ready();
 *   await me.channel.request({ cpu: 0.2 });      // more from the parent, or DeniedError with reasons
 *
 * What the environment holds (set by the parent, docs/protocol.md): CAPTREE_PATH (this child's
 * tree path), CAPTREE_GRANT (JSON {cpu, memory, pids}: cores, bytes, count reserved, null where
 * none), CAPTREE_CGROUP (its cgroup directories, colon-separated), CAPTREE_CHANNEL (the unix
 * socket of its private channel) and CAPTREE_LOGS (where its own children's logs go).
 */
import { EventEmitter } from 'node:events';
import { connect, type Socket } from 'node:net';
import type { ChildSpec } from '../core/index.ts';
import type { Limits } from '../runtime/cgroup/index.ts';
import { processDriver, processOptions } from '../runtime/process-driver.ts';
import type { LivenessSpec, ReadySpec } from '../runtime/readiness/spec.ts';
import {
  type ChildMessage,
  type Delta,
  encode,
  type GrantQuantities,
  LineSplitter,
  type ParentMessage,
} from './protocol.ts';
import { ChildRuntime } from './runtime.ts';

export { delegatedGroup, probeDelegated } from './cgroup.ts';
export type { ChildMessage, Delta, GrantQuantities, ParentMessage } from './protocol.ts';
export { ChildRuntime, type ChildRuntimeOptions } from './runtime.ts';

/** A `request` or `release` the parent refused; `reasons` say why (and how much could be had). */
export class DeniedError extends Error {
  readonly reasons: readonly string[];
  constructor(reasons: readonly string[]) {
    super(`denied: ${reasons.join('; ')}`);
    this.name = 'DeniedError';
    this.reasons = reasons;
  }
}

export interface ChannelEvents {
  /** The grant changed (a reclaim, or the answer to `hello`). */
  grant: [GrantQuantities];
  /** The parent will lower the grant by these amounts at the deadline: shrink children now. */
  reclaim: [{ cpu?: number; memory?: number; pids?: number; deadlineMs: number }];
  /** The parent is stopping this child; exit within `deadlineMs` (null: no deadline). */
  shutdown: [{ deadlineMs: number | null }];
  /** The connection to the parent is gone. */
  close: [];
  error: [Error];
}

/** The private channel to the parent (newline-delimited JSON, protocol v1). */
export class ParentChannel extends EventEmitter<ChannelEvents> {
  /** The latest grant the parent announced. */
  grant: GrantQuantities;
  /** Resolves once the parent answered `hello` (with the current grant). */
  readonly connected: Promise<void>;
  readonly #socket: Socket;
  #seq = 0;
  #pending = new Map<string, { resolve: (g: GrantQuantities) => void; reject: (e: Error) => void }>();
  #reclaiming = false;

  constructor(socketPath: string, grant: GrantQuantities, token?: string) {
    super();
    this.grant = grant;
    this.#socket = connect(socketPath);
    this.#socket.setEncoding('utf8');
    let hello!: () => void;
    let failed!: (e: Error) => void;
    this.connected = new Promise<void>((resolve, reject) => {
      hello = resolve;
      failed = reject;
    });
    this.connected.catch(() => {});
    const lines = new LineSplitter(
      (line) => this.#onLine(line, hello),
      () => this.emit('error', new Error('parent sent a line longer than 64 KiB')),
    );
    this.#socket.on('data', (chunk: string) => lines.push(chunk));
    this.#socket.on('error', (err) => {
      failed(err);
      if (this.listenerCount('error') > 0) this.emit('error', err);
    });
    this.#socket.on('close', () => {
      failed(new Error('the channel to the parent closed'));
      for (const p of this.#pending.values()) p.reject(new Error('the channel to the parent closed'));
      this.#pending.clear();
      this.emit('close');
    });
    this.#send({ v: 1, type: 'hello', pid: process.pid, ...(token ? { token } : {}) });
  }

  /** Asks for more (cores, bytes, count to add); resolves with the new grant or rejects with `DeniedError`. */
  request(delta: Delta): Promise<GrantQuantities> {
    return this.#ask('request', delta);
  }

  /** Gives some back; resolves with the new grant. During a `reclaim`, acknowledges it instead. */
  release(delta: Delta): Promise<GrantQuantities> {
    if (this.#reclaiming) {
      this.#reclaiming = false;
      this.#send({ v: 1, type: 'release', ...delta });
      return new Promise((resolve) => this.once('grant', resolve));
    }
    return this.#ask('release', delta);
  }

  /** Tells the parent this supervisor's children are up. */
  ready(): void {
    this.#send({ v: 1, type: 'ready' });
  }

  /** A line of status for the parent's journal (`captree events`). */
  status(text: string): void {
    this.#send({ v: 1, type: 'status', text });
  }

  /** Announces a capability this child now provides. */
  expose(service: string, endpoint: unknown): void {
    this.#send({ v: 1, type: 'expose', service, endpoint });
  }

  /** Closes the channel (the process may then exit on its own). */
  close(): void {
    this.#socket.end();
  }

  /** Lets the process exit while the channel is open. */
  unref(): void {
    this.#socket.unref();
  }

  #ask(type: 'request' | 'release', delta: Delta): Promise<GrantQuantities> {
    const id = `${type[0]}${++this.#seq}`;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#send({ v: 1, type, id, ...delta });
    });
  }

  #send(message: ChildMessage): void {
    if (!this.#socket.destroyed) this.#socket.write(encode(message));
  }

  #onLine(line: string, hello: () => void): void {
    let m: ParentMessage;
    try {
      m = JSON.parse(line) as ParentMessage;
    } catch {
      return;
    }
    if (m.v !== 1) return;
    switch (m.type) {
      case 'grant': {
        const grant = { cpu: m.cpu, memory: m.memory, pids: m.pids };
        this.grant = grant;
        const p = m.id === undefined ? undefined : this.#pending.get(m.id);
        if (p && m.id !== undefined) {
          this.#pending.delete(m.id);
          p.resolve(grant);
        }
        hello();
        this.emit('grant', grant);
        return;
      }
      case 'denied': {
        const p = m.id === undefined ? undefined : this.#pending.get(m.id);
        if (p && m.id !== undefined) {
          this.#pending.delete(m.id);
          p.reject(new DeniedError(m.reasons));
        } else if (this.listenerCount('error') > 0) this.emit('error', new DeniedError(m.reasons));
        return;
      }
      case 'reclaim': {
        this.#reclaiming = true;
        const { v: _v, type: _t, ...rest } = m;
        this.emit('reclaim', rest);
        return;
      }
      case 'shutdown':
        this.emit('shutdown', { deadlineMs: m.deadlineMs });
        return;
    }
  }
}

export interface ChildContext {
  /** This child's tree path, e.g. `/app/sup`. */
  readonly path: string;
  /** The grant as started (the channel's `grant` follows changes). */
  readonly grant: GrantQuantities;
  /** The delegated cgroup subtree: this child's own cgroup directories. */
  readonly cgroup: { readonly dirs: readonly string[] };
  /** The channel to the parent; null when the parent gave none (not `supervisor: true`). */
  readonly channel: ParentChannel;
  /** Opens the runtime for OS-process children inside the grant (once; later calls share it). */
  runtime(options?: { logsDir?: string; forwardOutput?: boolean }): Promise<ChildRuntime>;
}

/** What captree put in this process's environment; throws naming what is missing. */
export function fromEnvironment(env: NodeJS.ProcessEnv = process.env): ChildContext {
  const missing = ['CAPTREE_PATH', 'CAPTREE_CHANNEL', 'CAPTREE_GRANT', 'CAPTREE_CGROUP'].filter(
    (k) => env[k] === undefined,
  );
  if (missing.length > 0)
    throw new Error(
      `not started by captree as a supervisor child (missing ${missing.join(', ')}); set \`supervisor: true\` on it in the manifest`,
    );
  const path = env.CAPTREE_PATH!;
  let grant: GrantQuantities;
  try {
    const g = JSON.parse(env.CAPTREE_GRANT!) as GrantQuantities;
    grant = { cpu: g.cpu ?? null, memory: g.memory ?? null, pids: g.pids ?? null };
  } catch {
    throw new Error(`CAPTREE_GRANT is not JSON: ${env.CAPTREE_GRANT}`);
  }
  const dirs = env.CAPTREE_CGROUP!.split(':').filter((d) => d !== '');
  const channel = new ParentChannel(env.CAPTREE_CHANNEL!, grant, env.CAPTREE_CHANNEL_TOKEN);
  // Proof of being this child: no process this one starts inherits it.
  delete env.CAPTREE_CHANNEL_TOKEN;
  let runtime: Promise<ChildRuntime> | undefined;
  return {
    path,
    grant,
    cgroup: { dirs },
    channel,
    runtime(options = {}) {
      runtime ??= ChildRuntime.open({ path, cgroupDirs: dirs, ...options });
      return runtime;
    },
  };
}

export interface ProcessChildOptions {
  id: string;
  command: readonly string[];
  env?: Record<string, string>;
  /** Names taken from this process's environment beyond PATH, LANG, TZ, HOME; true: all. */
  inheritEnv?: readonly string[] | true;
  cwd?: string;
  restart?: ChildSpec['restart'];
  /** ms, `brutal` or `infinity`; default 5000. */
  shutdown?: ChildSpec['shutdown'];
  ready?: ReadySpec;
  liveness?: LivenessSpec;
  /** Limits of the child's own group (each within this supervisor's grant, or the kernel refuses). */
  limits?: Limits;
  backoff?: ChildSpec['backoff'];
  stopSignal?: NodeJS.Signals;
}

/** An engine child spec for an OS process run by `runtime` (the same driver the root uses). */
export function processChild(runtime: ChildRuntime, o: ProcessChildOptions): ChildSpec {
  const options = processOptions(o.command, {
    env: o.env,
    inheritEnv: o.inheritEnv,
    cwd: o.cwd,
    stopSignal: o.stopSignal,
    ready: o.ready,
    liveness: o.liveness,
    limits: o.limits,
  });
  return {
    id: o.id,
    driver: processDriver(runtime, options),
    restart: o.restart,
    shutdown: o.shutdown,
    backoff: o.backoff,
  };
}
