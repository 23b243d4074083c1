/**
 * gunicorn 20 serving a Flask app under `user: www-data`: a master and two sync workers in one
 * child. Ready on HTTP, kill -9 of the master restarts the whole child (the workers die with it),
 * stop lets the master shut its workers down ("Shutting down: Master").
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { httpGet } from '../support/net.ts';
import { daemonLife, freePort, needPrograms, treeDir } from './support.ts';

const GUNICORN = '/usr/bin/gunicorn';
const PYTHON = '/usr/bin/python3';

test('gunicorn + Flask under user: www-data', async (t) => {
  if (!needPrograms(t, [GUNICORN, PYTHON])) return;
  const port = await freePort();
  const td = treeDir(
    t,
    'gunicorn',
    (name) => `name: ${name}
requires: { cpu: 1.0, memory: 1Gi, pids: 128 }
children:
  - name: app
    user: www-data
    command: [${GUNICORN}, --bind, "127.0.0.1:${port}", --workers, "2", --log-level, info, "app:app"]
    ready: { http: 'http://127.0.0.1:${port}/health', timeout: 30s }
    requires: { cpu: 0.5, memory: 256Mi, pids: 32 }
`,
    (dir) =>
      writeFileSync(
        join(dir, 'app.py'),
        `import os
from flask import Flask

app = Flask(__name__)


@app.route("/health")
def health():
    return "ok\\n"


@app.route("/")
def index():
    return f"hello from worker {os.getpid()}\\n"
`,
      ),
  );
  await daemonLife(t, td, 'app', {
    budget: { cpu: 0.5, memory: 256 * 2 ** 20, pids: 32 },
    probe: async () => {
      assert.match(await httpGet(port), /^hello from worker \d+/);
    },
    intact: async () => {
      assert.match(await httpGet(port), /^hello from worker \d+/);
    },
    cleanLine: /Shutting down: Master/,
  });
});
