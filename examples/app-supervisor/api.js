// A stand-in API: ready once it has reached the database; exits (and is restarted) if it loses it.
import * as fs from 'node:fs';
import * as net from 'node:net';

const sock = net.connect(process.env.DB_SOCKET);
sock.setEncoding('utf8');
sock.on('connect', () => sock.write('ping\n'));
sock.once('data', (d) => {
  if (!d.includes('pong')) process.exit(1);
  console.log('api: database answered, serving');
  fs.writeSync(3, '\n');
});
sock.on('error', (err) => {
  console.error(`api: database unreachable: ${err.message}`);
  process.exit(1);
});
sock.on('close', () => process.exit(1));
process.on('SIGTERM', () => process.exit(0));
