/**
 * Writing `/metrics` and `/v1/stats` answers in pieces of about 20 KiB rather than as one string:
 * at 1,000 paths one string is 300–400 KiB, which V8 allocates outside its young generation, so
 * each scrape left that much garbage in the old generation until the next full collection (the
 * daemon's heap grew by half a megabyte a scrape). Small pieces die young. Corked, they still go
 * out in one write.
 */
import type * as http from 'node:http';
import { renderChunks, type StatsReply } from './metrics.ts';

/** Paths per piece of a JSON answer (about 20 KiB). */
const PATHS_PER_CHUNK = 50;

function send(res: http.ServerResponse, type: string, chunks: string[], head: boolean): void {
  let length = 0;
  for (const c of chunks) length += Buffer.byteLength(c);
  res.writeHead(200, { 'content-type': type, 'content-length': length, 'cache-control': 'no-store' });
  if (head) return void res.end();
  res.cork();
  for (const c of chunks) res.write(c);
  res.end();
}

/** The Prometheus text exposition of a read. */
export function sendMetrics(res: http.ServerResponse, stats: StatsReply, head: boolean): void {
  send(res, 'text/plain; version=0.0.4; charset=utf-8', renderChunks(stats), head);
}

/** A read as JSON: what `JSON.stringify(stats)` gives, newline-terminated, in pieces. */
export function sendStats(res: http.ServerResponse, stats: StatsReply, head: boolean): void {
  const { paths, admissions, ...rest } = stats;
  const chunks = [`${JSON.stringify(rest).slice(0, -1)},"paths":[`];
  for (let i = 0; i < paths.length; i += PATHS_PER_CHUNK) {
    const part = JSON.stringify(paths.slice(i, i + PATHS_PER_CHUNK)).slice(1, -1);
    chunks.push(i === 0 ? part : `,${part}`);
  }
  chunks.push(`],"admissions":${JSON.stringify(admissions)}}\n`);
  send(res, 'application/json', chunks, head);
}
