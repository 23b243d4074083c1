/**
 * HTTP servers that do nothing while no client is connected.
 *
 * Node enforces `headersTimeout` and `requestTimeout` by walking all connections on a 30 s
 * interval that runs from `listen` on, connections or not: an idle daemon woke every 30 s for
 * each server. Here that interval is pushed out of reach and each connection gets its own
 * deadline instead, armed only while a request is awaited: a request (headers and body) must
 * have arrived `ms` after the connection opened or the previous response ended, else the
 * connection is destroyed, as Node's check would have. A long answer (an event stream, a
 * followed log) is not cut: its request arrived whole.
 */
import * as http from 'node:http';
import type { Socket } from 'node:net';
import type { IdleCollector } from './idle-collect.ts';

/** The longest delay a Node timer takes (a longer one fires at once). */
const NEVER_MS = 2 ** 31 - 1;

interface Waiting {
  timer: NodeJS.Timeout | null;
  /** The request being answered; null between requests. */
  req: http.IncomingMessage | null;
}

/** An HTTP server with `ms` to receive each request; `idle` hears when its connections come and go. */
export function deadlineServer(
  ms: number,
  listener: http.RequestListener,
  idle?: IdleCollector,
): http.Server {
  const server = http.createServer(
    { connectionsCheckingInterval: NEVER_MS, headersTimeout: ms, requestTimeout: ms },
    listener,
  );
  idle?.watch(server);
  const waiting = new WeakMap<Socket, Waiting>();
  const arm = (socket: Socket, w: Waiting) => {
    if (w.timer) clearTimeout(w.timer);
    w.timer = setTimeout(() => {
      w.timer = null;
      if (w.req?.complete) return;
      socket.destroy();
    }, ms);
    w.timer.unref();
  };
  server.on('connection', (socket: Socket) => {
    const w: Waiting = { timer: null, req: null };
    waiting.set(socket, w);
    arm(socket, w);
    socket.once('close', () => {
      if (w.timer) clearTimeout(w.timer);
      w.timer = null;
    });
  });
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const w = waiting.get(req.socket);
    if (!w) return;
    w.req = req;
    // Headers are in; a body-less request is complete once the parser is done with this packet,
    // just after this event: checked then, so a long answer keeps no timer armed.
    const whole = () => {
      if (w.req === req && req.complete && w.timer) {
        clearTimeout(w.timer);
        w.timer = null;
      }
    };
    if (req.complete) whole();
    else setImmediate(whole);
    res.once('finish', () => {
      w.req = null;
      if (!req.socket.destroyed) arm(req.socket, w);
    });
  });
  return server;
}
