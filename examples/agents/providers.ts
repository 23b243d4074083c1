/**
 * Fake model providers on loopback (no network): POST /complete answers a canned completion after
 * a short "inference" delay. The primary one goes down for everybody after `outageAfter`
 * requests and answers 503 from then on, as a hosted API does during an outage.
 */
import { createServer, type Server } from 'node:http';
import { type TaskContext, task } from '../../src/index.ts';

export interface Provider {
  readonly name: string;
  url: string;
  requests: number;
  down: boolean;
}

export function provider(name: string): Provider {
  return { name, url: '', requests: 0, down: false };
}

/** A task serving `p` on 127.0.0.1 (an ephemeral port); ready once listening. */
export function providerTask(p: Provider, outageAfter = Number.POSITIVE_INFINITY) {
  return task(
    (ctx: TaskContext) =>
      new Promise<void>((resolve, reject) => {
        const server: Server = createServer((req, res) => {
          let body = '';
          req.on('data', (d) => (body += d));
          req.on('end', () => {
            p.requests++;
            if (p.requests > outageAfter) p.down = true;
            if (p.down) {
              res.writeHead(503).end('overloaded');
              return;
            }
            const { prompt } = JSON.parse(body || '{}') as { prompt?: string };
            setTimeout(() => res.end(JSON.stringify({ text: `${p.name} on "${prompt}"` })), 20);
          });
        });
        server.on('error', reject);
        server.listen(0, '127.0.0.1', () => {
          const addr = server.address();
          if (addr && typeof addr === 'object') p.url = `http://127.0.0.1:${addr.port}`;
          ctx.ready();
        });
        ctx.signal.addEventListener('abort', () => {
          server.closeAllConnections();
          server.close(() => resolve());
        });
      }),
    { readiness: 'manual' },
  );
}
