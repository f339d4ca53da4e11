// bench (tests/bench/http_out.sh): the Node.js peer. GET /proxy calls the upstream once and
// answers its body (200 text/plain), as crescent's functions/proxy.lua and the nginx + lua
// peer do. The client is the global fetch (undici in Node 18+, keep-alive by default); where
// there is none, or with NODE_CLIENT=agent in the environment, http.get with a keep-alive Agent.
// The first line on stdout says which.
//   node node.js PORT UPSTREAM_URL
'use strict';
const http = require('http');

const port = Number(process.argv[2]);
const upstream = process.argv[3];
if (!(port > 0) || !upstream) {
  console.error('usage: node node.js PORT UPSTREAM_URL');
  process.exit(2);
}

let call;
if (typeof fetch === 'function' && process.env.NODE_CLIENT !== 'agent') {
  console.log('client: fetch (undici), node ' + process.version);
  call = async () => {
    const r = await fetch(upstream);
    return { status: r.status, body: Buffer.from(await r.arrayBuffer()) };
  };
} else {
  console.log('client: http.get with a keep-alive Agent, node ' + process.version);
  const agent = new http.Agent({ keepAlive: true });
  call = () => new Promise((resolve, reject) => {
    http.get(upstream, { agent }, (r) => {
      const chunks = [];
      r.on('data', (c) => chunks.push(c));
      r.on('end', () => resolve({ status: r.statusCode, body: Buffer.concat(chunks) }));
      r.on('error', reject);
    }).on('error', reject);
  });
}

const server = http.createServer(async (req, res) => {
  if (req.method !== 'GET' || req.url !== '/proxy') {
    res.writeHead(404, { 'Content-Length': 0 });
    res.end();
    return;
  }
  try {
    const r = await call();
    if (r.status !== 200) throw new Error('upstream status ' + r.status);
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': r.body.length });
    res.end(r.body);
  } catch (e) {
    const msg = Buffer.from(String(e));
    res.writeHead(502, { 'Content-Type': 'text/plain', 'Content-Length': msg.length });
    res.end(msg);
  }
});
server.keepAliveTimeout = 60000; // wrk's connections stay open between warm-up and run
server.headersTimeout = 65000;
server.listen(port, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
