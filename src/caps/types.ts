/**
 * Public vocabulary of capabilities: what a child asks for (`Requires`), what it offers
 * (`Provides`), what a node declares about its subtree (`Policy`), what the host can enforce
 * (`HostCapabilities`), and what admission answers (`Grant` or `Reason`s).
 *
 * Units at this boundary are the user's: cpu in cores (0.2), memory in bytes, pids as a
 * count. Parsing '256Mi' or '20%' is the manifest layer's job. Internally cpu is carried in
 * millicores so sums are exact; a cpu value finer than 0.001 core is rejected rather than
 * rounded, because a silent rounding would make "what you asked" differ from "what you got".
 *
 * Quantities (cpu, memory, pids) are carved out of the parent and returned on release.
 * Qualities (networks, listening sockets, services, paths, secrets, environment variables)
 * are subsets of what the parent holds; only a listening socket is exclusive (one holder).
 */

/** A cpu requirement: cores carved from the parent, plus a relative weight that is not carved. */
export interface CpuRequirement {
  readonly cores?: number;
  /** Relative share under contention, 1..10000 (cgroup v2 `cpu.weight`); default 100. */
  readonly weight?: number;
}

/**
 * A service requirement. A plain string names a service (`db.sql`) or, if no route offers a
 * service of that name, a kind (`postgres`) met by any provider of that kind. The object forms
 * say which one is meant, and `from` pins the provider: a sibling's name, or `parent`.
 */
export type ServiceRequirement =
  | string
  | { readonly service: string; readonly from?: string }
  | { readonly kind: string; readonly from?: string };

/** `none`: loopback only. `host`: the host's network. `any`: some network the parent can route. */
export type NetRequirement = 'none' | 'host' | 'any' | string | readonly string[];

export type PathMode = 'ro' | 'rw';

export interface Requires {
  readonly cpu?: number | CpuRequirement;
  readonly memory?: number;
  readonly pids?: number;
  /** Omitted: inherit the parent's networks. */
  readonly net?: NetRequirement;
  /** Socket name to address (`127.0.0.1:8080`, `[::1]:80`, `:8080` for all addresses). */
  readonly listen?: Readonly<Record<string, string>>;
  readonly services?: readonly ServiceRequirement[];
  /** Absolute paths. Omitted: inherit the parent's filesystem view. */
  readonly paths?: Readonly<Record<string, PathMode>>;
  readonly secrets?: readonly string[];
  /** Names of environment variables the parent holds and passes on. */
  readonly env?: readonly string[];
  /**
   * `root` (run as uid 0), Linux capabilities (`net_bind_service`), `user:NAME`, `group:NAME`
   * (`user:*`, `group:*`: any). Omitted: the parent's (see privileges.ts).
   */
  readonly privileges?: readonly string[];
}

/** How a provided service is reached. Opaque to admission except `kind`. */
export interface ServiceEndpoint {
  readonly kind?: string;
  readonly [transport: string]: unknown;
}

export type Provides = Readonly<Record<string, ServiceEndpoint>>;

export interface Policy {
  /**
   * Label sets no node of the subtree may hold all of, e.g. `[['secret:PII', 'net:internet']]`.
   * Labels: `secret:NAME`, `net:NAME` (`net:host`, `net:internet`), `service:NAME-or-KIND`,
   * `env:NAME`, `listen:NAME`; `KIND:*` matches any label of that kind.
   */
  readonly never?: readonly (readonly string[])[];
  /** Levels allowed below the declaring node (its children are level 1). */
  readonly maxDepth?: number;
  /** Admit requirements the host cannot enforce, marking them advisory. Restrictive wins. */
  readonly allowAdvisory?: boolean;
}

/** What a child declares to its parent. */
export interface Contract {
  readonly name: string;
  readonly requires?: Requires;
  readonly provides?: Provides;
  readonly policy?: Policy;
}

/** A declared tree, as `captree check` sees it. */
export interface TreeSpec extends Contract {
  readonly children?: readonly TreeSpec[];
}

export const enforcements = [
  'cpuLimits',
  'memoryLimits',
  'pidsLimits',
  'netNamespaces',
  'mountNamespaces',
] as const;
export type Enforcement = (typeof enforcements)[number];

/** What the runtime's host probe reports: totals the root may hold and what can be enforced. */
export interface HostCapabilities {
  readonly cpu: number;
  readonly memory: number;
  readonly pids: number;
  readonly cpuLimits: boolean;
  readonly memoryLimits: boolean;
  readonly pidsLimits: boolean;
  readonly netNamespaces: boolean;
  readonly mountNamespaces: boolean;
  /** Named networks besides `host`; `internet: true` gives its holders the `net:internet` label. */
  readonly networks?: Readonly<Record<string, { readonly internet?: boolean }>>;
  readonly secrets?: readonly string[];
  readonly env?: readonly string[];
  /** What a daemon running as this user may hand out (privileges.ts); default none. */
  readonly privileges?: readonly string[];
  /** The root's filesystem view; default `{ '/': 'rw' }`. */
  readonly paths?: Readonly<Record<string, PathMode>>;
}

/** A carved quantity. `reserved: 0` means shared: the holder uses its parent's unreserved remainder. */
export interface QuantityGrant {
  readonly reserved: number;
  /** The effective cap: `reserved`, or the nearest reserving ancestor's reservation when shared. */
  readonly limit: number;
}

export interface ServiceGrant {
  readonly name: string;
  readonly kind?: string;
  /** Path of the providing node. */
  readonly from: string;
  readonly endpoint: ServiceEndpoint;
}

export interface Grant {
  readonly path: string;
  readonly cpu: QuantityGrant;
  readonly cpuWeight: number;
  readonly memory: QuantityGrant;
  readonly pids: QuantityGrant;
  /** Networks held; `[]` is loopback only. */
  readonly net: readonly string[];
  readonly listen: Readonly<Record<string, string>>;
  readonly services: readonly ServiceGrant[];
  readonly paths: Readonly<Record<string, PathMode>>;
  readonly secrets: readonly string[];
  readonly env: readonly string[];
  /** Privileges held, canonical (privileges.ts). */
  readonly privileges: readonly string[];
  /** Requirements admitted although the host cannot enforce them. */
  readonly advisory: readonly Enforcement[];
}

export type ReasonCode =
  | 'insufficient'
  | 'children-hold-more'
  | 'network-not-held'
  | 'listen-not-held'
  | 'listen-taken'
  | 'unroutable-service'
  | 'duplicate-provider'
  | 'path-not-held'
  | 'secret-not-held'
  | 'env-not-held'
  | 'privilege-not-held'
  | 'children-hold-quality'
  | 'invariant-never'
  | 'max-depth'
  | 'host-cannot-enforce'
  | 'cycle'
  | 'unknown-capability'
  | 'invalid-value'
  | 'duplicate-name'
  | 'no-such-node'
  | 'in-use'
  | 'root';

export interface QuantityDetail {
  readonly quantity: 'cpu' | 'memory' | 'pids';
  /** In user units (cores, bytes, count). */
  readonly required: number;
  /** What could be granted to this node (for renegotiate, its own reservation included). */
  readonly available: number;
  readonly total: number;
  readonly holder: string;
  /** The largest reservations among `holder`'s children (up to five), largest first, ties in list order. */
  readonly holders: readonly { readonly path: string; readonly amount: number }[];
  /** The remaining reserving children, summed. */
  readonly others: { readonly count: number; readonly amount: number };
}

export interface Reason {
  readonly code: ReasonCode;
  /** The node whose requirement is unmet (or the node the operation named). */
  readonly path: string;
  /** One line, naming the paths involved. */
  readonly message: string;
  readonly detail?:
    | QuantityDetail
    | { readonly cycle: readonly string[] }
    | { readonly missing: Enforcement };
}

export interface Rejected {
  readonly ok: false;
  readonly reasons: readonly Reason[];
}
