/**
 * Service routing rules, shared by admission and by start-order derivation so both always pick
 * the same provider:
 * - services are never inherited. A child reaches a service only from a sibling that provides
 *   it, from its parent's own `provides`, or from a service routed to its parent (one the
 *   parent itself required). Nothing further up is reachable unless each hop routed it.
 * - `from` pins the source: a sibling's name or `parent`.
 * - otherwise a name match anywhere beats a kind match anywhere; within each, siblings come
 *   before the parent's own provides, which come before services routed to the parent; among
 *   siblings the earliest in list order (lowest sequence number) wins. A child never meets its
 *   own requirement.
 */
import type { ServiceEndpoint, ServiceRequirement } from './types.ts';

export interface NormalService {
  /** As the user wrote it, for messages and labels. */
  readonly text: string;
  readonly name?: string;
  readonly kind?: string;
  readonly from?: string;
}

export function describeService(s: NormalService): string {
  const what =
    s.name !== undefined && s.kind !== undefined ? s.text : s.name !== undefined ? s.name : `kind ${s.kind}`;
  return s.from === undefined ? what : `${what} from ${s.from}`;
}

/** Undefined when the shape is invalid. */
export function normalizeService(r: ServiceRequirement): NormalService | undefined {
  if (typeof r === 'string') return r.length > 0 ? { text: r, name: r, kind: r } : undefined;
  if (r === null || typeof r !== 'object') return undefined;
  const o = r as { service?: unknown; kind?: unknown; from?: unknown };
  for (const k of Object.keys(o)) if (k !== 'service' && k !== 'kind' && k !== 'from') return undefined;
  if (o.from !== undefined && (typeof o.from !== 'string' || o.from === '')) return undefined;
  const from = o.from as string | undefined;
  if (typeof o.service === 'string' && o.service !== '' && o.kind === undefined) {
    return from === undefined
      ? { text: o.service, name: o.service }
      : { text: o.service, name: o.service, from };
  }
  if (typeof o.kind === 'string' && o.kind !== '' && o.service === undefined) {
    return from === undefined ? { text: o.kind, kind: o.kind } : { text: o.kind, kind: o.kind, from };
  }
  return undefined;
}

/** One offered service as routing sees it. */
export interface Offer {
  readonly name: string;
  readonly kind?: string | undefined;
  readonly endpoint: ServiceEndpoint;
  /** Path of the node that provides it. */
  readonly from: string;
}

export type Source<S> = { readonly sibling: S; readonly offer: Offer } | { readonly parent: Offer };

/** Lookups over one parent's routing context; implementations exclude the requesting child. */
export interface RoutingContext<S> {
  siblingByName(name: string): { sibling: S; offer: Offer } | undefined;
  siblingByKind(kind: string): { sibling: S; offer: Offer } | undefined;
  /** Sibling by its own name, and its offer matching the requirement. */
  namedSibling(sibling: string, s: NormalService): { sibling: S; offer: Offer } | undefined;
  parentByName(name: string): Offer | undefined;
  parentByKind(kind: string): Offer | undefined;
}

export function resolveService<S>(s: NormalService, ctx: RoutingContext<S>): Source<S> | undefined {
  if (s.from !== undefined && s.from !== 'parent') return ctx.namedSibling(s.from, s);
  const siblings = s.from === undefined;
  if (s.name !== undefined) {
    const sib = siblings ? ctx.siblingByName(s.name) : undefined;
    if (sib) return sib;
    const p = ctx.parentByName(s.name);
    if (p) return { parent: p };
  }
  if (s.kind !== undefined) {
    const sib = siblings ? ctx.siblingByKind(s.kind) : undefined;
    if (sib) return sib;
    const p = ctx.parentByKind(s.kind);
    if (p) return { parent: p };
  }
  return undefined;
}

/** The offer of `provides` entries that meets `s`, name match first. */
export function matchOffer(offers: readonly Offer[], s: NormalService): Offer | undefined {
  if (s.name !== undefined) for (const o of offers) if (o.name === s.name) return o;
  if (s.kind !== undefined) for (const o of offers) if (o.kind === s.kind) return o;
  return undefined;
}
