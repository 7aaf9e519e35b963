'use strict';
// TLS helpers for the stickyd end-to-end tests (p-tls.test.js): a throw-away test PKI made
// with the openssl command line, stickyd with `listen:` entries that carry `tls:`, an
// `openssl s_client` runner, raw TCP probes, HTTPS requests and a small Socket.IO backend on
// HTTPS. Like the harness: 127.0.0.1 only, every wait bounded, every wait on an event.

const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const net = require('node:net');
const tls = require('node:tls');
const http = require('node:http');
const https = require('node:https');
const h = require('./harness');

const HOST = h.HOST;

// ---------------------------------------------------------------------------------------
// Test PKI

// Files (all in one temp dir):
//   ca.pem/ca.key        the test CA;  ca2.pem: another CA that signed nothing used here
//   a.pem/a.key          CN=a.test, SAN DNS:a.test IP:127.0.0.1 (the default certificate)
//   b.pem/b.key          CN=b.test, SAN DNS:b.test (chosen by SNI)
//   node.pem/node.key    CN=node.test, SAN DNS:node.test (a backend's certificate)
//   a2.pem/a2.key        CN=a-reloaded.test, SAN DNS:a.test IP:127.0.0.1 (the SIGHUP swap)
//   expired.pem          key a.key, CN=expired.test, valid 2020-01-01..2020-01-02
//   other.key            matches no certificate
const PKI_SCRIPT = String.raw`set -e
cd "$1"
EC="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
openssl req -x509 $EC -keyout ca.key -out ca.pem -days 30 -subj "/CN=stickyd e2e CA" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
openssl req -x509 $EC -keyout ca2.key -out ca2.pem -days 30 -subj "/CN=other e2e CA" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
leaf() {
  openssl req -new $EC -keyout $1.key -out $1.csr -subj "$2"
  printf 'basicConstraints=CA:FALSE\nsubjectAltName=%s\n' "$3" > $1.ext
  openssl x509 -req -in $1.csr -CA ca.pem -CAkey ca.key -set_serial $4 -days 30 \
    -extfile $1.ext -out $1.pem
}
leaf a "/CN=a.test" "DNS:a.test,IP:127.0.0.1" 11
leaf b "/CN=b.test" "DNS:b.test" 12
leaf node "/CN=node.test" "DNS:node.test" 13
leaf a2 "/CN=a-reloaded.test" "DNS:a.test,IP:127.0.0.1" 14
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out other.key
mkdir db && : > db/index.txt && echo 20 > db/serial
cat > ca.cnf <<'X'
[ca]
default_ca = d
[d]
database = db/index.txt
new_certs_dir = db
serial = db/serial
default_md = sha256
policy = p
unique_subject = no
x509_extensions = e
[p]
commonName = supplied
[e]
basicConstraints = CA:FALSE
subjectAltName = DNS:expired.test
X
openssl req -new -key a.key -out expired.csr -subj "/CN=expired.test"
openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -in expired.csr -out expired.pem \
  -notext -startdate 20200101000000Z -enddate 20200102000000Z
`;

const PKI_FILES = ['ca.pem', 'ca2.pem', 'a.pem', 'a.key', 'b.pem', 'b.key', 'node.pem', 'node.key', 'a2.pem', 'a2.key', 'expired.pem', 'other.key'];

function makePki() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stickyd-e2e-pki-'));
  fs.writeFileSync(path.join(dir, 'gen.sh'), PKI_SCRIPT);
  try {
    execFileSync('sh', [path.join(dir, 'gen.sh'), dir], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 30000 * h.SCALE });
  } catch (err) {
    const out = `${err.stdout || ''}${err.stderr || ''}`;
    fs.rmSync(dir, { recursive: true, force: true });
    throw new Error(`test PKI generation with openssl failed: ${err.message}\n${out}`);
  }
  const file = (name) => path.join(dir, name);
  return {
    dir,
    file,
    pem: (name) => fs.readFileSync(file(name)),
    // Copies the PKI files into `to` (a proxy's own directory: its config names them relative).
    copyTo: (to) => {
      for (const f of PKI_FILES) fs.copyFileSync(file(f), path.join(to, f));
    },
    cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

// ---------------------------------------------------------------------------------------
// stickyd with TLS listeners

// Child processes and their output lines: the harness's own helpers.
const track = h.trackChild;
const lines = h.lineCollector;

const y = (v) => JSON.stringify(v); // JSON is YAML flow syntax

// `listen`: entries {tls: {...}} (a TLS listener; file names relative to the proxy's dir) or
// {} (plain). `backends`: [{name, address, ...more}] (more = tls, weight, ...).
function tlsConfigText({ listen, backends, cookie = false, timeouts = {}, extra = {} }) {
  const t = { connect: '5s', client: '60s', server: '60s', tunnel: '1h', ...timeouts };
  const out = ['listen:'];
  for (const l of listen) {
    out.push(`  - address: ${y(`${HOST}:${l.port || 0}`)}`);
    if (l.tls) out.push(`    tls: ${y(l.tls)}`);
  }
  out.push('backends:');
  for (const { name, address, ...more } of backends) {
    const rest = Object.entries(more).map(([k, v]) => `, ${k}: ${y(v)}`).join('');
    out.push(`  - {name: ${name}, address: ${y(address)}${rest}}`);
  }
  out.push(`cookie: ${y(cookie)}`);
  out.push(`timeouts: {${Object.entries(t).map(([k, v]) => `${k}: ${v}`).join(', ')}}`);
  for (const [k, v] of Object.entries(extra)) out.push(`${k}: ${y(v)}`);
  out.push('');
  return out.join('\n');
}

const LISTENING_RE = /^\S+ info listening\b.*\baddress=127\.0\.0\.1:(\d+) tls=(yes|no)\b/;

// Starts stickyd in its own directory holding a copy of the PKI. Resolves once every
// listener logged its "listening address=... tls=yes|no" line (in config order).
// proxy: {ports[], port (first listener), url, dir, file(name), stderr, waitForLine, mark(),
// hup(), stop(), kill()}; shaped like the harness's proxies so that h.scenario stops it and
// shows its config and stderr on failure (push it to env.proxies).
async function startTlsStickyd(pki, { label = 'stickyd-tls', ...opts }) {
  if (!fs.existsSync(h.STICKYD_BIN)) throw new Error(`stickyd binary not found at ${h.STICKYD_BIN}`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stickyd-e2e-tls-'));
  pki.copyTo(dir);
  const configFile = path.join(dir, 'stickyd.yaml');
  const configText = tlsConfigText(opts);
  fs.writeFileSync(configFile, configText);
  const child = track(spawn(h.STICKYD_BIN, ['-c', configFile], { cwd: os.tmpdir(), stdio: ['ignore', 'pipe', 'pipe'] }));
  const want = opts.listen.length;
  const listening = [];
  let onAll;
  const all = new Promise((resolve) => (onAll = resolve));
  const waiters = new Set();
  const stderr = lines(child.stderr, (line, i) => {
    const m = LISTENING_RE.exec(line);
    if (m && listening.length < want) {
      listening.push({ port: Number(m[1]), tls: m[2] === 'yes' });
      if (listening.length === want) onAll();
    }
    for (const w of waiters) w(line, i);
  });
  const stdout = lines(child.stdout);
  const proxy = { label, child, stderr, stdout, dir, configFile, configText, ports: null, port: null };
  const died = child.exited.then((info) => {
    throw new Error(`${label} exited before listening: ${JSON.stringify(info)}\nconfig:\n${configText}\nstderr:\n${stderr.join('\n')}`);
  });
  try {
    await h.withTimeout(Promise.race([all, died]), h.T.proxyReady, `${label}: ${want} listening lines`);
  } catch (err) {
    await h.stopChild(child);
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  died.catch(() => {});
  listening.forEach((l, i) => {
    if (l.tls !== Boolean(opts.listen[i].tls)) throw new Error(`${label}: listener ${i} logged tls=${l.tls ? 'yes' : 'no'}`);
  });
  proxy.ports = listening.map((l) => l.port);
  proxy.port = proxy.ports[0];
  proxy.url = `https://${HOST}:${proxy.port}`;
  proxy.file = (name) => path.join(dir, name);
  proxy.mark = () => stderr.length;
  proxy.waitForLine = (re, ms, what, from = 0) =>
    h.withTimeout(
      new Promise((resolve) => {
        for (let i = from; i < stderr.length; i++) if (re.test(stderr[i])) return resolve(stderr[i]);
        const w = (line, i) => {
          if (i >= from && re.test(line)) {
            waiters.delete(w);
            resolve(line);
          }
        };
        waiters.add(w);
      }),
      ms,
      `${label}: log line ${re} (${what})`,
    );
  proxy.linesSince = (from, re) => stderr.slice(from).filter((l) => re.test(l));
  // Resolves with the first `n` lines from index `from` on that match `re`.
  proxy.waitForLines = (re, n, ms, what, from = 0) =>
    h.withTimeout(
      new Promise((resolve) => {
        const check = () => {
          const found = proxy.linesSince(from, re);
          if (found.length >= n) {
            waiters.delete(w);
            resolve(found.slice(0, n));
          }
        };
        const w = () => check();
        waiters.add(w);
        check();
      }),
      ms,
      `${label}: ${n} log lines ${re} (${what})`,
    );
  proxy.hup = () => child.kill('SIGHUP');
  proxy.stop = async () => {
    const info = await h.stopChild(child);
    proxy.stopInfo = info;
    fs.rmSync(dir, { recursive: true, force: true });
    return info;
  };
  proxy.kill = async () => {
    if (!child.exitInfo) child.kill('SIGKILL');
    return h.withTimeout(child.exited, h.T.kill, `${label} SIGKILL`);
  };
  return proxy;
}

// `stickyd --check -c FILE`: {code, stdout, stderr}.
async function stickydCheck(configFile) {
  const child = track(spawn(h.STICKYD_BIN, ['--check', '-c', configFile], { stdio: ['ignore', 'pipe', 'pipe'] }));
  const out = lines(child.stdout);
  const err = lines(child.stderr);
  let info;
  try {
    info = await h.withTimeout(child.exited, h.T.proxyReady, `stickyd --check ${configFile}`);
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  }
  await Promise.all([streamDone(child.stdout), streamDone(child.stderr)]);
  return { code: info.code, signal: info.signal, stdout: out, stderr: err };
}

function streamDone(stream) {
  if (stream.readableEnded || stream.destroyed) return Promise.resolve();
  return h.withTimeout(new Promise((resolve) => stream.once('close', resolve)), h.T.close, 'child stream close');
}

// ---------------------------------------------------------------------------------------
// openssl s_client

// Runs `openssl s_client -connect 127.0.0.1:PORT ARGS` with stdin closed (it quits after the
// handshake), bounded by `ms`. {code, stdout, stderr, subject, protocol, cipher, verify}.
async function sClient(port, args, { ms = 10000 * h.SCALE } = {}) {
  const child = track(spawn('openssl', ['s_client', '-connect', `${HOST}:${port}`, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }));
  const out = lines(child.stdout);
  const err = lines(child.stderr);
  let info;
  try {
    info = await h.withTimeout(child.exited, ms, `openssl s_client ${args.join(' ')}`);
  } catch (e) {
    child.kill('SIGKILL');
    await child.exited;
    e.message += `\nstdout:\n${out.join('\n')}\nstderr:\n${err.join('\n')}`;
    throw e;
  }
  await Promise.all([streamDone(child.stdout), streamDone(child.stderr)]);
  if (info.error) throw new Error(`cannot run openssl: ${info.error.message}`);
  const text = out.join('\n');
  const pick = (re) => {
    const m = re.exec(text);
    return m ? m[1].trim() : null;
  };
  return {
    code: info.code,
    stdout: text,
    stderr: err.join('\n'),
    subject: pick(/^subject=(.*)$/m),
    // "New, TLSv1.3, Cipher is ..." (the SSL-Session block with "Protocol :" is missing when a
    // TLS 1.3 ticket has not arrived yet).
    protocol: pick(/^New, (\S+), Cipher is /m),
    cipher: pick(/^New, \S+, Cipher is (\S+)/m),
    verify: pick(/^\s*Verify return code: (.*)$/m),
  };
}

// ---------------------------------------------------------------------------------------
// Raw TCP probes

// The bytes of a real ClientHello (Node's TLS client, SNI a.test), captured by a throw-away
// TCP server.
async function captureClientHello() {
  const server = net.createServer();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, resolve);
  });
  try {
    return await h.withTimeout(
      new Promise((resolve) => {
        server.once('connection', (s) => {
          s.once('data', (chunk) => {
            resolve(chunk);
            s.destroy();
          });
        });
        const c = tls.connect({ host: HOST, port: server.address().port, servername: 'a.test', rejectUnauthorized: false });
        c.on('error', () => {});
      }),
      h.T.http,
      'capture a ClientHello',
    );
  } finally {
    server.close();
  }
}

// Connects to `port`, writes `bytes` (if any), then waits for the server to close the
// connection: {received (Buffer), closedAfterMs (since connect), how ('end' | error code)}.
// Rejects if the connection is still open after `ms`.
function rawProbe(port, bytes, ms, what) {
  return h.withTimeout(
    new Promise((resolve, reject) => {
      const chunks = [];
      let connectedAt = null;
      let how = null;
      const s = net.connect({ host: HOST, port });
      s.on('connect', () => {
        connectedAt = Date.now();
        if (bytes && bytes.length) s.write(bytes);
      });
      s.on('data', (c) => chunks.push(c));
      s.on('end', () => {
        how = how || 'end';
        s.destroy();
      });
      s.on('error', (err) => {
        if (connectedAt === null) return reject(err);
        how = how || err.code || err.message;
      });
      s.on('close', () =>
        resolve({ received: Buffer.concat(chunks), closedAfterMs: Date.now() - connectedAt, how }),
      );
      rawProbe.open.add(s);
      s.on('close', () => rawProbe.open.delete(s));
    }),
    ms,
    `${what}: server closes the connection`,
  );
}
rawProbe.open = new Set();
rawProbe.destroyAll = () => {
  for (const s of rawProbe.open) s.destroy();
};

// ---------------------------------------------------------------------------------------
// HTTPS

// One request on a fresh connection (agent: false). {status, headers, rawHeaders, body,
// peer (subject CN of the certificate the server sent), protocol (TLS version)}.
function httpsRequest({ port, path: p = '/', method = 'GET', headers = {}, ca, servername, rejectUnauthorized = true, body }) {
  return h.withTimeout(
    new Promise((resolve, reject) => {
      const req = https.request(
        { host: HOST, port, method, path: p, headers, ca, servername, rejectUnauthorized, agent: false },
        (res) => {
          const chunks = [];
          const sock = res.socket;
          const cert = sock.getPeerCertificate ? sock.getPeerCertificate() : null;
          const meta = { peer: cert && cert.subject ? cert.subject.CN : null, protocol: sock.getProtocol ? sock.getProtocol() : null };
          res.on('data', (c) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks).toString('utf8'), ...meta }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    }),
    h.T.http,
    `HTTPS ${method} ${p} on port ${port}`,
  );
}

// A Socket.IO 4.8 node on HTTPS (or HTTP when no cert), in this process. Routes:
//   GET /headers -> {node, url, headers, rawHeaders, tls: {servername, alpn} | null}
//   Socket.IO `echo` with an ack -> {node, data}
// {port, address, requests, sids, close()}.
async function startEchoBackend(name, { cert, key } = {}) {
  const { Server } = require('socket.io');
  const state = { name, requests: 0, sids: [], handshakes: { polling: 0, websocket: 0 }, upgrades: 0 };
  const handler = (req, res) => {
    const p = req.url.split('?')[0];
    if (p === '/headers') {
      const s = req.socket;
      const body = JSON.stringify({
        node: name,
        url: req.url,
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        tls: s.encrypted ? { servername: s.servername || null, alpn: s.alpnProtocol || null } : null,
      });
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end('not found\n');
  };
  const server = cert ? https.createServer({ cert, key }, handler) : http.createServer(handler);
  server.prependListener('request', () => state.requests++);
  const sockets = new Set();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('secureConnection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  const io = new Server(server, { path: '/socket.io/', allowEIO3: true, pingInterval: 2000, pingTimeout: 2000 });
  io.engine.on('connection', (sock) => {
    state.sids.push(sock.id);
    state.handshakes[sock.transport.name]++;
    sock.on('upgrade', () => state.upgrades++);
  });
  io.on('connection', (socket) => {
    socket.on('echo', (data, ack) => {
      if (typeof ack === 'function') ack({ node: name, data });
    });
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, resolve);
  });
  state.port = server.address().port;
  state.address = `${HOST}:${state.port}`;
  state.close = () =>
    new Promise((resolve) => {
      io.close();
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    });
  return state;
}

module.exports = {
  makePki,
  startTlsStickyd,
  tlsConfigText,
  stickydCheck,
  sClient,
  captureClientHello,
  rawProbe,
  httpsRequest,
  startEchoBackend,
};
