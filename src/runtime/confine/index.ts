/**
 * Turns the file-shaped parts of a grant into what the launcher does between fork and exec:
 * services reached through unix sockets, secrets delivered as files, read-only paths. The
 * mechanism is a private mount namespace per process child (see `MountSpec` in the launcher
 * client); this module only decides which paths to hide, which to mount back, and what to put in
 * the child's environment. Pure except `readCredentials`.
 *
 * Layout under the state directory:
 *   services/<provider log name>/<service>/<socket file>  one directory per provided service; the
 *       provider and every consumer routed to it get that directory mounted back (a directory,
 *       not the socket, so a provider that restarts and re-creates its socket stays reachable);
 *   credentials/<child log name>/                          mount point of the child's own tmpfs,
 *       empty on the host; the secret files exist only inside the child's mount namespace.
 * Every confined child sees the WHOLE state directory (and where secrets are read from) covered by
 * an empty read-only tmpfs, with only what it was granted mounted back (its service directories,
 * its own credentials directory; a supervisor child's channel socket and children's log
 * directory; a shell relay's session directory): the control and launcher sockets, the journal,
 * the logs and every other child's sockets are out of reach, and a path guessed from the host's
 * layout leads nowhere. The launcher adds, for every confined child, a read-only /sys/fs/cgroup
 * (`delegate`: a supervisor child's own cgroup stays writable below) and a PID namespace with a
 * fresh /proc, so /proc/<pid>/root of another child does not exist for it.
 *
 * A child whose granted `paths` do not hold `/` (its own `requires.paths`, or an ancestor's) gets
 * a narrowed view (`view`): after the steps above, the launcher pivots into a new root holding
 * only the granted paths (read-only where granted so), `/usr`, `/etc`, `/bin`, `/sbin`, `/lib*`
 * read-only, a fresh `/dev` (null, zero, full, random, urandom, tty, its own devpts, a tmpfs
 * `/dev/shm`), a private tmpfs `/tmp`, the fresh `/proc`, `/sys` read-only, the program's own
 * directory read-only when it lives elsewhere, and what was mounted back above. Its working
 * directory must be in that view (`viewHolds`).
 *
 * Environment (names: prefix + service name upper-cased, every non-alphanumeric byte → `_`):
 *   CAPTREE_PROVIDE_<NAME>=<absolute socket path>   to a provider of a unix service, to bind;
 *   CAPTREE_SERVICE_<NAME>=unix:<absolute path>     to a consumer routed to a unix service;
 *   CAPTREE_SERVICE_<NAME>=tcp:<host>:<port>        to a consumer routed to a TCP service;
 *   CREDENTIALS_DIRECTORY=<dir>                     set by the launcher when secrets are granted.
 */
import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { MountSpec } from '../launcher/client.ts';

/** The longest path a unix socket address holds (sun_path is 108 bytes with its NUL). */
export const MAX_SOCKET_PATH = 107;

export type ServiceEndpointLike = { readonly type?: unknown; readonly [field: string]: unknown };

export interface RoutedService {
  readonly name: string;
  /** Tree path of the provider. */
  readonly from: string;
  readonly endpoint: ServiceEndpointLike;
}

export interface SecretSource {
  readonly name: string;
  /** Where the value is read from at each start. */
  readonly file: string;
}

export interface ConfineInput {
  readonly stateDir: string;
  /** The child's tree path. */
  readonly path: string;
  /** Services routed to the child by admission. */
  readonly services: readonly RoutedService[];
  /** What the child provides, by service name (unix endpoints get a socket path). */
  readonly provides: Readonly<Record<string, ServiceEndpointLike>>;
  readonly secrets: readonly SecretSource[];
  /** Absolute paths granted read-only. */
  readonly readOnly: readonly string[];
  /**
   * A narrowed filesystem view (the grant's `paths` when they do not hold `/`): the child's root
   * becomes exactly these (plus the system, read-only, and the runtime's bits); `readOnly` is
   * ignored then. Null or absent: the parent's view, with `readOnly` remounted read-only in place.
   */
  readonly view?: Readonly<Record<string, 'ro' | 'rw'>> | null;
  /** Cover the services and credentials directories even if this child is granted none. */
  readonly hide: boolean;
  /** More directories to cover when confined (where secrets are sourced from). Must exist. */
  readonly alsoHide?: readonly string[];
  /**
   * A network namespace of its own (`net: none`) or a named network's: confined (and so given the
   * whole mount confinement) even with nothing else.
   */
  readonly isolateNet?: boolean;
  /** More paths under the state directory to mount back when they exist at spawn time. */
  readonly keep?: readonly string[];
  /** Cgroup directories delegated to the child (a supervisor child's own), writable for it. */
  readonly delegate?: readonly string[];
}

export interface ConfinePlan {
  /** Added to the child's environment. */
  readonly env: Record<string, string>;
  /** Null: no mount namespace needed. */
  readonly mounts: Omit<MountSpec, 'credentials'> | null;
  readonly credentials: { readonly dir: string; readonly secrets: readonly SecretSource[] } | null;
}

export function servicesDir(stateDir: string): string {
  return join(stateDir, 'services');
}

export function credentialsDir(stateDir: string): string {
  return join(stateDir, 'credentials');
}

/** `/shop/db` → `shop.db`. */
function flat(path: string): string {
  return path.slice(1).replaceAll('/', '.');
}

/** The directory holding one provided service's socket. */
export function serviceDir(stateDir: string, provider: string, service: string): string {
  return join(servicesDir(stateDir), flat(provider), service);
}

/** Where a provider binds a unix service: the file name it declared, in the service's directory. */
export function serviceSocket(stateDir: string, provider: string, service: string, declared: string): string {
  const path = join(serviceDir(stateDir, provider, service), basename(declared));
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
    throw new Error(
      `${provider} provides ${service} at ${path}: ${Buffer.byteLength(path)} bytes, longer than a unix socket address holds (${MAX_SOCKET_PATH}); use a shorter state directory`,
    );
  }
  return path;
}

/** `db.sql` → `CAPTREE_SERVICE_DB_SQL` (prefix + upper case, non-alphanumerics → `_`). */
export function serviceEnvName(service: string, prefix = 'CAPTREE_SERVICE_'): string {
  return prefix + service.toUpperCase().replace(/[^A-Z0-9]/g, '_');
}

function unixPath(endpoint: ServiceEndpointLike): string | null {
  if (endpoint.type === 'unix' && typeof endpoint.path === 'string') return endpoint.path;
  if (typeof endpoint.unix === 'string') return endpoint.unix;
  return null;
}

export function planConfinement(input: ConfineInput): ConfinePlan {
  const env: Record<string, string> = {};
  const bind: string[] = [];
  for (const [service, endpoint] of Object.entries(input.provides)) {
    const declared = unixPath(endpoint);
    if (declared === null) continue;
    env[serviceEnvName(service, 'CAPTREE_PROVIDE_')] = serviceSocket(
      input.stateDir,
      input.path,
      service,
      declared,
    );
    bind.push(serviceDir(input.stateDir, input.path, service));
  }
  for (const s of input.services) {
    const declared = unixPath(s.endpoint);
    if (declared !== null) {
      env[serviceEnvName(s.name)] = `unix:${serviceSocket(input.stateDir, s.from, s.name, declared)}`;
      bind.push(serviceDir(input.stateDir, s.from, s.name));
    } else if (s.endpoint.type === 'tcp') {
      const host = String(s.endpoint.host);
      env[serviceEnvName(s.name)] =
        `tcp:${host.includes(':') ? `[${host}]` : host}:${String(s.endpoint.port)}`;
    }
  }
  const credentials =
    input.secrets.length > 0
      ? { dir: join(credentialsDir(input.stateDir), flat(input.path)), secrets: input.secrets }
      : null;
  const view = input.view ?? null;
  const entries = view ? Object.entries(view) : [];
  const readOnly = view ? entries.filter(([, m]) => m === 'ro').map(([p]) => p) : [...input.readOnly];
  const confined =
    input.hide ||
    input.isolateNet === true ||
    bind.length > 0 ||
    credentials !== null ||
    readOnly.length > 0 ||
    view !== null;
  const mounts = confined
    ? {
        hide: [input.stateDir, ...(input.alsoHide ?? [])],
        bind: [...new Set(bind)],
        readOnly,
        ...(view ? { view: { rw: entries.filter(([, m]) => m === 'rw').map(([p]) => p) } } : {}),
        ...(input.keep && input.keep.length > 0 ? { bindIfExists: [...new Set(input.keep)] } : {}),
        ...(input.delegate && input.delegate.length > 0 ? { delegate: [...input.delegate] } : {}),
      }
    : null;
  return { env, mounts, credentials };
}

/** The directories of the system a narrowed view always holds (read-only), besides `/lib*`. */
const SYSTEM_DIRS = ['/usr', '/etc', '/bin', '/sbin', '/dev', '/proc', '/sys'];

function under(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir === '/' ? '/' : `${dir}/`);
}

/**
 * Whether `path` exists in a narrowed view as far as the grant decides: `/`, `/tmp` (empty, private),
 * under a granted path or under a system directory.
 */
export function viewHolds(view: Readonly<Record<string, 'ro' | 'rw'>>, path: string): boolean {
  if (path === '/' || path === '/tmp') return true;
  if (/^\/lib[^/]*(\/|$)/.test(path)) return true;
  return [...Object.keys(view), ...SYSTEM_DIRS].some((dir) => under(path, dir));
}

/** Where `captree shell` puts a session's relay socket: `<state>/shells/<session>/relay.sock`. */
export function shellsDir(stateDir: string): string {
  return join(stateDir, 'shells');
}

/**
 * The shell session directories a command names (`ptyrelay ... <state>/shells/<session>/relay.sock
 * -- ...`): mounted back for that child only, so its relay reaches its own client and no other.
 */
export function sessionDirsIn(stateDir: string, command: readonly string[]): string[] {
  const prefix = `${shellsDir(stateDir)}/`;
  const dirs: string[] = [];
  for (const arg of command) {
    if (!arg.startsWith(prefix)) continue;
    const session = arg.slice(prefix.length).split('/')[0];
    if (session && session !== '.' && session !== '..') dirs.push(join(shellsDir(stateDir), session));
  }
  return dirs;
}

/**
 * What a supervisor child reaches under the state directory: its channel socket, its children's
 * logs, and the launcher binary its own runtime starts (CAPTREE_CACHE_DIR).
 */
export function supervisorKeeps(env: Readonly<Record<string, string>>): string[] {
  return [env.CAPTREE_CHANNEL, env.CAPTREE_LOGS, env.CAPTREE_CACHE_DIR].filter(
    (p): p is string => typeof p === 'string',
  );
}

/** Reads each secret's value now (at every start, so a rotated file takes effect on restart). */
export function readCredentials(secrets: readonly SecretSource[]): { name: string; data: Buffer }[] {
  return secrets.map((s) => {
    try {
      return { name: s.name, data: readFileSync(s.file) };
    } catch (err) {
      throw new Error(`secret ${s.name}: cannot read ${s.file}: ${(err as Error).message}`);
    }
  });
}
