'use strict';
// Soak test of stickyd: many HTTP long-polling requests over keep-alive connections, then
// many websocket tunnels in bounded batches, against three fake Engine.IO backends. Records
// stickyd's RSS and open fd count at a baseline (after a warm-up) and after everything has
// been closed and has settled, and prints a table and a verdict line, `SOAK ok` or
// `SOAK FAILED: <why>`. Exit status 0 iff SOAK ok. Run through tests/bench/soak.sh.
//
//   node tests/bench/soak.js [--requests N] [--tunnels M] [--conns C] [--batch B]
//        [--frames F] [--rss-slack-mib X] [--fd-slack K] [--timeout SEC] [--keep-logs]
//        [--rounds R] [--abrupt P] [--idle-timeout DUR] [--handshake-ratio H]
//        [--open-concurrency K] [--warmup-requests N] [--warmup-tunnels M]
// (see soak.sh for what each option means)
//
// Everything binds and connects to 127.0.0.1 only; every wait is bounded, and a global
// watchdog (--timeout) stops the run. The backends run in a child process (this file with
// --backend) so that they do not share a core with the load generator.
//
// The fake backends are strict about stickiness: a polling request or an upgrade with a sid
// the backend did not issue is answered `400 {"code":1,...}` as engine.io does and counted as
// a misroute, which fails the soak.

const { spawn, fork } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const HOST = '127.0.0.1';
const REPO_DIR = path.resolve(__dirname, '..', '..');
const E2E_DIR = path.join(REPO_DIR, 'tests', 'e2e');

function loadWs() {
  const io = require.resolve('socket.io', { paths: [E2E_DIR] });
  return require(require.resolve('ws', { paths: [path.dirname(io)] }));
}

// Engine.IO handshake values the backends announce (as a real Socket.IO 4 node does).
const PING_INTERVAL = 25000;
const PING_TIMEOUT = 20000;

function newSid() {
  return crypto.randomBytes(15).toString('base64url'); // 20 characters, like engine.io
}

function openPacket(sid) {
  return '0' + JSON.stringify({
    sid, upgrades: ['websocket'], pingInterval: PING_INTERVAL, pingTimeout: PING_TIMEOUT,
    maxPayload: 1000000,
  });
}

// engine.io reads the query with URLSearchParams: the last sid wins.
function sidOf(url) {
  const q = url.indexOf('?');
  if (q < 0) return '';
  return new URLSearchParams(url.slice(q + 1)).get('sid') || '';
}

// =======================================================================================
// Backend role: three fake Engine.IO nodes in one process.

function runBackends() {
  const { WebSocketServer } = loadWs();
  const nodes = [];
  const UNKNOWN = JSON.stringify({ code: 1, message: 'Session ID unknown' });

  function makeNode(index) {
    const st = {
      name: `n${index + 1}`, port: 0, requests: 0, handshakes: 0, polls: 0, posts: 0,
      misroutes: 0, wsFirst: 0, wsUpgrades: 0, wsOpen: 0, wsClosed: 0, frames: 0,
    };
    const sids = new Set();
    const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
    const server = http.createServer((req, res) => {
      st.requests++;
      const sid = sidOf(req.url);
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        let status = 200;
        let body;
        if (!req.url.startsWith('/socket.io/')) {
          status = 404;
          body = 'not found';
        } else if (!sid) {
          const s = newSid();
          sids.add(s);
          st.handshakes++;
          body = openPacket(s);
        } else if (!sids.has(sid)) {
          st.misroutes++;
          status = 400;
          body = UNKNOWN;
        } else if (req.method === 'POST') {
          st.posts++;
          body = 'ok';
        } else {
          st.polls++;
          body = '2';
        }
        res.writeHead(status, {
          'Content-Type': status === 400 ? 'application/json' : 'text/plain; charset=UTF-8',
          'Content-Length': Buffer.byteLength(body),
        });
        res.end(body);
      });
    });
    server.keepAliveTimeout = 5000; // Node's default; stickyd's backend_keepalive is below it
    server.on('upgrade', (req, socket, head) => {
      socket.on('error', () => {});
      const sid = sidOf(req.url);
      if (sid && !sids.has(sid)) {
        st.misroutes++;
        socket.end('HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n' +
          `Content-Length: ${UNKNOWN.length}\r\nConnection: close\r\n\r\n${UNKNOWN}`);
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => {
        st.wsOpen++;
        ws.on('error', () => {});
        ws.on('close', () => { st.wsOpen--; st.wsClosed++; });
        ws.on('message', (data, isBinary) => {
          st.frames++;
          if (!isBinary && data.length === 6 && data.toString() === '2probe') ws.send('3probe');
          else ws.send(data, { binary: isBinary });
        });
        if (sid) {
          st.wsUpgrades++;
        } else {
          const s = newSid();
          sids.add(s);
          st.wsFirst++;
          ws.send(openPacket(s));
        }
      });
    });
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, HOST, () => {
        st.port = server.address().port;
        nodes.push({ st, server, wss });
        resolve();
      });
    });
  }

  Promise.all([0, 1, 2].map(makeNode)).then(() => {
    nodes.sort((a, b) => a.st.name.localeCompare(b.st.name));
    process.send({ type: 'ready', ports: nodes.map((n) => n.st.port) });
  }, (err) => {
    process.send({ type: 'fatal', error: String(err) });
    process.exit(1);
  });
  process.on('message', (m) => {
    if (m && m.type === 'stats') process.send({ type: 'stats', id: m.id, stats: nodes.map((n) => n.st) });
    if (m && m.type === 'stop') process.exit(0);
  });
  process.on('disconnect', () => process.exit(0)); // parent gone: never outlive it
}

// =======================================================================================
// Load generator role.

function parseArgs(argv) {
  const o = {
    requests: 200000, tunnels: 5000, conns: 50, batch: 1000, frames: 3, rssSlackMib: 20,
    fdSlack: 3, timeout: 900, keepLogs: false, openConcurrency: 200, warmRequests: 2000,
    warmTunnels: 100, rounds: 1, idleTimeout: '', abrupt: 0, handshakeRatio: 0.1,
  };
  const num = (name, v, min) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) throw new Error(`${name} needs a number >= ${min}, got ${v}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    switch (a) {
      case '--requests': o.requests = Math.floor(num(a, next(), 0)); break;
      case '--tunnels': o.tunnels = Math.floor(num(a, next(), 0)); break;
      case '--conns': o.conns = Math.floor(num(a, next(), 1)); break;
      case '--batch': o.batch = Math.floor(num(a, next(), 1)); break;
      case '--frames': o.frames = Math.floor(num(a, next(), 0)); break;
      case '--rss-slack-mib': o.rssSlackMib = num(a, next(), 0); break;
      case '--fd-slack': o.fdSlack = Math.floor(num(a, next(), 0)); break;
      case '--timeout': o.timeout = num(a, next(), 1); break;
      case '--open-concurrency': o.openConcurrency = Math.floor(num(a, next(), 1)); break;
      case '--warmup-requests': o.warmRequests = Math.floor(num(a, next(), 0)); break;
      case '--warmup-tunnels': o.warmTunnels = Math.floor(num(a, next(), 0)); break;
      case '--rounds': o.rounds = Math.floor(num(a, next(), 1)); break;
      case '--abrupt': o.abrupt = num(a, next(), 0); break;
      case '--handshake-ratio': o.handshakeRatio = num(a, next(), 0); break;
      case '--idle-timeout':
        o.idleTimeout = next();
        if (!/^\d+(ms|s|m|h)?$/.test(o.idleTimeout)) throw new Error(`--idle-timeout: bad duration ${o.idleTimeout}`);
        break;
      case '--keep-logs': o.keepLogs = true; break;
      default: throw new Error(`unknown option ${a}`);
    }
  }
  return o;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.now();

function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise,
    new Promise((_, rej) => { t = setTimeout(() => rej(new Error(`timeout: ${what}`)), ms); }),
  ]).finally(() => clearTimeout(t));
}

// ---------------------------------------------------------------------------------------
// /proc figures of the stickyd process.

function procStatus(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/status`, 'latin1');
    const kib = (k) => {
      const m = s.match(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm'));
      return m ? Number(m[1]) : NaN;
    };
    return { rss: kib('VmRSS'), hwm: kib('VmHWM') };
  } catch {
    return null;
  }
}

function fdCount(pid) {
  try {
    return fs.readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return NaN;
  }
}

function cpuSeconds(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, USER_HZ = 100 on Linux
  } catch {
    return NaN;
  }
}

// ---------------------------------------------------------------------------------------
// A minimal HTTP/1.1 keep-alive client on one raw socket: one request at a time, responses
// framed by Content-Length or chunked (or EOF), interim 1xx responses skipped. Raw sockets
// keep the generator cheap and make every connection (re)open visible.

class RawConn {
  constructor(port, stats) {
    this.port = port;
    this.stats = stats;
    this.sock = null;
    this.buf = null;
    this.pending = null;
  }

  connect() {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: HOST, port: this.port });
      sock.setNoDelay(true);
      const onErr = (e) => { sock.destroy(); reject(e); };
      sock.once('error', onErr);
      sock.once('connect', () => {
        sock.off('error', onErr);
        this.stats.connects++;
        this.sock = sock;
        this.buf = null;
        sock.on('data', (c) => this.onData(c));
        sock.on('error', () => {});
        sock.on('close', () => {
          if (this.sock === sock) this.sock = null;
          if (this.pending) {
            if (this.pending.eofBody) this.finish(this.pending.eofBody());
            else this.fail(new Error('connection closed before the response ended'));
          }
        });
        resolve();
      });
    });
  }

  async request(data, timeoutMs = 10000) {
    if (!this.sock) await withTimeout(this.connect(), timeoutMs, 'connect');
    const sock = this.sock;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.fail(new Error('response timeout'));
        sock.destroy();
      }, timeoutMs);
      this.pending = { resolve, reject, timer, head: null };
      sock.write(data);
    });
  }

  finish(res) {
    const p = this.pending;
    this.pending = null;
    clearTimeout(p.timer);
    if (res.close && this.sock) {
      this.stats.serverCloses++;
      this.sock.destroy();
      this.sock = null;
    }
    p.resolve(res);
  }

  fail(err) {
    const p = this.pending;
    this.pending = null;
    if (!p) return;
    clearTimeout(p.timer);
    p.reject(err);
  }

  onData(chunk) {
    this.buf = this.buf ? Buffer.concat([this.buf, chunk]) : chunk;
    if (!this.pending) {
      this.stats.strayBytes += this.buf.length;
      this.buf = null;
      return;
    }
    this.parse();
  }

  parse() {
    const p = this.pending;
    for (;;) {
      if (!p.head) {
        const end = this.buf.indexOf('\r\n\r\n');
        if (end < 0) {
          if (this.buf.length > 65536) this.protocolError('response head too large');
          return;
        }
        const lines = this.buf.toString('latin1', 0, end).split('\r\n');
        const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
        if (!m) return this.protocolError(`bad status line ${JSON.stringify(lines[0].slice(0, 60))}`);
        const headers = Object.create(null);
        const setCookies = [];
        for (let i = 1; i < lines.length; i++) {
          const c = lines[i].indexOf(':');
          if (c <= 0) continue;
          const k = lines[i].slice(0, c).trim().toLowerCase();
          const v = lines[i].slice(c + 1).trim();
          if (k === 'set-cookie') setCookies.push(v);
          else headers[k] = headers[k] === undefined ? v : `${headers[k]}, ${v}`;
        }
        const status = Number(m[1]);
        this.buf = this.buf.subarray(end + 4);
        if (status >= 100 && status < 200) continue; // interim response
        const close = /\bclose\b/i.test(headers.connection || '') || lines[0].startsWith('HTTP/1.0');
        p.head = { status, headers, setCookies, close };
        if (headers['content-length'] !== undefined) p.head.length = Number(headers['content-length']);
        else if (/chunked/i.test(headers['transfer-encoding'] || '')) p.head.chunked = true;
        else if (status === 204 || status === 304) p.head.length = 0;
        else {
          p.head.close = true;
          p.eofBody = () => ({ ...p.head, body: this.buf ? this.buf.toString() : '' });
          return;
        }
      }
      const h = p.head;
      if (h.length !== undefined) {
        if (this.buf.length < h.length) return;
        const body = this.buf.toString('utf8', 0, h.length);
        const rest = this.buf.subarray(h.length);
        this.buf = rest.length ? rest : null;
        if (this.buf) this.stats.strayBytes += this.buf.length;
        this.buf = null;
        return this.finish({ ...h, body });
      }
      // chunked: decode from the start of the buffer each time (bodies here are tiny)
      let off = 0;
      const parts = [];
      for (;;) {
        const le = this.buf.indexOf('\r\n', off);
        if (le < 0) return;
        const size = parseInt(this.buf.toString('latin1', off, le), 16);
        if (!Number.isFinite(size)) return this.protocolError('bad chunk size');
        if (size === 0) {
          const te = this.buf.indexOf('\r\n\r\n', le);
          const simple = this.buf.length >= le + 4 && this.buf[le + 2] === 13 && this.buf[le + 3] === 10;
          if (!simple && te < 0) return;
          this.buf = null;
          return this.finish({ ...h, body: Buffer.concat(parts).toString() });
        }
        if (this.buf.length < le + 2 + size + 2) return;
        parts.push(this.buf.subarray(le + 2, le + 2 + size));
        off = le + 2 + size + 2;
      }
    }
  }

  protocolError(what) {
    this.fail(new Error(what));
    if (this.sock) this.sock.destroy();
    this.sock = null;
    this.buf = null;
  }

  close() {
    if (this.sock) this.sock.destroy();
    this.sock = null;
  }
}

class Pool {
  constructor(port, size, stats) {
    this.port = port;
    this.size = size;
    this.stats = stats;
    this.idle = [];
    this.all = [];
    this.waiters = [];
  }

  acquire() {
    if (this.idle.length) return Promise.resolve(this.idle.pop());
    if (this.all.length < this.size) {
      const c = new RawConn(this.port, this.stats);
      this.all.push(c);
      return Promise.resolve(c);
    }
    return new Promise((r) => this.waiters.push(r));
  }

  release(c) {
    const w = this.waiters.shift();
    if (w) w(c);
    else this.idle.push(c);
  }

  async request(data, timeoutMs) {
    const c = await this.acquire();
    try {
      return await c.request(data, timeoutMs);
    } finally {
      this.release(c);
    }
  }

  close() {
    for (const c of this.all) c.close();
    this.all = [];
    this.idle = [];
  }
}

// ---------------------------------------------------------------------------------------

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(`soak: ${e.message}`);
    process.exit(2);
  }
  const WebSocket = loadWs();
  const STICKYD_BIN = process.env.STICKYD_BIN || path.join(REPO_DIR, 'build', 'stickyd');
  if (!fs.existsSync(STICKYD_BIN)) {
    console.log(`SOAK FAILED: stickyd binary not found: ${STICKYD_BIN} (build it, or set STICKYD_BIN)`);
    process.exit(1);
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'stickyd-soak-'));
  const logPath = path.join(tmp, 'stickyd.log');
  const logFile = fs.openSync(logPath, 'w');
  const t0 = now();
  const elapsed = () => ((now() - t0) / 1000).toFixed(1);
  const say = (s) => process.stdout.write(`[${elapsed().padStart(6)}s] ${s}\n`);

  let backends = null;
  let proxy = null;
  let proxyExit = null; // {code, signal} once stickyd has exited
  let finished = false;
  let stopping = false; // set once stickyd is being stopped on purpose

  const cleanup = () => {
    if (proxy && !proxyExit) { try { process.kill(proxy.pid, 'SIGKILL'); } catch {} }
    if (backends && backends.exitCode === null) { try { backends.kill('SIGKILL'); } catch {} }
  };
  process.on('exit', cleanup);
  const abort = (why) => {
    if (finished) return;
    finished = true;
    console.log(`SOAK FAILED: ${why}`);
    console.log(`stickyd log kept in ${logPath}`);
    cleanup();
    process.exit(1);
  };
  const watchdog = setTimeout(() => abort(`global timeout of ${opts.timeout} s reached (--timeout)`),
    opts.timeout * 1000);
  watchdog.unref();
  process.on('SIGINT', () => abort('interrupted'));
  process.on('SIGTERM', () => abort('terminated'));

  // --- backends ---------------------------------------------------------------------
  backends = fork(__filename, ['--backend'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const ports = await withTimeout(new Promise((resolve, reject) => {
    backends.once('message', (m) => (m.type === 'ready' ? resolve(m.ports) : reject(new Error(m.error))));
    backends.once('exit', (c) => reject(new Error(`backend process exited with ${c}`)));
  }), 15000, 'backends ready').catch((e) => abort(`backends did not start: ${e.message}`));
  backends.on('exit', (code, sig) => abort(`backend process exited (code ${code}, signal ${sig})`));
  let statsSeq = 0;
  const backendStats = () => withTimeout(new Promise((resolve) => {
    const id = ++statsSeq;
    const on = (m) => {
      if (m.type === 'stats' && m.id === id) { backends.off('message', on); resolve(m.stats); }
    };
    backends.on('message', on);
    backends.send({ type: 'stats', id });
  }), 5000, 'backend stats');

  // --- stickyd ---------------------------------------------------------------------
  const cfgPath = path.join(tmp, 'stickyd.yaml');
  fs.writeFileSync(cfgPath, [
    '# generated by tests/bench/soak.js',
    `listen: ${HOST}:0`,
    'backends:',
    ...ports.flatMap((p, i) => [`  - name: n${i + 1}`, `    address: ${HOST}:${p}`]),
    'cookie: true',
    'timeouts:',
    '  backend_keepalive: 1s',
    '  shutdown_grace: 5s',
    ...(opts.idleTimeout ? ['affinity:', `  idle_timeout: ${opts.idleTimeout}`] : []),
    'admin:',
    `  listen: ${HOST}:0`,
    'log:',
    '  level: info',
    '',
  ].join('\n'));
  proxy = spawn(STICKYD_BIN, ['-c', cfgPath], { stdio: ['ignore', 'ignore', 'pipe'] });
  const logCounts = { warn: 0, error: 0, other: 0 };
  const notable = [];
  let partial = '';
  let portResolve;
  const portPromise = new Promise((r) => { portResolve = r; });
  let adminResolve;
  const adminPromise = new Promise((r) => { adminResolve = r; });
  proxy.stderr.on('data', (chunk) => {
    fs.writeSync(logFile, chunk);
    const text = partial + chunk.toString();
    const lines = text.split('\n');
    partial = lines.pop();
    for (const line of lines) {
      const m = /(admin )?listening address=127\.0\.0\.1:(\d+)/.exec(line);
      if (m) (m[1] ? adminResolve : portResolve)(Number(m[2]));
      const lv = / (debug|info|warn|error) /.exec(line);
      const level = lv ? lv[1] : 'other';
      if (level === 'warn' || level === 'error' || level === 'other') {
        logCounts[level]++;
        if (notable.length < 8) notable.push(line);
      }
    }
  });
  const proxyExited = new Promise((resolve) => {
    proxy.on('exit', (code, signal) => {
      proxyExit = { code, signal };
      resolve(proxyExit);
      if (!stopping) abort(`stickyd exited during the run (code ${code}, signal ${signal}); ` +
        `last log lines: ${notable.slice(-3).join(' | ') || '(none)'}`);
    });
  });
  const port = await withTimeout(portPromise, 15000, 'stickyd listening line')
    .catch((e) => abort(`stickyd did not start: ${e.message}`));
  const adminPort = await withTimeout(adminPromise, 5000, 'stickyd admin listening line')
    .catch((e) => abort(`stickyd admin did not start: ${e.message}`));
  const pid = proxy.pid;

  // A few gauges from the admin /metrics (one short-lived connection to the admin port).
  const metrics = () => withTimeout(new Promise((resolve, reject) => {
    http.get({ host: HOST, port: adminPort, path: '/metrics', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { body += c; });
      res.on('end', () => {
        const sumOf = (name) => {
          let t = 0;
          for (const m of body.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))) t += Number(m[1]);
          return t;
        };
        resolve({
          sessions: sumOf('stickyd_affinity_sessions'),
          pinned: sumOf('stickyd_affinity_pinned_sessions'),
          clients: sumOf('stickyd_client_connections_open'),
          tunnels: sumOf('stickyd_backend_tunnels_open'),
          requests: sumOf('stickyd_backend_requests_total'),
        });
      });
      res.on('error', reject);
    }).on('error', reject);
  }), 5000, 'admin /metrics');
  say(`stickyd pid ${pid} listening on ${HOST}:${port}; backends on ${ports.join(', ')}; log ${logPath}`);

  // --- sampler -----------------------------------------------------------------------
  const peak = { rss: 0, fds: 0 };
  let sampling = false;
  const sample = () => {
    const s = procStatus(pid);
    const f = fdCount(pid);
    if (sampling) {
      if (s && s.rss > peak.rss) peak.rss = s.rss;
      if (f > peak.fds) peak.fds = f;
    }
    return { rss: s ? s.rss : NaN, hwm: s ? s.hwm : NaN, fds: f };
  };
  const sampler = setInterval(sample, 100);
  sampler.unref();

  // Waits until the fd count has not decreased for `stableMs` (bounded by `maxMs`).
  const settle = async (stableMs = 2500, maxMs = 10000) => {
    const start = now();
    let last = fdCount(pid);
    let lastDrop = now();
    while (now() - start < maxMs) {
      await sleep(200);
      const f = fdCount(pid);
      if (f < last) lastDrop = now();
      last = f;
      if (now() - lastDrop >= stableMs) break;
    }
    return { ms: now() - start, ...sample() };
  };

  // --- workload pieces ------------------------------------------------------------------
  const http1 = { connects: 0, serverCloses: 0, strayBytes: 0 };
  const errors = new Map();
  const countError = (kind) => errors.set(kind, (errors.get(kind) || 0) + 1);
  const totalErrors = () => [...errors.values()].reduce((a, b) => a + b, 0);
  const hostHdr = `Host: ${HOST}:${port}\r\n`;
  let seq = 0;
  const sidRing = [];
  const SID_RING = 4096;
  // A session not used for its idle time is forgotten by stickyd (and would be by a real node):
  // only sids used within half of it are picked again.
  const idleMs = (() => {
    const m = /^(\d+)(ms|s|m|h)?$/.exec(opts.idleTimeout);
    if (!m) return 2 * (PING_INTERVAL + PING_TIMEOUT);
    return Number(m[1]) * { ms: 1, s: 1000, m: 60000, h: 3600000 }[m[2] || 's'];
  })();
  const staleMs = idleMs / 2;
  const rememberSid = (sid) => {
    const e = { sid, last: now() };
    if (sidRing.length < SID_RING) sidRing.push(e);
    else sidRing[seq % SID_RING] = e;
  };
  // refresh = false for requests the client drops at once: stickyd may never read them, so
  // they do not keep the session alive.
  const pickSid = (refresh = true) => {
    if (!sidRing.length) return '';
    const i = Math.floor(Math.random() * sidRing.length);
    const e = sidRing[i];
    const t = now();
    if (t - e.last > staleMs) {
      sidRing[i] = sidRing[sidRing.length - 1];
      sidRing.pop();
      return '';
    }
    if (refresh) e.last = t;
    return e.sid;
  };
  const counts = { handshakes: 0, polls: 0, posts: 0, aborted: 0 };

  const handshakeReq = () => Buffer.from(
    `GET /socket.io/?EIO=4&transport=polling&t=s${++seq} HTTP/1.1\r\n${hostHdr}Accept: */*\r\n\r\n`, 'latin1');

  function checkHandshake(res) {
    if (res.status < 200 || res.status > 299) return { err: `handshake status ${res.status}` };
    const m = /^0\{"sid":"([^"]+)"/.exec(res.body);
    if (!m) return { err: 'handshake body without open packet' };
    const sid = m[1];
    if (!res.setCookies.some((c) => c.startsWith(`io=${sid};`))) return { err: 'handshake without io cookie', sid };
    return { sid };
  }

  // A request on a fresh connection that the client drops (FIN or RST) 0-3 ms after sending
  // it, or part of it: stickyd must release everything the exchange held.
  async function abruptOp() {
    counts.aborted++;
    const sid = pickSid(false);
    const kind = Math.floor(Math.random() * 4);
    let data;
    if (kind === 0 || !sid) {
      data = `GET /socket.io/?EIO=4&transport=polling&t=a${++seq} HTTP/1.1\r\n${hostHdr}\r\n`;
    } else if (kind === 1) {
      data = `GET /socket.io/?EIO=4&transport=polling&t=a${++seq}&sid=${sid} HTTP/1.1\r\n${hostHdr}\r\n`;
    } else if (kind === 2) {
      // body announced, only half of it sent
      data = `POST /socket.io/?EIO=4&transport=polling&sid=${sid} HTTP/1.1\r\n${hostHdr}` +
        'Content-Type: text/plain;charset=UTF-8\r\nContent-Length: 40\r\n\r\n42["half a body"';
    } else {
      data = `GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n${hostHdr}Connection: Upgrade\r\n` +
        `Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${crypto.randomBytes(16).toString('base64')}\r\n\r\n`;
    }
    await withTimeout(new Promise((resolve) => {
      const sock = net.connect({ host: HOST, port });
      sock.on('error', () => {});
      sock.on('close', resolve);
      sock.once('connect', () => {
        sock.write(data);
        setTimeout(() => {
          if (Math.random() < 0.5) sock.destroy();
          else sock.resetAndDestroy();
        }, Math.floor(Math.random() * 4));
      });
    }), 10000, 'aborted request');
  }

  async function httpOp(pool) {
    if (opts.abrupt && Math.random() < opts.abrupt) return abruptOp();
    const r = Math.random();
    const sid = r < opts.handshakeRatio ? '' : pickSid();
    if (!sid) {
      counts.handshakes++;
      const res = await pool.request(handshakeReq());
      const h = checkHandshake(res);
      if (h.sid) rememberSid(h.sid);
      if (h.err) countError(h.err);
      return;
    }
    const cookie = Math.random() < 0.33 ? `Cookie: io=${sid}\r\n` : '';
    const target = `/socket.io/?EIO=4&transport=polling&t=s${++seq}&sid=${sid}`;
    if (r < opts.handshakeRatio + (1 - opts.handshakeRatio) / 2) {
      counts.polls++;
      const res = await pool.request(Buffer.from(`GET ${target} HTTP/1.1\r\n${hostHdr}${cookie}\r\n`, 'latin1'));
      if (res.status < 200 || res.status > 299) countError(`poll GET status ${res.status}`);
      else if (res.body !== '2') countError('poll GET unexpected body');
    } else {
      counts.posts++;
      const body = `42["soak",${seq}]`;
      const res = await pool.request(Buffer.from(`POST ${target} HTTP/1.1\r\n${hostHdr}${cookie}` +
        `Content-Type: text/plain;charset=UTF-8\r\nContent-Length: ${body.length}\r\n\r\n${body}`, 'latin1'));
      if (res.status < 200 || res.status > 299) countError(`poll POST status ${res.status}`);
      else if (res.body !== 'ok') countError('poll POST unexpected body');
    }
  }

  async function httpPhase(n, conns, label) {
    const pool = new Pool(port, conns, http1);
    const connectsAtStart = http1.connects;
    let issued = 0;
    let done = 0;
    const start = now();
    let lastReport = start;
    const worker = async () => {
      while (issued < n) {
        issued++;
        try {
          await httpOp(pool);
        } catch (e) {
          countError(`http failure: ${e.message}`);
        }
        done++;
        if (label && now() - lastReport > 5000) {
          lastReport = now();
          const s = sample();
          say(`${label}: ${done}/${n} requests, ${Math.round(done / ((now() - start) / 1000))} req/s, ` +
            `errors ${totalErrors()}, stickyd rss ${s.rss} KiB fds ${s.fds}`);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(conns, Math.max(n, 1)) }, worker));
    const secs = (now() - start) / 1000;
    pool.close();
    return { done, secs, connects: http1.connects - connectsAtStart };
  }

  const tunnels = { done: 0, failed: 0, upgrade: 0, wsFirst: 0, frames: 0, checks: 0, peakOpen: 0, aborted: 0 };
  let openNow = 0;
  const checkPool = () => new Pool(port, 20, http1);

  function wsInbox(ws) {
    const q = [];
    let waiter = null;
    let closedErr = null;
    ws.on('message', (d) => {
      const s = d.toString();
      if (waiter) { const w = waiter; waiter = null; clearTimeout(w.t); w.resolve(s); } else q.push(s);
    });
    const onEnd = (why) => {
      closedErr = closedErr || new Error(why);
      if (waiter) { const w = waiter; waiter = null; clearTimeout(w.t); w.reject(closedErr); }
    };
    ws.on('close', (code) => onEnd(`websocket closed (${code}) while a frame was awaited`));
    ws.on('error', (e) => onEnd(`websocket error: ${e.message}`));
    return (ms = 10000) => {
      if (q.length) return Promise.resolve(q.shift());
      if (closedErr) return Promise.reject(closedErr);
      return new Promise((resolve, reject) => {
        waiter = { resolve, reject, t: setTimeout(() => { waiter = null; reject(new Error('frame timeout')); }, ms) };
      });
    };
  }

  // Opens one tunnel and exchanges frames; resolves with {ws, sid, wsFirst} still open.
  async function openTunnel(i, pool) {
    const wsFirst = i % 2 === 0;
    let sid = '';
    const headers = {};
    if (!wsFirst) {
      const res = await pool.request(handshakeReq());
      const h = checkHandshake(res);
      if (h.err) throw new Error(h.err);
      sid = h.sid;
      if (i % 4 === 1) headers.Cookie = `io=${sid}`;
    }
    const url = `ws://${HOST}:${port}/socket.io/?EIO=4&transport=websocket${sid ? `&sid=${sid}` : ''}`;
    const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: 10000, headers });
    const next = wsInbox(ws);
    let counted = false;
    try {
      await withTimeout(new Promise((resolve, reject) => {
        ws.once('open', resolve);
        ws.once('error', reject);
        ws.once('unexpected-response', (req, res) => reject(new Error(`upgrade answered ${res.statusCode}`)));
      }), 12000, 'websocket open');
      openNow++;
      counted = true;
      if (openNow > tunnels.peakOpen) tunnels.peakOpen = openNow;
      if (wsFirst) {
        const first = await next();
        const m = /^0\{"sid":"([^"]+)"/.exec(first);
        if (!m) throw new Error('websocket-first without open packet');
        sid = m[1];
      } else {
        ws.send('2probe');
        if ((await next()) !== '3probe') throw new Error('probe not answered');
        ws.send('5');
        if ((await next()) !== '5') throw new Error('upgrade packet not echoed');
      }
      for (let k = 0; k < opts.frames; k++) {
        const msg = `42["soak",${i},${k},"${'x'.repeat(k * 100)}"]`;
        ws.send(msg);
        if ((await next()) !== msg) throw new Error('frame echo mismatch');
        tunnels.frames++;
      }
      return { ws, sid, wsFirst };
    } catch (e) {
      if (counted) openNow--;
      ws.terminate();
      throw e;
    }
  }

  async function closeTunnel(t, pool) {
    const closed = new Promise((r) => t.ws.once('close', r));
    if (opts.abrupt && Math.random() < opts.abrupt) {
      // dropped without a close handshake: FIN or RST
      tunnels.aborted++;
      if (Math.random() < 0.5 || !t.ws._socket) t.ws.terminate();
      else t.ws._socket.resetAndDestroy();
    } else {
      t.ws.close(1000);
    }
    try {
      await withTimeout(closed, 5000, 'websocket close');
    } catch (e) {
      t.ws.terminate();
      throw e;
    }
    // stickyd learnt a websocket-first sid from the first frame: a poll with it must reach
    // the node that issued it (the fake nodes answer 400 code 1 otherwise).
    if (t.wsFirst) {
      tunnels.checks++;
      const res = await pool.request(Buffer.from(`GET /socket.io/?EIO=4&transport=polling&sid=${t.sid} ` +
        `HTTP/1.1\r\n${hostHdr}\r\n`, 'latin1'));
      if (res.status !== 200 || res.body !== '2') throw new Error(`poll after websocket-first answered ${res.status}`);
    }
  }

  async function tunnelPhase(m, label) {
    const pool = checkPool();
    const start = now();
    let next = 0;
    for (let b = 0; next < m; b++) {
      const size = Math.min(opts.batch, m - next);
      const first = next;
      next += size;
      const open = [];
      let cursor = first;
      // open the batch with bounded concurrency; all of it is open at once afterwards
      await Promise.all(Array.from({ length: Math.min(opts.openConcurrency, size) }, async () => {
        while (cursor < first + size) {
          const i = cursor++;
          try {
            const t = await openTunnel(i, pool);
            if (t.wsFirst) tunnels.wsFirst++; else tunnels.upgrade++;
            open.push(t);
          } catch (e) {
            tunnels.failed++;
            countError(`tunnel: ${e.message}`);
          }
        }
      }));
      await Promise.all(open.map(async (t) => {
        try {
          await closeTunnel(t, pool);
          tunnels.done++;
        } catch (e) {
          tunnels.failed++;
          countError(`tunnel close: ${e.message}`);
        } finally {
          openNow--;
        }
      }));
      if (label && (b % 5 === 4 || next >= m)) {
        const s = sample();
        say(`${label}: ${next}/${m} tunnels, failed ${tunnels.failed}, stickyd rss ${s.rss} KiB fds ${s.fds}`);
      }
    }
    pool.close();
    return { secs: (now() - start) / 1000 };
  }

  // --- run ---------------------------------------------------------------------------
  say(`warm-up: ${opts.warmRequests} requests, ${Math.min(opts.warmTunnels, opts.tunnels)} tunnels`);
  await httpPhase(opts.warmRequests, opts.conns, null);
  if (opts.tunnels) await tunnelPhase(Math.min(opts.warmTunnels, opts.tunnels), null);
  const warmErrors = totalErrors();
  const base = await settle();
  say(`baseline: rss ${base.rss} KiB, fds ${base.fds} (settled in ${(base.ms / 1000).toFixed(1)} s)`);
  if (warmErrors) abort(`${warmErrors} errors during the warm-up: ${[...errors].map(([k, v]) => `${k} x${v}`).join('; ')}`);
  errors.clear();
  for (const k of Object.keys(tunnels)) tunnels[k] = 0;
  for (const k of Object.keys(counts)) counts[k] = 0;
  const cpuBefore = cpuSeconds(pid);
  const mBefore = await metrics();
  const before = await backendStats();

  sampling = true;
  peak.rss = base.rss;
  peak.fds = base.fds;
  const h = { done: 0, secs: 0, connects: 0 };
  const tp = { secs: 0 };
  let httpErrors = 0;
  const roundFigures = [];
  for (let round = 1; round <= opts.rounds; round++) {
    const tag = opts.rounds > 1 ? ` (round ${round}/${opts.rounds})` : '';
    say(`http${tag}: ${opts.requests} requests over ${opts.conns} keep-alive connections`);
    const e0 = totalErrors();
    const hr = await httpPhase(opts.requests, opts.conns, 'http');
    httpErrors += totalErrors() - e0;
    h.done += hr.done;
    h.secs += hr.secs;
    h.connects += hr.connects;
    const afterHttp = sample();
    say(`http done: ${hr.done} in ${hr.secs.toFixed(1)} s, errors ${httpErrors}, rss ${afterHttp.rss} KiB, fds ${afterHttp.fds}`);
    say(`tunnels${tag}: ${opts.tunnels} in batches of <= ${opts.batch}, ${opts.frames} frames each`);
    const tr = await tunnelPhase(opts.tunnels, 'tunnels');
    tp.secs += tr.secs;
    if (round < opts.rounds) {
      const st = await settle();
      const mm = await metrics();
      roundFigures.push({ round, rss: st.rss, fds: st.fds, sessions: mm.sessions });
      say(`round ${round} settled: rss ${st.rss} KiB, fds ${st.fds}, affinity sessions ${mm.sessions}`);
    }
  }
  sample();
  sampling = false;
  const cpuUsed = cpuSeconds(pid) - cpuBefore;
  const after = await settle();
  const hwm = procStatus(pid);
  const bs = await backendStats();
  const mAfter = await metrics();
  say(`settled in ${(after.ms / 1000).toFixed(1)} s: rss ${after.rss} KiB, fds ${after.fds}`);

  // stickyd must still be alive, then stop cleanly on SIGTERM
  const aliveAtEnd = !proxyExit;
  stopping = true;
  let stopResult = proxyExit;
  if (aliveAtEnd) {
    process.kill(pid, 'SIGTERM');
    stopResult = await withTimeout(proxyExited, 10000, 'stickyd exit after SIGTERM').catch(() => null);
  }
  finished = true;

  // --- report ------------------------------------------------------------------------
  const sum = (k) => bs.reduce((a, s) => a + s[k], 0) - before.reduce((a, s) => a + s[k], 0);
  const misroutes = sum('misroutes');
  const bOpen = bs.reduce((a, s) => a + s.wsOpen, 0);
  const rssDelta = after.rss - base.rss;
  const rssLimit = Math.round(opts.rssSlackMib * 1024);
  const fdDelta = after.fds - base.fds;
  const reopened = h.connects - opts.rounds * Math.min(opts.conns, opts.requests);
  const row = (k, v) => console.log(`  ${k.padEnd(22)} ${v}`);
  console.log('');
  console.log(`stickyd soak: ${STICKYD_BIN}`);
  row('http requests', `${h.done} (handshakes ${counts.handshakes}, GET polls ${counts.polls}, POSTs ${counts.posts}` +
    `${opts.abrupt ? `, dropped by the client on purpose ${counts.aborted}` : ''})`);
  row('http errors', String(httpErrors));
  row('http req/s', `${h.secs ? Math.round(h.done / h.secs) : 0} (${h.secs.toFixed(1)} s, ${opts.conns} keep-alive connections, ` +
    `${Math.max(0, reopened)} reopened, ${http1.serverCloses} closed by stickyd)`);
  row('tunnels done', `${tunnels.done} (upgrade ${tunnels.upgrade}, websocket-first ${tunnels.wsFirst}), ` +
    `failed ${tunnels.failed}, peak open ${tunnels.peakOpen}, ${tunnels.frames} frames echoed, ` +
    `${tunnels.checks} sid checks, ${tp.secs ? (tunnels.done / tp.secs).toFixed(0) : 0} tunnels/s` +
    `${opts.abrupt ? `, ${tunnels.aborted} dropped without close handshake` : ''}`);
  row('misrouted (backends)', `${misroutes}`);
  row('RSS KiB', `before ${base.rss}  peak ${peak.rss}  after ${after.rss}  (delta ${rssDelta >= 0 ? '+' : ''}${rssDelta}, ` +
    `limit +${rssLimit}; VmHWM ${hwm ? hwm.hwm : '?'})`);
  for (const f of roundFigures) row(`after round ${f.round}`, `rss ${f.rss} KiB, fds ${f.fds}, affinity sessions ${f.sessions}`);
  row('fds', `before ${base.fds}  peak ${peak.fds}  after ${after.fds}  (delta ${fdDelta >= 0 ? '+' : ''}${fdDelta}, ` +
    `limit +-${opts.fdSlack})`);
  row('affinity sessions', `before ${mBefore.sessions}  after ${mAfter.sessions} (~${Math.round((mAfter.sessions - mBefore.sessions) * 140 / 1024)} KiB ` +
    `at 140 B each, they expire after ${opts.idleTimeout ? `idle_timeout ${opts.idleTimeout}` : `2 x (pingInterval + pingTimeout) = ${2 * (PING_INTERVAL + PING_TIMEOUT) / 1000} s`}); ` +
    `after: pinned ${mAfter.pinned}, tunnels open ${mAfter.tunnels}, client connections ${mAfter.clients}`);
  row('stickyd CPU', `${cpuUsed.toFixed(1)} s user+sys during the run`);
  row('stickyd log', `${logCounts.warn} warn, ${logCounts.error} error, ${logCounts.other} unparsed lines`);
  row('stickyd exit', stopResult ? `code ${stopResult.code}, signal ${stopResult.signal}` : 'did not exit within 10 s of SIGTERM');
  row('wall time', `${elapsed()} s`);
  if (errors.size) {
    console.log('  error kinds:');
    for (const [k, v] of [...errors].sort((a, b) => b[1] - a[1]).slice(0, 10)) console.log(`    ${v} x ${k}`);
  }
  if (notable.length) {
    console.log('  first warn/error log lines:');
    for (const l of notable) console.log(`    ${l}`);
  }

  const why = [];
  if (!aliveAtEnd) why.push(`stickyd died (code ${proxyExit.code}, signal ${proxyExit.signal})`);
  else if (!stopResult) why.push('stickyd did not exit within 10 s of SIGTERM');
  else if (stopResult.code !== 0) why.push(`stickyd exited with code ${stopResult.code} signal ${stopResult.signal} on SIGTERM`);
  if (httpErrors) why.push(`${httpErrors} http errors`);
  if (h.done !== opts.requests * opts.rounds) why.push(`${h.done}/${opts.requests * opts.rounds} requests done`);
  if (tunnels.failed || tunnels.done !== opts.tunnels * opts.rounds) {
    why.push(`${tunnels.done}/${opts.tunnels * opts.rounds} tunnels done, ${tunnels.failed} failed`);
  }
  if (misroutes) why.push(`${misroutes} requests reached a node that did not own their sid`);
  if (mAfter.pinned || mAfter.tunnels || mAfter.clients) {
    why.push(`stickyd still counts ${mAfter.pinned} pinned sessions, ${mAfter.tunnels} open tunnels, ` +
      `${mAfter.clients} client connections after everything closed`);
  }
  if (bOpen) why.push(`${bOpen} tunnels still open on the backends`);
  if (Math.abs(fdDelta) > opts.fdSlack) why.push(`fds ${base.fds} -> ${after.fds} (more than +-${opts.fdSlack})`);
  if (!(rssDelta <= rssLimit)) why.push(`RSS grew by ${rssDelta} KiB (more than ${rssLimit} KiB)`);
  if (logCounts.error) why.push(`${logCounts.error} error lines in the stickyd log`);

  backends.removeAllListeners('exit');
  backends.send({ type: 'stop' });
  if (why.length) {
    console.log(`SOAK FAILED: ${why.join('; ')}`);
    console.log(`stickyd log and config kept in ${tmp}`);
    process.exitCode = 1;
  } else {
    console.log('SOAK ok');
    if (opts.keepLogs) console.log(`stickyd log and config kept in ${tmp}`);
    else fs.rmSync(tmp, { recursive: true, force: true });
    process.exitCode = 0;
  }
  fs.closeSync(logFile);
  setTimeout(() => process.exit(process.exitCode), 200).unref();
}

if (process.argv.includes('--backend')) {
  runBackends();
} else {
  main().catch((e) => {
    console.log(`SOAK FAILED: ${e && e.stack ? e.stack : e}`);
    process.exit(1);
  });
}
