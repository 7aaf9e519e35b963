'use strict';
// s. `workers: 2`: two event loops accept on one port (SO_REUSEPORT) and share one affinity
// table, the health/admin state and the config. Requests of one session arrive on fresh TCP
// connections, so the kernel hands them to either worker: every one must still reach the node
// that created the session. Admin changes and SIGHUP reloads must reach both workers.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const h = require('../lib/harness');

const WORKERS = { workers: 2, admin: { listen: '127.0.0.1:0' } };

// Accepted connections per worker, from the admin API's metrics.
async function perWorker(p) {
  const m = await p.metrics();
  return m.samples.filter((s) => s.name === 'stickyd_worker_connections_total').map((s) => s.value);
}

// `n` handshakes, each on its own TCP connection; returns the owning node of each.
async function handshakeOwners(env, n) {
  const agent = new http.Agent({ keepAlive: false });
  const owners = [];
  for (let i = 0; i < n; i++) {
    const hs = await h.handshake(env.port, { agent });
    owners.push(await env.cluster.ownerOf(hs.sid));
  }
  return owners;
}

test('s1. workers: 2 — one session, requests on fresh connections over both workers, always its node; real clients of every kind', { timeout: 120000 }, async (t) => {
  await h.scenario(t, { proxyOpts: { extra: WORKERS } }, async (env) => {
    const p = env.proxy;
    assert.ok(p.stderr.some((l) => / info listening .*\bworkers=2\b/.test(l)), 'listening line names 2 workers');

    const agent = new http.Agent({ keepAlive: false }); // one TCP connection per request
    for (let s = 0; s < 6; s++) {
      const hs = await h.handshake(env.port, { agent });
      const owner = await env.cluster.ownerOf(hs.sid);
      const raw = new h.RawSession(env.port, hs.sid, { agent });
      await raw.connectNamespace();
      for (let k = 0; k < 8; k++) assert.equal((await raw.echo({ s, k })).node, owner, `session ${s} request ${k}`);
      await raw.close();
    }
    const per = await perWorker(p);
    assert.equal(per.length, 2, `worker series: ${per}`);
    // ~120 connections spread by the kernel's hash of the client port: both workers served.
    assert.ok(per.every((v) => v > 0), `connections per worker: ${per}`);

    const kinds = [];
    for (let i = 0; i < 30; i++) kinds.push(i < 10 ? 'v4-default' : i < 20 ? 'v4-polling' : i < 25 ? 'v4-websocket' : 'v2');
    const results = await h.runClients((i) => {
      const q = { query: { c: String(i) } };
      if (kinds[i] === 'v4-polling') return h.makeClient('v4', env.url, { ...q, transports: ['polling'] });
      if (kinds[i] === 'v4-websocket') return h.makeClient('v4', env.url, { ...q, transports: ['websocket'] });
      if (kinds[i] === 'v2') return h.makeClient('v2', env.url, q);
      return h.makeClient('v4', env.url, q);
    });
    // Counters gathered from both workers: every request made so far was routed somewhere.
    const b = await p.backends();
    const requests = Object.values(b).reduce((a, x) => a + x.requests, 0);
    assert.ok(requests >= 6 * 10, `requests over both workers: ${requests}`);
    await env.stopProxy();
    const stats = await env.stats();
    await h.assertClientsSticky(results, env.cluster);
    h.assertNodesClean(stats, results);
  });
});

test('s2. workers: 2 — admin maint closes the node\'s tunnels on both workers; weights reach both', { timeout: 120000 }, async (t) => {
  await h.scenario(t, { proxyOpts: { extra: WORKERS } }, async (env) => {
    const p = env.proxy;
    const clients = [];
    try {
      for (let i = 0; i < 24; i++) {
        const c = h.makeClient('v4', env.url, { transports: ['websocket'], query: { c: String(i) } });
        clients.push(c);
        await h.once(c.socket, 'connect', h.T.connect, `client ${i} connect`);
      }
      let b = await h.until(async () => {
        const x = await p.backends();
        return Object.values(x).reduce((a, y) => a + y.tunnels, 0) === 24 && x;
      }, 10000, '24 tunnels counted over both workers');
      const onN1 = b.n1.tunnels;
      assert.ok(onN1 > 0, 'some tunnels on n1');
      assert.equal((await p.admin('PUT', '/backends/n1/state', { body: 'maint' })).status, 200);
      b = await h.until(async () => {
        const x = await p.backends();
        return x.n1.tunnels === 0 && x;
      }, 10000, 'n1 tunnels closed by every worker');
      assert.equal(b.n2.tunnels + b.n3.tunnels, 24 - onN1, 'other tunnels untouched');
      assert.ok(p.stderr.filter((l) => /backend in maintenance/.test(l)).length === 2, 'both workers applied maint');
    } finally {
      for (const c of clients) c.close();
    }
    assert.equal((await p.admin('PUT', '/backends/n1/state', { body: 'ready' })).status, 200);
    assert.equal((await p.admin('PUT', '/backends/n2/weight', { body: '0' })).status, 200);
    assert.equal((await p.admin('PUT', '/backends/n3/weight', { body: '0' })).status, 200);
    const owners = await handshakeOwners(env, 16);
    assert.deepEqual([...new Set(owners)], ['n1'], `new sessions with n2/n3 at weight 0: ${owners}`);
    const per = await perWorker(p);
    assert.ok(per.every((v) => v > 0), `connections per worker: ${per}`);
  });
});

test('s3. workers: 2 — SIGHUP reloads every worker; a second proxy cannot take the port', { timeout: 60000 }, async (t) => {
  await h.scenario(t, { proxyOpts: { extra: WORKERS } }, async (env) => {
    const p = env.proxy;
    const text = fs.readFileSync(p.configFile, 'utf8');
    const next = text.replace(/(\{name: n[23], address: "[^"]+")\}/g, '$1, weight: 0}');
    assert.notEqual(next, text);
    fs.writeFileSync(p.configFile, next);
    const from = p.stderr.length;
    p.child.kill('SIGHUP');
    await p.waitForLine(/config reloaded/, 5000, 'reload', from);
    // Worker 1 applies the reload from its mailbox: poll until sessions stop reaching n2/n3.
    await h.until(async () => (await handshakeOwners(env, 4)).every((o) => o === 'n1'), 5000, 'reload on both workers');
    const owners = await handshakeOwners(env, 16);
    assert.deepEqual([...new Set(owners)], ['n1'], `after reload: ${owners}`);

    // SO_REUSEPORT must not let a second proxy join the first one's port.
    await assert.rejects(
      h.startStickyd({ backends: env.backends(), listenPort: env.port, extra: { workers: 2 }, label: 'second' }),
      /cannot listen.*address already in use/,
    );
  });
});
