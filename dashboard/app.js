// app.js - the dashboard at /_/: reads the platform's APIs (/_/api/*) and draws them.
// Plain browser JavaScript, no build step; Chart.js is Debian's, served at /_/dashboard/chart.js.
// Endpoints a build may not have (logs, usage, queues without Redis) answer 404: shown as
// "not in this build", not as an error. What the page saw is written into <pre id="checks">
// (errors caught, charts' points), which the browser test reads.
'use strict';

const checks = { errors: [], ready: false, functions: 0, charts: 0, points: 0, logs: 'pending', logLines: 0,
                 overflow: false, width: 0 };
function writeChecks() {
  checks.width = window.innerWidth;
  checks.overflow = document.documentElement.scrollWidth > window.innerWidth + 1;
  document.getElementById('checks').textContent = JSON.stringify(checks);
}
window.addEventListener('error', e => { checks.errors.push(String(e.message || e)); writeChecks(); });
window.addEventListener('unhandledrejection', e => { checks.errors.push('unhandled: ' + String(e.reason)); writeChecks(); });
const consoleError = console.error.bind(console);
console.error = (...args) => { checks.errors.push(args.map(String).join(' ')); writeChecks(); consoleError(...args); };

const $ = id => document.getElementById(id);
const TOKEN_KEY = 'crescent.adminToken';
let token = sessionStorage.getItem(TOKEN_KEY) || '';
const state = { functions: [], selected: '', charts: {}, tail: null, refreshing: false };
const MISSING = 'not in this build';

class Unauthorized extends Error {}

// GET (or another method) an API path: the parsed JSON, null for a 404 (not in this build).
async function api(path, init = {}) {
  const headers = Object.assign({ Accept: 'application/json' }, init.headers || {});
  if (token) headers.Authorization = 'Bearer ' + token;
  const r = await fetch(path, Object.assign({}, init, { headers, cache: 'no-store' }));
  if (r.status === 401) throw new Unauthorized('unauthorized');
  if (r.status === 404) return null;
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (!r.ok) {
    const err = new Error((body && body.error) || ('HTTP ' + r.status));
    err.status = r.status;
    err.body = body;
    throw err;
  }
  return body;
}

function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}

const fmt = {
  n: v => (v === null || v === undefined ? '–' : Number(v).toLocaleString('en-US')),
  ms: v => (v === null || v === undefined || v < 0 ? '–' : v < 10 ? v.toFixed(2) : v.toFixed(0)),
  usd: v => '$' + (v || 0).toFixed(v >= 1 ? 2 : 6),
  age: ms => (ms === null || ms === undefined ? '–' : ms < 1000 ? ms + ' ms' : ms < 120000 ? (ms / 1000).toFixed(1) + ' s'
              : ms < 7200000 ? (ms / 60000).toFixed(1) + ' min' : ms < 172800000 ? (ms / 3600000).toFixed(1) + ' h'
              : (ms / 86400000).toFixed(0) + ' days'),
  time: iso => (iso ? new Date(iso).toLocaleTimeString('en-GB') : '–'),
};

// Quantile of a {bound: count} histogram (the +Inf bucket answers its lower bound).
function quantile(hist, q) {
  const bounds = Object.keys(hist).map(k => [k === '+Inf' ? Infinity : Number(k), hist[k]]).sort((a, b) => a[0] - b[0]);
  const total = bounds.reduce((s, b) => s + b[1], 0);
  if (!total) return -1;
  let seen = 0, lo = 0;
  for (const [hi, c] of bounds) {
    if (c && seen + c >= q * total) return hi === Infinity ? lo : lo + (hi - lo) * ((q * total - seen) / c);
    seen += c;
    lo = hi;
  }
  return lo;
}

function setStatus(text, bad) {
  const s = $('status');
  s.textContent = text;
  s.className = bad ? 'bad' : 'muted';
}

function showLogin(message) {
  $('login').hidden = false;
  $('main').hidden = true;
  $('login-error').textContent = message || '';
  setStatus('sign in');
}

// --- functions, totals, schedules ---------------------------------------------------------

function routesAndTriggers(f) {
  const parts = (f.routes || []).slice();
  const t = (f.metrics && f.metrics.triggers) || {};
  for (const label of Object.keys(t)) parts.push(label);
  return parts.join(', ') || (f.routed ? '' : 'not routed');
}

function renderFunctions(list) {
  const tbody = $('functions').querySelector('tbody');
  tbody.replaceChildren();
  let inv = 0, errs = 0, cost = 0, busy = 0, idle = 0, failed = 0;
  for (const f of list) {
    const m = f.metrics || {};
    inv += m.invocations || 0;
    errs += m.errors || 0;
    cost += (m.cost && m.cost.total) || 0;
    if (m.instances) { busy += m.instances.busy; idle += m.instances.idle; }
    const nameCell = el('td', { class: 'wrap' }, el('b', { text: f.name }), el('br'), el('span', { class: 'muted', text: f.file }));
    if (f.error) {
      failed++;
      nameCell.append(el('br'), el('span', { class: 'bad', text: 'load error: ' + f.error }));
    }
    const hist = m.latencyMs || {};
    const mem = f.settings ? f.settings.memory + ' MB' : '–';
    tbody.append(el('tr', {},
      nameCell,
      el('td', {}, f.version === null ? '–' : 'v' + f.version, el('br'), el('span', { class: 'muted', text: f.hash || '' })),
      el('td', { class: 'wrap', text: routesAndTriggers(f) }),
      el('td', { text: fmt.n(m.invocations) }),
      el('td', { class: m.errors ? 'bad' : '', text: fmt.n(m.errors) }),
      el('td', { text: fmt.ms(quantile(hist, 0.5)) + ' / ' + fmt.ms(quantile(hist, 0.99)) }),
      el('td', { text: m.instances ? m.instances.busy + ' busy, ' + m.instances.idle + ' idle' : '–' }),
      el('td', { text: mem + (m.gbSeconds !== undefined ? ', ' + m.gbSeconds.toFixed(3) + ' GB-s' : '') }),
      el('td', { text: fmt.usd(m.cost && m.cost.total) })));
  }
  const cards = [['functions', list.length], ['invocations', fmt.n(inv)], ['errors', fmt.n(errs)],
                 ['instances', busy + ' busy / ' + idle + ' idle'], ['cost to date', fmt.usd(cost)],
                 ['load errors', failed]];
  $('totals').replaceChildren(...cards.map(([k, v]) => el('div', { class: 'card' }, el('span', { class: 'muted', text: k }),
                                                          el('b', { text: v }))));
}

function renderSchedules(list) {
  const tbody = $('schedules').querySelector('tbody');
  tbody.replaceChildren();
  for (const f of list) {
    const t = (f.metrics && f.metrics.triggers) || {};
    for (const [label, c] of Object.entries(t)) {
      if (!label.startsWith('cron:')) continue;
      const last = c.last ? fmt.time(c.last.scheduledTime) + ' ' + c.last.result : '–';
      tbody.append(el('tr', {}, el('td', { text: f.name }), el('td', { text: label.slice(5) }),
        el('td', { text: c.next ? new Date(c.next).toLocaleString('en-GB') : '–' }),
        el('td', { class: c.last && c.last.result === 'failed' ? 'bad' : '', text: last }),
        el('td', { text: fmt.n(c.fired) }), el('td', { text: fmt.n(c.missed) }), el('td', { text: fmt.n(c.errors) })));
    }
  }
  if (!tbody.children.length) tbody.append(el('tr', {}, el('td', { colspan: 7, class: 'muted', text: 'no schedules' })));
}

function fillSelect(select, names, keep, first) {
  const prev = keep;
  select.replaceChildren(...(first ? [el('option', { value: '', text: first })] : []),
                         ...names.map(n => el('option', { value: n, text: n })));
  if (names.includes(prev) || (first && prev === '')) select.value = prev;
}

// --- charts ---------------------------------------------------------------------------------

const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed'];

function chart(id, labels) {
  if (state.charts[id]) return state.charts[id];
  const c = new Chart($(id), {
    type: 'line',
    data: { labels: [], datasets: labels.map((l, i) => ({ label: l, data: [], borderColor: COLORS[i], backgroundColor: COLORS[i],
                                                          pointRadius: c => (c.raw > 0 ? 1.5 : 0), borderWidth: 1.5, spanGaps: false, tension: 0.2 })) },
    options: { animation: false, responsive: true, maintainAspectRatio: false, interaction: { mode: 'index', intersect: false },
               scales: { x: { ticks: { maxTicksLimit: 6, maxRotation: 0 } }, y: { beginAtZero: true } },
               plugins: { legend: { labels: { boxWidth: 10 } } } },
  });
  $(id).parentNode.style.height = '200px';
  state.charts[id] = c;
  return c;
}

function setChart(id, labels, times, series) {
  const c = chart(id, labels);
  c.data.labels = times;
  series.forEach((s, i) => { c.data.datasets[i].data = s; });
  c.update();
}

async function loadSeries() {
  const name = state.selected;
  if (!name) return;
  let s;
  try {
    s = await api('/_/api/series?function=' + encodeURIComponent(name) + '&minutes=' + $('minutes').value);
  } catch (e) {
    if (e instanceof Unauthorized) throw e;
    $('series-note').textContent = 'series unavailable: ' + e.message;
    return;
  }
  if (!s) { $('series-note').textContent = 'series: ' + MISSING; return; }
  $('series-note').textContent = 'every ' + s.step / 1000 + ' s, summed over the nodes';
  const times = s.t.map(t => new Date(t).toLocaleTimeString('en-GB'));
  setChart('c-requests', ['invocations', 'errors'], times, [s.invocations, s.errors]);
  setChart('c-latency', ['p50', 'p99'], times, [s.p50Ms, s.p99Ms]);
  setChart('c-starts', ['cold', 'warm'], times, [s.coldStarts, s.warmStarts]);
  setChart('c-limits', ['throttles', 'timeouts'], times, [s.throttles, s.timeouts]);
  let points = 0;
  for (const c of Object.values(state.charts))
    for (const d of c.data.datasets) points += d.data.filter(v => v !== null && v > 0).length;
  checks.charts = Object.keys(state.charts).length;
  checks.points = points;
}

// --- queues ---------------------------------------------------------------------------------

async function redrive(name, button) {
  button.disabled = true;
  button.textContent = 'redriving…';
  try {
    const r = await api('/_/api/queues/' + encodeURIComponent(name) + '/redrive', { method: 'POST' });
    button.textContent = r ? 'moved ' + r.moved : MISSING;
  } catch (e) {
    if (e instanceof Unauthorized) return showLogin('the token was refused');
    button.textContent = (e.body && e.body.moved !== undefined ? 'moved ' + e.body.moved + ', ' : '') + e.message;
  }
  setTimeout(refresh, 500);
}

async function loadQueues() {
  const tbody = $('queues').querySelector('tbody');
  let q;
  try {
    q = await api('/_/api/queues');
  } catch (e) {
    if (e instanceof Unauthorized) throw e;
    $('queues-note').textContent = 'queues unavailable: ' + e.message;
    return;
  }
  if (!q) { $('queues-note').textContent = 'queues: ' + MISSING + ' (it needs Redis)'; tbody.replaceChildren(); return; }
  $('queues-note').textContent = '';
  tbody.replaceChildren();
  for (const x of q.queues || []) {
    const dlq = x.name.endsWith('.dlq');
    const cell = el('td');
    if (!dlq && x.dlqDepth > 0) cell.append(el('button', { type: 'button', onclick: e => redrive(x.name, e.target), text: 'redrive ' + x.dlqDepth }));
    tbody.append(el('tr', {}, el('td', { text: x.name }), el('td', { text: fmt.n(x.depth) }), el('td', { text: fmt.n(x.delayed) }),
      el('td', { text: fmt.n(x.inFlight) }), el('td', { text: fmt.age(x.oldestAgeMs) }),
      el('td', { class: x.dlqDepth ? 'bad' : '', text: dlq ? '' : fmt.n(x.dlqDepth) }), cell));
  }
  if (!tbody.children.length) tbody.append(el('tr', {}, el('td', { colspan: 7, class: 'muted', text: 'no queues' })));
}

// --- usage (persisted, when the build has it) -------------------------------------------------

async function loadUsage() {
  let u;
  try {
    u = await api('/_/api/usage?by=day');
  } catch (e) {
    if (e instanceof Unauthorized) throw e;
    $('usage-note').textContent = 'usage unavailable: ' + e.message;
    return;
  }
  const table = $('usage');
  if (!u) {
    $('usage-note').textContent = 'persisted usage: ' + MISSING + ' (the cost above is since the server started)';
    table.hidden = true;
    return;
  }
  // Whatever array of rows it answers: one column per field.
  const rows = Array.isArray(u) ? u : Object.values(u).find(Array.isArray) || [];
  const cols = [...new Set(rows.flatMap(r => Object.keys(r).filter(k => typeof r[k] !== 'object')))];
  table.hidden = false;
  $('usage-note').textContent = rows.length ? '' : 'no usage recorded yet';
  table.querySelector('thead').replaceChildren(el('tr', {}, ...cols.map(c => el('th', { text: c }))));
  table.querySelector('tbody').replaceChildren(...rows.slice(0, 200).map(r => el('tr', {}, ...cols.map(c => el('td', { text: r[c] === undefined ? '' : r[c] })))));
}

// --- logs -----------------------------------------------------------------------------------

const MAX_LOG_LINES = 500;

function logFilters() {
  return { fn: $('log-fn').value, level: $('log-level').value, q: $('log-q').value.trim().toLowerCase() };
}

const LEVELS = { debug: 0, info: 1, warn: 2, error: 3 };

function showLogLine(line) {
  let rec = null;
  try { rec = JSON.parse(line); } catch (e) { rec = null; }
  const f = logFilters();
  if (rec && f.level && (LEVELS[rec.level] ?? 1) < LEVELS[f.level]) return;
  if (f.q && !line.toLowerCase().includes(f.q)) return;
  const pre = $('logs');
  const text = rec ? [rec.time || rec.ts || '', (rec.level || '').toUpperCase(), rec.function || '-', rec.msg || '',
                      rec.requestId ? '(' + rec.requestId + ')' : ''].join(' ') : line;
  const span = el('span', { class: rec ? rec.level || '' : '', text: text + '\n' });
  pre.append(span);
  while (pre.childNodes.length > MAX_LOG_LINES) pre.firstChild.remove();
  pre.scrollTop = pre.scrollHeight;
  checks.logLines++;
}

// Server-Sent Events read with fetch (EventSource cannot send the Authorization header).
async function tail(signal) {
  const f = logFilters();
  const headers = { Accept: 'text/event-stream' };
  if (token) headers.Authorization = 'Bearer ' + token;
  const r = await fetch('/_/api/logs/tail' + (f.fn ? '?function=' + encodeURIComponent(f.fn) : ''), { headers, signal, cache: 'no-store' });
  if (r.status === 404) { $('logs-note').textContent = 'live tail: ' + MISSING; checks.logs = 'absent'; return; }
  if (!r.ok || !r.body) { $('logs-note').textContent = 'live tail unavailable: HTTP ' + r.status; return; }
  $('logs-note').textContent = 'following live';
  checks.logs = 'live';
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let buf = '', data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const raw = buf.slice(0, nl).replace(/\r$/, '');
      buf = buf.slice(nl + 1);
      if (raw === '') { if (data.length) showLogLine(data.join('\n')); data = []; }
      else if (raw.startsWith('data:')) data.push(raw.slice(5).replace(/^ /, ''));
    }
    writeChecks();
  }
  $('logs-note').textContent = 'the tail ended; apply the filters to follow again';
}

async function startLogs() {
  if (state.tail) state.tail.abort();
  $('logs').replaceChildren();
  const f = logFilters();
  const qs = new URLSearchParams({ limit: '50' });
  if (f.fn) qs.set('function', f.fn);
  if (f.level) qs.set('level', f.level);
  if (f.q) qs.set('q', f.q);
  try {
    const past = await api('/_/api/logs?' + qs);
    if (!past) { $('logs-note').textContent = 'logs: ' + MISSING + ' (the server writes them to its stdout)'; checks.logs = 'absent'; return; }
    const lines = (past.logs || past.lines || past.items || []).slice().reverse();
    for (const l of lines) showLogLine(typeof l === 'string' ? l : JSON.stringify(l));
  } catch (e) {
    if (e instanceof Unauthorized) throw e;
    $('logs-note').textContent = 'logs unavailable: ' + e.message;
    return;
  }
  const ctl = new AbortController();
  state.tail = ctl;
  tail(ctl.signal).catch(e => { if (e.name !== 'AbortError') $('logs-note').textContent = 'live tail: ' + e.message; });
}

// --- the loop -------------------------------------------------------------------------------

// One round of every panel but the logs: true when it went through.
async function refresh() {
  if (state.refreshing) return false;
  state.refreshing = true;
  let ok = false;
  try {
    const data = await api('/_/api/functions');
    const list = ((data && data.functions) || []).filter(f => !f.platform);
    state.functions = list;
    checks.functions = list.length;
    renderFunctions(list);
    renderSchedules(list);
    const names = list.map(f => f.name);
    if (!names.includes(state.selected)) {
      // The busiest function first.
      const busiest = list.slice().sort((a, b) => ((b.metrics || {}).invocations || 0) - ((a.metrics || {}).invocations || 0))[0];
      state.selected = busiest ? busiest.name : '';
    }
    fillSelect($('fn-select'), names, state.selected);
    fillSelect($('log-fn'), names, $('log-fn').value, 'all functions');
    await Promise.all([loadSeries(), loadQueues(), loadUsage()]);
    setStatus('updated ' + new Date().toLocaleTimeString('en-GB'));
    ok = true;
  } catch (e) {
    if (e instanceof Unauthorized) showLogin(token ? 'the token was refused' : '');
    else setStatus('cannot reach the server: ' + e.message, true);
  } finally {
    state.refreshing = false;
    writeChecks();
  }
  return ok;
}

function start() {
  $('login').hidden = true;
  $('main').hidden = false;
  $('logout').hidden = !token;
  // ready: the first refresh and the logs' first answer are in (what the browser test waits for).
  refresh().then(ok => { if (ok) return startLogs().then(() => { checks.ready = true; }); })
    .catch(e => { if (e instanceof Unauthorized) showLogin('the token was refused'); })
    .finally(writeChecks);
}

$('login').addEventListener('submit', e => {
  e.preventDefault();
  token = $('token').value.trim();
  sessionStorage.setItem(TOKEN_KEY, token);
  start();
});
$('logout').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  token = '';
  if (state.tail) state.tail.abort();
  showLogin('');
});
// #minutes=5 in the address picks the window (a link to the last 5 minutes).
const hashMinutes = /(?:^#|&)minutes=(5|15|60)\b/.exec(location.hash);
if (hashMinutes) $('minutes').value = hashMinutes[1];
$('minutes').addEventListener('change', () => loadSeries().then(writeChecks));
$('fn-select').addEventListener('change', e => { state.selected = e.target.value; loadSeries().then(writeChecks); });
$('log-filters').addEventListener('submit', e => { e.preventDefault(); startLogs().catch(() => {}); });
window.addEventListener('resize', writeChecks);

if (typeof Chart === 'undefined') console.error('chart.js did not load');
start();
setInterval(refresh, 5000);
