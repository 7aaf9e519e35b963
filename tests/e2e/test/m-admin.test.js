'use strict';
// m. Admin API: bearer token, GET /backends, drain (no new sessions; existing sessions and
//    websocket tunnels continue), maint (no new traffic: the node's sids are answered by
//    stickyd, cookie-only requests go elsewhere), ready, weights, /metrics.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/harness');

const TOKEN = 'e2e-admin-token-0123';
const SESSION_UNKNOWN = '{"code":1,"message":"Session ID unknown"}';
const countBy = (list) => list.reduce((m, x) => ((m[x] = (m[x] || 0) + 1), m), {});

// `n` clients that stay connected until closed; each has answered one `echosid`.
async function holdClients(n, factory) {
  const clients = await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const c = factory(i);
      c.disconnects = [];
      c.socket.on('disconnect', (reason) => c.disconnects.push(reason));
      await h.once(c.socket, 'connect', h.T.connect, `holder ${i} connect`, ['connect_error']);
      c.first = await c.emitEventAck('echosid', { holder: i });
      return c;
    }),
  );
  return { clients, close: () => clients.forEach((c) => c.close()) };
}

// The engine-path traffic a node has seen (its /stats requests excluded).
const engineTraffic = (s) => s.engineRequests + s.upgrades;

test('m. admin: token, /backends, drain keeps sessions and tunnels, maint stops traffic, weights, metrics', { timeout: 120000 }, async (t) => {
  const proxyOpts = { extra: { admin: { listen: '127.0.0.1:0', token: TOKEN }, access_log: true }, timeouts: { shutdown_grace: '2s' } };
  await h.scenario(t, { proxyOpts }, async (env) => {
    const p = env.proxy;
    const put = (path, body, token = TOKEN) => p.admin('PUT', path, { body, token });

    // Token.
    const none = await p.admin('GET', '/backends');
    assert.equal(none.status, 401, none.body);
    assert.match(none.headers['www-authenticate'] || '', /^Bearer\b/);
    assert.equal((await p.admin('GET', '/backends', { token: 'wrong-token' })).status, 401);
    assert.equal((await p.admin('GET', '/metrics')).status, 401);
    assert.equal((await put('/backends/n2/state', 'maint', 'wrong-token')).status, 401);
    let b = await p.backends(TOKEN);
    assert.equal(b.n2.state, 'ready', 'a refused PUT changed nothing');
    assert.equal(p.stderr.filter((l) => /admin auth failed/.test(l)).length, 4);

    // Shape of /backends.
    assert.deepEqual(Object.keys(b), ['n1', 'n2', 'n3']);
    for (const n of env.cluster.nodes) {
      const x = b[n.name];
      assert.deepEqual(Object.keys(x).sort(), ['address', 'connections', 'effective_weight', 'health', 'name', 'requests', 'sessions', 'state', 'tunnels', 'weight']);
      assert.equal(x.address, n.address);
      assert.equal(x.weight, 1);
      assert.equal(x.effective_weight, 1);
      for (const k of ['sessions', 'connections', 'tunnels', 'requests']) assert.equal(typeof x[k], 'number');
    }

    // Metrics: exact deltas on a quiet proxy.
    const m0 = await p.metrics(TOKEN);
    for (let i = 0; i < 6; i++) await h.handshake(env.port);
    for (let i = 0; i < 9; i++) await h.request({ port: env.port, path: '/whoami' });
    const m1 = await p.metrics(TOKEN);
    assert.equal(m1.get('stickyd_handshakes_total') - m0.get('stickyd_handshakes_total'), 6);
    assert.equal(m1.sum('stickyd_backend_requests_total') - m0.sum('stickyd_backend_requests_total'), 15);
    assert.equal(m1.sum('stickyd_backend_requests_total', { class: '2xx' }) - m0.sum('stickyd_backend_requests_total', { class: '2xx' }), 15);
    for (const n of ['n1', 'n2', 'n3']) assert.equal(m1.sum('stickyd_backend_requests_total', { backend: n }) - m0.sum('stickyd_backend_requests_total', { backend: n }), 5, `round robin: 5 requests to ${n}`);
    assert.equal(m1.get('stickyd_request_duration_seconds_count') - m0.get('stickyd_request_duration_seconds_count'), 15);
    const buckets = m1.samples.filter((s) => s.name === 'stickyd_request_duration_seconds_bucket');
    assert.ok(buckets.length >= 5);
    for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i].value >= buckets[i - 1].value, 'histogram buckets are cumulative');
    assert.equal(buckets[buckets.length - 1].labels.le, '+Inf');
    assert.equal(buckets[buckets.length - 1].value, m1.get('stickyd_request_duration_seconds_count'));
    assert.ok(m1.get('stickyd_affinity_sessions') >= 6, 'the 6 sessions are in the table');
    assert.ok(m1.get('stickyd_sids_learnt_total') >= 6);

    // Holders: websocket clients (tunnels) and polling clients, on every node.
    const ws = await holdClients(9, (i) => h.makeClient('v4', env.url, { transports: ['websocket'], query: { ws: String(i) } }));
    const polling = await holdClients(9, (i) => h.makeClient('v4', env.url, { transports: ['polling'], query: { poll: String(i) } }));
    env.cleanups.push(ws.close, polling.close);
    const wsOn = countBy(ws.clients.map((c) => c.first.node));
    assert.deepEqual(wsOn, { n1: 3, n2: 3, n3: 3 });
    const m2 = await p.metrics(TOKEN);
    for (const n of ['n1', 'n2', 'n3']) assert.equal(m2.get('stickyd_backend_tunnels_open', { backend: n }), 3, `tunnels open on ${n}`);
    b = await p.backends(TOKEN);
    for (const n of ['n1', 'n2', 'n3']) assert.equal(b[n].tunnels, 3);

    // Drain n2: no new sessions there; its sessions (tunnels included) carry on.
    const d = await put('/backends/n2/state', 'drain');
    assert.equal(d.status, 200, d.body);
    assert.equal(JSON.parse(d.body).state, 'drain');
    assert.equal(JSON.parse(d.body).effective_weight, 0);
    assert.equal((await p.metrics(TOKEN)).get('stickyd_backend_state', { backend: 'n2', state: 'drain' }), 1);
    const results = await h.runClients((i) => h.makeClient(i % 4 === 3 ? 'v2' : 'v4', env.url, { query: { c: String(i) } }));
    await h.assertClientsSticky(results, env.cluster, { expectNodes: 2 });
    assert.ok(!results.some((r) => r.nodes[0] === 'n2'), 'a new session on the draining n2');
    for (const c of [...ws.clients, ...polling.clients]) {
      const again = await c.emitEventAck('echosid', 'after drain');
      assert.deepEqual([again.node, again.sid], [c.first.node, c.first.sid], 'holder kept its session');
      assert.deepEqual(c.disconnects, []);
    }
    b = await p.backends(TOKEN);
    assert.equal(b.n2.tunnels, 3, 'draining n2 kept its tunnels');
    assert.ok(b.n2.sessions >= 6, `draining n2 keeps its sessions in the table: ${b.n2.sessions}`);

    // Maint: nothing new reaches n2. Its sids get Engine.IO's 400 from stickyd; a request with
    // only its cookie goes elsewhere; handshakes avoid it.
    const n2Polling = polling.clients.filter((c) => c.first.node === 'n2');
    assert.equal(n2Polling.length, 3);
    const n2Ws = ws.clients.filter((c) => c.first.node === 'n2');
    const n2Before = (await env.stats()).n2;
    assert.equal((await put('/backends/n2/state', 'maint')).status, 200);
    const sid = n2Polling[0].first.sid;
    const res = await h.request({ port: env.port, path: h.enginePath({ EIO: '4', transport: 'polling', sid }) });
    assert.equal(res.status, 400);
    assert.equal(res.body, SESSION_UNKNOWN);
    const who = await h.request({ port: env.port, path: '/whoami', headers: { Cookie: `io=${sid}` } });
    assert.notEqual(JSON.parse(who.body).node, 'n2');
    for (let i = 0; i < 6; i++) assert.notEqual(await env.cluster.ownerOf((await h.handshake(env.port)).sid), 'n2');
    // The n2 polling holders are told to re-handshake (their next poll): wait for that.
    await Promise.all(n2Polling.map((c) => (c.disconnects.length ? null : h.once(c.socket, 'disconnect', h.T.heartbeat, 'n2 polling holder told to go'))));
    const n2After = (await env.stats()).n2;
    // (Requests already held at n2 when maint began may still complete; nothing new starts.)
    t.diagnostic(`n2 engine requests during maint: ${engineTraffic(n2After) - engineTraffic(n2Before)}`);
    assert.equal(n2After.handshakes, n2Before.handshakes, 'no handshake on n2 in maint');
    assert.ok(engineTraffic(n2After) - engineTraffic(n2Before) <= n2Polling.length, 'only the polls already held at n2 completed');
    // Maint closes the node's websocket tunnels at once: their clients see a disconnect.
    assert.equal((await p.backends(TOKEN)).n2.tunnels, 0, 'maint closed the tunnels to n2');
    await Promise.all(n2Ws.map((c) => (c.disconnects.length ? null : h.once(c.socket, 'disconnect', h.T.heartbeat, 'n2 websocket client cut by maint'))));

    // Ready again, then weights.
    assert.equal((await put('/backends/n2/state', 'ready')).status, 200);
    const w = await put('/backends/n1/weight', '3');
    assert.equal(w.status, 200, w.body);
    assert.equal(JSON.parse(w.body).weight, 3);
    let owners = [];
    for (let i = 0; i < 25; i++) owners.push(await env.cluster.ownerOf((await h.handshake(env.port)).sid));
    let spread = countBy(owners);
    assert.ok(spread.n1 >= 14 && spread.n1 <= 16 && spread.n2 >= 4 && spread.n2 <= 6 && spread.n3 >= 4 && spread.n3 <= 6, `weights 3/1/1: ${JSON.stringify(spread)}`);
    assert.equal((await put('/backends/n3/weight', '0')).status, 200);
    owners = [];
    for (let i = 0; i < 8; i++) owners.push(await env.cluster.ownerOf((await h.handshake(env.port)).sid));
    spread = countBy(owners);
    assert.equal(spread.n3 || 0, 0, `weight 0: ${JSON.stringify(spread)}`);
    b = await p.backends(TOKEN);
    assert.deepEqual([b.n1.weight, b.n2.weight, b.n3.weight], [3, 1, 0]);
    assert.equal(b.n3.effective_weight, 0);
    // Errors.
    assert.equal((await put('/backends/n1/weight', 'heavy')).status, 400);
    assert.equal((await put('/backends/n1/state', 'sleeping')).status, 400);
    assert.equal((await put('/backends/nx/state', 'drain')).status, 404);
    assert.equal((await p.admin('GET', '/backends/n1', { token: TOKEN })).status, 200);
    assert.equal(JSON.parse((await p.admin('GET', '/backends/n1', { token: TOKEN })).body).weight, 3);

    ws.close();
    polling.close();
    await env.stopProxy();
    const stats = await env.stats();
    for (const s of Object.values(stats)) assert.equal(s.foreign, 0, `node ${s.node}: foreign`);
    const unknown = h.classifySessionUnknown(stats);
    assert.deepEqual(unknown.other, []);
  });
});
