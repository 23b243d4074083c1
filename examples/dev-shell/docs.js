/**
 * A small service for the dev-shell example: answers every HTTP request on the unix socket
 * captree hands it (CAPTREE_PROVIDE_DOCS_HTTP) with a line of text. Shells reach it through
 * the path in CAPTREE_SERVICE_DOCS_HTTP, e.g.
 *   curl --unix-socket "${CAPTREE_SERVICE_DOCS_HTTP#unix:}" http://docs/
 */
import { rmSync } from 'node:fs';
import http from 'node:http';

const path = process.env.CAPTREE_PROVIDE_DOCS_HTTP;
if (!path) {
  console.error('CAPTREE_PROVIDE_DOCS_HTTP is not set: run me under captree');
  process.exit(2);
}
rmSync(path, { force: true });
const server = http.createServer((_req, res) => {
  res.end('docs: hello from the docs service\n');
});
server.listen(path, () => console.log(`serving on ${path}`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
