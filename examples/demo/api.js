/**
 * The demo's web API on 127.0.0.1:$PORT: `GET /` counts a visit in the fake database and
 * `GET /health` answers 200 while the database connection is up. Losing the database is a crash
 * (exit 1), which is what lets the supervisor's restart strategy show.
 */
import http from 'node:http';
import net from 'node:net';

const port = Number(process.env.PORT ?? 18080);
const [dbHost = '127.0.0.1', dbPort = '15432'] = (process.env.DB_ADDR ?? '127.0.0.1:15432').split(':');

const pending = [];
let buffer = '';
let stopping = false;
const db = net.connect(Number(dbPort), dbHost);
db.setEncoding('utf8');
db.on('data', (chunk) => {
  buffer += chunk;
  for (let end = buffer.indexOf('\n'); end >= 0; end = buffer.indexOf('\n')) {
    pending.shift()?.(buffer.slice(0, end));
    buffer = buffer.slice(end + 1);
  }
});
db.on('error', (error) => {
  console.error(`api: database unavailable: ${error.message}`);
  process.exit(1);
});
db.on('close', () => {
  if (stopping) return;
  console.error('api: database connection closed');
  process.exit(1);
});

function query(line) {
  return new Promise((resolve) => {
    pending.push(resolve);
    db.write(`${line}\n`);
  });
}

const server = http.createServer(async (request, response) => {
  if (request.url === '/health') {
    const up = db.readyState === 'open';
    response.writeHead(up ? 200 : 503, { 'content-type': 'text/plain' }).end(up ? 'ok\n' : 'no database\n');
    return;
  }
  const visits = Number(await query('INCR visits'));
  response.writeHead(200, { 'content-type': 'application/json' });
  response.end(`${JSON.stringify({ visits, pid: process.pid })}\n`);
});

server.listen(port, '127.0.0.1', () => console.log(`api: listening on http://127.0.0.1:${port}/`));

process.on('SIGTERM', () => {
  console.log('api: SIGTERM, closing');
  stopping = true;
  db.end();
  server.close(() => process.exit(0));
  server.closeAllConnections();
});
