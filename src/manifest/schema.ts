/**
 * The manifest's shape as zod schemas: the one source for both the loader's validation and the
 * published JSON Schema (`schema/captree.schema.json`). Schemas here accept what a user writes
 * and transform units (durations, sizes, cpu) to numbers; defaults that editors should show live
 * here too (`prefault`), while structural normalisation happens in `parse.ts`.
 *
 * Nodes and processes are told apart by which key they carry (`children` or `command`), which
 * zod cannot discriminate on; so the loader validates each child against the schema its keys
 * select (`validating: true` gives nodes an opaque `children` list it then walks itself), and
 * the JSON Schema is the recursive union.
 */
import { z } from 'zod';
import { parsePrivilege } from '../caps/privileges.ts';
import { MAX_WINDOW_MS, parseCron } from '../reconcile/cron.ts';
import { CPU_PATTERN, DURATION_PATTERN, parseCpu, parseDuration, parseSize, SIZE_PATTERN } from './units.ts';

export const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
export const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

export const STRATEGIES = ['one_for_one', 'one_for_all', 'rest_for_one', 'dynamic'] as const;
export const RESTART_TYPES = ['permanent', 'transient', 'temporary'] as const;
export const AUTO_SHUTDOWNS = ['never', 'any_significant', 'all_significant'] as const;
export const PRIORITIES = ['high', 'normal', 'low'] as const;
export const READY_KINDS = ['notify', 'sd_notify', 'tcp', 'http', 'exec', 'log'] as const;
export const LIVENESS_KINDS = ['http', 'tcp', 'exec'] as const;
export const KILL_MODES = ['control-group', 'mixed'] as const;
export const SIGNALS = [
  'SIGTERM',
  'SIGINT',
  'SIGQUIT',
  'SIGHUP',
  'SIGKILL',
  'SIGUSR1',
  'SIGUSR2',
  'SIGWINCH',
  'SIGPWR',
] as const;

/** Describes a value for messages: `'12XB'`, `-1`, `a list`. */
export function show(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null (an empty value)';
  if (typeof value === 'string') return `'${value}'`;
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return String(value);
}

/** A zod error option whose message names what was expected, what was found, and so the fix. */
function must(expected: string) {
  return { error: (issue: { input?: unknown }) => `must be ${expected}, got ${show(issue.input)}` };
}

function enumOf<const T extends readonly [string, ...string[]]>(values: T) {
  return z.enum(values, must(`one of ${values.join(' | ')}`));
}

const name = () =>
  z
    .string(must("a name (letters, digits, '_', '.', '-')"))
    .regex(NAME_RE, must("a name: a letter or digit, then letters, digits, '_', '.' or '-'"));

const count = (min: number, what = `an integer ≥ ${min}`) => z.int(must(what)).min(min, must(what));

const DURATION_HELP = "a duration like '5s', '500ms', '1.5s', '2m', '1h' or a number of milliseconds";
/** The string branch reports its own mismatch; give it the same helpful message. */
const durationText = () => z.string().regex(new RegExp(DURATION_PATTERN), must(DURATION_HELP));
const durationOf = () =>
  z
    .union([z.number().nonnegative(must(DURATION_HELP)), durationText()], must(DURATION_HELP))
    .transform((value) => parseDuration(value) as number)
    .meta({ description: 'A duration: 5s, 500ms, 1.5s, 2m, 1h, 1m30s, or a number of milliseconds.' });

const SIZE_HELP = "a size like '256Mi', '1Gi', '512Ki' (binary), '1G', '100M' (decimal) or a number of bytes";
const size = () =>
  z
    .union(
      [
        z.int(must(SIZE_HELP)).nonnegative(must(SIZE_HELP)),
        z.string().regex(new RegExp(SIZE_PATTERN), must(SIZE_HELP)),
      ],
      must(SIZE_HELP),
    )
    .transform((value) => parseSize(value) as number)
    .meta({ description: 'Bytes: 256Mi, 1Gi, 512Ki (binary), 1G, 100M (decimal), or a number.' });

const CPU_HELP = "cores ≥ 0 like 0.5, a percentage of one core like '20%', or millicores like '200m'";
const cpu = () =>
  z
    .union(
      [
        z.number(must(CPU_HELP)).nonnegative(must(CPU_HELP)),
        z.string().regex(new RegExp(CPU_PATTERN), must(CPU_HELP)),
      ],
      must(CPU_HELP),
    )
    .transform((value) => parseCpu(value) as number)
    .meta({ description: "CPU cores: 0.5, '20%' (of one core) or '200m' (millicores)." });

const HOST_PORT_HELP = "'host:port' like '127.0.0.1:8080' (IPv6 as '[::1]:8080')";
const HOST_PORT_RE = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}$/;
const hostPort = () => z.string(must(HOST_PORT_HELP)).regex(HOST_PORT_RE, must(HOST_PORT_HELP));
const port = () =>
  z.int(must('a TCP port 1-65535')).min(1, must('a TCP port 1-65535')).max(65535, must('a TCP port 1-65535'));
/** A TCP endpoint written as a port (on 127.0.0.1) or as 'host:port'. */
const tcpEndpoint = () => z.union([port(), hostPort()], must(`a port number or ${HOST_PORT_HELP}`));

const COMMAND_HELP = "a list of strings like [node, api.js] or a string run with 'sh -c'";
const command = () =>
  z.union(
    [
      z.string(must(COMMAND_HELP)).min(1, { error: `must not be empty: ${COMMAND_HELP}` }),
      z
        .array(z.string(must('a string (quote numbers)')))
        .min(1, { error: `must not be empty: ${COMMAND_HELP}` }),
    ],
    must(COMMAND_HELP),
  );

const signalName = () =>
  z
    .string(must('a signal name like SIGHUP'))
    .transform((signal) => (signal.toUpperCase().startsWith('SIG') ? signal : `SIG${signal}`).toUpperCase())
    .pipe(enumOf(SIGNALS));

const RELOAD_HELP =
  'a signal like SIGHUP, a command list like [nginx, -s, reload], or { exec: COMMAND, timeout: 30s }';
/** `captree reload`: a signal to the main process, or a command run in the child's confinement. */
const reload = () =>
  z
    .union(
      [
        z
          .string()
          .regex(/^(SIG)?[A-Za-z0-9]+$/, must(RELOAD_HELP))
          .pipe(signalName()),
        z
          .array(z.string(must('a string (quote numbers)')))
          .min(1, { error: `must not be empty: ${RELOAD_HELP}` }),
        z
          .strictObject(
            {
              signal: signalName().optional(),
              exec: command().optional(),
              timeout: durationOf().prefault('30s'),
            },
            must(RELOAD_HELP),
          )
          .superRefine(exactlyOne(['signal', 'exec'], 'reload')),
      ],
      must(RELOAD_HELP),
    )
    .meta({
      description:
        "`captree reload`: a signal sent to the main process (SIGHUP), or a command run in the child's confinement (its namespaces, cgroup, user, no capabilities) that must exit 0 within timeout.",
    });

const unixSocket = () =>
  z.strictObject(
    { unix: z.string(must('a socket path')).min(1, must('a socket path')) },
    must("{ unix: 'path' }"),
  );

function exactlyOne(kinds: readonly string[], what: string) {
  return (value: Record<string, unknown>, ctx: z.RefinementCtx) => {
    const present = kinds.filter((kind) => value[kind] !== undefined);
    if (present.length !== 1) {
      ctx.addIssue({
        code: 'custom',
        message:
          present.length === 0
            ? `${what} needs one of ${kinds.join(' | ')}`
            : `${what} takes one of ${kinds.join(' | ')}, not several (${present.join(', ')})`,
      });
    }
  };
}
const oneOfMeta = (kinds: readonly string[]) => ({ oneOf: kinds.map((kind) => ({ required: [kind] })) });

const regexText = () =>
  z.string(must('a regular expression')).superRefine((text, ctx) => {
    try {
      new RegExp(text);
    } catch (error) {
      ctx.addIssue({
        code: 'custom',
        message: `is not a valid regular expression: ${(error as Error).message}`,
      });
    }
  });

const ready = () =>
  z
    .strictObject(
      {
        notify: z
          .union(
            [
              z.literal('fd'),
              count(3, 'a file descriptor ≥ 3'),
              z.strictObject({ fd: count(3, 'a file descriptor ≥ 3') }),
            ],
            must("'fd' (fd 3), a descriptor number ≥ 3, or { fd: 3 }"),
          )
          .optional()
          .meta({ description: 'The child writes a newline on this descriptor when ready (s6 style).' }),
        sd_notify: z
          .literal(true, must('true'))
          .optional()
          .meta({ description: 'The child sends READY=1 on $NOTIFY_SOCKET (systemd style).' }),
        tcp: tcpEndpoint().optional().meta({ description: 'Ready once this port accepts a connection.' }),
        http: z
          .string(must("an http(s) URL like 'http://127.0.0.1:8080/health'"))
          .regex(/^https?:\/\/\S+$/, must("an http(s) URL like 'http://127.0.0.1:8080/health'"))
          .optional()
          .meta({ description: 'Ready once a GET answers 2xx.' }),
        exec: command().optional().meta({ description: 'Ready once this command exits 0.' }),
        log: regexText().optional().meta({ description: 'Ready once a line of output matches this regex.' }),
        timeout: durationOf().prefault('30s'),
      },
      must(`a mapping with one of ${READY_KINDS.join(' | ')}`),
    )
    .superRefine(exactlyOne(READY_KINDS, 'ready'))
    .meta(oneOfMeta(READY_KINDS));

const liveness = () =>
  z
    .strictObject(
      {
        http: z
          .string(must("an http(s) URL like 'http://127.0.0.1:8080/health'"))
          .regex(/^https?:\/\/\S+$/, must("an http(s) URL like 'http://127.0.0.1:8080/health'"))
          .optional(),
        tcp: tcpEndpoint().optional(),
        exec: command().optional(),
        interval: durationOf().prefault('10s'),
        timeout: durationOf().prefault('5s'),
        failures: count(1).prefault(3).meta({ description: 'Consecutive failed probes before a restart.' }),
      },
      must(`a mapping with one of ${LIVENESS_KINDS.join(' | ')}`),
    )
    .superRefine(exactlyOne(LIVENESS_KINDS, 'liveness'))
    .meta(oneOfMeta(LIVENESS_KINDS));

const backoff = () =>
  z.union(
    [
      z
        .strictObject(
          {
            initial: durationOf().prefault('100ms'),
            max: durationOf().prefault('30s'),
            factor: z.number(must('a number ≥ 1')).min(1, must('a number ≥ 1')).prefault(2),
            resetAfter: durationOf()
              .prefault('1m')
              .meta({ description: 'Running this long without a crash resets the delay to initial.' }),
          },
          must('a mapping { initial, max, factor, resetAfter } or false'),
        )
        .superRefine((value, ctx) => {
          if (value.initial > value.max) {
            ctx.addIssue({
              code: 'custom',
              path: ['max'],
              message: `must be ≥ initial (${value.initial}ms)`,
            });
          }
        }),
      z.literal(false),
    ],
    must('a mapping { initial, max, factor, resetAfter } or false'),
  );

const PATH_MODE = () => z.enum(['ro', 'rw'], must("'ro' or 'rw'"));
const pathsGrant = () =>
  z.union(
    [
      z.record(z.string().min(1), PATH_MODE()),
      z.array(
        z.union(
          [
            z.string().min(1),
            z.strictObject({ path: z.string(must('a path')).min(1), mode: PATH_MODE().prefault('ro') }),
          ],
          must('a path or { path, mode: ro | rw }'),
        ),
      ),
    ],
    must('a mapping { path: ro | rw } or a list of { path, mode }'),
  );

const stringList = (what: string) =>
  z.array(z.string(must(what)).min(1, must(what)), must(`a list of ${what}s`));

export const requiresSchema = z
  .strictObject(
    {
      cpu: cpu().optional(),
      cpuWeight: z
        .int(must('an integer 1-10000'))
        .min(1, must('an integer 1-10000'))
        .max(10000, must('an integer 1-10000'))
        .optional()
        .meta({ description: 'Relative CPU share under contention (cgroup cpu.weight).' }),
      memory: size().optional(),
      pids: count(1).optional().meta({ description: 'Most processes and threads at once.' }),
      net: z
        .string(must('none | host | any | a network name'))
        .regex(NAME_RE, must('none | host | any | a network name'))
        .optional()
        .meta({
          description: 'none (empty namespace), host, any, or a named network. Omitted: the parent’s.',
        }),
      services: z
        .array(name(), must('a list of service names or kinds'))
        .optional()
        .meta({ description: 'Services (by name or kind) to be routed to this child.' }),
      listen: z
        .record(name(), z.union([hostPort(), unixSocket()], must(`${HOST_PORT_HELP} or { unix: path }`)))
        .optional()
        .meta({ description: 'Listening sockets opened by the supervisor and passed as LISTEN_FDS.' }),
      paths: pathsGrant().optional(),
      secrets: stringList('secret name').optional(),
      env: z
        .array(z.string().regex(ENV_NAME_RE, must('an environment variable name')), must('a list of names'))
        .optional()
        .meta({ description: 'Environment variables the parent must hand down.' }),
      privileges: z
        .array(
          z.string(must('a privilege')).superRefine((value, ctx) => {
            const parsed = parsePrivilege(value);
            if (!parsed.ok) ctx.addIssue({ code: 'custom', message: parsed.message });
          }),
          must('a list of privileges, e.g. [net_bind_service]'),
        )
        .optional()
        .meta({
          description:
            'root (uid 0 with the host filesystem writable), Linux capabilities (net_bind_service, setuid, ...), user:NAME, group:NAME. A process child holds only what it names (its user: and group: are implied); a node that names none passes on its parent’s.',
        }),
    },
    must('a mapping like { cpu: 0.5, memory: 256Mi, net: none }'),
  )
  .meta({ id: 'requires', title: 'requires', description: 'What this child asks of its parent.' });

const providesSchema = z
  .record(
    name(),
    z
      .strictObject(
        {
          unix: z.string(must('a socket path')).min(1).optional(),
          tcp: tcpEndpoint().optional(),
          kind: name().optional().meta({ description: 'What kind of service this is, e.g. postgres.' }),
        },
        must('{ unix: path } or { tcp: port }'),
      )
      .superRefine(exactlyOne(['unix', 'tcp'], 'a provided service'))
      .meta(oneOfMeta(['unix', 'tcp'])),
    must('a mapping of service name → { unix: path } | { tcp: port }'),
  )
  .meta({ id: 'provides', title: 'provides', description: 'Services this child offers, by name.' });

/** Names `net:` gives a meaning of its own; a named network may not take them. */
export const RESERVED_NETWORKS = ['none', 'host', 'any'] as const;
const NETWORK_HELP =
  "a network name (a letter or digit, then letters, digits, '_', '.' or '-'; not none, host or any)";

/**
 * `networks:` at the root: the named networks the tree holds, each made real as a network
 * namespace of its own with only loopback, shared by every process granted it (docs/capabilities.md).
 */
export const networksSchema = z
  .record(
    z
      .string(must(NETWORK_HELP))
      // A name (NAME_RE) that is not one of RESERVED_NETWORKS; a pattern, so the JSON Schema says it too.
      .regex(
        new RegExp(`^(?!(?:${RESERVED_NETWORKS.join('|')})$)${NAME_RE.source.slice(1)}`),
        must(NETWORK_HELP),
      ),
    z
      .union([z.null(), z.strictObject({}, must('{} (a network takes no options yet)'))], must('{}'))
      .transform(() => ({})),
    must('a mapping of network name → {}, like { lan: {} }'),
  )
  .meta({
    id: 'networks',
    title: 'networks',
    description:
      'Named networks the tree holds (root only): each is a network namespace with only loopback, shared by the processes granted it (`requires.net: NAME`, or `any`).',
  });

/** The root's `networks:` field alone, so errors carry its full path (`networks.lan`). */
export const rootNetworksSchema = z.object({ networks: networksSchema });

const policySchema = () =>
  z
    .strictObject(
      {
        never: z
          .array(z.array(z.string(), must('a list of capability names')).min(1), must('a list of lists'))
          .prefault([])
          .meta({ description: 'Capability combinations no descendant may hold together.' }),
        maxDepth: count(0).optional(),
        allowAdvisory: z
          .boolean(must('true or false'))
          .prefault(false)
          .meta({ description: 'Run even where the host cannot enforce a confinement.' }),
      },
      must('a mapping { never, maxDepth, allowAdvisory }'),
    )
    .prefault({});

const restart = () =>
  enumOf(RESTART_TYPES)
    .prefault('permanent')
    .meta({ description: 'permanent: always restarted; transient: only after a failure; temporary: never.' });
const significant = () =>
  z
    .boolean(must('true or false'))
    .prefault(false)
    .meta({ description: "Its exit may stop the parent (see the parent's autoShutdown)." });
const SHUTDOWN_HELP = "a duration like '5s', brutal (kill at once) or infinity (wait)";
const shutdown = (fallback: string) =>
  z
    .union(
      [
        z.enum(['brutal', 'infinity']),
        z.number().nonnegative(must(SHUTDOWN_HELP)),
        z.string().regex(new RegExp(DURATION_PATTERN), must(SHUTDOWN_HELP)),
      ],
      must(SHUTDOWN_HELP),
    )
    .transform((value): number | 'brutal' | 'infinity' =>
      value === 'brutal' || value === 'infinity' ? value : (parseDuration(value) as number),
    )
    .prefault(fallback)
    .meta({ description: `Time between the stop signal and SIGKILL. Default ${fallback}.` });

function nodeFields() {
  return {
    name: name(),
    strategy: enumOf(STRATEGIES).prefault('one_for_one'),
    intensity: count(0)
      .prefault(3)
      .meta({ description: 'Restarts allowed within `period` before the node gives up and escalates.' }),
    period: durationOf().prefault('5s'),
    autoShutdown: enumOf(AUTO_SHUTDOWNS)
      .prefault('never')
      .meta({ description: 'Whether the exit of significant children stops this node.' }),
    maxChildren: count(0).optional().meta({ description: 'Cap on children of a dynamic node.' }),
    requires: requiresSchema.optional(),
    provides: providesSchema.optional(),
    policy: policySchema(),
    admission: admissionSchema().optional(),
    reconcile: reconcileSchema().optional(),
    restart: restart(),
    shutdown: shutdown('infinity'),
    significant: significant(),
  };
}

/**
 * `reconcile:` on a node, for its subtree (keys left out are inherited from the nearest ancestor
 * that sets them): whether the daemon acts on `reconcile_required` itself, and its guardrails.
 * Cron expressions are checked here, so a bad one is reported at its `file:line:col`.
 */
function reconcileSchema() {
  const cron = z.string(must("a cron expression like '0 2 * * *'")).superRefine((value, ctx) => {
    try {
      parseCron(value);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: `must be a cron expression: ${(err as Error).message}` });
    }
  });
  const window = () =>
    z
      .array(
        z.strictObject(
          {
            cron: cron.meta({ description: 'Minute hour day-of-month month day-of-week, in UTC.' }),
            duration: durationOf()
              .refine((ms) => ms >= 60_000 && ms <= MAX_WINDOW_MS, {
                message: 'must be between 1m and 7d (a window opens on a minute)',
              })
              .meta({ description: 'How long each opening lasts (1m to 7d).' }),
          },
          must("a mapping { cron, duration }, like { cron: '0 2 * * *', duration: 1h }"),
        ),
        must('a list of { cron, duration }'),
      )
      .optional();
  return z
    .strictObject(
      {
        mode: z.enum(['recommend', 'auto'], must('one of recommend | auto')).optional().meta({
          description:
            'recommend (default): journal what to do; auto: the daemon does what is required (restart a missing child, rewrite a drifted limit) within the guardrails.',
        }),
        maxActions: count(1)
          .optional()
          .meta({ description: 'Automatic actions at most per `per` in this subtree (default 3).' }),
        per: durationOf()
          .refine((ms) => ms > 0, { message: 'must be more than 0' })
          .optional()
          .meta({ description: 'The rate limit window (default 10m).' }),
        allow: window().meta({
          description: 'When given, automatic actions only inside one of these windows.',
        }),
        deny: window().meta({ description: 'No automatic action inside any of these windows.' }),
        checkEvery: durationOf()
          .refine((ms) => ms >= 100, { message: 'must be at least 100ms' })
          .optional()
          .meta({
            description:
              'How often cgroup limits are read back in an auto subtree (cgroupfs sends no event; default 30s).',
          }),
      },
      must('a mapping { mode, maxActions, per, allow, deny, checkEvery }'),
    )
    .meta({ description: 'Reconciliation of this subtree: mode (recommend | auto) and its guardrails.' });
}

/**
 * `admission:` on a node: present (even `{}`) opens it to children admitted at run time
 * (`captree admit`, `POST /v1/nodes/{path}/children`). `template` is a partial process merged
 * under every request; it is validated here as one and kept as written (see `parse.ts`).
 */
function admissionSchema() {
  const { name: _name, command: _command, ...fields } = processFields();
  return z
    .strictObject(
      {
        maxChildren: count(0)
          .optional()
          .meta({ description: 'Children admitted at run time at most (static children do not count).' }),
        maxGrant: z
          .strictObject(
            { cpu: cpu().optional(), memory: size().optional(), pids: count(0).optional() },
            must('a mapping { cpu, memory, pids }'),
          )
          .optional()
          .meta({ description: 'The most one request may reserve of each quantity.' }),
        template: z
          .strictObject(fields, must('a mapping of process fields (env, requires, restart, ...)'))
          .partial()
          .optional()
          .meta({ description: 'Process fields merged under every request (the request wins).' }),
        tokens: z
          .array(
            z.strictObject(
              {
                name: name(),
                file: z
                  .string(must('a file path'))
                  .min(1)
                  .meta({ description: "Relative to the manifest's directory; its content is the token." }),
              },
              must('a mapping { name, file }'),
            ),
            must('a list of { name, file }'),
          )
          .optional()
          .meta({
            description:
              'When set, requests must carry one of these tokens (Authorization: Bearer); a token admits into this node and its subtree only.',
          }),
      },
      must('a mapping (use {} to open the node to `captree admit`)'),
    )
    .meta({
      description: 'Present: the node accepts children at runtime (`captree admit`, `captree shell`).',
    });
}

function processFields() {
  return {
    name: name(),
    command: command(),
    env: z
      .record(
        z.string().regex(ENV_NAME_RE, must('an environment variable name')),
        z.union([z.string(), z.number(), z.boolean()], must('a string, number or boolean')),
        must('a mapping NAME: value'),
      )
      .prefault({}),
    envFile: z
      .union([z.string().min(1), z.array(z.string().min(1))], must('a file or a list of files'))
      .optional()
      .meta({
        description: 'Files of NAME=value lines (relative to the manifest) merged under env, which wins.',
      }),
    inheritEnv: z
      .union(
        [z.literal(true), z.array(z.string().regex(ENV_NAME_RE, must('an environment variable name')))],
        must('a list of variable names or true'),
      )
      .prefault([])
      .meta({
        description: "Variables taken from captree's environment beyond PATH, LANG, TZ, HOME; true: all.",
      }),
    cwd: z
      .string(must('a directory path'))
      .min(1)
      .optional()
      .meta({ description: "Relative to the manifest's directory." }),
    user: z.union([z.string().min(1), count(0)], must('a user name or uid')).optional(),
    group: z.union([z.string().min(1), count(0)], must('a group name or gid')).optional(),
    restart: restart(),
    shutdown: shutdown('5s'),
    stopSignal: z
      .string(must(`a signal name like SIGTERM`))
      .transform((signal) => (signal.startsWith('SIG') ? signal : `SIG${signal}`).toUpperCase())
      .pipe(enumOf(SIGNALS))
      .prefault('SIGTERM'),
    killMode: enumOf(KILL_MODES).prefault('control-group').meta({
      description:
        'Who gets stopSignal: control-group, every process of the child (then SIGKILL to what is left after shutdown); mixed, the main process only (the rest is SIGKILLed once it is gone). As systemd KillMode=.',
    }),
    pidFile: z.string(must('a file path')).min(1).optional().meta({
      description:
        "A daemon that forks into the background writes its main pid here (relative to cwd); its death is then the child's exit. As systemd PIDFile=.",
    }),
    significant: significant(),
    backoff: backoff().prefault({}),
    permanentExitCodes: z
      .array(z.int().min(0).max(255), must('a list of exit codes 0-255'))
      .prefault([125])
      .meta({ description: 'Exit codes that mean "do not restart me" whatever the restart type.' }),
    ready: ready().optional(),
    liveness: liveness().optional(),
    watchdog: durationOf().optional().meta({ description: 'Restart unless WATCHDOG=1 arrives this often.' }),
    logs: z
      .strictObject(
        {
          maxSize: size().prefault('10Mi'),
          keep: count(0).prefault(3).meta({ description: 'Rotated files kept.' }),
        },
        must('a mapping { maxSize, keep }'),
      )
      .prefault({}),
    requires: requiresSchema.optional(),
    provides: providesSchema.optional(),
    supervisor: z.boolean(must('true or false')).prefault(false).meta({
      description:
        'The process supervises children of its own: it gets a private channel to its parent (CAPTREE_CHANNEL), its grant (CAPTREE_GRANT) and its delegated cgroup subtree (CAPTREE_CGROUP). See docs/protocol.md.',
    }),
    priority: enumOf(PRIORITIES).prefault('normal').meta({
      description:
        'Who gives back first when a sibling asks for more: low before normal before high (docs/protocol.md).',
    }),
    reload: reload().optional(),
  };
}

/** A process, as the loader validates it. */
export const processSchema = z.strictObject(processFields(), must('a mapping'));
/** A node, as the loader validates it: children stay opaque for the walker in `parse.ts`. */
export const nodeSchema = z.strictObject(
  { ...nodeFields(), children: z.array(z.unknown(), must('a list of children')).prefault([]) },
  must('a mapping'),
);

export type ProcessInput = z.output<typeof processSchema>;
export type NodeInput = z.output<typeof nodeSchema>;

/** The recursive schema editors and other tools see; built from the same field definitions. */
export function manifestJsonSchema(): Record<string, unknown> {
  const processDef = z
    .strictObject(processFields())
    .meta({ id: 'process', title: 'process', description: 'A child with `command`: an OS process.' });
  const nodeDef = z
    .strictObject({
      ...nodeFields(),
      get children() {
        return z.array(childDef);
      },
    })
    .meta({ id: 'node', title: 'node', description: 'A child with `children`: a supervisor.' });
  const childDef: z.ZodType = z.union([processDef, nodeDef]).meta({ id: 'child', title: 'child' });
  const root = z
    .strictObject({
      ...nodeFields(),
      networks: networksSchema.optional(),
      children: z.array(childDef).optional(),
    })
    .meta({
      title: 'captree manifest',
      description:
        'One supervision tree. The root is a node; a child with `command` is a process, with `children` a node.',
    });
  return z.toJSONSchema(root, { io: 'input', target: 'draft-7', unrepresentable: 'any' }) as Record<
    string,
    unknown
  >;
}

/** The committed `schema/captree.schema.json`, byte for byte. */
export function manifestJsonSchemaText(): string {
  return `${JSON.stringify(manifestJsonSchema(), null, 2)}\n`;
}
