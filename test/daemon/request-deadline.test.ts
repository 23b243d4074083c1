/**
 * The control API's servers keep Node's request deadlines without Node's 30 s connection check
 * (which woke an idle daemon): a connection that has not sent a whole request within the
 * deadline is closed, before its first request and between two; a request that arrived whole
 * keeps its connection however long the answer streams.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type * as http from 'node:http';
import * as net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { deadlineServer } from '../../src/daemon/request-deadline.ts';

const DEADLINE_MS = 300;

describe('request deadlines per connection', () => {
  let server: http.Server;
  let port = 0;

  before(async () => {
    server = deadlineServer(DEADLINE_MS, (req, res) => {
      if (req.url === '/stream') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('first\n');
        // Past the deadline, the answer goes on.
        const later = setTimeout(() => res.end('second\n'), DEADLINE_MS * 3);
        res.on('close', () => clearTimeout(later));
        return;
      }
      res.end('ok\n');
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as net.AddressInfo).port;
  });

  after(async () => {
    server.closeAllConnections();
    server.close();
    await once(server, 'close');
  });

  /** A raw connection and everything it receives until the server closes it. */
  const connect = () => {
    const socket = net.connect(port, '127.0.0.1');
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (c: string) => {
      text += c;
    });
    const closed = once(socket, 'close').then(() => text);
    return { socket, closed, text: () => text };
  };

  test('Node’s own connection check is out of reach', () => {
    const interval = (server as http.Server & { connectionsCheckingInterval: number })
      .connectionsCheckingInterval;
    assert.equal(interval, 2 ** 31 - 1);
    assert.equal(server.headersTimeout, DEADLINE_MS);
  });

  test('half a request is cut off at the deadline', async () => {
    const c = connect();
    c.socket.write('GET / HTTP/1.1\r\nHost: x\r\n');
    assert.equal(await c.closed, '', 'closed without an answer');
  });

  test('a whole request with a body that never comes is cut off', async () => {
    const c = connect();
    c.socket.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc');
    await c.closed;
  });

  test('after an answer, the next request must come within the deadline too', async () => {
    const c = connect();
    c.socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    c.socket.write('GET / HTTP/1.1\r\nHost: x\r\n');
    const text = await c.closed;
    assert.equal(text.match(/HTTP\/1\.1 200/g)?.length, 1, text);
  });

  test('a streamed answer outlives the deadline', async () => {
    const c = connect();
    c.socket.write('GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    const text = await c.closed;
    assert.match(text, /first\n/);
    assert.match(text, /second\n/);
  });
});
