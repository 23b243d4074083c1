/**
 * The typed event stream: every transition of every child and supervisor, timestamped with the
 * engine's clock. The rest of captree observes the engine only through these events and through
 * queries, so a journal, a live `ps` or `events -f` are all subscribers.
 */
import type { ExitReason } from './types.ts';

interface Base {
  /** Path of the child or supervisor the event is about. */
  readonly path: string;
  /** Clock time (monotonic ms). */
  readonly at: number;
}

export type SupervisorEvent =
  | (Base & { readonly type: 'starting' })
  | (Base & { readonly type: 'started'; readonly pid: number | null })
  /** The driver took over an instance still running from before a daemon restart (`started` follows). */
  | (Base & { readonly type: 'adopted'; readonly pid: number })
  | (Base & { readonly type: 'ready'; readonly declared: boolean })
  | (Base & { readonly type: 'exited'; readonly reason: ExitReason; readonly expected: boolean })
  | (Base & { readonly type: 'start_failed'; readonly reason: ExitReason })
  | (Base & { readonly type: 'restarting'; readonly delay: number; readonly restarts: number })
  | (Base & { readonly type: 'permanent_failure'; readonly reason: ExitReason })
  | (Base & { readonly type: 'stopping' })
  | (Base & { readonly type: 'stopped'; readonly reason: ExitReason })
  | (Base & {
      readonly type: 'intensity_exceeded';
      readonly restarts: number;
      readonly intensity: number;
      readonly period: number;
    })
  | (Base & { readonly type: 'escalated'; readonly reason: ExitReason })
  | (Base & { readonly type: 'auto_shutdown'; readonly trigger: string })
  | (Base & { readonly type: 'child_added' })
  | (Base & { readonly type: 'child_deleted' })
  | (Base & { readonly type: 'checkpoint' })
  /** A subscriber threw (or its promise rejected); it was detached, supervision went on. */
  | (Base & { readonly type: 'listener_failed'; readonly error: string });

export type SupervisorEventType = SupervisorEvent['type'];
export type Listener = (event: SupervisorEvent) => void;

/**
 * Fan-out to subscribers; `active` lets hot paths skip building events nobody reads.
 *
 * Listeners are isolated as OTP's gen_event isolates handlers: one that throws, or returns a
 * promise that rejects, is detached and reported to the others as `listener_failed`, because the
 * engine emits from inside its own transitions and a subscriber's bug must not stop supervision.
 */
export class EventSink {
  #listeners: Listener[] = [];
  /** Errors of detached listeners, newest last (bounded), for `doctor`-style reporting. */
  readonly failures: string[] = [];

  get active(): boolean {
    return this.#listeners.length > 0;
  }

  subscribe(listener: Listener): () => void {
    this.#listeners = [...this.#listeners, listener];
    return () => {
      this.#listeners = this.#listeners.filter((l) => l !== listener);
    };
  }

  emit(event: SupervisorEvent): void {
    for (const l of this.#listeners) {
      try {
        const result: unknown = l(event);
        if (result && typeof (result as PromiseLike<unknown>).then === 'function') {
          (result as Promise<unknown>).then(undefined, (e: unknown) => this.#fail(l, event, e));
        }
      } catch (e) {
        this.#fail(l, event, e);
      }
    }
  }

  #fail(listener: Listener, event: SupervisorEvent, error: unknown): void {
    if (!this.#listeners.includes(listener)) return;
    this.#listeners = this.#listeners.filter((l) => l !== listener);
    const message = error instanceof Error ? error.message : String(error);
    this.failures.push(`${event.type} ${event.path}: ${message}`);
    if (this.failures.length > 16) this.failures.shift();
    this.emit({ type: 'listener_failed', path: event.path, at: event.at, error: message });
  }
}
