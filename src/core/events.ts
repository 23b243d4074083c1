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
  | (Base & {
      readonly type: 'restarting';
      readonly delay: number;
      readonly restarts: number;
      /** The sibling whose exit restarts this child too (rest_for_one, one_for_all); absent: its own exit. */
      readonly because?: string;
      /** `launcher_lost`: the child died with its launcher; this restart is not counted against the intensity. */
      readonly cause?: 'launcher_lost';
    })
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
  /**
   * A subscriber threw while handling an event (`on` is its type): it is detached, as OTP's
   * gen_event removes a failing handler, and supervision goes on for everyone else.
   */
  | (Base & { readonly type: 'listener_failed'; readonly on: string; readonly error: string });

export type SupervisorEventType = SupervisorEvent['type'];
export type Listener = (event: SupervisorEvent) => void;

/** Fan-out to subscribers; `active` lets hot paths skip building events nobody reads. */
export class EventSink {
  #listeners: Listener[] = [];

  get active(): boolean {
    return this.#listeners.length > 0;
  }

  subscribe(listener: Listener): () => void {
    this.#listeners = [...this.#listeners, listener];
    return () => {
      this.#listeners = this.#listeners.filter((l) => l !== listener);
    };
  }

  /**
   * Never throws: a listener that throws is detached and reported to the others. An async one
   * whose promise rejects is treated alike, later, so it never becomes an unhandled rejection.
   */
  emit(event: SupervisorEvent): void {
    const failed: { listener: Listener; error: unknown }[] = [];
    for (const l of this.#listeners) {
      try {
        const result: unknown = l(event);
        if (result instanceof Promise) result.catch((error: unknown) => this.#rejected(l, event, error));
      } catch (error) {
        failed.push({ listener: l, error });
      }
    }
    if (failed.length === 0) return;
    const gone = new Set(failed.map((f) => f.listener));
    this.#listeners = this.#listeners.filter((l) => !gone.has(l));
    for (const { error } of failed)
      this.emit({
        type: 'listener_failed',
        path: event.path,
        at: event.at,
        on: event.type,
        error: error instanceof Error ? error.message : String(error),
      });
  }

  #rejected(listener: Listener, event: SupervisorEvent, error: unknown): void {
    if (!this.#listeners.includes(listener)) return;
    this.#listeners = this.#listeners.filter((l) => l !== listener);
    this.emit({
      type: 'listener_failed',
      path: event.path,
      at: event.at,
      on: event.type,
      error: error instanceof Error ? error.message : String(error),
    });
  }
}
