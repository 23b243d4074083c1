// The web-scraper tool, an OS process: GET /scrape?page=NAME on a unix socket answers the page's
// title and text from the fake website in ./site (no network). Like a real scraper meeting a page
// it was not written for, it crashes on "unexpected HTML" (a page without a <title>); its
// supervisor (tools) restarts it alone, with a clean state. Ready: a newline on fd 3.
import * as fs from 'node:fs';
import * as http from 'node:http';
import { join } from 'node:path';

const socket = process.env.SCRAPER_SOCKET;
const site = join(import.meta.dirname, 'site');

function scrape(html) {
  const title = /<title>([^<]*)<\/title>/.exec(html);
  if (!title) throw new Error('unexpected HTML: no <title>');
  const text = html
    .replace(/<[^>]+>/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  return { title: title[1], text };
}

fs.rmSync(socket, { force: true });
const server = http.createServer((req, res) => {
  const page = new URL(req.url, 'http://scraper').searchParams.get('page') ?? '';
  let html;
  try {
    html = fs.readFileSync(join(site, `${page.replace(/[^a-z0-9-]/gi, '')}.html`), 'utf8');
  } catch {
    res.writeHead(404).end();
    return;
  }
  // Deliberately not caught: this is the crash the tree is for.
  const result = scrape(html);
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(result));
});
server.listen(socket, () => {
  console.log(`scraper: listening on ${socket}`);
  fs.writeSync(3, '\n');
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
