/**
 * An AI agent, as a worker child (its own thread): works through its task one step at a time,
 * asking the model provider it was given and, for research tasks, the scraper tool; after each
 * step it saves a checkpoint, so a replacement resumes from the last successful step.
 *
 * The `stuck` task's first instance falls into an infinite loop at step `stuckAt` (still counting
 * steps, as an agent loop does): its step limit ends it, and the replacement, told why its
 * predecessor died (`ctx.previousExit.reason === 'step_limit'`), takes a careful approach.
 */
import { request } from 'node:http';
import type { WorkerContext } from '../../src/index.ts';

export interface AgentTask {
  id: string;
  steps: number;
  pages?: string[];
  stuckAt?: number;
}

export interface AgentData {
  task: AgentTask;
  provider: { name: string; url: string };
  scraperSocket: string;
}

export interface Progress {
  step: number;
  careful: boolean;
  notes: string[];
  log: string[];
  done: boolean;
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function ask(provider: AgentData['provider'], prompt: string, signal: AbortSignal): Promise<string> {
  const res = await fetch(`${provider.url}/complete`, {
    method: 'POST',
    body: JSON.stringify({ prompt }),
    signal,
  });
  // A provider failure is not the agent's to handle: it crashes, and its supervisors decide.
  if (!res.ok) throw new Error(`model provider ${provider.name} answered ${res.status}`);
  return ((await res.json()) as { text: string }).text;
}

function scrapeOnce(socketPath: string, page: string): Promise<{ title: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path: `/scrape?page=${page}` }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () =>
        res.statusCode === 200 ? resolve(JSON.parse(body)) : reject(new Error(`${res.statusCode}`)),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

/** The scraper may be restarting: wait briefly for it, and give up on a page it cannot read. */
async function scrape(socketPath: string, page: string): Promise<string> {
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      return (await scrapeOnce(socketPath, page)).title;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // It died on this very page (the connection dropped): skip the page, use what we have.
      if (code === 'ECONNRESET' || (err as Error).message === 'socket hang up') return `${page}: unreadable`;
      await pause(100); // ENOENT / ECONNREFUSED: not back yet
    }
  }
  return `${page}: scraper unavailable`;
}

export default async (ctx: WorkerContext) => {
  const { task, provider, scraperSocket } = ctx.data as AgentData;
  const saved = ctx.checkpoint.load() as Progress | undefined;
  const prev = ctx.previousExit;
  const why =
    prev === undefined
      ? ''
      : prev.kind === 'crashed'
        ? ` after ${prev.reason ?? 'crash'}`
        : ` after ${prev.kind}`;
  const p: Progress = saved ?? { step: 0, careful: false, notes: [], log: [], done: false };
  if (p.done) return;
  if (prev?.kind === 'crashed' && prev.reason === 'step_limit') p.careful = true;
  p.log.push(`start at step ${p.step} with ${provider.name}${why}`);
  ctx.checkpoint.save(p);
  while (p.step < task.steps) {
    ctx.step();
    if (task.stuckAt === p.step && !p.careful) for (;;) ctx.step(); // the bug: a loop that never ends
    const page = task.pages?.[p.step];
    const seen = page ? await scrape(scraperSocket, page) : '';
    const answer = await ask(provider, `${task.id} step ${p.step} ${seen}`, ctx.signal);
    p.notes.push(page ? `${seen} → ${answer}` : answer);
    p.step++;
    ctx.checkpoint.save(p);
  }
  p.done = true;
  ctx.checkpoint.save(p);
};
