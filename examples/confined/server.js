/**
 * An HTTP server that never binds a socket itself: it serves on the listening socket its
 * supervisor passed (systemd socket-activation protocol: LISTEN_FDS, LISTEN_FDNAMES, first fd 3).
 * Run by hand without LISTEN_FDS it falls back to binding 127.0.0.1:18081 so it can be tried out.
 */
import http from 'node:http';
import os from 'node:os';

const FIRST_PASSED_FD = 3;

function passedSocket(name) {
  const count = Number(process.env.LISTEN_FDS ?? 0);
  // LISTEN_PID guards against acting on variables meant for another process (e.g. a parent).
  if (count === 0 || (process.env.LISTEN_PID && Number(process.env.LISTEN_PID) !== process.pid)) return null;
  const names = (process.env.LISTEN_FDNAMES ?? '').split(':');
  const index = names.indexOf(name);
  return FIRST_PASSED_FD + (index >= 0 && index < count ? index : 0);
}

const server = http.createServer((request, response) => {
  if (request.url === '/health') {
    response.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    return;
  }
  const interfaces = Object.keys(os.networkInterfaces());
  response.writeHead(200, { 'content-type': 'application/json' });
  response.end(`${JSON.stringify({ pid: process.pid, interfaces })}\n`);
});

const fd = passedSocket('http');
if (fd === null) {
  console.warn('server: no LISTEN_FDS; binding 127.0.0.1:18081 myself (not confined)');
  server.listen(18081, '127.0.0.1');
} else {
  server.listen({ fd }, () => console.log(`server: serving on passed fd ${fd}`));
}

process.on('SIGTERM', () => {
  console.log('server: SIGTERM, closing');
  server.close(() => process.exit(0));
  server.closeAllConnections();
});
