/**
 * The supervision tree of an AI-agent system, after "Supervision trees for AI agents": a root
 * supervisor with three subsystems and a provider failure domain, written as an application
 * supervisor (`supervisor: true` in captree.yaml), so `captree up` runs it inside its budget.
 *
 *   /agents/sup                      one_for_one
 *   ├── models                       the fake model providers (primary, backup) on loopback
 *   ├── tools                        one_for_one
 *   │   └── scraper                  an OS process: crashes on unexpected HTML, restarted alone
 *   ├── tasks                        task management
 *   │   └── crew                     dynamic; the provider failure domain: agents are workers
 *   │       ├── research, stuck, summary   (maxSteps 20, each resumes from its checkpoint)
 *   └── comms
 *       └── http                     GET /status, POST /tasks on 127.0.0.1 (an ephemeral port)
 *
 * The failover is OTP escalation: when the primary provider fails for every agent, the agents'
 * crashes exceed crew's intensity, crew gives up, and `tasks` restarts it; crew's driver sees
 * that its predecessor gave up and starts the agents with the next provider. The agents resume
 * from the checkpoints they saved, which outlive crew's restarts.
 */
import { createServer } from 'node:http';
import { join } from 'node:path';
import {
  type CheckpointStore,
  type ChildDriver,
  type ChildSpec,
  describeExit,
  fromEnvironment,
  node,
  processChild,
  Supervisor,
  type SupervisorEvent,
  task,
  worker,
} from '../../src/index.ts';
import type { AgentData, AgentTask, Progress } from './agent.ts';
import { provider, providerTask } from './providers.ts';

const me = fromEnvironment();
const runtime = await me.runtime();
const here = import.meta.dirname;
const scraperSocket = join(runtime.logsDir, 'scraper.sock');

const providers = [provider('acme'), provider('backup')];
const agentTasks: AgentTask[] = [
  { id: 'research', steps: 4, pages: ['home', 'promo', 'pricing', 'about'] },
  { id: 'stuck', steps: 5, stuckAt: 2 },
  { id: 'summary', steps: 6 },
];

// Checkpoints live here, above crew, so they outlive crew's restarts (the daemon would use a file).
const saved = new Map<string, unknown>();
const checkpoints: CheckpointStore = {
  load: (path) => (saved.has(path) ? { state: saved.get(path) } : undefined),
  save: (path, state) => saved.set(path, state),
};
let current = 0;

function agent(t: AgentTask): ChildSpec {
  const data: AgentData = {
    task: t,
    provider: { name: providers[current]!.name, url: providers[current]!.url },
    scraperSocket,
  };
  return {
    id: t.id,
    restart: 'transient',
    maxSteps: 20,
    shutdown: 2000,
    driver: worker(new URL('./agent.ts', import.meta.url), {
      data,
      resourceLimits: { maxOldGenerationSizeMb: 64 },
    }),
  };
}

/** The failure domain: a dynamic node that moves to the next provider when its predecessor gave up. */
const crew: ChildDriver = {
  kind: 'node',
  start(ctx, events) {
    const previous = ctx.checkpoint?.state as { provider: number } | undefined;
    current = previous?.provider ?? 0;
    if (ctx.checkpoint?.previousExit?.kind === 'escalated') {
      current = (current + 1) % providers.length;
      say(
        `${ctx.path}: provider ${providers[current]!.name} replaces ${providers[(current + providers.length - 1) % providers.length]!.name} for every agent`,
      );
    }
    ctx.save({ provider: current });
    const spec = {
      name: 'crew',
      strategy: 'dynamic' as const,
      intensity: 2,
      period: 10_000,
      children: agentTasks.map(agent),
    };
    return node(spec, { checkpoints }).start(ctx, events);
  },
};

function status() {
  return {
    provider: providers[current]!.name,
    tasks: agentTasks.map((t) => ({
      id: t.id,
      steps: t.steps,
      ...(saved.get(`${me.path}/tasks/crew/${t.id}`) as Progress | undefined),
    })),
    tree: sup
      .tree()
      .map((e) => ({ path: e.path, kind: e.kind, state: e.state, restarts: e.restarts, pid: e.pid })),
  };
}

const comms = task(
  (ctx) =>
    new Promise<void>((resolve) => {
      const server = createServer((req, res) => {
        if (req.method === 'GET' && req.url === '/status') {
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(status()));
          return;
        }
        if (req.method === 'POST' && req.url === '/tasks') {
          let body = '';
          req.on('data', (d) => (body += d));
          req.on('end', () => {
            try {
              const t = JSON.parse(body) as AgentTask;
              if (typeof t.id !== 'string' || !Number.isInteger(t.steps))
                throw new Error('expected {"id": "...", "steps": N}');
              const spec = agent({ id: t.id, steps: t.steps });
              const crewNow = sup.nested('tasks')?.nested('crew');
              if (!crewNow) throw new Error('the crew is restarting; try again');
              crewNow.addChild(spec).then(
                // Listed for crew's next start too (a restart rebuilds it from this list).
                () => {
                  agentTasks.push({ id: t.id, steps: t.steps });
                  res.writeHead(201).end();
                },
                (err: Error) => res.writeHead(409).end(err.message),
              );
            } catch (err) {
              res.writeHead(400).end((err as Error).message);
            }
          });
          return;
        }
        res.writeHead(404).end();
      });
      server.listen(0, '127.0.0.1', () => {
        const addr = server.address();
        if (addr && typeof addr === 'object') say(`comms: http://127.0.0.1:${addr.port}/status`);
        ctx.ready();
      });
      ctx.signal.addEventListener('abort', () => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
    }),
  { readiness: 'manual' },
);

const sup = new Supervisor(
  {
    name: 'agents',
    strategy: 'one_for_one',
    intensity: 3,
    period: 10_000,
    children: [
      {
        id: 'models',
        driver: node({
          name: 'models',
          children: [
            { id: 'acme', driver: providerTask(providers[0]!, 12) },
            { id: 'backup', driver: providerTask(providers[1]!) },
          ],
        }),
      },
      {
        id: 'tools',
        driver: node({
          name: 'tools',
          intensity: 5,
          period: 10_000,
          children: [
            processChild(runtime, {
              id: 'scraper',
              command: [process.execPath, join(here, 'scraper.js')],
              env: { SCRAPER_SOCKET: scraperSocket },
              ready: { type: 'notify', fd: 3, timeout: 10_000 },
            }),
          ],
        }),
      },
      {
        id: 'tasks',
        driver: node({
          name: 'tasks',
          intensity: 3,
          period: 60_000,
          children: [{ id: 'crew', driver: crew }],
        }),
      },
      { id: 'comms', driver: node({ name: 'comms', children: [{ id: 'http', driver: comms }] }) },
    ],
  },
  { path: me.path },
);

/** One line for the parent's journal (`captree events`) and for this child's log. */
function say(text: string): void {
  console.log(text);
  me.channel.status(text);
}

let finished = false;
sup.subscribe((e: SupervisorEvent) => {
  if (e.type === 'exited' || e.type === 'start_failed' || e.type === 'permanent_failure')
    say(`${e.path} ${e.type}: ${describeExit(e.reason)}`);
  else if (e.type === 'restarting') say(`${e.path} restarting (restart ${e.restarts})`);
  else if (e.type === 'escalated') say(`${e.path} escalated: ${describeExit(e.reason)}`);
  else if (e.type === 'started' && e.pid !== null) say(`${e.path} started pid ${e.pid}`);
  else if (e.type === 'checkpoint' && !finished) {
    const s = status();
    const p = s.tasks.find((t) => e.path.endsWith(`/${t.id}`));
    if (p?.step !== undefined) say(`${e.path} checkpoint: step ${p.step}/${p.steps}${p.done ? ' done' : ''}`);
    if (s.tasks.every((t) => t.done)) {
      finished = true;
      say(`all ${s.tasks.length} tasks done with ${s.provider}`);
    }
  }
});

let stopping = false;
const stop = async (code: number) => {
  if (stopping) return;
  stopping = true;
  await sup.stop();
  await runtime.close();
  me.channel.close();
  process.exit(code);
};
me.channel.on('shutdown', () => void stop(0));
process.on('SIGTERM', () => void stop(0));
void sup.whenStopped().then(() => stop(1));

await sup.start();
me.channel.ready();
