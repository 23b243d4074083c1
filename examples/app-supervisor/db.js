// A stand-in database: serves `ping` → `pong` on a unix socket, ready (a newline on fd 3, the
// s6 notification fd) only once it accepts connections.
import * as fs from 'node:fs';
import * as net from 'node:net';

const path = process.env.DB_SOCKET;
fs.rmSync(path, { force: true });
const server = net.createServer((sock) => {
  sock.setEncoding('utf8');
  sock.on('data', (d) => {
    if (d.includes('ping')) sock.write('pong\n');
  });
  sock.on('error', () => {});
});
server.listen(path, () => {
  console.log(`db listening on ${path}`);
  fs.writeSync(3, '\n');
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
