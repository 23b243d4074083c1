/**
 * What watching a 1,000-child tree costs, measured through the product as users run it (the
 * built bin, `captree up --detach --web 127.0.0.1:0`), in one run:
 * - the daemon's wake-ups per second with no client (context switches of all its threads);
 * - `GET /metrics` on the control socket: latency per scrape and the daemon CPU each costs;
 * - `captree top -d 1` in tmux: CPU of top and the daemon together, as % of one core, in tree
 *   order (the rows that fit the terminal are read) and sorted by cpu (every row's cpu is read);
 * - the dashboard in headless Chromium: first render of all rows, and `kill -9` of a child
 *   reflected in its row, five times: from the kill to the daemon journaling the restart, and
 *   from there to the page applying it (both stamped, the daemon's record and the page's row);
 * - the daemon with the dashboard open and the page hidden (no figures are fetched).
 * Each line ends with the load average then: on a shared machine the figures move with it.
 *
 * Run: `npm run build && node bench/observe.ts [children=1000] [seconds=20]`.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const N = Number(process.argv[2] ?? 1000);
const SECONDS = Number(process.argv[3] ?? 20);
const bin = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));

/** CPU time (ns) and context switches of every thread of `pid`. */
function threads(pid: number): { cpuNs: number; switches: number } {
  let cpuNs = 0;
  let switches = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      cpuNs += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      const status = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
      for (const m of status.matchAll(/^(?:non)?voluntary_ctxt_switches:\s+(\d+)$/gm))
        switches += Number(m[1]);
    } catch {
      // a thread that just ended
    }
  }
  return { cpuNs, switches };
}

async function over<T>(ms: number, pids: number[], during?: () => Promise<T>) {
  const before = pids.map(threads);
  const t0 = performance.now();
  await (during ? during() : new Promise((r) => setTimeout(r, ms)));
  const elapsed = performance.now() - t0;
  const after = pids.map(threads);
  const cpuNs = after.reduce((a, x, i) => a + x.cpuNs - (before[i]?.cpuNs ?? 0), 0);
  const switches = after.reduce((a, x, i) => a + x.switches - (before[i]?.switches ?? 0), 0);
  const each = after.map((x, i) => (x.cpuNs - (before[i]?.cpuNs ?? 0)) / 1e6);
  return { elapsedMs: elapsed, cpuMs: cpuNs / 1e6, each, perSecond: (switches * 1000) / elapsed };
}

function scrape(socket: string): Promise<{ ms: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    http
      .get({ socketPath: socket, path: '/metrics', agent: false }, (res) => {
        let bytes = 0;
        res.on('data', (c: Buffer) => {
          bytes += c.length;
        });
        res.on('end', () => resolve({ ms: performance.now() - t0, bytes }));
      })
      .on('error', reject);
  });
}

function load(): string {
  return `(load ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')})`;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

function p95(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * 0.95))] as number;
}

async function main() {
  if (!existsSync(bin)) throw new Error('build first: npm run build');
  const dir = mkdtempSync(join(tmpdir(), 'captree-bench-observe-'));
  const name = `obs${process.pid}`;
  const tmuxSocket = `captree-bench-observe-${process.pid}`;
  writeFileSync(
    join(dir, 'captree.yaml'),
    [
      `name: ${name}`,
      'intensity: 10',
      'requires: { memory: 4Gi, pids: 16384 }',
      'children:',
      ...Array.from(
        { length: N },
        (_, i) => `  - { name: c${i}, command: [sleep, infinity], requires: { pids: 8 } }`,
      ),
    ].join('\n'),
  );
  const cli = (...args: string[]) =>
    execFileSync(process.execPath, [bin, ...args], {
      cwd: dir,
      stdio: 'pipe',
      env: { ...process.env, NO_COLOR: '1' },
    }).toString();
  const profile = mkdtempSync(join(tmpdir(), 'captree-bench-chromium-'));
  try {
    const up = cli('up', '--detach', '--web', '127.0.0.1:0');
    const url = /dashboard: (\S+)/.exec(up)?.[1] as string;
    const daemon = Number(readFileSync(join(dir, '.captree', 'daemon.pid'), 'utf8').trim());
    const socket = join(dir, '.captree', 'control.sock');
    console.log(`captree ${N} children, daemon pid ${daemon}`);
    await new Promise((r) => setTimeout(r, 2000));

    const idle = await over((SECONDS * 1000) / 2, [daemon]);
    console.log(
      `no client: ${idle.perSecond.toFixed(2)} daemon wake-ups/s, ${((idle.cpuMs / idle.elapsedMs) * 100).toFixed(3)}% of a core ${load()}`,
    );

    await scrape(socket); // opens the counter files
    const times: number[] = [];
    let bytes = 0;
    const scrapes = 50;
    const cost = await over(0, [daemon], async () => {
      for (let i = 0; i < scrapes; i++) {
        const r = await scrape(socket);
        times.push(r.ms);
        bytes = r.bytes;
      }
    });
    console.log(
      `/metrics: median ${median(times).toFixed(1)} ms, p95 ${p95(times).toFixed(1)} ms per scrape (${(bytes / 1024).toFixed(0)} KiB); ` +
        `daemon CPU ${(cost.cpuMs / scrapes).toFixed(1)} ms per scrape ${load()}`,
    );

    execFileSync(
      'tmux',
      [
        '-L',
        tmuxSocket,
        'new-session',
        '-d',
        '-x',
        '200',
        '-y',
        '50',
        process.execPath,
        bin,
        'top',
        '-d',
        '1',
      ],
      {
        cwd: dir,
      },
    );
    const topPid = Number(
      execFileSync('tmux', ['-L', tmuxSocket, 'display', '-p', '#{pane_pid}']).toString().trim(),
    );
    await new Promise((r) => setTimeout(r, 2000));
    for (const sort of ['tree', 'cpu']) {
      if (sort === 'cpu') {
        execFileSync('tmux', ['-L', tmuxSocket, 'send-keys', 'c']);
        await new Promise((r) => setTimeout(r, 2000));
      }
      const topCost = await over(SECONDS * 1000, [daemon, topPid]);
      const pct = (ms: number) => ((ms / topCost.elapsedMs) * 100).toFixed(2);
      console.log(
        `top -d 1, sorted by ${sort}: ${pct(topCost.cpuMs)}% of a core for top + daemon (daemon ${pct(topCost.each[0] ?? 0)}%, top ${pct(topCost.each[1] ?? 0)}%) ${load()}`,
      );
    }
    execFileSync('tmux', ['-L', tmuxSocket, 'kill-server']);

    const browser = await chromium.launchPersistentContext(profile, {
      executablePath: '/usr/bin/chromium',
      viewport: { width: 1400, height: 900 },
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    const page = await browser.newPage();
    const t0 = performance.now();
    await page.goto(url);
    await page.waitForSelector(`body[data-rendered="${N + 1}"]`);
    const firstRender = performance.now() - t0;
    await page.waitForSelector('#link.live');
    const rows = JSON.parse(cli('ps', '--json')) as { path: string; pid: number | null }[];
    const toDaemon: number[] = [];
    const toPage: number[] = [];
    for (let k = 0; k < 5; k++) {
      const child = `/${name}/c${Math.floor((N * (k + 1)) / 6)}`;
      const victim = rows.find((r) => r.path === child);
      const row = `tr[data-path="${child}"]`;
      // Into view, as a user looking at it would have it (the page reads figures of rows in view).
      await page.locator(row).scrollIntoViewIfNeeded();
      const killedAt = Date.now();
      process.kill(victim?.pid as number, 'SIGKILL');
      await page.waitForSelector(`${row}[data-restarts="1"]`);
      // The page stamps the event's journal time and when it applied it (one machine, one clock).
      const eventTs = Number(await page.getAttribute(row, 'data-restart-ts'));
      const appliedAt = Number(await page.getAttribute(row, 'data-restart-shown'));
      toDaemon.push(eventTs - killedAt);
      toPage.push(appliedAt - eventTs);
      await new Promise((r) => setTimeout(r, 1300));
    }
    const total = toDaemon.map((d, i) => d + (toPage[i] ?? 0));
    console.log(
      `dashboard: first render of ${N + 1} rows ${firstRender.toFixed(0)} ms; kill -9 reflected in ${median(total).toFixed(0)} ms median, ${Math.max(...total).toFixed(0)} ms max of 5 ` +
        `(kill to the daemon's journal ${median(toDaemon).toFixed(0)} ms, journal to the page ${median(toPage).toFixed(0)} ms median) ${load()}`,
    );
    const open = await over((SECONDS * 1000) / 2, [daemon]);
    console.log(
      `dashboard open and visible (1 Hz figures of the rows in view): daemon ${((open.cpuMs / open.elapsedMs) * 100).toFixed(2)}% of a core ${load()}`,
    );
    // What the page sees when its tab is hidden (headless has no tabs to switch).
    await page.evaluate(() => {
      // biome-ignore lint/suspicious/noExplicitAny: the page's document
      const doc = (globalThis as any).document;
      Object.defineProperty(doc, 'hidden', { value: true, configurable: true });
      doc.dispatchEvent(new Event('visibilitychange'));
    });
    // The keep-alive connections of the visible phase close within 5 s: measured after that.
    await new Promise((r) => setTimeout(r, 6000));
    const hidden = await over((SECONDS * 1000) / 2, [daemon]);
    console.log(
      `dashboard open, page hidden: daemon ${hidden.perSecond.toFixed(2)} wake-ups/s, ${((hidden.cpuMs / hidden.elapsedMs) * 100).toFixed(3)}% of a core ${load()}`,
    );
    await browser.close();
  } finally {
    try {
      cli('down');
    } catch (err) {
      console.error(`down failed: ${(err as Error).message}`);
    }
    try {
      execFileSync('tmux', ['-L', tmuxSocket, 'kill-server'], { stdio: 'ignore' });
    } catch {
      // already gone
    }
    rmSync(dir, { recursive: true, force: true });
    rmSync(profile, { recursive: true, force: true });
  }
}

await main();
