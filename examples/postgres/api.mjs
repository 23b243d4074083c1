/**
 * The notes API on 127.0.0.1:$PORT, backed by the `db` child through the service it was routed
 * (CAPTREE_SERVICE_NOTES_SQL=tcp:HOST:PORT). It connects at start: the table is made (or found)
 * before it answers /health, and a database it cannot reach is a failed start (exit 1).
 *   GET  /notes   the notes, oldest first (JSON)
 *   POST /notes   adds the request body as a note
 * Queries go through psql (no driver to install); values are passed as psql variables, quoted by
 * psql (:'text'), never spliced into SQL.
 */
import { execFile } from 'node:child_process';
import http from 'node:http';

const port = Number(process.env.PORT ?? 18090);
const [, host = '127.0.0.1', dbPort = '25432'] =
  /^tcp:(.*):(\d+)$/.exec(process.env.CAPTREE_SERVICE_NOTES_SQL ?? '') ?? [];

function psql(sql, vars = {}) {
  const args = ['-h', host, '-p', dbPort, '-U', 'postgres', '-qtAX', '-v', 'ON_ERROR_STOP=1'];
  for (const [k, v] of Object.entries(vars)) args.push('-v', `${k}=${v}`);
  return new Promise((resolve, reject) => {
    const child = execFile('psql', args, (err, stdout, stderr) =>
      err ? reject(new Error(stderr.trim() || err.message)) : resolve(stdout.trim()),
    );
    child.stdin.end(sql);
  });
}

try {
  await psql('CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, text text NOT NULL, at timestamptz DEFAULT now())');
} catch (err) {
  console.error(`api: cannot reach the database at ${host}:${dbPort}: ${err.message}`);
  process.exit(1);
}

const server = http.createServer(async (req, res) => {
  try {
    if (req.url === '/health') return res.end('ok\n');
    if (req.url === '/notes' && req.method === 'GET') {
      const rows = await psql("SELECT coalesce(json_agg(n ORDER BY id), '[]') FROM notes n");
      res.setHeader('content-type', 'application/json');
      return res.end(`${rows}\n`);
    }
    if (req.url === '/notes' && req.method === 'POST') {
      let body = '';
      for await (const chunk of req) body += chunk;
      const id = await psql("INSERT INTO notes (text) VALUES (:'text') RETURNING id", { text: body });
      res.statusCode = 201;
      return res.end(`note ${id}\n`);
    }
    res.statusCode = 404;
    res.end('not found\n');
  } catch (err) {
    res.statusCode = 503;
    res.end(`database: ${err.message}\n`);
  }
});
server.listen(port, '127.0.0.1', () => console.log(`api: connected to ${host}:${dbPort}, listening on 127.0.0.1:${port}`));
process.on('SIGTERM', () => {
  console.log('api: stopping');
  server.close(() => process.exit(0));
});
