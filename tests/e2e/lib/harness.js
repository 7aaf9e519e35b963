'use strict';
// Harness for the stickyd end-to-end tests: Socket.IO nodes, the stickyd process, raw HTTP
// helpers and the checks shared by every scenario. Everything binds and connects to
// 127.0.0.1 only (nodes started with `host`: another 127.0.0.x). Every wait is on an event (a stdout/stderr line, 'exit', a socket event)
// and every wait is bounded by a timeout, so a hang fails a test instead of hanging CI.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const http = require('node:http');
const net = require('node:net');
const assert = require('node:assert/strict');

const E2E_DIR = path.resolve(__dirname, '..');
const REPO_DIR = path.resolve(E2E_DIR, '..', '..');
const NODE_SCRIPT = path.join(E2E_DIR, 'node.js');
const LOG_DIR = path.join(E2E_DIR, '.tmp', 'logs');
const HOST = '127.0.0.1';

const STICKYD_BIN = process.env.STICKYD_BIN || path.join(REPO_DIR, 'build', 'stickyd');

// Bounds (ms). E2E_TIME_SCALE stretches all of them on a very slow machine.
const SCALE = Number(process.env.E2E_TIME_SCALE || 1) || 1;
const T = {
  nodeReady: 15000 * SCALE,
  proxyReady: 15000 * SCALE,
  stop: 5000 * SCALE,
  kill: 5000 * SCALE,
  http: 10000 * SCALE,
  connect: 15000 * SCALE,
  ack: 10000 * SCALE,
  heartbeat: 10000 * SCALE,
  close: 5000 * SCALE,
};

// Workload size: at least 30 clients x 10 acked messages, 50-150 ms apart.
const WORKLOAD = {
  clients: Number(process.env.E2E_CLIENTS || 30),
  messages: Number(process.env.E2E_MESSAGES || 10),
  gapMin: 50,
  gapMax: 150,
};

// ---------------------------------------------------------------------------------------
// Small async utilities

class TimeoutError extends Error {}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// Pacing between a client's messages ("spread over time"); never used to wait for a state.
function pace(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// A shuffled copy: request orders that cannot line up with a round-robin balancer by chance.
function shuffled(array) {
  const a = array.slice();
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

function randomBetween(min, max) {
  return min + Math.floor(Math.random() * (max - min + 1));
}

// Resolves on `event` of `emitter`, rejects on any of `failEvents` or after `ms`.
function once(emitter, event, ms, what, failEvents = []) {
  return withTimeout(
    new Promise((resolve, reject) => {
      const cleanup = () => {
        emitter.off(event, onEvent);
        for (const f of failEvents) emitter.off(f, onFail[f]);
      };
      const onEvent = (...a) => {
        cleanup();
        resolve(a.length <= 1 ? a[0] : a);
      };
      const onFail = {};
      for (const f of failEvents) {
        onFail[f] = (err) => {
          cleanup();
          reject(new Error(`${what}: got '${f}' (${err && err.message ? err.message : err}) while waiting for '${event}'`));
        };
        emitter.on(f, onFail[f]);
      }
      emitter.on(event, onEvent);
    }),
    ms,
    what,
  );
}

// Collects a stream into lines, calls onLine for each, keeps everything for diagnostics.
function lineCollector(stream, onLine) {
  const lines = [];
  let partial = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk) => {
    partial += chunk;
    let i;
    while ((i = partial.indexOf('\n')) >= 0) {
      const line = partial.slice(0, i).replace(/\r$/, '');
      partial = partial.slice(i + 1);
      lines.push(line);
      if (onLine) onLine(line, lines.length - 1);
    }
  });
  stream.on('end', () => {
    if (partial) {
      lines.push(partial);
      if (onLine) onLine(partial, lines.length - 1);
      partial = '';
    }
  });
  return lines;
}

// ---------------------------------------------------------------------------------------
// Child processes

const liveChildren = new Set();
process.on('exit', () => {
  // Last resort when a test file dies: leave nothing running.
  for (const child of liveChildren) {
    try {
      child.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
});

function trackChild(child) {
  liveChildren.add(child);
  child.exitInfo = null;
  child.exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      child.exitInfo = { code, signal };
      liveChildren.delete(child);
      resolve(child.exitInfo);
    });
    child.on('error', (err) => {
      // spawn failure: there is no 'exit' in some cases.
      if (!child.exitInfo) {
        child.exitInfo = { code: null, signal: null, error: err };
        liveChildren.delete(child);
        resolve(child.exitInfo);
      }
    });
  });
  return child;
}

// SIGTERM, await exit for T.stop, then SIGKILL and await exit for T.kill.
async function stopChild(child) {
  if (!child || child.exitInfo) return { ...(child && child.exitInfo), forced: false };
  child.kill('SIGTERM');
  try {
    const info = await withTimeout(child.exited, T.stop, `pid ${child.pid} to exit on SIGTERM`);
    return { ...info, forced: false };
  } catch {
    child.kill('SIGKILL');
    const info = await withTimeout(child.exited, T.kill, `pid ${child.pid} to exit on SIGKILL`);
    return { ...info, forced: true };
  }
}

// ---------------------------------------------------------------------------------------
// Socket.IO nodes

// `port`: 0 = ephemeral, or a fixed port (restarting a node where it was). `tagPrefix`: true
// (tag = name) or a string: the node makes tagged sids `<tag>.<random>` (generateId).
// `host`: another loopback address (127.0.0.11, ...): nodes on distinct addresses may share a
// port, as pods behind one DNS name do. `printSessions`: the node prints `SESSION <sid>` per
// Engine.IO session; node.waitForLine awaits such lines. `staticDir`: the node serves its
// files at /static/<name> (the browser tests' page). `recovery`: Socket.IO connection state
// recovery, and a broadcast `tock` every 100 ms (node.js --recovery).
async function startNode(name, { cookie = false, port = 0, tagPrefix = false, host = HOST, printSessions = false, staticDir = null, recovery = false } = {}) {
  const argv = [NODE_SCRIPT, '--name', name, '--port', String(port), '--host', host, '--exit-with-stdin'];
  if (cookie) argv.push('--cookie');
  if (printSessions) argv.push('--print-sessions');
  if (staticDir) argv.push('--static', staticDir);
  if (recovery) argv.push('--recovery');
  if (tagPrefix) argv.push('--tag-prefix', ...(typeof tagPrefix === 'string' ? [tagPrefix] : []));
  const child = trackChild(
    spawn(process.execPath, argv, { cwd: E2E_DIR, stdio: ['pipe', 'pipe', 'pipe'] }),
  );
  let onReady;
  const ready = new Promise((resolve) => (onReady = resolve));
  const lineWaiters = new Set();
  const stdout = lineCollector(child.stdout, (line) => {
    const m = /^READY (\d+)$/.exec(line);
    if (m) onReady(Number(m[1]));
    for (const w of lineWaiters) w(line);
  });
  const stderr = lineCollector(child.stderr);
  const node = { name, child, stdout, stderr, port: null, cookie, tagPrefix, host, printSessions, staticDir, recovery };
  // Resolves with the first stdout line from now on that matches `re`.
  node.waitForLine = (re, ms, what) =>
    withTimeout(
      new Promise((resolve) => {
        const w = (line) => {
          if (re.test(line)) {
            lineWaiters.delete(w);
            resolve(line);
          }
        };
        lineWaiters.add(w);
      }),
      ms,
      `node ${name}: stdout line ${re} (${what})`,
    );
  const died = child.exited.then((info) => {
    throw new Error(`node ${name} exited before READY: ${JSON.stringify(info)}\n${stderr.join('\n')}`);
  });
  try {
    node.port = await withTimeout(Promise.race([ready, died]), T.nodeReady, `node ${name} READY`);
  } catch (err) {
    await stopChild(child);
    throw err;
  }
  died.catch(() => {});
  node.address = `${host}:${node.port}`;
  node.stats = () => getJson(node.port, '/stats', host);
  node.kill = async () => {
    if (child.exitInfo) return child.exitInfo;
    child.kill('SIGKILL');
    return withTimeout(child.exited, T.kill, `node ${name} to exit on SIGKILL`);
  };
  return node;
}

class Cluster {
  constructor(nodes) {
    this.nodes = nodes;
  }

  // Replaces the (dead) node `name` by a new process on the same port; keeps its old stderr
  // for diagnostics. Its counters start from zero.
  async restart(name) {
    const i = this.nodes.findIndex((x) => x.name === name);
    const old = this.nodes[i];
    await old.kill();
    const fresh = await startNode(name, { cookie: old.cookie, port: old.port, tagPrefix: old.tagPrefix, host: old.host, printSessions: old.printSessions, staticDir: old.staticDir, recovery: old.recovery });
    fresh.previousStderr = old.stderr;
    this.nodes[i] = fresh;
    return fresh;
  }

  byName(name) {
    const n = this.nodes.find((x) => x.name === name);
    assert.ok(n, `no node called ${name}`);
    return n;
  }

  async stats() {
    const all = await Promise.all(this.nodes.filter((n) => !n.child.exitInfo).map((n) => n.stats()));
    const out = {};
    for (const s of all) out[s.node] = s;
    return out;
  }

  // Name of the node that created `sid` (asked directly, not through the proxy).
  async ownerOf(sid) {
    const owners = await this.owners([sid]);
    return owners.get(sid);
  }

  async owners(sids) {
    const stats = await this.stats();
    const out = new Map();
    for (const sid of sids) {
      const names = Object.values(stats)
        .filter((s) => s.sids.includes(sid))
        .map((s) => s.node);
      assert.ok(names.length <= 1, `sid ${sid} created by several nodes: ${names}`);
      out.set(sid, names[0]);
    }
    return out;
  }

  async stop() {
    await Promise.all(this.nodes.map((n) => stopChild(n.child)));
  }
}

async function startCluster({ cookie = false, names = ['n1', 'n2', 'n3'], tagPrefix = false, staticDir = null, recovery = false } = {}) {
  const started = await Promise.allSettled(names.map((name) => startNode(name, { cookie, tagPrefix, staticDir, recovery })));
  const ok = started.filter((r) => r.status === 'fulfilled').map((r) => r.value);
  const bad = started.find((r) => r.status === 'rejected');
  if (bad) {
    await Promise.all(ok.map((n) => stopChild(n.child)));
    throw bad.reason;
  }
  return new Cluster(ok);
}

// ---------------------------------------------------------------------------------------
// stickyd

function yamlString(s) {
  return JSON.stringify(String(s)); // a JSON string is a valid YAML double-quoted scalar
}

function cookieYaml(cookie) {
  if (cookie === undefined || cookie === false) return 'false';
  if (cookie === true) return 'true';
  const parts = [];
  for (const [k, v] of Object.entries(cookie)) {
    parts.push(`${k}: ${typeof v === 'string' ? yamlString(v) : JSON.stringify(v)}`);
  }
  return `{${parts.join(', ')}}`;
}

// Backends may carry more keys (weight, cookie, cookie_aliases): written as JSON, which is
// YAML flow syntax. A backend {discover: {name, type, port, ...}} is a DNS discovery entry. `extra`: more top-level keys (balance, sticky, health, admin, access_log,
// headers, ...), each written as `key: <JSON>`. `listenPort`: 0 or a fixed port.
function stickydConfig({ backends, cookie = false, path: enginePath = '/socket.io/', timeouts, extra = {}, listenPort = 0 }) {
  // drain_idle 1s: a SIGTERM at the end of a scenario does not wait 5 s for the idle
  // keep-alive sockets of Node's agent (T.stop is 5 s); w-drain tests the drain itself.
  const t = { connect: '5s', client: '60s', server: '60s', tunnel: '1h', drain_idle: '1s', ...(timeouts || {}) };
  const backendLine = (b) => {
    if (b.discover) return `  - discover: ${JSON.stringify(b.discover)}`; // DNS discovery entry
    const { name, address, ...more } = b;
    const rest = Object.entries(more).map(([k, v]) => `, ${k}: ${JSON.stringify(v)}`).join('');
    return `  - {name: ${name}, address: ${yamlString(address)}${rest}}`;
  };
  const timeoutKeys = Object.entries(t).map(([k, v]) => `${k}: ${v}`).join(', ');
  return [
    `listen: 127.0.0.1:${listenPort}`,
    'backends:',
    ...backends.map(backendLine),
    `path: ${yamlString(enginePath)}`,
    `cookie: ${cookieYaml(cookie)}`,
    `timeouts: {${timeoutKeys}}`,
    // Tests read a warn line per event they cause: no rate limit unless a test asks for one.
    `log: ${JSON.stringify({ rate_limit: 0, ...(extra.log || {}) })}`,
    ...Object.entries(extra)
      .filter(([k]) => k !== 'log')
      .map(([k, v]) => `${k}: ${JSON.stringify(v)}`),
    '',
  ].join('\n');
}

// What each open fd of `proxy`'s process points to ('socket:[..]', 'pipe:[..]',
// 'anon_inode:[io_uring]', ...; '?' for an fd closed while listing).
function fdTargets(proxy) {
  const dir = `/proc/${proxy.child.pid}/fd`;
  return fs.readdirSync(dir).map((fd) => {
    try {
      return fs.readlinkSync(`${dir}/${fd}`);
    } catch {
      return '?';
    }
  });
}

// Environment for a stickyd process with the fault-injection shim (tests/e2e/fault, built
// next to stickyd) preloaded: STICKYD_FAULT names the fault (splice-einval, pipe-emfile,
// pipe-emfile-after-N, io_uring-eperm).
const FAULT_SO = path.join(path.dirname(STICKYD_BIN), 'tests', 'e2e', 'libsplice_fault.so');
function faultEnv(fault) {
  assert.ok(fs.existsSync(FAULT_SO), `${FAULT_SO} is missing: build the tests (ninja -C ${path.dirname(STICKYD_BIN)})`);
  const asan = process.env.ASAN_OPTIONS;
  return {
    LD_PRELOAD: FAULT_SO,
    STICKYD_FAULT: fault,
    // An ASan build wants its runtime first in the library list; the shim comes before it.
    ASAN_OPTIONS: `${asan ? `${asan}:` : ''}verify_asan_link_order=0`,
  };
}

// "<ts> info listening address=..." (the proxy) and "<ts> info admin listening address=...".
const LISTENING_RE = /^\S+ info listening\b.*\baddress=127\.0\.0\.1:(\d+)\b/;
const ADMIN_LISTENING_RE = /^\S+ info admin listening\b.*\baddress=127\.0\.0\.1:(\d+)\b/;

// `env`: extra environment variables for the stickyd process (e.g. a fault-injection LD_PRELOAD).
async function startStickyd({ backends, cookie = false, timeouts, extra = {}, listenPort = 0, label = 'stickyd', env, args = [] } = {}) {
  if (!fs.existsSync(STICKYD_BIN)) {
    throw new Error(`stickyd binary not found at ${STICKYD_BIN} (build it with 'meson compile -C build' or set STICKYD_BIN)`);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stickyd-e2e-'));
  const configFile = path.join(dir, 'stickyd.yaml');
  const configText = stickydConfig({ backends, cookie, timeouts, extra, listenPort });
  fs.writeFileSync(configFile, configText);
  const child = trackChild(
    spawn(STICKYD_BIN, ['-c', configFile, ...args.map((a) => a.replace('{dir}', dir))], {
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: env ? { ...process.env, ...env } : process.env,
    }),
  );
  let onListening;
  let onAdmin;
  const listening = new Promise((resolve) => (onListening = resolve));
  const adminListening = new Promise((resolve) => (onAdmin = resolve));
  const lineWaiters = new Set();
  const stderr = lineCollector(child.stderr, (line) => {
    const m = LISTENING_RE.exec(line);
    if (m) onListening(Number(m[1]));
    const a = ADMIN_LISTENING_RE.exec(line);
    if (a) onAdmin(Number(a[1]));
    for (const w of lineWaiters) w(line, stderr.length - 1);
  });
  const stdout = lineCollector(child.stdout);
  const proxy = { label, child, stderr, stdout, dir, configFile, configText, port: null, adminPort: null };
  const died = child.exited.then((info) => {
    throw new Error(
      `stickyd exited before listening: ${JSON.stringify(info)}\nconfig:\n${configText}\nstderr:\n${stderr.join('\n')}`,
    );
  });
  try {
    proxy.port = await withTimeout(Promise.race([listening, died]), T.proxyReady, 'stickyd listening log line');
    if (extra.admin) {
      proxy.adminPort = await withTimeout(Promise.race([adminListening, died]), T.proxyReady, 'stickyd admin listening log line');
    }
  } catch (err) {
    await stopChild(child);
    fs.rmSync(dir, { recursive: true, force: true });
    err.message += `\nstickyd stderr:\n${stderr.join('\n')}`;
    throw err;
  }
  died.catch(() => {});
  proxy.url = `http://${HOST}:${proxy.port}`;
  proxy.stop = async () => {
    const info = await stopChild(child);
    proxy.stopInfo = info;
    fs.rmSync(dir, { recursive: true, force: true });
    return info;
  };
  proxy.kill = async () => {
    if (!child.exitInfo) child.kill('SIGKILL');
    const info = await withTimeout(child.exited, T.kill, `${label} to exit on SIGKILL`);
    proxy.stopInfo = { ...info, forced: true };
    return info;
  };
  // Resolves with the first stderr line from index `from` on that matches `re`.
  proxy.waitForLine = (re, ms, what, from = 0) =>
    withTimeout(
      new Promise((resolve) => {
        for (let i = from; i < stderr.length; i++) {
          if (re.test(stderr[i])) return resolve(stderr[i]);
        }
        const w = (line, i) => {
          if (i >= from && re.test(line)) {
            lineWaiters.delete(w);
            resolve(line);
          }
        };
        lineWaiters.add(w);
      }),
      ms,
      `${label}: log line ${re} (${what})`,
    );
  // JSON access-log lines (access_log: {format: json}); a line that starts with '{' and does
  // not parse is an error.
  proxy.accessLog = (from = 0) => parseAccessLog(stderr.slice(from), label);
  // Text access-log lines (access_log: true): "<ts> info request key=value ...".
  proxy.textAccessLog = (from = 0) => parseTextAccessLog(stderr.slice(from));
  // Admin API (needs extra.admin).
  proxy.admin = (method, p, { body, token, headers = {} } = {}) => {
    assert.ok(proxy.adminPort, `${label}: no admin listener configured`);
    const h = { ...headers };
    if (token) h.Authorization = `Bearer ${token}`;
    return request({ port: proxy.adminPort, method, path: p, body, headers: h });
  };
  proxy.backends = async (token) => {
    const res = await proxy.admin('GET', '/backends', { token });
    assert.equal(res.status, 200, `GET /backends: ${res.status} ${res.body}`);
    const out = {};
    for (const b of JSON.parse(res.body).backends) out[b.name] = b;
    return out;
  };
  proxy.metrics = async (token) => {
    const res = await proxy.admin('GET', '/metrics', { token });
    assert.equal(res.status, 200, `GET /metrics: ${res.status} ${res.body}`);
    return parseMetrics(res.body);
  };
  return proxy;
}

function parseAccessLog(lines, label = 'stickyd') {
  const out = [];
  for (const line of lines) {
    if (!line.startsWith('{')) continue;
    let e;
    try {
      e = JSON.parse(line);
    } catch (err) {
      throw new Error(`${label}: access-log line is not JSON (${err.message}): ${line}`);
    }
    if (e.event === 'request') out.push(e);
  }
  return out;
}

// "<ts> <level> request k=v k="quoted \"v\"" ..." -> [{k: v}] (numbers stay strings).
function parseTextAccessLog(lines) {
  const out = [];
  for (const line of lines) {
    const m = /^\S+ \w+ request (.*)$/.exec(line);
    if (!m) continue;
    const e = {};
    const re = /(\w+)=("(?:[^"\\]|\\.)*"|\S*)/g;
    let x;
    while ((x = re.exec(m[1]))) {
      e[x[1]] = x[2].startsWith('"') ? x[2].slice(1, -1).replace(/\\(["\\])/g, '$1') : x[2];
    }
    out.push(e);
  }
  return out;
}

// Prometheus text -> {samples: Map('name{labels}' -> number), text, get(name, labels), sum(name, filter)}.
function parseMetrics(text) {
  const samples = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/.exec(line);
    assert.ok(m, `bad metrics line ${JSON.stringify(line)}`);
    const labels = {};
    if (m[2]) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
      let x;
      while ((x = re.exec(m[2]))) labels[x[1]] = x[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
    }
    const value = m[3] === '+Inf' ? Infinity : Number(m[3]);
    assert.ok(!Number.isNaN(value), `bad metrics value in ${JSON.stringify(line)}`);
    samples.push({ name: m[1], labels, value });
  }
  const match = (s, name, labels) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v);
  return {
    text,
    samples,
    has: (name) => samples.some((s) => s.name === name),
    get: (name, labels = {}) => {
      const found = samples.filter((s) => match(s, name, labels));
      assert.equal(found.length, 1, `metric ${name}${JSON.stringify(labels)}: ${found.length} samples`);
      return found[0].value;
    },
    sum: (name, labels = {}) => samples.filter((s) => match(s, name, labels)).reduce((a, s) => a + s.value, 0),
  };
}

// ---------------------------------------------------------------------------------------
// Scenario wrapper: cluster + proxy, teardown, diagnostics on failure

function safeName(s) {
  return String(s).replace(/[^A-Za-z0-9_.-]+/g, '_').slice(0, 80);
}

function dumpDiagnostics(t, env, err) {
  const parts = [];
  const proxies = env.proxies && env.proxies.length ? env.proxies : env.proxy ? [env.proxy] : [];
  for (const p of proxies) {
    const label = p.label || 'stickyd';
    parts.push(`--- ${label} config (${p.configFile}) ---\n${p.configText}`);
    parts.push(`--- ${label} stderr (${p.stderr.length} lines) ---\n${p.stderr.join('\n')}`);
    if (p.stdout.length) parts.push(`--- ${label} stdout ---\n${p.stdout.join('\n')}`);
  }
  for (const n of env.cluster ? env.cluster.nodes : []) {
    if (n.previousStderr && n.previousStderr.length) parts.push(`--- node ${n.name} (before restart) stderr ---\n${n.previousStderr.join('\n')}`);
    if (n.stderr.length) parts.push(`--- node ${n.name} stderr ---\n${n.stderr.join('\n')}`);
  }
  if (env.extraDiagnostics) {
    for (const f of env.extraDiagnostics) {
      try {
        parts.push(f());
      } catch (e) {
        parts.push(`(diagnostic failed: ${e.message})`);
      }
    }
  }
  if (env.lastStats) parts.push(`--- node stats ---\n${JSON.stringify(env.lastStats, null, 1)}`);
  const text = parts.join('\n');
  try {
    fs.mkdirSync(LOG_DIR, { recursive: true });
    const file = path.join(LOG_DIR, `${safeName(t.name)}.log`);
    fs.writeFileSync(file, `${err && err.stack}\n${text}\n`);
    console.error(`[e2e] diagnostics written to ${file}`);
  } catch {
    /* best effort */
  }
  // Print a bounded tail to stderr so CI logs show it.
  const lines = text.split('\n');
  const tail = lines.length > 400 ? ['... (truncated; full log in .tmp/logs)', ...lines.slice(-400)] : lines;
  console.error(`[e2e] FAILED ${t.name}: ${err && err.message}\n${tail.join('\n')}`);
}

// Runs `body(env)` with a 3-node cluster and (unless proxy === false) stickyd in front.
// env = {cluster, proxy, url, stats(), stopProxy(), startProxy(opts), proxies}.
// `proxyOpts` go to startStickyd (extra, timeouts, listenPort; `backends` maps the default
// backend list); `nodeTagPrefix` starts the nodes with --tag-prefix, `nodeStatic` with --static,
// `nodeRecovery` with --recovery.
// env.startProxy starts more stickyd processes with the same defaults; all are stopped and
// shown in diagnostics.
async function scenario(t, { nodeCookie = false, proxyCookie = false, proxy = true, nodeTagPrefix = false, nodeStatic = null, nodeRecovery = false, proxyOpts = {} } = {}, body) {
  const env = { cluster: null, proxy: null, proxies: [], lastStats: null, extraDiagnostics: [], cleanups: [] };
  const started = Date.now();
  try {
    env.cluster = await startCluster({ cookie: nodeCookie, tagPrefix: nodeTagPrefix, staticDir: nodeStatic, recovery: nodeRecovery });
    env.backends = () => env.cluster.nodes.map((n) => ({ name: n.name, address: n.address }));
    env.startProxy = async (opts = {}) => {
      const o = { ...proxyOpts, ...opts };
      const backends = o.backends ? o.backends(env.backends()) : env.backends();
      const p = await startStickyd({
        cookie: proxyCookie,
        ...o,
        backends,
        label: o.label || (env.proxies.length ? `stickyd#${env.proxies.length + 1}` : 'stickyd'),
      });
      env.proxies.push(p);
      return p;
    };
    if (proxy) {
      env.proxy = await env.startProxy();
      env.url = env.proxy.url;
      env.port = env.proxy.port;
    }
    env.stats = async () => (env.lastStats = await env.cluster.stats());
    // Stops stickyd so that nothing is in flight any more before the nodes' counters are read.
    env.stopProxy = async () => {
      if (!env.proxy || env.proxy.stopInfo) return env.proxy && env.proxy.stopInfo;
      const info = await env.proxy.stop();
      if (info.forced) t.diagnostic(`stickyd did not exit within ${T.stop} ms of SIGTERM; killed`);
      else if (info.code !== 0) t.diagnostic(`stickyd exited with ${JSON.stringify(info)} on SIGTERM`);
      return info;
    };
    await body(env);
  } catch (err) {
    if (env.cluster && !env.lastStats) {
      try {
        env.lastStats = await withTimeout(env.cluster.stats(), T.http, 'stats for diagnostics');
      } catch {
        /* nodes gone */
      }
    }
    dumpDiagnostics(t, env, err);
    throw err;
  } finally {
    for (const f of env.cleanups.reverse()) await Promise.resolve().then(f).catch(() => {});
    await Promise.all(env.proxies.map((p) => p.stop().catch(() => {})));
    if (env.cluster) await env.cluster.stop().catch(() => {});
    t.diagnostic(`${t.name}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }
}

// ---------------------------------------------------------------------------------------
// HTTP helpers (node:http)

// `localAddress`: bind the client socket to another loopback address (127.0.0.2, ...).
// `host`: another loopback address (a node started with `host`).
function request({ port, method = 'GET', path: p, headers = {}, body, agent, timeout = T.http, localAddress, host = HOST }) {
  return withTimeout(
    new Promise((resolve, reject) => {
      const req = http.request(
        { host, port, method, path: p, headers, agent: agent === undefined ? false : agent, ...(localAddress ? { localAddress } : {}) },
        (res) => {
          const chunks = [];
          res.on('data', (c) => chunks.push(c));
          res.on('end', () =>
            resolve({
              status: res.statusCode,
              headers: res.headers,
              rawHeaders: res.rawHeaders,
              body: Buffer.concat(chunks).toString('utf8'),
            }),
          );
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      if (body !== undefined) req.end(body);
      else req.end();
    }),
    timeout,
    `${method} ${p} on port ${port}`,
  );
}

async function getJson(port, p, host = HOST) {
  const res = await request({ port, path: p, host });
  assert.equal(res.status, 200, `GET ${p}: ${res.status} ${res.body}`);
  return JSON.parse(res.body);
}

// Every value of a header in raw order (case-insensitive name).
function headerValues(rawHeaders, name) {
  const out = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i].toLowerCase() === name.toLowerCase()) out.push(rawHeaders[i + 1]);
  }
  return out;
}

// Engine.IO polling payload -> packets (strings). EIO4: 0x1E separated. EIO3: "<len>:<pkt>"...
function decodePayload(body, eio = 4) {
  if (eio === 4) return body.length ? body.split('\x1e') : [];
  const packets = [];
  let i = 0;
  while (i < body.length) {
    const colon = body.indexOf(':', i);
    assert.ok(colon > i, `bad EIO3 payload: ${JSON.stringify(body)}`);
    const len = Number(body.slice(i, colon));
    packets.push(body.slice(colon + 1, colon + 1 + len));
    i = colon + 1 + len;
  }
  return packets;
}

function encodePayload(packets, eio = 4) {
  if (eio === 4) return packets.join('\x1e');
  return packets.map((p) => `${p.length}:${p}`).join('');
}

function enginePath(q) {
  return `/socket.io/?${new URLSearchParams(q).toString()}`;
}

// Polling handshake: returns {sid, open, res, setCookies}. `sidRe`: the sid's expected form
// (tagged sids contain a separator).
async function handshake(port, { eio = 4, agent, headers = {}, localAddress, sidRe = /^[A-Za-z0-9_-]+$/ } = {}) {
  const res = await request({
    port,
    path: enginePath({ EIO: String(eio), transport: 'polling', t: `h${Date.now().toString(36)}` }),
    agent,
    headers,
    localAddress,
  });
  assert.equal(res.status, 200, `handshake: ${res.status} ${res.body}`);
  const packets = decodePayload(res.body, eio);
  assert.ok(packets[0] && packets[0][0] === '0', `handshake: no open packet in ${JSON.stringify(res.body)}`);
  const open = JSON.parse(packets[0].slice(1));
  assert.match(open.sid, sidRe);
  return { sid: open.sid, open, res, setCookies: headerValues(res.rawHeaders, 'set-cookie') };
}

// A raw Engine.IO polling session driven over node:http (or a RawConnection, see below).
// `connectNamespace` posts "40" and reads the CONNECT answer; `echo` posts an acked `echo`
// event and polls until the ack arrives (answering pings meanwhile).
class RawSession {
  constructor(port, sid, { agent, eio = 4, headers = {} } = {}) {
    this.port = port;
    this.sid = sid;
    this.agent = agent;
    this.eio = eio;
    this.headers = headers;
    this.ackId = 0;
    this.pending = []; // packets received but not consumed yet
  }

  path() {
    return enginePath({ EIO: String(this.eio), transport: 'polling', sid: this.sid, t: Date.now().toString(36) });
  }

  async post(packets) {
    const res = await request({
      port: this.port,
      method: 'POST',
      path: this.path(),
      agent: this.agent,
      headers: { 'Content-Type': 'text/plain;charset=UTF-8', ...this.headers },
      body: encodePayload(packets, this.eio),
    });
    assert.equal(res.status, 200, `POST sid=${this.sid}: ${res.status} ${res.body}`);
    assert.equal(res.body, 'ok');
    return res;
  }

  async poll() {
    const res = await request({ port: this.port, path: this.path(), agent: this.agent, headers: this.headers });
    assert.equal(res.status, 200, `GET sid=${this.sid}: ${res.status} ${res.body}`);
    const packets = decodePayload(res.body, this.eio);
    for (const p of packets) {
      if (p === '2') await this.post(['3']); // answer the server's ping
      else this.pending.push(p);
    }
    return packets;
  }

  // Polls until a packet satisfying `pred` arrives; bounded by `ms`.
  async waitPacket(pred, ms, what) {
    const deadline = Date.now() + ms;
    for (;;) {
      const i = this.pending.findIndex(pred);
      if (i >= 0) return this.pending.splice(i, 1)[0];
      if (Date.now() > deadline) throw new TimeoutError(`sid ${this.sid}: timed out waiting for ${what}`);
      await this.poll();
    }
  }

  // Socket.IO CONNECT to "/". EIO4 (Socket.IO protocol 5): POST "40", answer 40{"sid":..}.
  // EIO3 (protocol 4): the server connects "/" by itself and sends a bare "40".
  async connectNamespace() {
    if (this.eio === 4) await this.post(['40']);
    const p = await this.waitPacket((x) => x.startsWith('40'), T.connect, 'socket.io CONNECT');
    return p.length > 2 ? JSON.parse(p.slice(2)) : {};
  }

  async echo(data) {
    const id = ++this.ackId;
    await this.post([`42${id}${JSON.stringify(['echo', data])}`]);
    const p = await this.waitPacket((x) => x.startsWith(`43${id}[`), T.ack, `ack ${id}`);
    const [reply] = JSON.parse(p.slice(2 + String(id).length));
    return reply;
  }

  async close() {
    // Engine.IO close packet; the node answers "ok".
    await this.post(['1']).catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------
// Raw keep-alive TCP connection with an incremental HTTP/1.1 response reader

class HttpResponseReader {
  constructor() {
    this.buf = Buffer.alloc(0);
    this.responses = [];
    this.cur = null;
    this.error = null;
  }

  feed(chunk) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    for (;;) {
      if (!this.cur) {
        const end = this.buf.indexOf('\r\n\r\n');
        if (end < 0) {
          if (this.buf.length > 64 * 1024) throw new Error('response head too large');
          return;
        }
        const head = this.buf.subarray(0, end).toString('latin1');
        this.buf = this.buf.subarray(end + 4);
        const lines = head.split('\r\n');
        const m = /^HTTP\/1\.([01]) (\d{3})(?: (.*))?$/.exec(lines[0]);
        if (!m) throw new Error(`bad status line: ${JSON.stringify(lines[0])}`);
        const headers = {};
        const rawHeaders = [];
        for (const line of lines.slice(1)) {
          const c = line.indexOf(':');
          if (c <= 0) throw new Error(`bad header line: ${JSON.stringify(line)}`);
          const name = line.slice(0, c).trim();
          const value = line.slice(c + 1).trim();
          rawHeaders.push(name, value);
          const k = name.toLowerCase();
          headers[k] = k in headers ? `${headers[k]}, ${value}` : value;
        }
        const status = Number(m[2]);
        this.cur = { httpVersion: `1.${m[1]}`, status, reason: m[3] || '', headers, rawHeaders, body: [] };
        const te = (headers['transfer-encoding'] || '').toLowerCase();
        if ((status >= 100 && status < 200) || status === 204 || status === 304) {
          this.cur.mode = 'none';
        } else if (te.split(',').map((s) => s.trim()).includes('chunked')) {
          this.cur.mode = 'chunked';
          this.cur.chunkLeft = -1; // expecting a size line
        } else if (headers['content-length'] !== undefined) {
          if (!/^\d+$/.test(headers['content-length'])) throw new Error(`bad content-length ${headers['content-length']}`);
          this.cur.mode = 'length';
          this.cur.left = Number(headers['content-length']);
        } else {
          this.cur.mode = 'close'; // body until the connection closes
        }
      }
      if (!this.step()) return;
    }
  }

  // Advances the current response; returns true when it completed.
  step() {
    const c = this.cur;
    if (c.mode === 'none') return this.finish();
    if (c.mode === 'length') {
      const n = Math.min(c.left, this.buf.length);
      if (n > 0) {
        c.body.push(this.buf.subarray(0, n));
        this.buf = this.buf.subarray(n);
        c.left -= n;
      }
      return c.left === 0 ? this.finish() : false;
    }
    if (c.mode === 'chunked') {
      for (;;) {
        if (c.chunkLeft === -1) {
          const eol = this.buf.indexOf('\r\n');
          if (eol < 0) return false;
          const line = this.buf.subarray(0, eol).toString('latin1');
          this.buf = this.buf.subarray(eol + 2);
          const hex = line.split(';')[0].trim();
          const size = /^[0-9a-fA-F]{1,8}$/.test(hex) ? parseInt(hex, 16) : NaN;
          if (!Number.isFinite(size)) throw new Error(`bad chunk size line ${JSON.stringify(line)}`);
          c.chunkLeft = size;
          if (size === 0) c.trailers = true;
        }
        if (c.trailers) {
          // trailer section: lines until an empty line
          for (;;) {
            const eol = this.buf.indexOf('\r\n');
            if (eol < 0) return false;
            const line = this.buf.subarray(0, eol);
            this.buf = this.buf.subarray(eol + 2);
            if (line.length === 0) return this.finish();
          }
        }
        if (c.chunkLeft > 0) {
          const n = Math.min(c.chunkLeft, this.buf.length);
          if (n === 0) return false;
          c.body.push(this.buf.subarray(0, n));
          this.buf = this.buf.subarray(n);
          c.chunkLeft -= n;
          if (c.chunkLeft > 0) return false;
        }
        if (this.buf.length < 2) return false;
        if (this.buf[0] !== 0x0d || this.buf[1] !== 0x0a) throw new Error('missing CRLF after chunk data');
        this.buf = this.buf.subarray(2);
        c.chunkLeft = -1;
      }
    }
    // mode 'close'
    if (this.buf.length) {
      c.body.push(this.buf);
      this.buf = Buffer.alloc(0);
    }
    return false;
  }

  finish() {
    const c = this.cur;
    this.cur = null;
    this.responses.push({
      httpVersion: c.httpVersion,
      status: c.status,
      reason: c.reason,
      headers: c.headers,
      rawHeaders: c.rawHeaders,
      body: Buffer.concat(c.body).toString('utf8'),
    });
    return true;
  }

  end() {
    if (this.cur && this.cur.mode === 'close') this.finish();
    else if (this.cur || this.buf.length) this.error = new Error('connection closed in the middle of a response');
  }
}

class RawConnection {
  constructor(socket) {
    this.socket = socket;
    this.reader = new HttpResponseReader();
    this.waiters = [];
    this.closed = false;
    this.writes = 0;
    socket.on('data', (chunk) => {
      try {
        this.reader.feed(chunk);
      } catch (err) {
        this.reader.error = err;
        socket.destroy();
      }
      this.wake();
    });
    socket.on('end', () => {
      this.reader.end();
      this.closed = true;
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', (err) => {
      this.reader.error = this.reader.error || err;
      this.wake();
    });
  }

  static connect(port) {
    return withTimeout(
      new Promise((resolve, reject) => {
        const s = net.connect({ host: HOST, port });
        s.once('connect', () => {
          s.off('error', reject);
          s.setNoDelay(true);
          resolve(new RawConnection(s));
        });
        s.once('error', reject);
      }),
      T.http,
      `TCP connect to ${HOST}:${port}`,
    );
  }

  wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  // One write() with every request given (strings or Buffers): pipelining when several.
  write(...requests) {
    this.writes++;
    this.socket.write(Buffer.concat(requests.map((r) => (Buffer.isBuffer(r) ? r : Buffer.from(r)))));
  }

  next(ms = T.http, what = 'HTTP response') {
    return withTimeout(
      new Promise((resolve, reject) => {
        const check = () => {
          if (this.reader.responses.length) return resolve(this.reader.responses.shift());
          if (this.reader.error) return reject(this.reader.error);
          if (this.closed) return reject(new Error(`connection closed while waiting for ${what}`));
          this.waiters.push(check);
        };
        check();
      }),
      ms,
      `${what} on raw connection`,
    );
  }

  async roundTrip(req, what) {
    this.write(req);
    return this.next(T.http, what);
  }

  close() {
    this.socket.destroy();
  }
}

// Serialises an HTTP/1.1 request for a RawConnection.
function rawRequest(method, target, { headers = {}, body } = {}) {
  const lines = [`${method} ${target} HTTP/1.1`, `Host: ${HOST}`];
  const h = { ...headers };
  if (body !== undefined) h['Content-Length'] = Buffer.byteLength(body);
  for (const [k, v] of Object.entries(h)) lines.push(`${k}: ${v}`);
  return `${lines.join('\r\n')}\r\n\r\n${body !== undefined ? body : ''}`;
}

// ---------------------------------------------------------------------------------------
// Real Socket.IO clients

// The EIO query parameter the client's current transport sends.
function eioOf(engine) {
  return engine && engine.transport && engine.transport.query ? Number(engine.transport.query.EIO) : undefined;
}

// Uniform wrapper over socket.io-client 4.x and 2.x.
function makeClient(kind, url, opts = {}) {
  if (kind === 'v4') {
    const { io } = require('socket.io-client');
    const socket = io(url, { forceNew: true, reconnection: false, timeout: T.connect, ...opts });
    return {
      kind,
      socket,
      engine: () => socket.io.engine,
      engineId: () => socket.io.engine && socket.io.engine.id,
      transport: () => socket.io.engine && socket.io.engine.transport && socket.io.engine.transport.name,
      protocol: () => eioOf(socket.io.engine),
      heartbeatEvent: 'ping', // EIO4: the server pings, the client answers
      emitAck: (data) => socket.timeout(T.ack).emitWithAck('echo', data),
      // Rejects on timeout and on disconnection ("socket has been disconnected").
      emitEventAck: (event, data) => socket.timeout(T.ack).emitWithAck(event, data),
      close: () => socket.disconnect(),
    };
  }
  if (kind === 'v2') {
    const ioV2 = require('socket.io-client-v2');
    const socket = ioV2(url, { forceNew: true, reconnection: false, timeout: T.connect, ...opts });
    return {
      kind,
      socket,
      engine: () => socket.io.engine,
      engineId: () => socket.io.engine && socket.io.engine.id,
      transport: () => socket.io.engine && socket.io.engine.transport && socket.io.engine.transport.name,
      protocol: () => eioOf(socket.io.engine),
      heartbeatEvent: 'pong', // EIO3: the client pings, the server answers
      emitAck: (data) =>
        withTimeout(new Promise((resolve) => socket.emit('echo', data, resolve)), T.ack, 'v2 echo ack'),
      // v2 never calls an ack after a disconnection: the disconnection rejects.
      emitEventAck: (event, data) =>
        withTimeout(
          new Promise((resolve, reject) => {
            const onDisconnect = (reason) => reject(new Error(`disconnected (${reason}) while waiting for the ack`));
            socket.once('disconnect', onDisconnect);
            socket.emit(event, data, (reply) => {
              socket.off('disconnect', onDisconnect);
              resolve(reply);
            });
          }),
          T.ack,
          `v2 ${event} ack`,
        ),
      close: () => socket.close(),
    };
  }
  throw new Error(`unknown client kind ${kind}`);
}

// One client's life: connect, `messages` acked echoes paced gapMin..gapMax ms apart, then at
// least one heartbeat (so held polls and pings go through the proxy), then disconnect.
function closeQuietly(client) {
  if (!client) return;
  try {
    client.close();
  } catch {
    /* already closed */
  }
}

async function runOneClient(index, factory, { messages, gapMin, gapMax }) {
  const r = {
    index,
    ok: false,
    error: null,
    nodes: [],
    acks: 0,
    engineIdStart: null,
    engineIdEnd: null,
    transport: null,
    protocol: null,
    heartbeats: 0,
    disconnects: [],
    errors: [],
  };
  let client;
  try {
    client = factory(index);
    const s = client.socket;
    s.on('disconnect', (reason) => r.disconnects.push(String(reason)));
    s.on('error', (err) => r.errors.push(String(err && err.message ? err.message : err)));
    await once(s, 'connect', T.connect, `client ${index} connect`, ['connect_error', 'connect_timeout', 'error']);
    const engine = client.engine();
    r.engineIdStart = client.engineId();
    r.protocol = client.protocol();
    let onHeartbeat = null;
    engine.on(client.heartbeatEvent, () => {
      r.heartbeats++;
      if (onHeartbeat) onHeartbeat();
    });
    for (let k = 0; k < messages; k++) {
      await pace(randomBetween(gapMin, gapMax));
      if (r.disconnects.length) throw new Error(`client ${index} disconnected: ${r.disconnects}`);
      const data = { client: index, k, pad: 'x'.repeat(k * 7) };
      const reply = await client.emitAck(data);
      assert.deepEqual(reply && reply.data, data, `client ${index} message ${k}: echo mismatch`);
      r.nodes.push(reply.node);
      r.acks++;
    }
    if (r.heartbeats === 0) {
      await withTimeout(
        new Promise((resolve) => (onHeartbeat = resolve)),
        T.heartbeat,
        `client ${index} heartbeat (${client.heartbeatEvent})`,
      );
    }
    r.engineIdEnd = client.engineId();
    r.transport = client.transport();
    if (r.disconnects.length) throw new Error(`client ${index} disconnected: ${r.disconnects}`);
    r.ok = true;
  } catch (err) {
    r.error = err && err.message ? err.message : String(err);
  } finally {
    closeQuietly(client);
  }
  return r;
}

// Starts `clients` jobs `runOne(i)` concurrently (spread over the first ~300 ms) and awaits
// them all.
function spreadClients(clients, runOne) {
  const jobs = [];
  for (let i = 0; i < clients; i++) jobs.push(pace(randomBetween(0, 300)).then(() => runOne(i)));
  return Promise.all(jobs);
}

async function runClients(factory, { clients = WORKLOAD.clients, messages = WORKLOAD.messages, gapMin = WORKLOAD.gapMin, gapMax = WORKLOAD.gapMax } = {}) {
  return spreadClients(clients, (i) => runOneClient(i, factory, { messages, gapMin, gapMax }));
}

// ---------------------------------------------------------------------------------------
// L4 TCP relay (a stand-in for an L4 load balancer in front of several stickyd replicas)

// Listens on 127.0.0.1:0 and hands each new TCP connection to the next target port in turn
// (round robin over `targets`, which setTargets() replaces for later connections). The target
// is chosen when the client's first bytes arrive (like an L4 balancer with an inspect delay),
// so every connection open to a target is listed in relay.open with its port and the first
// line the client sent (for diagnostics, and to know whose requests a dying target cuts).
// Bytes are copied unchanged; half-closes propagate; a reset or close on one side closes
// the other.
async function startRelay(targets) {
  const relay = {
    targets: targets.slice(),
    next: 0,
    perTarget: new Map(), // port -> connections handed to it
    failed: 0, // upstream connect errors
    sockets: new Set(),
    open: new Set(), // {port, head}
  };
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    relay.sockets.add(client);
    client.setNoDelay(true);
    let upstream = null;
    client.on('error', () => {
      client.destroy();
      if (upstream) upstream.destroy();
    });
    client.on('end', () => {
      if (!upstream) client.destroy(); // closed before sending anything
    });
    client.on('close', () => {
      relay.sockets.delete(client);
      if (upstream && !upstream.writableEnded) upstream.destroy();
    });
    client.once('data', (first) => {
      client.pause();
      const list = relay.targets;
      if (!list.length) {
        client.destroy();
        return;
      }
      const port = list[relay.next++ % list.length];
      relay.perTarget.set(port, (relay.perTarget.get(port) || 0) + 1);
      const text = first.toString('latin1');
      const eol = text.indexOf('\r\n');
      const conn = { port, head: eol >= 0 ? text.slice(0, eol) : text.slice(0, 200) };
      relay.open.add(conn);
      upstream = net.connect({ host: HOST, port, allowHalfOpen: true });
      relay.sockets.add(upstream);
      upstream.setNoDelay(true);
      let closed = 0;
      const onClosed = () => {
        if (++closed === 2) relay.open.delete(conn);
      };
      client.once('close', onClosed);
      if (client.destroyed) onClosed();
      upstream.on('error', () => {
        if (upstream.connecting) relay.failed++;
        upstream.destroy();
        client.destroy();
      });
      upstream.on('close', () => {
        relay.sockets.delete(upstream);
        onClosed();
        if (!client.writableEnded) client.destroy();
      });
      upstream.write(first);
      client.pipe(upstream);
      upstream.pipe(client);
    });
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, resolve);
  });
  relay.port = server.address().port;
  relay.url = `http://${HOST}:${relay.port}`;
  relay.setTargets = (ports) => {
    relay.targets = ports.slice();
  };
  relay.count = (port) => relay.perTarget.get(port) || 0;
  // Request lines of the connections open to `port` right now.
  relay.openTo = (port) => [...relay.open].filter((c) => c.port === port).map((c) => c.head);
  relay.close = () =>
    new Promise((resolve) => {
      for (const sock of relay.sockets) sock.destroy();
      server.close(() => resolve());
    });
  return relay;
}

// ---------------------------------------------------------------------------------------
// Clients that survive faults

// One client's life under faults: the factory passes `reconnection: true`. `messages` acked
// `event` messages (node.js's `echosid`: the reply names the node and ITS Engine.IO id); a
// message whose ack is lost to a disconnection is sent again once the client has reconnected
// (at most `attempts` times). Records every ack with the node, the node's sid and the
// client's Engine.IO id at that moment, every session (engine id at each connect), every
// disconnect and connect_error. `onAck(r)` is called after each ack (progress events).
async function runFaultClient(index, factory, { messages, gapMin, gapMax, event = 'echosid', attempts = 4, onAck, onConnect } = {}) {
  const r = {
    index,
    kind: null,
    ok: false,
    error: null,
    acks: [],
    sessions: [],
    disconnects: [],
    connectErrors: [],
    retries: 0,
  };
  let client;
  try {
    client = factory(index);
    r.kind = client.kind;
    const s = client.socket;
    s.on('connect', () => {
      r.sessions.push(client.engineId());
      if (onConnect) onConnect(r);
    });
    s.on('disconnect', (reason) => r.disconnects.push(String(reason)));
    s.on('connect_error', (err) => r.connectErrors.push(String(err && err.message ? err.message : err)));
    await once(s, 'connect', T.connect, `client ${index} connect`);
    for (let k = 0; k < messages; k++) {
      await pace(randomBetween(gapMin, gapMax));
      const data = { client: index, k };
      let reply;
      for (let attempt = 1; ; attempt++) {
        if (!s.connected) await once(s, 'connect', 2 * T.connect, `client ${index} reconnect (message ${k})`);
        try {
          reply = await client.emitEventAck(event, data);
          break;
        } catch (err) {
          if (attempt >= attempts) throw new Error(`client ${index} message ${k}: ${attempt} attempts: ${err.message}`);
          r.retries++;
        }
      }
      assert.deepEqual(reply && reply.data, data, `client ${index} message ${k}: echo mismatch`);
      r.acks.push({ k, node: reply.node, sid: reply.sid, engineId: client.engineId(), at: Date.now() });
      if (onAck) onAck(r);
    }
    r.ok = true;
  } catch (err) {
    r.error = err && err.message ? err.message : String(err);
  } finally {
    closeQuietly(client);
  }
  return r;
}

async function runFaultClients(factory, { clients = WORKLOAD.clients, messages = WORKLOAD.messages, gapMin = WORKLOAD.gapMin, gapMax = WORKLOAD.gapMax, ...rest } = {}) {
  return spreadClients(clients, (i) => runFaultClient(i, factory, { messages, gapMin, gapMax, ...rest }));
}

// Resolves when `count()` >= n; `kick()` is called by the code that changes the count
// (an event, not a poll). Bounded by `ms`.
function counter() {
  let value = 0;
  const waiters = [];
  return {
    get value() {
      return value;
    },
    add(d = 1) {
      value += d;
      for (const w of waiters.slice()) w();
    },
    reach(n, ms, what) {
      return withTimeout(
        new Promise((resolve) => {
          const check = () => {
            if (value >= n) {
              waiters.splice(waiters.indexOf(check), 1);
              resolve(value);
            }
          };
          waiters.push(check);
          check();
        }),
        ms,
        `${what} (at ${value}/${n})`,
      );
    },
  };
}

// Waits until `probe()` resolves truthy, re-probing every `every` ms, bounded by `ms`. For
// state that has no event of its own (an admin API field); never a fixed sleep.
async function until(probe, ms, what, every = 100) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    last = await probe();
    if (last) return last;
    if (Date.now() > deadline) throw new TimeoutError(`timed out after ${ms} ms: ${what}`);
    await pace(every);
  }
}

// "n1.abc" -> "abc" (stickyd's tag_sids); the node-side sid.
function untag(sid, sep = '.') {
  const i = sid.indexOf(sep);
  return i < 0 ? sid : sid.slice(i + sep.length);
}

function tagOf(sid, sep = '.') {
  const i = sid.indexOf(sep);
  return i < 0 ? null : sid.slice(0, i);
}

// ---------------------------------------------------------------------------------------
// Checks

function summarise(results) {
  return results
    .filter((r) => !r.ok || new Set(r.nodes).size > 1)
    .slice(0, 10)
    .map((r) => JSON.stringify(r))
    .join('\n');
}

// Per-client checks: all acks, one node per client, that node created the client's sid,
// the Engine.IO session never changed. Returns the map sid -> node for further checks.
// `nodeSid` maps the client's Engine.IO id to the node's (e.g. untag for tag_sids).
// `expectNodes`: how many nodes the sessions must cover (default: all).
async function assertClientsSticky(results, cluster, { messages = WORKLOAD.messages, transport, protocol, nodeSid = (id) => id, expectNodes = cluster.nodes.length } = {}) {
  const failed = results.filter((r) => !r.ok);
  assert.equal(failed.length, 0, `${failed.length}/${results.length} clients failed:\n${summarise(results)}`);
  for (const r of results) assert.equal(r.acks, messages, `client ${r.index} acks`);
  const switched = results.filter((r) => new Set(r.nodes).size !== 1);
  assert.equal(switched.length, 0, `${switched.length} clients switched nodes:\n${summarise(results)}`);
  for (const r of results) {
    assert.equal(r.engineIdEnd, r.engineIdStart, `client ${r.index}: Engine.IO session changed`);
    assert.ok(r.heartbeats >= 1, `client ${r.index}: no heartbeat`);
    if (transport) assert.equal(r.transport, transport, `client ${r.index}: final transport`);
    if (protocol) assert.equal(r.protocol, protocol, `client ${r.index}: Engine.IO protocol`);
  }
  const owners = await cluster.owners(results.map((r) => nodeSid(r.engineIdStart)));
  for (const r of results) {
    const owner = owners.get(nodeSid(r.engineIdStart));
    assert.equal(r.nodes[0], owner, `client ${r.index}: acks from ${r.nodes[0]} but sid ${r.engineIdStart} belongs to ${owner}`);
  }
  // Balancing: a workload of this size must use every node (or stickiness is trivial).
  const used = new Set(results.map((r) => r.nodes[0]));
  assert.equal(used.size, expectNodes, `sessions landed on ${[...used]}`);
  return owners;
}

// Sorts every "Session ID unknown" a node answered: `late` = a request for a session that
// this very node created and had already closed (e.g. its held poll was cut when a proxy
// died: the client's next request, correctly routed, finds it gone); `other` = everything
// else (a misrouted or unknown sid). Details beyond the nodes' 50 recorded count as other.
function classifySessionUnknown(stats) {
  const late = [];
  const other = [];
  for (const s of Object.values(stats)) {
    const n = s.connectionErrors['1'] || 0;
    const details = s.connectionErrorDetails.filter((d) => d.code === 1);
    for (const d of details) {
      const closed = d.sid && s.closedSids[d.sid];
      if (closed && s.sids.includes(d.sid) && closed.at <= d.at) late.push({ node: s.node, ...d, closedReason: closed.reason });
      else other.push({ node: s.node, ...d });
    }
    for (let i = details.length; i < n; i++) other.push({ node: s.node, truncated: true });
  }
  return { late, other };
}

// No node answered "Session ID unknown" and none saw a foreign sid. With `results` (from
// runClients) one race is allowed, because a client's requests travel on independent
// connections that stickyd's workers (or several proxies) handle in parallel: a client's close
// packet ("1", its own POST) can overtake the poll it sent just before, and the node answers
// that poll "Session ID unknown" for the session it has just closed ("transport close").
// Exactly that is allowed, for a client's final session, on the node that created it; foreign
// sids and any other code 1 still fail. Returns the allowed ones.
function assertNodesClean(stats, results, { nodeSid = (id) => id } = {}) {
  for (const s of Object.values(stats)) {
    if (!results) {
      assert.equal(s.connectionErrors['1'] || 0, 0, `node ${s.node}: ${s.connectionErrors['1']} 'Session ID unknown' errors: ${JSON.stringify(s.connectionErrorDetails.slice(0, 5))}`);
    }
    assert.equal(s.foreign, 0, `node ${s.node}: ${s.foreign} foreign-sid requests: ${JSON.stringify(s.foreignDetails.slice(0, 5))}`);
  }
  if (!results) return [];
  const { late, other } = classifySessionUnknown(stats);
  assert.deepEqual(other, [], 'Session ID unknown for a session the node had not closed');
  const finals = new Set(results.map((r) => r.engineIdEnd && nodeSid(r.engineIdEnd)));
  for (const u of late) {
    assert.equal(u.closedReason, 'transport close', `Session ID unknown after '${u.closedReason}': ${JSON.stringify(u)}`);
    assert.ok(finals.has(u.sid), `Session ID unknown for ${u.sid}, not a client's final session`);
  }
  return late;
}

function sum(stats, f) {
  return Object.values(stats).reduce((a, s) => a + (f(s) || 0), 0);
}

// ---------------------------------------------------------------------------------------
// Raw client exchanges (hostile-input tests)

// Writes `parts` (one write each, the next once the previous one was handed to the kernel),
// collects every byte until the socket closes. The proxy is expected to close first; the
// client half-closes only after the proxy's FIN, or right after writing with `halfClose`. At
// `ms` the client half-closes, and destroys the socket if nothing happens for 1 s more.
// `closedByProxy`: the proxy ended (FIN) or reset the connection before `ms`.
function rawExchange(port, parts, ms, { halfClose = false } = {}) {
  return new Promise((resolve) => {
    const started = Date.now();
    const s = net.connect({ host: HOST, port, allowHalfOpen: true });
    const chunks = [];
    let ended = false;
    let error = null;
    let timedOut = false;
    let killer = null;
    const timer = setTimeout(() => {
      timedOut = true;
      s.end();
      killer = setTimeout(() => s.destroy(), 1000 * SCALE);
    }, ms);
    s.setNoDelay(true);
    s.on('connect', () => {
      let i = 0;
      const next = () => {
        if (i >= parts.length) {
          if (halfClose) s.end();
          return;
        }
        s.write(parts[i++], (err) => (err ? null : next()));
      };
      next();
    });
    s.on('data', (c) => chunks.push(c));
    s.on('end', () => {
      ended = true;
      s.end();
    });
    s.on('error', (err) => {
      error = err.code || err.message;
    });
    s.on('close', () => {
      clearTimeout(timer);
      clearTimeout(killer);
      resolve({
        data: Buffer.concat(chunks),
        ended,
        error,
        timedOut,
        closedByProxy: !timedOut && (ended || error === 'ECONNRESET' || error === 'EPIPE'),
        ms: Date.now() - started,
      });
    });
  });
}

// Every response in `data`: {responses, error} (error: a message when the bytes are not a
// sequence of responses). Interim responses (1xx other than 101) have interim: true.
function parseResponses(data) {
  const reader = new HttpResponseReader();
  try {
    reader.feed(data);
    reader.end();
  } catch (err) {
    reader.error = err;
  }
  const responses = reader.responses.map((r) => ({ ...r, interim: r.status >= 100 && r.status < 200 && r.status !== 101 }));
  return { responses, error: reader.error ? reader.error.message : null };
}

module.exports = {
  rawExchange,
  parseResponses,
  faultEnv,
  fdTargets,
  trackChild,
  lineCollector,
  HOST,
  T,
  SCALE,
  WORKLOAD,
  STICKYD_BIN,
  TimeoutError,
  withTimeout,
  once,
  pace,
  shuffled,
  randomBetween,
  counter,
  until,
  untag,
  tagOf,
  startRelay,
  runFaultClient,
  runFaultClients,
  parseAccessLog,
  parseTextAccessLog,
  parseMetrics,
  stopChild,
  startNode,
  startCluster,
  startStickyd,
  stickydConfig,
  scenario,
  request,
  getJson,
  headerValues,
  decodePayload,
  encodePayload,
  enginePath,
  handshake,
  RawSession,
  RawConnection,
  HttpResponseReader,
  rawRequest,
  makeClient,
  runClients,
  assertClientsSticky,
  assertNodesClean,
  classifySessionUnknown,
  sum,
};
