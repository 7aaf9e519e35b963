'use strict';
// z. Migrating from HAProxy (issue 16), live: real HAProxy (Debian package) with cookie
//    persistence in front of a real Socket.IO cluster; real clients with a cookie jar
//    (socket.io-client 4 in Node with `withCredentials`, which keeps one; polling-only and
//    upgrading) and cookie-less websocket clients connect through it;
//    then an L4 stand-in moves new connections to stickyd running the config that
//    `stickyd import-haproxy` made from HAProxy's. The cookies HAProxy issued keep routing:
//    every client finishes on its node, no node sees "Session ID unknown". Done for
//    `cookie SERVERID insert indirect nocache` and for `cookie io prefix indirect nocache` (the
//    Socket.IO documentation's setup). Also: every HAProxy config in the repository's tests
//    imports into a config `stickyd --check` accepts.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');
const h = require('../lib/harness');
const { startHaproxyConfig, haproxyBin } = require('../lib/haproxy');

const STICKYD = process.env.STICKYD_BIN || h.STICKYD_BIN;

function importConfig(cfgFile, extraArgs = []) {
  const r = spawnSync(STICKYD, ['import-haproxy', cfgFile, ...extraArgs], { encoding: 'utf8', timeout: 10000 });
  return { code: r.status, yaml: r.stdout, stderr: r.stderr };
}

function check(yamlFile) {
  const r = spawnSync(STICKYD, ['--check', '-c', yamlFile], { encoding: 'utf8', timeout: 10000 });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

// stickyd on a config file; resolves once it listens.
async function startStickydFile(file, cleanups) {
  const child = h.trackChild(spawn(STICKYD, ['-c', file], { stdio: ['ignore', 'pipe', 'pipe'] }));
  const stderr = h.lineCollector(child.stderr);
  cleanups.push(() => h.stopChild(child));
  const line = await h.until(
    () => (child.exitInfo ? Promise.reject(new Error(`stickyd exited: ${stderr.join('\n')}`)) : stderr.find((l) => / info listening /.test(l))),
    h.T.proxyReady,
    'stickyd listening',
  );
  return { child, stderr, port: Number(/127\.0\.0\.1:(\d+)/.exec(line)[1]) };
}

function haproxyConfig(mode, hp, nodes) {
  const cookie = mode === 'insert' ? 'cookie SERVERID insert indirect nocache' : 'cookie io prefix indirect nocache';
  return [
    '# A cookie-persistence setup as Socket.IO operators write it',
    'global',
    '  maxconn 2000',
    'defaults',
    '  mode http',
    '  timeout connect 5s',
    '  timeout client 60s',
    '  timeout server 60s',
    '  timeout tunnel 1h',
    '  option redispatch',
    'frontend fe',
    `  bind 127.0.0.1:${hp}`,
    '  default_backend io',
    'backend io',
    '  balance roundrobin',
    `  ${cookie}`,
    ...nodes.map((n) => `  server ${n.name} ${n.address} cookie ${n.name}`),
    '',
  ].join('\n');
}

for (const mode of ['insert', 'prefix']) {
  test(`z. ${mode}: clients of HAProxy keep their nodes when new connections move to stickyd running the imported config`, { timeout: 120000 }, async (t) => {
    if (!haproxyBin()) throw new Error('haproxy is not installed (packaging/install-deps.sh --tests installs it)');
    await h.scenario(t, { proxy: false, nodeCookie: mode === 'prefix' }, async (env) => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stickyd-z-'));
      env.cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
      const hp = await require('../lib/dnsmasq').freePort();
      const cfgFile = path.join(dir, 'haproxy.cfg');
      fs.writeFileSync(cfgFile, haproxyConfig(mode, hp, env.cluster.nodes));
      const haproxy = await startHaproxyConfig(cfgFile, [hp]);
      env.cleanups.push(() => haproxy.stop());

      // The import, as an operator runs it; only the listen address changes (the test's
      // stickyd runs next to HAProxy on the same host).
      const imported = importConfig(cfgFile);
      assert.equal(imported.code, 0, imported.stderr);
      assert.match(imported.stderr, /import-haproxy: \d+ lines mapped, \d+ kept as comments/);
      assert.match(imported.yaml, mode === 'insert' ? /server_cookie: \{name: "SERVERID", mode: insert, indirect: true, nocache: true\}/ : /server_cookie: \{name: "io", mode: prefix, indirect: true, nocache: true\}/);
      const yaml = imported.yaml.replace(`"127.0.0.1:${hp}"`, '"127.0.0.1:0"');
      const yamlFile = path.join(dir, 'stickyd.yaml');
      fs.writeFileSync(yamlFile, yaml);
      const checked = check(yamlFile);
      assert.equal(checked.code, 0, `${checked.out}\n${yaml}`);
      const stickyd = await startStickydFile(yamlFile, env.cleanups);

      const relay = await h.startRelay([hp]);
      env.cleanups.push(() => relay.close());
      const url = `http://${h.HOST}:${relay.port}`;
      const N = 18;
      const messages = 30;
      let switched = false;
      const acked = h.counter();
      // Cookie jars for polling and upgrading clients; cookie-less clients (no jar) can only
      // be sticky through HAProxy's cookie persistence on a single connection: websocket-only.
      const kinds = ['polling', 'upgrade', 'websocket-no-jar'];
      const run = h.runClients(
        (i) => {
          const kind = kinds[i % kinds.length];
          const opts = { withCredentials: kind !== 'websocket-no-jar', query: { c: String(i) } };
          if (kind === 'polling') opts.transports = ['polling'];
          if (kind === 'websocket-no-jar') opts.transports = ['websocket'];
          const c = h.makeClient('v4', url, opts);
          c.socket.on('connect', () => acked.add());
          return c;
        },
        { clients: N, messages, gapMin: 60, gapMax: 120 },
      );
      // Every client connected through HAProxy: move new connections to stickyd.
      await acked.reach(N, 20000, 'every client connected through HAProxy');
      const before = relay.perTarget.get(hp) || 0;
      relay.setTargets([stickyd.port]);
      switched = true;
      const results = await run;
      assert.ok(switched);
      const after = relay.perTarget.get(stickyd.port) || 0;
      t.diagnostic(`${mode}: ${before} connections to HAProxy before the switch, ${after} to stickyd after; ${N} clients x ${messages} messages`);
      assert.ok(after > 0, 'connections reached stickyd after the switch');
      await h.assertClientsSticky(results, env.cluster, { messages });
      // Requests routed by HAProxy's cookie: the access log is off, so read the backends' view.
      const stats = await env.stats();
      h.assertNodesClean(stats, results);
    });
  });
}

test('z. import-haproxy accepts every HAProxy config of the repository tests; a broken one gives FILE:LINE', { timeout: 30000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stickyd-z-'));
  try {
    // tests/bench/haproxy.cfg is a template: its placeholders become ports.
    const bench = fs
      .readFileSync(path.join(__dirname, '..', '..', 'bench', 'haproxy.cfg'), 'utf8')
      .replace(/@PORT@/g, '18080')
      .replace(/@P(\d)@/g, (_, k) => String(18090 + Number(k)))
      .replace(/@W\d@/g, '1')
      .replace(/@MODE@/g, 'polling');
    const files = { 'bench-polling.cfg': bench, 'bench-ws.cfg': bench.replace('default_backend polling', 'default_backend ws') };
    for (const [name, text] of Object.entries(files)) {
      const f = path.join(dir, name);
      fs.writeFileSync(f, text);
      const backend = name.includes('ws') ? ['--backend', 'ws'] : [];
      const r = importConfig(f, backend);
      assert.equal(r.code, 0, `${name}: ${r.stderr}`);
      const y = path.join(dir, `${name}.yaml`);
      fs.writeFileSync(y, r.yaml);
      const c = check(y);
      assert.equal(c.code, 0, `${name}: ${c.out}\n${r.yaml}`);
      if (!backend.length) assert.match(r.yaml, /stick-table .* -- stickyd keeps its own sid table/);
      else assert.match(r.yaml, /backend polling  -- not the imported Socket.IO backend 'ws'/);
    }
    const broken = path.join(dir, 'broken.cfg');
    fs.writeFileSync(broken, 'global\n  maxconn 10\nbackend b\n  server s "127.0.0.1:1\n');
    const r = importConfig(broken);
    assert.equal(r.code, 1);
    assert.equal(r.stderr.trim(), `${broken}:4: unterminated "..."`);
    const missing = importConfig(path.join(dir, 'nope.cfg'));
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /nope\.cfg: cannot read: No such file or directory/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
