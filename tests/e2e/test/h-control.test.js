'use strict';
// h. Negative controls: they run without stickyd and prove that the checks of a-g can fail.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/harness');
const { startNaiveProxy } = require('../lib/naive-proxy');

test('h. negative control: a sid of n1 sent to n2 is "Session ID unknown" and counted', { timeout: 60000 }, async (t) => {
  await h.scenario(t, { proxy: false }, async (env) => {
    const n1 = env.cluster.byName('n1');
    const n2 = env.cluster.byName('n2');

    const { sid } = await h.handshake(n1.port);

    // The owner accepts its sid (a poll that returns at once because of the CONNECT answer).
    const own = new h.RawSession(n1.port, sid);
    const connect = await own.connectNamespace();
    assert.match(connect.sid, /^[A-Za-z0-9_-]+$/);

    // The same sid on another node.
    const res = await h.request({ port: n2.port, path: h.enginePath({ EIO: '4', transport: 'polling', sid }) });
    assert.equal(res.status, 400);
    assert.equal(res.body, '{"code":1,"message":"Session ID unknown"}');

    // A preflight with a foreign sid is answered 204 by the CORS layer (no engine error):
    // only the foreign counter can see it.
    const pre = await h.request({
      port: n2.port,
      method: 'OPTIONS',
      path: h.enginePath({ EIO: '4', transport: 'polling', sid }),
      headers: { Origin: 'http://app.example.test', 'Access-Control-Request-Method': 'POST' },
    });
    assert.equal(pre.status, 204);

    const stats = await env.stats();
    assert.deepEqual(stats.n2.connectionErrors, { 1: 1 });
    assert.equal(stats.n2.foreign, 2);
    assert.deepEqual(stats.n2.foreignByMethod, { GET: 1, OPTIONS: 1 });
    assert.equal(stats.n1.foreign, 0);
    assert.ok(stats.n1.sids.includes(sid));
    assert.equal(await env.cluster.ownerOf(sid), 'n1');
    assert.equal(stats.n1.ownedSidByMethod.POST, 1);

    // And the shared node-side check used by a-g rejects these counters.
    assert.throws(() => h.assertNodesClean(stats), /Session ID unknown/);
    stats.n2.connectionErrors = {};
    assert.throws(() => h.assertNodesClean(stats), /foreign-sid/);
  });
});

test('h. negative control: real clients through a non-sticky round-robin proxy fail the checks', { timeout: 90000 }, async (t) => {
  await h.scenario(t, { proxy: false }, async (env) => {
    const naive = await startNaiveProxy(env.cluster.nodes.map((n) => n.port));
    try {
      const url = `http://127.0.0.1:${naive.port}`;
      const results = await h.runClients(
        (i) => h.makeClient('v4', url, { transports: ['polling'], withCredentials: false, query: { c: String(i) } }),
        { clients: 10, messages: 3 },
      );
      await naive.close();
      const stats = await env.stats();
      assert.ok(results.some((r) => !r.ok), 'some clients must fail without stickiness');
      await assert.rejects(() => h.assertClientsSticky(results, env.cluster, { messages: 3 }));
      assert.ok(h.sum(stats, (s) => s.connectionErrors['1']) > 0, 'nodes must see Session ID unknown');
      assert.ok(h.sum(stats, (s) => s.foreign) > 0, 'nodes must see foreign sids');
      assert.throws(() => h.assertNodesClean(stats));
    } finally {
      await naive.close();
    }
  });
});
