/** An in-process daemon on a manifest written to a temp dir, and calls to its control API. */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import * as http from 'node:http';
import { join } from 'node:path';
import { type Daemon, type DaemonOptions, startDaemon } from '../../src/daemon/index.ts';
import { loadManifest } from '../../src/manifest/index.ts';

/** Writes `dir/captree.yaml`, starts a daemon on it (state in `stateDir`) and waits until it is up. */
export async function daemonOn(
  dir: string,
  yaml: string,
  options: Partial<Omit<DaemonOptions, 'manifest'>> = {},
): Promise<Daemon> {
  writeFileSync(join(dir, 'captree.yaml'), yaml);
  const m = await loadManifest(join(dir, 'captree.yaml'));
  assert.ok(m.ok, m.ok ? '' : JSON.stringify(m.errors));
  const daemon = await startDaemon({ stateDir: join(dir, '.captree'), ...options, manifest: m.tree });
  await daemon.started;
  return daemon;
}

export interface ApiReply {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: the API's JSON, read field by field by each test
  body: any;
}

/** One request to the control socket, JSON in and out. */
export function apiCall(
  socketPath: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<ApiReply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { socketPath, path, method, agent: false, headers: { 'content-type': 'application/json', ...headers } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          text += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
      },
    );
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}
