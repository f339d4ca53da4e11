// bench.js - the Node side of tests/bench/queue.sh: fills queues, runs the BullMQ peer, and
// times crescent's runs. One subcommand per step; each prints one JSON line on stdout and
// exits non-zero (with a message on stderr) when its run did not complete as expected.
//
//   node bench.js fill-crescent   REDIS_PORT N QUEUE
//   node bench.js fill-bull       REDIS_PORT N QUEUE
//   node bench.js drain-crescent  REDIS_PORT N QUEUE GROUP FUNCTION_SRC FUNCTIONS_DIR PIDS
//   node bench.js drain-bull      REDIS_PORT N QUEUE CONC REDIS_PID
//   node bench.js produce-crescent REDIS_PORT N QUEUE CONC URL PIDS
//   node bench.js produce-bull    REDIS_PORT N QUEUE CONC REDIS_PID
//
// PIDS is a comma-separated list of the server's processes (crescent's worker, then
// redis-server). CPU is utime + stime from /proc/<pid>/stat (clock ticks), as a delta over the
// measured interval; the BullMQ commands measure their own process (the peer) and Redis.
// Output: {msgs, secs, cpu: [server, redis, harness, other]} in seconds; harness is this
// process when it is not the peer (crescent's poller or HTTP client), other the rest of the
// machine (from /proc/stat).
// Every message is the same 200-byte JSON object (BODY below), for both systems.
//
// Bounded: every command gives up after BENCH_TIMEOUT seconds (default 120) and exits 1;
// only loopback (127.0.0.1) is ever contacted. Needs `ioredis` and `bullmq` on NODE_PATH
// (queue.sh installs them into a cache outside the repository).
'use strict';

const fs = require('fs');
const path = require('path');
const http = require('http');

const TIMEOUT_MS = 1000 * Number(process.env.BENCH_TIMEOUT || 120);
const HOST = '127.0.0.1';
const CLK_TCK = 100; // Linux's USER_HZ: /proc/<pid>/stat counts in 1/100 s

// The message: one object whose JSON is exactly 200 bytes.
const BODY = (() => {
  const o = { user: 'u-0012345', event: 'page_view', page: '/products/42', ok: true, n: 12345, pad: '' };
  o.pad = 'x'.repeat(200 - JSON.stringify(o).length);
  if (JSON.stringify(o).length !== 200) throw new Error('body is not 200 bytes');
  return o;
})();
const BODY_JSON = JSON.stringify(BODY);

function die(msg) {
  process.stderr.write(`bench.js: ${msg}\n`);
  process.exit(1);
}

const deadline = Date.now() + TIMEOUT_MS;
const timer = setTimeout(() => die(`timed out after ${TIMEOUT_MS / 1000} s`), TIMEOUT_MS);
timer.unref();

function ticks(pid) {
  const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]); // utime, stime (fields 14 and 15)
}
// The machine's busy time (user, nice, system, irq, softirq, steal: every CPU), last in a snap.
function busyTicks() {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/);
  return [1, 2, 3, 6, 7, 8].reduce((t, i) => t + Number(f[i]), 0);
}
// A snap: each pid's ticks, this process's (the harness's, when it is not itself the peer),
// the machine's.
const snap = (pids) => [...pids.map(ticks), ticks(process.pid), busyTicks()];
// CPU seconds over [a, b]: each pid's, the harness's (0 when it is one of pids) and
// everything else's on the machine ("other").
function cpuSecs(pids, a, b) {
  const n = pids.length;
  const own = pids.map((p, i) => (b[i] - a[i]) / CLK_TCK);
  const harness = pids.includes(process.pid) ? 0 : (b[n] - a[n]) / CLK_TCK;
  const all = (b[n + 1] - a[n + 1]) / CLK_TCK;
  return [...own, harness, Math.max(0, all - harness - own.reduce((x, y) => x + y, 0))];
}
const now = () => Number(process.hrtime.bigint()) / 1e9;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function redis(port) {
  const IORedis = require('ioredis');
  return new IORedis({ host: HOST, port: Number(port), maxRetriesPerRequest: null, lazyConnect: false });
}

function result(o) {
  process.stdout.write(JSON.stringify(o) + '\n');
}

// --- crescent ---------------------------------------------------------------------------------

// Writes N messages in crescent's queue format (stdlib/queue.lua, stdlib/redis/q_send.lua): the
// stream cr:{q:NAME}:s, entries {type = "j", body = JSON, time = ms}, and the queue registered
// in cr:queues (what queue.send's first call does, so the trimmer and the queues API see it).
async function fillCrescent(port, n, queue) {
  const r = redis(port);
  const key = `cr:{q:${queue}}:s`;
  await r.sadd('cr:queues', queue);
  const t = String(Date.now());
  for (let done = 0; done < n; ) {
    const p = r.pipeline();
    const k = Math.min(1000, n - done);
    for (let i = 0; i < k; i++) p.xadd(key, '*', 'type', 'j', 'body', BODY_JSON, 'time', t);
    await p.exec();
    done += k;
  }
  const len = await r.xlen(key);
  await r.quit();
  if (len !== n) die(`filled ${len} messages, not ${n}`);
  result({ filled: len, bytes: BODY_JSON.length });
}

// Drops the consumer function into the served folder (hot reload), then polls the group:
// t0 when it exists (the worker's consumer made it, right before its first read), t1 when
// every message was read (entries-read) and acknowledged (pending 0), polled every 1-20 ms,
// more often as the end nears.
async function drainCrescent(port, n, queue, group, src, dir, pids) {
  const r = redis(port);
  const key = `cr:{q:${queue}}:s`;
  const tmp = path.join(dir, '.incoming.tmp');
  fs.copyFileSync(src, tmp);
  fs.renameSync(tmp, path.join(dir, path.basename(src)));
  const info = async () => {
    const gs = await r.xinfo('GROUPS', key);
    for (const g of gs) {
      const o = {};
      for (let i = 0; i + 1 < g.length; i += 2) o[g[i]] = g[i + 1];
      if (o.name === group) return o;
    }
    return null;
  };
  let g = null;
  while (!(g = await info())) {
    if (Date.now() > deadline) die('the consumer group never appeared');
    await sleep(1);
  }
  const t0 = now();
  const c0 = snap(pids);
  let polls = 0;
  for (;;) {
    g = await info();
    polls++;
    const read = g ? g['entries-read'] || 0 : 0;
    if (read >= n && g.pending === 0) break;
    // Few polls (the poller shares the machine): half the time the rest should take at the
    // rate so far, 1 to 20 ms, so the end is seen within ~1 ms.
    const rate = read / Math.max(now() - t0, 1e-3);
    const left = rate > 0 ? ((n - read) / rate) * 1000 : 20;
    await sleep(Math.min(20, Math.max(1, left / 2)));
  }
  const t1 = now();
  const c1 = snap(pids);
  await r.quit();
  result({ msgs: g['entries-read'], secs: t1 - t0, cpu: cpuSecs(pids, c0, c1), polls });
}

function post(url, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (data += d));
      res.on('end', () => resolve({ status: res.statusCode, body: data }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

// CONC concurrent invocations of the producer function, each sending its share of N messages
// with queue.send, one after the other (as CONC async loops of queue.add do in Node).
async function produceCrescent(port, n, queue, conc, url, pids) {
  const r = redis(port);
  const key = `cr:{q:${queue}}:s`;
  const shares = Array.from({ length: conc }, (_, i) => Math.floor(n / conc) + (i < n % conc ? 1 : 0));
  // CONC small calls at once first: the function's CONC instances are booted before the clock
  // starts (on another queue, so the measured one is registered in the run, as a first send does).
  const warm = await Promise.all(shares.map(() => post(`${url}?queue=${queue}-warm&n=1`, BODY_JSON)));
  for (const x of warm) if (x.status !== 200) die(`warm-up call: ${x.status} ${x.body}`);
  const t0 = now();
  const c0 = snap(pids);
  const res = await Promise.all(shares.map((k) => post(`${url}?queue=${queue}&n=${k}`, BODY_JSON)));
  const t1 = now();
  const c1 = snap(pids);
  for (const x of res) if (x.status !== 200) die(`producer call: ${x.status} ${x.body}`);
  const len = await r.xlen(key);
  await r.quit();
  if (len !== n) die(`the queue holds ${len} messages, not ${n}`);
  result({ msgs: len, secs: t1 - t0, cpu: cpuSecs(pids, c0, c1) });
}

// --- BullMQ -----------------------------------------------------------------------------------

const JOB_OPTS = { removeOnComplete: true, removeOnFail: true };

async function fillBull(port, n, queue) {
  const { Queue } = require('bullmq');
  const q = new Queue(queue, { connection: { host: HOST, port: Number(port) } });
  for (let done = 0; done < n; ) {
    const k = Math.min(1000, n - done);
    const jobs = [];
    for (let i = 0; i < k; i++) jobs.push({ name: 'bench', data: BODY, opts: JOB_OPTS });
    await q.addBulk(jobs);
    done += k;
  }
  const waiting = await q.getWaitingCount();
  await q.close();
  if (waiting !== n) die(`filled ${waiting} jobs, not ${n}`);
  result({ filled: waiting, bytes: BODY_JSON.length });
}

// A Worker with a no-op processor at concurrency CONC, started once ready; t1 at the N-th
// 'completed' event (the job's completion written to Redis).
async function drainBull(port, n, queue, conc, redisPid) {
  const { Worker, Queue } = require('bullmq');
  const pids = [process.pid, redisPid];
  let completed = 0, failed = 0, t1 = 0, c1 = null;
  let done;
  const finished = new Promise((r) => (done = r));
  const w = new Worker(queue, async () => {}, {
    connection: { host: HOST, port: Number(port) },
    concurrency: conc,
    autorun: false,
  });
  w.on('completed', () => {
    if (++completed === n) {
      t1 = now();
      c1 = snap(pids);
      done();
    }
  });
  w.on('failed', () => failed++);
  w.on('error', (e) => die(`worker error: ${e && e.message}`));
  await w.waitUntilReady();
  const t0 = now();
  const c0 = snap(pids);
  w.run();
  await finished;
  await w.close();
  const q = new Queue(queue, { connection: { host: HOST, port: Number(port) } });
  const left = await q.getJobCounts('waiting', 'active', 'delayed', 'failed');
  await q.close();
  if (failed || left.waiting || left.active || left.failed) die(`jobs left: ${JSON.stringify(left)}, failed ${failed}`);
  result({ msgs: completed, secs: t1 - t0, cpu: cpuSecs(pids, c0, c1) });
}

async function produceBull(port, n, queue, conc, redisPid) {
  const { Queue } = require('bullmq');
  const pids = [process.pid, redisPid];
  const q = new Queue(queue, { connection: { host: HOST, port: Number(port) } });
  await q.waitUntilReady();
  await q.add('warm', BODY, JOB_OPTS);
  await q.obliterate({ force: true });
  const shares = Array.from({ length: conc }, (_, i) => Math.floor(n / conc) + (i < n % conc ? 1 : 0));
  const t0 = now();
  const c0 = snap(pids);
  await Promise.all(
    shares.map(async (k) => {
      for (let i = 0; i < k; i++) await q.add('bench', BODY, JOB_OPTS);
    }),
  );
  const t1 = now();
  const c1 = snap(pids);
  const waiting = await q.getWaitingCount();
  await q.close();
  if (waiting !== n) die(`the queue holds ${waiting} jobs, not ${n}`);
  result({ msgs: waiting, secs: t1 - t0, cpu: cpuSecs(pids, c0, c1) });
}

// --- main -------------------------------------------------------------------------------------

const [cmd, ...a] = process.argv.slice(2);
const num = (s, what) => {
  const v = Number(s);
  if (!Number.isInteger(v) || v < 1) die(`${what} must be a positive integer, not '${s}'`);
  return v;
};
const pidList = (s) => String(s).split(',').map((p) => num(p, 'a pid'));
const cmds = {
  'fill-crescent': () => fillCrescent(a[0], num(a[1], 'N'), a[2]),
  'fill-bull': () => fillBull(a[0], num(a[1], 'N'), a[2]),
  'drain-crescent': () => drainCrescent(a[0], num(a[1], 'N'), a[2], a[3], a[4], a[5], pidList(a[6])),
  'drain-bull': () => drainBull(a[0], num(a[1], 'N'), a[2], num(a[3], 'CONC'), num(a[4], 'REDIS_PID')),
  'produce-crescent': () => produceCrescent(a[0], num(a[1], 'N'), a[2], num(a[3], 'CONC'), a[4], pidList(a[5])),
  'produce-bull': () => produceBull(a[0], num(a[1], 'N'), a[2], num(a[3], 'CONC'), num(a[4], 'REDIS_PID')),
};
if (!cmds[cmd]) die(`unknown command '${cmd}' (one of: ${Object.keys(cmds).join(', ')})`);
cmds[cmd]().then(
  () => process.exit(0),
  (e) => die(e && e.stack ? e.stack : String(e)),
);
