// The captree dashboard: plain ES module, no build step, nothing from elsewhere.
// States, pids and restarts change live from the event stream (SSE, /v1/events). The figures
// (grant vs use) are read once a second while the page is visible, for the rows in view only
// (/v1/stats?offset=&limit=: the daemon reads the kernel's counters of those rows alone), and not
// at all while it is hidden. The whole tree is read when the page opens, when children come or
// go, and when the event stream reconnects.

const REFRESH_MS = 1000;
const MAX_EVENTS = 200;
const LOG_LINES = 200;

const $ = (sel) => document.querySelector(sel);
const rows = new Map(); // path -> { tr, cells, stats }
let order = []; // paths in tree order, as the last whole read gave them
const index = new Map(); // path -> its place in `order`
const inView = new Set(); // rows on the screen now
let selected = null;
let logAbort = null;
let timer = null;
let reading = false;
let again = false;
let viewObserver = null;

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function bytes(n) {
  if (n === null || n === undefined) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n < 10 && i > 0 ? n.toFixed(1) : Math.round(n)}${units[i]}`;
}

// Writes only what changed: 1,000 rows refreshed each second must not cost a relayout each.
function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function bar(cell, use, grant, text) {
  const b = cell.firstChild;
  const fill = b.firstChild;
  const ratio = grant ? Math.min(1, Math.max(0, (use ?? 0) / grant)) : 0;
  const width = `${(ratio * 100).toFixed(1)}%`;
  if (fill.style.width !== width) fill.style.width = width;
  const cls = ratio >= 0.95 ? 'bar full' : ratio >= 0.8 ? 'bar hot' : 'bar';
  if (b.className !== cls) b.className = cls;
  setText(cell.lastChild, text);
}

function barCell() {
  return el('td', {}, el('span', { class: 'bar' }, el('i')), el('span'));
}

function setState(row, state) {
  if (row.tr.dataset.state === state) return;
  row.cells.state.textContent = state;
  row.cells.state.className = `state-${state}`;
  row.tr.dataset.state = state;
}

function setRestarts(row, n) {
  if (row.tr.dataset.restarts === String(n)) return;
  row.cells.restarts.textContent = String(n);
  row.tr.dataset.restarts = String(n);
}

function rowFor(p) {
  let row = rows.get(p.path);
  if (row) return row;
  const name = p.path.split('/').at(-1);
  const cells = {
    path: el('td', {}, `${'  '.repeat(p.depth)}${p.depth === 0 ? p.path : name}`),
    state: el('td'),
    pid: el('td'),
    restarts: el('td'),
    cpu: barCell(),
    memory: barCell(),
    pids: barCell(),
    throttled: el('td'),
    intensity: barCell(),
  };
  cells.path.style.whiteSpace = 'pre';
  const tr = el('tr', { class: p.kind, 'data-path': p.path }, ...Object.values(cells));
  if (p.kind !== 'node') tr.addEventListener('click', () => selectLog(p.path));
  row = { tr, cells, stats: p };
  rows.set(p.path, row);
  viewObserver?.observe(tr);
  return row;
}

function update(row, p) {
  row.stats = p;
  setState(row, p.state);
  setText(row.cells.pid, String(p.pid ?? '–'));
  setRestarts(row, p.restarts);
  // Use since the daemon's previous read, clamped by the daemon to the grant: the quota makes
  // more impossible, and a reading above it is only the two samples' timing.
  const cores = p.cores;
  const throttled = p.throttled;
  if (cores !== null) row.tr.dataset.cpu = cores.toFixed(3);
  const grantCpu = p.grant.cpu === null ? '∞' : p.grant.cpu.toFixed(2);
  bar(row.cells.cpu, cores, p.grant.cpu, `${cores === null ? '–' : cores.toFixed(2)}/${grantCpu}`);
  const mem = p.counters?.memoryBytes ?? null;
  bar(
    row.cells.memory,
    mem,
    p.grant.memory,
    `${bytes(mem)}/${p.grant.memory === null ? '∞' : bytes(p.grant.memory)}`,
  );
  const pids = p.counters?.pids ?? null;
  bar(row.cells.pids, pids, p.grant.pids, `${pids ?? '–'}/${p.grant.pids ?? '∞'}`);
  setText(
    row.cells.throttled,
    throttled === null ? '' : throttled > 0 ? `${(throttled * 100).toFixed(0)}%` : '0',
  );
  if (p.intensity) {
    const i = p.intensity;
    bar(row.cells.intensity, i.restarts, i.intensity || 1, `${i.restarts}/${i.intensity}`);
  }
}

async function api(path) {
  const r = await fetch(path, { headers: { accept: 'application/json' }, credentials: 'same-origin' });
  if (r.status === 401 || r.status === 403) {
    $('#login').hidden = false;
    throw new Error(`${path}: ${r.status}`);
  }
  if (!r.ok) throw new Error(`${path}: ${r.status}`);
  return r.json();
}

/** Reads the whole tree: every row, in tree order (at start, when children come or go). */
async function readAll() {
  const asked = performance.now();
  const s = await api('/v1/stats');
  const read = performance.now();
  const body = $('#tree tbody');
  const seen = new Set();
  let before = null;
  for (const p of s.paths) {
    const row = rowFor(p);
    seen.add(p.path);
    update(row, p);
    // Keep DOM order = tree order; append only what is new or moved.
    const want = before ? before.nextSibling : body.firstChild;
    if (want !== row.tr) body.insertBefore(row.tr, want);
    before = row.tr;
  }
  for (const [path, row] of rows)
    if (!seen.has(path)) {
      viewObserver?.unobserve(row.tr);
      inView.delete(row.tr);
      row.tr.remove();
      rows.delete(path);
    }
  order = s.paths.map((p) => p.path);
  index.clear();
  for (const [i, path] of order.entries()) index.set(path, i);
  const root = s.paths[0];
  if (root) $('#name').textContent = root.path;
  document.body.dataset.rendered = String(s.paths.length);
  // What the last whole read took, ms: the daemon and the wire, then the page's own work.
  document.body.dataset.readMs = (read - asked).toFixed(0);
  document.body.dataset.renderMs = (performance.now() - read).toFixed(0);
}

/** The rows in view as one window of the tree order, or null before any is. */
function windowInView() {
  let first = Number.POSITIVE_INFINITY;
  let last = -1;
  for (const tr of inView) {
    const i = index.get(tr.dataset.path);
    if (i === undefined) continue;
    if (i < first) first = i;
    if (i > last) last = i;
  }
  return last < 0 ? null : { offset: first, limit: last - first + 1 };
}

/** Reads the figures of the rows in view (the whole tree if the rows are not known yet). */
async function refresh() {
  if (document.hidden) return;
  if (reading) {
    again = true;
    return;
  }
  reading = true;
  try {
    const w = windowInView();
    if (order.length === 0 || w === null) await readAll();
    else {
      const s = await api(`/v1/stats?offset=${w.offset}&limit=${w.limit}`);
      if (s.total !== order.length || s.paths.some((p, i) => order[w.offset + i] !== p.path)) await readAll();
      else for (const p of s.paths) update(rows.get(p.path), p);
    }
    const adm = await api('/v1/admissions');
    renderRefusals(adm.refusals);
  } catch (err) {
    console.warn(err);
  } finally {
    reading = false;
  }
  if (again) {
    again = false;
    refresh();
  }
}

function renderRefusals(list) {
  const ol = $('#refusals');
  ol.replaceChildren(
    ...(list.length === 0
      ? [el('li', { class: 'muted' }, 'none')]
      : list
          .slice()
          .reverse()
          .map((r) =>
            el('li', {}, `${new Date(r.ts).toLocaleTimeString()} ${r.node} ${r.code}: ${r.message}`),
          )),
  );
}

function schedule() {
  clearInterval(timer);
  timer = null;
  if (document.hidden) return;
  refresh();
  timer = setInterval(refresh, REFRESH_MS);
}

// What each event means for a row, at once (the next refresh brings the figures).
const eventState = {
  starting: 'starting',
  started: 'running',
  ready: 'ready',
  exited: 'exited',
  restarting: 'restarting',
  stopping: 'stopping',
  stopped: 'stopped',
  permanent_failure: 'failed',
  start_failed: 'failed',
};

function onEvent(r) {
  const row = rows.get(r.path);
  if (row) {
    const state = eventState[r.type];
    if (state && !(r.type === 'started' && row.tr.dataset.state === 'ready')) setState(row, state);
    if (r.type === 'started' && r.pid) row.cells.pid.textContent = String(r.pid);
    if (r.type === 'restarting') setRestarts(row, r.restarts);
    row.tr.dataset.seq = String(r.seq);
    row.tr.dataset.changedAt = String(Date.now());
    // When the daemon journaled the restart and when the page showed it (ms epochs, the same
    // clock on one machine): what bench/observe.ts reads for "restart reflected".
    if (r.type === 'restarting') {
      row.tr.dataset.restartTs = String(r.ts);
      row.tr.dataset.restartShown = row.tr.dataset.changedAt;
    }
  }
  const li = el('li', {}, `${r.time.slice(11, 23)} ${r.path} ${r.type}${detail(r)}`);
  const ol = $('#events');
  ol.prepend(li);
  while (ol.childElementCount > MAX_EVENTS) ol.lastChild.remove();
  if (
    r.type === 'child_added' ||
    r.type === 'child_deleted' ||
    r.type === 'admitted' ||
    r.type === 'revoked'
  ) {
    order = [];
    refresh();
  }
}

function detail(r) {
  if (r.reason?.message) return `: ${r.reason.message}`;
  if (r.reason?.kind) return `: ${r.reason.kind}`;
  if (r.type === 'started' && r.pid) return ` (pid ${r.pid})`;
  if (r.type === 'restarting') return ` (#${r.restarts}${r.delay ? `, in ${r.delay} ms` : ''})`;
  return '';
}

function listen() {
  const es = new EventSource('/v1/events');
  const link = $('#link');
  let opened = false;
  es.onopen = () => {
    link.textContent = 'live';
    link.className = 'badge live';
    // Back after a break: what happened meanwhile is read whole.
    if (opened) {
      order = [];
      refresh();
    }
    opened = true;
  };
  es.onerror = () => {
    link.textContent = 'reconnecting';
    link.className = 'badge down';
  };
  for (const type of Object.keys(eventState).concat(['child_added', 'child_deleted', 'admitted', 'revoked']))
    es.addEventListener(type, (m) => onEvent(JSON.parse(m.data)));
}

async function selectLog(path) {
  for (const row of rows.values()) row.tr.classList.toggle('selected', row.stats.path === path);
  selected = path;
  logAbort?.abort();
  logAbort = new AbortController();
  $('#log-path').textContent = path;
  const pre = $('#log');
  pre.textContent = '';
  const url = `/v1/logs/${path.split('/').filter(Boolean).map(encodeURIComponent).join('/')}?limit=${LOG_LINES}&follow=1`;
  try {
    const r = await fetch(url, { signal: logAbort.signal, credentials: 'same-origin' });
    if (!r.ok) {
      pre.textContent = `${r.status}: ${(await r.json()).error?.message ?? ''}`;
      return;
    }
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done || selected !== path) break;
      pre.textContent += value;
      const lines = pre.textContent.split('\n');
      if (lines.length > LOG_LINES + 1) pre.textContent = lines.slice(-LOG_LINES - 1).join('\n');
      pre.scrollTop = pre.scrollHeight;
    }
  } catch (err) {
    if (err.name !== 'AbortError') pre.textContent += `\n(${err.message})`;
  }
}

async function start() {
  try {
    const info = await api('/v1/daemon');
    $('#daemon').textContent = `daemon pid ${info.pid} · ${info.version}`;
  } catch {
    // a scoped token may not read /v1/daemon; the tree still shows
  }
  // Rows scrolled into view are read at once (the next frame), not at the next tick.
  viewObserver = new IntersectionObserver((entries) => {
    for (const e of entries) {
      if (e.isIntersecting) inView.add(e.target);
      else inView.delete(e.target);
    }
    if (order.length > 0) requestAnimationFrame(() => refresh());
  });
  for (const row of rows.values()) viewObserver.observe(row.tr);
  listen();
  document.addEventListener('visibilitychange', schedule);
  schedule();
}

start();
