/**
 * `captree admit NODE SPEC.yaml`: asks NODE's admission endpoint to admit the child described in
 * SPEC.yaml (one child in manifest form) and start it; `captree revoke PATH` (revoke.ts) undoes it.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import { urlPath } from '../../daemon/client.ts';
import { fieldPath, type ManifestSource, positionOf } from '../../manifest/index.ts';
import {
  CliError,
  type Command,
  connect,
  jsonOption,
  normalizePath,
  remoteOptions,
  replyError,
  stateOption,
  tokenFromFile,
} from '../cli.ts';

interface ApiReason {
  path?: string;
  field?: string;
  message?: string;
}

function show(n: number | null | undefined, unit: 'cpu' | 'memory' | 'pids'): string {
  if (n === null || n === undefined) return '-';
  if (unit !== 'memory') return String(n);
  for (const [u, size] of [
    ['Gi', 2 ** 30],
    ['Mi', 2 ** 20],
    ['Ki', 2 ** 10],
  ] as const)
    if (n >= size && n % size === 0) return `${n / size}${u}`;
  return String(n);
}

export const admit: Command = {
  name: 'admit',
  summary: 'admit a child into a node open to admission, and start it',
  usage:
    'captree admit NODE SPEC.yaml [--id REQUEST_ID] [--token-file FILE] [--json] [--state DIR | --url URL]',
  help: `
Asks NODE (a node whose manifest entry has 'admission:') to admit the child described in
SPEC.yaml, one child in manifest form (name, command, env, restart: temporary | transient,
requires, provides, ready, ...), and waits until it runs. The node's admission template is
merged under the spec; the node's limits, its remaining budget and its capabilities decide.
Prints the child's path and its grant (cpu cores, memory, pids reserved; '-' = shares the
node's remainder). A rejection prints every reason, one per line, at its place in SPEC.yaml,
and exits 1.

Retrying with the same --id never admits twice: the answer given the first time is returned
(default: a fresh id, printed). --token-file sends the file's content as the bearer token
when the node (or a node above it) declares 'tokens'. With --url (a tree served on TCP by
'captree up --listen'), the token is required: the node's admission token (it admits into
that node and below only) or the admin token.

The child lives until 'captree revoke PATH', until it exits for good (temporary: any exit;
transient: a normal one), or until the tree goes down.

Example:
  captree admit /shop/dev job.yaml --id job-42
  captree admit /site/dev job.yaml --token-file dev.token --json
  captree admit /site/dev job.yaml --url http://10.0.0.5:7070 --token-file dev.token`,
  options: {
    id: { type: 'string', description: 'request id: a retry with the same id admits nothing twice' },
    ...jsonOption,
    ...stateOption,
    ...remoteOptions,
  },
  positionals: [2, 2],
  async run({ values, positionals }, io) {
    const node = normalizePath(positionals[0]!);
    const file = resolve(io.cwd, positionals[1]!);
    const requestId = typeof values.id === 'string' ? values.id : `cli-${randomUUID()}`;
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new CliError(`cannot read ${positionals[1]}: ${(err as Error).message}`);
    }
    const lineCounter = new LineCounter();
    const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
    if (doc.errors.length > 0) {
      for (const e of doc.errors) {
        const at = lineCounter.linePos(e.pos[0]);
        io.stderr.write(`${positionals[1]}:${at.line}:${at.col}: YAML: ${e.message.split('\n')[0]}\n`);
      }
      return 1;
    }
    const spec = doc.toJS();
    if (typeof spec !== 'object' || spec === null || Array.isArray(spec))
      throw new CliError(`${positionals[1]} must hold one child as a mapping (name, command, ...)`);
    const token = tokenFromFile(values, io);
    const { client } = await connect(values, io);
    // On TCP the client presents the token on every request; on the socket it is added here.
    const reply = await client.request(
      'POST',
      `/v1/nodes/${urlPath(node)}/children`,
      { requestId, spec },
      token === undefined || client.remote ? {} : { authorization: `Bearer ${token}` },
    );
    if (values.json) {
      io.stdout.write(`${JSON.stringify(reply.body ?? { status: reply.status }, null, 2)}\n`);
      return reply.status === 201 ? 0 : 1;
    }
    const body = reply.body ?? {};
    if (reply.status === 201) {
      const g = (body.grant ?? {}) as { cpu?: number | null; memory?: number | null; pids?: number | null };
      io.stdout.write(
        `admitted ${String(body.path)} (cpu ${show(g.cpu, 'cpu')}, memory ${show(g.memory, 'memory')}, pids ${show(g.pids, 'pids')}; request ${requestId})\n`,
      );
      return 0;
    }
    const reasons = Array.isArray(body.reasons) ? (body.reasons as ApiReason[]) : [];
    if (reasons.length === 0) throw replyError(reply);
    const source: ManifestSource = {
      file: positionals[1]!,
      dir: dirname(file),
      doc,
      lineCounter,
      nodes: new Map(),
    };
    for (const r of reasons) {
      // As the loader does: an unknown field is shown at its key, anything else at its value.
      const which = (r.message ?? '').startsWith('unknown field') ? 'key' : 'value';
      const { line, col } = positionOf(source, fieldPath(r.field ?? ''), which);
      const subject = [r.path, r.field].filter((p) => p).join(' ');
      io.stderr.write(
        `${positionals[1]}:${line}:${col}: ${subject ? `${subject}: ` : ''}${r.message ?? ''}\n`,
      );
    }
    return 1;
  },
};
