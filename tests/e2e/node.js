#!/usr/bin/env node
// One Socket.IO 4.8 node for the stickyd end-to-end tests.
//
//   node node.js --name n1 --port 0 [--host 127.0.0.1] [--cookie] [--tag-prefix [TAG]]
//                [--print-sessions] [--static DIR] [--recovery] [--exit-with-stdin]
//
// Listens on --host (default 127.0.0.1; any 127.0.0.x, so that several nodes share a port as
// pods behind one DNS name do) and --port (0 = ephemeral) and prints exactly one line
// `READY <port>` on stdout once listening. --print-sessions: also a line `SESSION <sid>` for
// every Engine.IO session created (an event a test can await). Engine.IO/Socket.IO on the default path /socket.io/, allowEIO3,
// CORS reflecting the origin with credentials, pingInterval/pingTimeout 2000 ms.
//
// --tag-prefix: the node makes tagged sids itself, `<TAG>.<20 random base64url chars>` (TAG
// defaults to the name), through Socket.IO's `io.engine.generateId` hook.
//
// --recovery: Socket.IO connection state recovery (connectionStateRecovery, 2 min,
// skipMiddlewares), and the emits a recovering client must get: every 100 ms a broadcast
// `tock` {node, n} (n counts on this node), so that every socket has an offset and misses some
// while it is away.
//
// Socket.IO:  `echo` with an ack answers {node: <name>, data}.
//             `echosid` with an ack answers {node, sid: <this node's Engine.IO id>, data}.
//             `later` {ms, data} with an ack: acks at once, and emits `later` {node, data} to the
//             socket's own room `ms` later (while it is away, for a recovery test).
//             `whoami` with an ack answers {node, id, sid, recovered} (Socket.IO id, Engine.IO
//             id, socket.recovered).
// HTTP:       GET /whoami -> {"node": name, "cookie": <Cookie header or null>} (chunked body)
//             GET /setserverid -> like /whoami, plus `Set-Cookie: SERVERID=<name>; path=/`
//             GET /stats  -> JSON with every counter below (Content-Length body)
//             GET /health -> 200, or 503 after PUT /health/fail (PUT /health/ok: 200 again):
//                            a node that fails its checks while it still serves
//             GET /static/<name> -> the file DIR/<name> with --static DIR (the browser tests'
//                            page, served through stickyd from the nodes like an application's)
// Counters:   every sid this node ever created; Engine.IO connection_error by code; requests
//             and upgrades per method; "foreign" requests (a `sid` query parameter that this
//             node never created); OPTIONS per owned sid; requests carrying the `io` cookie;
//             every query parameter name of Engine.IO requests; Socket.IO connections that
//             recovered a session.
// Exits on SIGTERM/SIGINT, and with --exit-with-stdin when stdin closes (the harness passes
// it so that a crashed test process leaves no node behind).
'use strict';

const http = require('node:http');
const fs = require('node:fs');
const crypto = require('node:crypto');
const { Server } = require('socket.io');

function parseArgs(argv) {
  const out = { name: null, port: 0, host: '127.0.0.1', cookie: false, tagPrefix: null, printSessions: false, staticDir: null, recovery: false, exitWithStdin: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--name') out.name = argv[++i];
    else if (a === '--port') out.port = Number(argv[++i]);
    else if (a === '--host') out.host = argv[++i];
    else if (a === '--cookie') out.cookie = true;
    else if (a === '--print-sessions') out.printSessions = true;
    else if (a === '--tag-prefix') out.tagPrefix = argv[i + 1] && !argv[i + 1].startsWith('--') ? argv[++i] : '';
    else if (a === '--static') out.staticDir = argv[++i];
    else if (a === '--recovery') out.recovery = true;
    else if (a === '--exit-with-stdin') out.exitWithStdin = true;
    else {
      process.stderr.write(`node.js: unknown argument ${a}\n`);
      process.exit(2);
    }
  }
  if (!out.name || !Number.isInteger(out.port) || out.port < 0 || out.port > 65535 || !/^127\.\d+\.\d+\.\d+$/.test(out.host || '')) {
    process.stderr.write('usage: node node.js --name NAME --port PORT [--host 127.x.y.z] [--cookie]\n');
    process.exit(2);
  }
  if (out.tagPrefix === '') out.tagPrefix = out.name;
  return out;
}

const args = parseArgs(process.argv.slice(2));
const NAME = args.name;
const ENGINE_PATH = '/socket.io/';
const MAX_DETAILS = 50;

const stats = {
  node: NAME,
  cookieOption: args.cookie,
  recoveryOption: args.recovery,
  tagPrefix: args.tagPrefix,
  requests: 0,                 // every HTTP request (engine and others)
  requestsByMethod: {},        // every HTTP request, by method
  engineRequests: 0,           // requests on ENGINE_PATH (not upgrades)
  engineRequestsByMethod: {},
  upgrades: 0,                 // 'upgrade' events on ENGINE_PATH
  withSid: 0,                  // engine requests/upgrades with a sid parameter
  queryKeys: {},               // engine requests/upgrades: query parameter name -> count
  ownedSidByMethod: {},        // ... whose sid this node created, by method (UPGRADE for ws)
  foreign: 0,                  // ... whose sid this node never created
  foreignByMethod: {},
  foreignDetails: [],          // first MAX_DETAILS: {method, url, cookie}
  withIoCookie: 0,             // engine requests/upgrades carrying an `io` cookie
  ioCookieMismatch: 0,         // ... whose io cookie is not the request's sid parameter
  ioCookieMismatchDetails: [], // first MAX_DETAILS: {url, cookie}
  cookieNames: {},             // every request/upgrade: cookie name -> requests carrying it
  optionsBySid: {},            // OPTIONS count per owned sid
  handshakes: 0,               // Engine.IO sessions created
  handshakesByTransport: {},   // initial transport name
  handshakesByProtocol: {},    // EIO 3 or 4
  transportUpgrades: 0,        // polling -> websocket upgrades completed
  closes: 0,
  closeReasons: {},
  closedSids: {},              // sid -> {reason, at (ms since epoch)} of every closed session
  connectionErrors: {},        // code -> count
  connectionErrorDetails: [],  // first MAX_DETAILS: {code, message, url, method, sid, at}
  ioConnections: 0,            // Socket.IO (namespace /) connections
  ioRecovered: 0,              // ... that recovered a session (socket.recovered)
  echoes: 0,
  sids: [],                    // every sid ever created, in order
};
const created = new Set();

function bump(obj, key) {
  obj[key] = (obj[key] || 0) + 1;
}

function sidOf(url) {
  const q = url.indexOf('?');
  if (q < 0) return null;
  const params = new URLSearchParams(url.slice(q + 1));
  return params.has('sid') ? params.get('sid') : null;
}

function isEnginePath(url) {
  const q = url.indexOf('?');
  const p = q < 0 ? url : url.slice(0, q);
  return p === ENGINE_PATH || p === ENGINE_PATH.slice(0, -1);
}

function hasIoCookie(req) {
  const c = req.headers.cookie;
  return typeof c === 'string' && /(?:^|;\s*)io=/.test(c);
}

function cookiePairs(req) {
  const c = req.headers.cookie;
  if (typeof c !== 'string') return [];
  return c.split(';').map((p) => p.trim()).filter(Boolean).map((p) => {
    const eq = p.indexOf('=');
    return eq < 0 ? [p, ''] : [p.slice(0, eq), p.slice(eq + 1)];
  });
}

function account(req, kind) {
  for (const [name] of cookiePairs(req)) bump(stats.cookieNames, name);
  if (!isEnginePath(req.url)) return;
  const q = req.url.indexOf('?');
  if (q >= 0) for (const key of new Set(new URLSearchParams(req.url.slice(q + 1)).keys())) bump(stats.queryKeys, key);
  if (hasIoCookie(req)) stats.withIoCookie++;
  const sid = sidOf(req.url);
  const io = cookiePairs(req).find(([name]) => name === 'io');
  if (io && sid !== null && io[1] !== sid) {
    stats.ioCookieMismatch++;
    if (stats.ioCookieMismatchDetails.length < MAX_DETAILS) stats.ioCookieMismatchDetails.push({ url: req.url, cookie: req.headers.cookie });
  }
  if (sid === null) return;
  stats.withSid++;
  const method = kind === 'upgrade' ? 'UPGRADE' : req.method;
  if (created.has(sid)) {
    bump(stats.ownedSidByMethod, method);
    if (method === 'OPTIONS') bump(stats.optionsBySid, sid);
  } else {
    stats.foreign++;
    bump(stats.foreignByMethod, method);
    if (stats.foreignDetails.length < MAX_DETAILS) {
      stats.foreignDetails.push({ method, url: req.url, cookie: req.headers.cookie || null });
    }
  }
}

// Non-Engine.IO routes. This listener is registered BEFORE Socket.IO attaches, so engine.io
// keeps it and calls it only for requests outside its path.
let healthy = true;

const STATIC_TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8' };

function serveStatic(name, res) {
  const type = STATIC_TYPES[/\.[a-z]+$/.exec(name)?.[0]];
  if (!args.staticDir || !/^[A-Za-z0-9_-][A-Za-z0-9_.-]*$/.test(name) || !type) {
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end('not found\n');
    return;
  }
  fs.readFile(`${args.staticDir}/${name}`, (err, data) => {
    if (err) {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found\n');
      return;
    }
    res.writeHead(200, { 'Content-Type': type, 'Content-Length': data.length, 'Cache-Control': 'no-store' });
    res.end(data);
  });
}

function appHandler(req, res) {
  const path = req.url.split('?')[0];
  if (req.method === 'GET' && path.startsWith('/static/')) {
    serveStatic(path.slice('/static/'.length), res);
    return;
  }
  if (req.method === 'GET' && path === '/whoami') {
    // No Content-Length: Node sends it chunked, which the raw HTTP reader must handle.
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.write(JSON.stringify({ node: NAME, cookie: req.headers.cookie ?? null }));
    res.end();
    return;
  }
  if (req.method === 'GET' && path === '/setserverid') {
    // An application that sets HAProxy's cookie itself (server_cookie mode rewrite).
    res.writeHead(200, { 'Content-Type': 'application/json', 'Set-Cookie': `SERVERID=${NAME}; path=/` });
    res.end(JSON.stringify({ node: NAME, cookie: req.headers.cookie ?? null }));
    return;
  }
  if (path === '/health' || path === '/health/fail' || path === '/health/ok') {
    if (req.method === 'PUT') healthy = path === '/health/ok';
    res.writeHead(healthy || req.method === 'PUT' ? 200 : 503, { 'Content-Type': 'text/plain', 'Content-Length': 3 });
    res.end(healthy ? 'ok\n' : 'ko\n');
    return;
  }
  if (req.method === 'GET' && path === '/stats') {
    const body = JSON.stringify(stats);
    res.writeHead(200, {
      'Content-Type': 'application/json',
      'Content-Length': Buffer.byteLength(body),
    });
    res.end(body);
    return;
  }
  res.writeHead(404, { 'Content-Type': 'text/plain' });
  res.end('not found\n');
}

const httpServer = http.createServer(appHandler);

const io = new Server(httpServer, {
  path: ENGINE_PATH,
  allowEIO3: true,
  cookie: args.cookie,
  cors: { origin: true, credentials: true },
  pingInterval: 2000,
  pingTimeout: 2000,
  ...(args.recovery ? { connectionStateRecovery: { maxDisconnectionDuration: 2 * 60 * 1000, skipMiddlewares: true } } : {}),
});

if (args.recovery) {
  let tocks = 0;
  setInterval(() => io.emit('tock', { node: NAME, n: ++tocks }), 100).unref();
}

// Counting listeners run before engine.io's handlers (prepended after it attached).
httpServer.prependListener('request', (req) => {
  stats.requests++;
  bump(stats.requestsByMethod, req.method);
  if (isEnginePath(req.url)) {
    stats.engineRequests++;
    bump(stats.engineRequestsByMethod, req.method);
  }
  account(req, 'request');
});
httpServer.prependListener('upgrade', (req) => {
  if (isEnginePath(req.url)) stats.upgrades++;
  account(req, 'upgrade');
});

// Record every sid at creation time, before the handshake response can leave the node.
const engine = io.engine;
if (args.tagPrefix !== null) {
  // What an application does to tag its own sids (stickyd `sticky.backend_tags`).
  engine.generateId = () => `${args.tagPrefix}.${crypto.randomBytes(15).toString('base64url')}`;
}
const originalGenerateId = engine.generateId.bind(engine);
engine.generateId = (req) => {
  const remember = (id) => {
    created.add(id);
    stats.sids.push(id);
    return id;
  };
  const id = originalGenerateId(req);
  return id && typeof id.then === 'function' ? id.then(remember) : remember(id);
};

engine.on('connection', (socket) => {
  if (!created.has(socket.id)) {
    // generateId was bypassed somehow: still record it.
    created.add(socket.id);
    stats.sids.push(socket.id);
  }
  stats.handshakes++;
  if (args.printSessions) process.stdout.write(`SESSION ${socket.id}\n`);
  bump(stats.handshakesByTransport, socket.transport.name);
  bump(stats.handshakesByProtocol, String(socket.protocol));
  socket.on('upgrade', () => {
    stats.transportUpgrades++;
  });
  socket.on('close', (reason) => {
    stats.closes++;
    bump(stats.closeReasons, reason);
    stats.closedSids[socket.id] = { reason, at: Date.now() };
  });
});

engine.on('connection_error', (err) => {
  const code = err && err.code !== undefined ? err.code : 'unknown';
  bump(stats.connectionErrors, String(code));
  if (stats.connectionErrorDetails.length < MAX_DETAILS) {
    stats.connectionErrorDetails.push({
      code,
      message: err && err.message,
      method: err && err.req && err.req.method,
      url: err && err.req && err.req.url,
      sid: err && err.req && err.req.url ? sidOf(err.req.url) : null,
      at: Date.now(),
    });
  }
});

io.on('connection', (socket) => {
  stats.ioConnections++;
  if (socket.recovered) stats.ioRecovered++;
  socket.on('whoami', (ack) => {
    if (typeof ack === 'function') ack({ node: NAME, id: socket.id, sid: socket.conn.id, recovered: socket.recovered });
  });
  socket.on('later', (req, ack) => {
    const room = socket.id;
    setTimeout(() => io.to(room).emit('later', { node: NAME, data: req && req.data }), Math.min(Number(req && req.ms) || 0, 10000));
    if (typeof ack === 'function') ack({ node: NAME });
  });
  socket.on('echo', (data, ack) => {
    stats.echoes++;
    if (typeof ack === 'function') ack({ node: NAME, data });
  });
  socket.on('echosid', (data, ack) => {
    stats.echoes++;
    if (typeof ack === 'function') ack({ node: NAME, sid: socket.conn.id, data });
  });
});

let exiting = false;
function shutdown(code) {
  if (exiting) return;
  exiting = true;
  // Do not wait for keep-alive or long-polling connections: exit right away.
  process.exit(code);
}
process.on('SIGTERM', () => shutdown(0));
process.on('SIGINT', () => shutdown(0));
if (args.exitWithStdin) {
  process.stdin.on('end', () => shutdown(0));
  process.stdin.on('close', () => shutdown(0));
  process.stdin.on('error', () => shutdown(0));
  process.stdin.resume();
}

httpServer.on('error', (err) => {
  process.stderr.write(`node ${NAME}: server error: ${err.stack || err}\n`);
  shutdown(1);
});

httpServer.listen(args.port, args.host, () => {
  process.stdout.write(`READY ${httpServer.address().port}\n`);
});
