/**
 * The dashboard end to end, as a user runs it: `captree up --detach --web 127.0.0.1:0` on a copy
 * of the demo, the URL it prints opened in headless Chromium (Debian's, driven by playwright-core;
 * nothing downloaded), the tree seen with its states and bars, a child killed with `kill -9` and
 * its restart seen live through the event stream, a log tail, and a screenshot.
 * CAPTREE_SCREENSHOT=FILE keeps the screenshot (docs/dashboard.png is made so).
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type BrowserContext, chromium } from 'playwright-core';
import { captree, demoCopy, psJson } from '../cli/helpers.ts';
import { skipOrFail } from '../support/host.ts';

const CHROMIUM = '/usr/bin/chromium';

describe('dashboard in headless Chromium (captree up --detach --web)', () => {
  let dir = '';
  let name = '';
  let url = '';
  let browser: BrowserContext | undefined;
  const profile = mkdtempSync(join(tmpdir(), 'captree-chromium-'));

  before(async () => {
    if (!existsSync(CHROMIUM)) return;
    ({ dir, name } = await demoCopy());
    const up = await captree(['up', '--detach', '--web', '127.0.0.1:0'], dir);
    assert.equal(up.code, 0, up.stderr);
    const m = /dashboard: (http:\/\/127\.0\.0\.1:\d+\/ui\/\?token=[0-9a-f]+)/.exec(up.stdout);
    assert.ok(m, up.stdout);
    url = m[1] as string;
    // The dashboard's listener is not the control API's --listen.
    assert.doesNotMatch(up.stdout, /control API also on/);
    // An empty profile of our own: launchPersistentContext passes it as --user-data-dir.
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      viewport: { width: 1400, height: 520 },
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
  });

  after(async () => {
    await browser?.close();
    if (dir) {
      await captree(['down'], dir);
      rmSync(dir, { recursive: true, force: true });
    }
    rmSync(profile, { recursive: true, force: true });
  });

  test('the tree live: kill -9 of a child is reflected as a restart, logs tail, screenshot', async (t) => {
    if (!browser) return skipOrFail(t, `no ${CHROMIUM} (apt-get install -y chromium)`);
    const page = await browser.newPage();
    await page.goto(url);
    // The login redirect drops the token from the address bar.
    assert.equal(new URL(page.url()).search, '');
    const root = `/${name}`;
    await page.waitForSelector(`tr[data-path="${root}/db"][data-state="ready"]`);
    await page.waitForSelector('#link.live');
    // The bars: db's memory grant is 128MiB.
    const memory = await page.textContent(`tr[data-path="${root}/db"] td:nth-child(6)`);
    assert.match(memory ?? '', /\/128MiB$/);

    const db = (await psJson(dir)).find((e) => e.path === `${root}/db`);
    assert.ok(db?.pid);
    const before = Number(await page.textContent(`tr[data-path="${root}/db"] td:nth-child(4)`));
    process.kill(db.pid, 'SIGKILL');
    // rest_for_one: db restarts (and api, worker after it); the page shows it without a reload.
    // The page's CSP forbids eval, so the test waits on attributes the page sets, not on functions.
    await page.waitForSelector(`tr[data-path="${root}/db"]:not([data-restarts="${before}"])`);
    await page.waitForSelector(`tr[data-path="${root}/db"][data-state="ready"]`);
    const events = await page.textContent('#events');
    assert.match(events ?? '', new RegExp(`${root}/db exited: .*SIGKILL`));
    const pid = await page.textContent(`tr[data-path="${root}/db"] td:nth-child(3)`);
    assert.notEqual(Number(pid), db.pid);

    await page.click(`tr[data-path="${root}/api"]`);
    await page.waitForSelector('#log:not(:empty)');
    assert.equal(await page.textContent('#log-path'), `${root}/api`);

    // Wait for a figures refresh after the restart so the bars show the new instances.
    await page.waitForSelector(`tr[data-path="${root}/worker"][data-cpu]`);
    const shot = join(profile, 'dashboard.png');
    await page.screenshot({ path: shot });
    const png = readFileSync(shot);
    assert.equal(png.subarray(1, 4).toString(), 'PNG');
    if (process.env.CAPTREE_SCREENSHOT) copyFileSync(shot, process.env.CAPTREE_SCREENSHOT);
    await page.close();
  });
});
