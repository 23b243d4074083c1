/**
 * A fake database for the demo: in-memory counters behind a line protocol on loopback TCP
 * ("INCR key" and "GET key", each answered with a number and a newline).
 */
import net from 'node:net';

const port = Number(process.env.DB_PORT ?? 15432);
const counters = new Map();

const server = net.createServer((socket) => {
  let buffer = '';
  socket.setEncoding('utf8');
  socket.on('error', () => socket.destroy());
  socket.on('data', (chunk) => {
    buffer += chunk;
    for (let end = buffer.indexOf('\n'); end >= 0; end = buffer.indexOf('\n')) {
      const [command, key] = buffer.slice(0, end).trim().split(/\s+/);
      buffer = buffer.slice(end + 1);
      if (command === 'INCR' && key) {
        counters.set(key, (counters.get(key) ?? 0) + 1);
        socket.write(`${counters.get(key)}\n`);
      } else if (command === 'GET' && key) {
        socket.write(`${counters.get(key) ?? 0}\n`);
      } else {
        socket.write('ERR\n');
      }
    }
  });
});

server.listen(port, '127.0.0.1', () => console.log(`db: listening on 127.0.0.1:${port}`));

process.on('SIGTERM', () => {
  console.log('db: SIGTERM, closing');
  server.close(() => process.exit(0));
  // Open client connections keep close() waiting; the supervisor's deadline should not have to.
  setTimeout(() => process.exit(0), 500).unref();
});
