#!/usr/bin/env node
// One Socket.IO 4.8 node of the stickyd demo (packaging/demo.sh starts three behind stickyd).
//
//   node server.js --name n1 --port 3001 --admin 127.0.0.1:9901
//
// HTTP:      GET /              the demo page (index.html)
//            GET /api/sessions  stickyd's admin API GET /backends, passed on (the page's
//                               sessions-per-node view)
//            GET /health        200 (stickyd's health checks)
// Socket.IO: `whoami` (ack) -> {node, sid: this node's Engine.IO id of the caller};
//            `kill` (ack) -> acks, then the process exits (demo.sh restarts it).
// Listens on 127.0.0.1 only.
'use strict';

const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { Server } = require('socket.io');

function parseArgs(argv) {
  const out = { name: null, port: NaN, admin: null };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--name') out.name = argv[++i];
    else if (argv[i] === '--port') out.port = Number(argv[++i]);
    else if (argv[i] === '--admin') out.admin = argv[++i];
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  if (!out.name || !Number.isInteger(out.port) || !/^127\.0\.0\.1:\d+$/.test(out.admin || '')) {
    throw new Error('usage: node server.js --name NAME --port PORT --admin 127.0.0.1:PORT');
  }
  return out;
}

const args = parseArgs(process.argv.slice(2));
const [adminHost, adminPort] = args.admin.split(':');
const page = fs.readFileSync(path.join(__dirname, 'index.html'));

function reply(res, status, type, body) {
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
  res.end(body);
}

function sessions(res) {
  const req = http.get({ host: adminHost, port: Number(adminPort), path: '/backends', timeout: 2000 }, (admin) => {
    const chunks = [];
    admin.on('data', (c) => chunks.push(c));
    admin.on('end', () => reply(res, admin.statusCode === 200 ? 200 : 502, 'application/json', Buffer.concat(chunks).toString()));
    admin.on('error', () => reply(res, 502, 'application/json', '{"error":"admin API"}'));
  });
  req.on('timeout', () => req.destroy(new Error('timeout')));
  req.on('error', (err) => reply(res, 502, 'application/json', JSON.stringify({ error: `admin API: ${err.message}` })));
}

const server = http.createServer((req, res) => {
  const p = req.url.split('?')[0];
  if (req.method !== 'GET') return reply(res, 405, 'text/plain', 'method not allowed\n');
  if (p === '/') return reply(res, 200, 'text/html; charset=utf-8', page);
  if (p === '/api/sessions') return sessions(res);
  if (p === '/health') return reply(res, 200, 'text/plain', 'ok\n');
  return reply(res, 404, 'text/plain', 'not found\n');
});

// Short ping settings: a tab whose node died notices within seconds even on polling.
const io = new Server(server, { pingInterval: 5000, pingTimeout: 4000 });

io.on('connection', (socket) => {
  socket.on('whoami', (ack) => typeof ack === 'function' && ack({ node: args.name, sid: socket.conn.id }));
  socket.on('kill', (ack) => {
    process.stdout.write(`node ${args.name}: killed from a tab (session ${socket.conn.id})\n`);
    if (typeof ack === 'function') ack({ node: args.name });
    // Give the ack a moment to leave, then die as a crashed node would: no goodbye to anyone.
    setTimeout(() => process.exit(3), 100);
  });
});

server.listen(args.port, '127.0.0.1', () => {
  process.stdout.write(`node ${args.name}: listening on 127.0.0.1:${server.address().port}\n`);
});
