'use strict';
// a-d. Real Socket.IO clients (4.8 and 2.x) through stickyd to a 3-node Socket.IO 4.8 cluster.
// Each scenario: WORKLOAD.clients clients started concurrently, each sending WORKLOAD.messages
// acked `echo` events 50-150 ms apart and staying until it has seen a heartbeat. Checks: every
// ack arrived, all acks of a client come from the node that created its sid, the Engine.IO
// session never changed, and no node saw "Session ID unknown" or a foreign sid.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/harness');

const fs = require('node:fs');

// How many io_uring instances the process holds (one per worker when writes are batched).
const ioUringFds = (proxy) => h.fdTargets(proxy).filter((l) => l === 'anon_inode:[io_uring]').length;

async function finish(env, results, opts) {
  // Clients are closed; stop the proxy so that nothing is in flight, then read the counters.
  await env.stopProxy();
  const stats = await env.stats();
  await h.assertClientsSticky(results, env.cluster, opts);
  h.assertNodesClean(stats, results);
  return stats;
}

test('a. socket.io-client 4, polling then websocket upgrade, withCredentials, nodes with cookie', { timeout: 120000 }, async (t) => {
  await h.scenario(t, { nodeCookie: true, proxyCookie: false }, async (env) => {
    const results = await h.runClients((i) =>
      h.makeClient('v4', env.url, { withCredentials: true, query: { c: String(i) } }),
    );
    const stats = await finish(env, results, { transport: 'websocket', protocol: 4 });
    const n = results.length;
    // Every session started on polling and upgraded through the proxy's tunnel.
    assert.equal(h.sum(stats, (s) => s.handshakesByTransport.polling), n);
    assert.equal(h.sum(stats, (s) => s.transportUpgrades), n);
    assert.ok(h.sum(stats, (s) => s.ownedSidByMethod.UPGRADE) >= n);
    // The cookie jar got the node's Set-Cookie through the proxy and sent it back.
    assert.ok(h.sum(stats, (s) => s.withIoCookie) >= n, `requests with an io cookie: ${h.sum(stats, (s) => s.withIoCookie)}`);
  });
});

test('a2. the same with batch_writes: false (one write(2) per send, no io_uring)', { timeout: 120000 }, async (t) => {
  await h.scenario(t, { nodeCookie: true, proxyCookie: false, proxyOpts: { extra: { batch_writes: false, workers: 2 } } }, async (env) => {
    assert.equal(ioUringFds(env.proxy), 0);
    const results = await h.runClients((i) =>
      h.makeClient('v4', env.url, { withCredentials: true, query: { c: String(i) } }),
    );
    const stats = await finish(env, results, { transport: 'websocket', protocol: 4 });
    assert.equal(h.sum(stats, (s) => s.transportUpgrades), results.length);
  });
});

test('a3. batched writes: one io_uring per worker, switched off and on by SIGHUP; real clients stay sticky', { timeout: 120000 }, async (t) => {
  const extra = { workers: 2, admin: { listen: `${h.HOST}:0` } };
  await h.scenario(t, { nodeCookie: false, proxyCookie: false, proxyOpts: { extra } }, async (env) => {
    const p = env.proxy;
    assert.equal(ioUringFds(p), 2);
    const reload = async (text, what) => {
      const from = p.stderr.length;
      fs.writeFileSync(p.configFile, text);
      p.child.kill('SIGHUP');
      await p.waitForLine(/^\S+ info config reloaded\b/, h.T.http, what, from);
      // Worker 0 logs that line and posts the reload to the other worker; /metrics asks every
      // worker for its counters through the same mailbox, so it returns after they applied it.
      await p.metrics();
    };
    await reload(`${p.configText}batch_writes: false\n`, 'reload with batch_writes: false');
    assert.equal(ioUringFds(p), 0);
    const off = await h.runClients((i) =>
      h.makeClient('v4', env.url, { transports: ['polling'], query: { c: `off${i}` } }),
    );
    await reload(p.configText, 'reload back to the default');
    assert.equal(ioUringFds(p), 2);
    const on = await h.runClients((i) =>
      h.makeClient('v4', env.url, { transports: ['polling'], query: { c: `on${i}` } }),
    );
    await finish(env, [...off, ...on], { transport: 'polling', protocol: 4 });
  });
});

test('a4. io_uring refused (EPERM, as under seccomp): said once, writes go one syscall each, clients sticky', { timeout: 120000 }, async (t) => {
  await h.scenario(t, { nodeCookie: true, proxyCookie: false, proxyOpts: { extra: { workers: 2 }, env: h.faultEnv('io_uring-eperm') } }, async (env) => {
    assert.equal(ioUringFds(env.proxy), 0);
    const results = await h.runClients((i) =>
      h.makeClient('v4', env.url, { withCredentials: true, query: { c: String(i) } }),
    );
    const stats = await finish(env, results, { transport: 'websocket', protocol: 4 });
    assert.equal(h.sum(stats, (s) => s.transportUpgrades), results.length);
    const said = env.proxy.stderr.filter((l) => /io_uring unavailable/.test(l));
    assert.equal(said.length, 1, said.join('\n'));  // once per process, not per worker
    assert.match(said[0], /reason="io_uring_setup: Operation not permitted"/);
  });
});

test('b. socket.io-client 4, polling only, no cookie jar, nodes without cookie (sid alone)', { timeout: 120000 }, async (t) => {
  await h.scenario(t, { nodeCookie: false, proxyCookie: false }, async (env) => {
    // The proxy (cookie: false) must not add a cookie to a handshake.
    const hs = await h.handshake(env.port);
    assert.deepEqual(hs.setCookies, []);
    await new h.RawSession(env.port, hs.sid).close();

    const results = await h.runClients((i) =>
      h.makeClient('v4', env.url, { transports: ['polling'], withCredentials: false, query: { c: String(i) } }),
    );
    const stats = await finish(env, results, { transport: 'polling', protocol: 4 });
    assert.equal(h.sum(stats, (s) => s.withIoCookie), 0);
    assert.equal(h.sum(stats, (s) => s.upgrades), 0);
    // Long polls were held and answered with pings: GETs far outnumber the acks' round trips.
    assert.ok(h.sum(stats, (s) => s.ownedSidByMethod.GET) >= results.length * h.WORKLOAD.messages);
  });
});

test('c. socket.io-client 4, websocket only', { timeout: 120000 }, async (t) => {
  await h.scenario(t, { nodeCookie: false, proxyCookie: false }, async (env) => {
    const results = await h.runClients((i) =>
      h.makeClient('v4', env.url, { transports: ['websocket'], query: { c: String(i) } }),
    );
    const stats = await finish(env, results, { transport: 'websocket', protocol: 4 });
    assert.equal(h.sum(stats, (s) => s.handshakesByTransport.websocket), results.length);
    assert.equal(h.sum(stats, (s) => s.handshakesByTransport.polling), 0);
  });
});

test('d. socket.io-client 2.x (EIO=3), default transports', { timeout: 120000 }, async (t) => {
  await h.scenario(t, { nodeCookie: false, proxyCookie: false }, async (env) => {
    const results = await h.runClients((i) => h.makeClient('v2', env.url, { query: { c: String(i) } }));
    const stats = await finish(env, results, { transport: 'websocket', protocol: 3 });
    const n = results.length;
    assert.equal(h.sum(stats, (s) => s.handshakesByProtocol['3']), n);
    assert.equal(h.sum(stats, (s) => s.handshakesByTransport.polling), n);
    assert.equal(h.sum(stats, (s) => s.transportUpgrades), n);
  });
});
