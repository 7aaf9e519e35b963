'use strict';
// x. Paced eviction (issue 14): POST /backends/<name>/evict?over=10s drains a node and moves
//    its sessions off evenly over the window, so its clients reconnect at about
//    sessions/window per second instead of all at once (the reconnect storm `maint` causes).
//    Real socket.io-client v4 clients (default transports upgraded to websocket, and
//    polling-only) with Socket.IO's default reconnection; two workers, so tunnels on both are
//    closed. Each phase puts N clients on n2 (n1 and n3 drained meanwhile), then evicts it
//    (or sets maint) and counts the clients' reconnections per second.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/harness');

const TOKEN = 'e2e-evict-token-0123';
const N = 54;
const WINDOW_S = 10;

// N clients on n2: the other nodes drained while they connect, ready again afterwards.
async function clientsOnN2(env, put, tag, count = N) {
  for (const n of ['n1', 'n3']) assert.equal((await put(`/backends/${n}/state`, 'drain')).status, 200);
  const clients = await Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const polling = i % 2 === 1;
      const c = h.makeClient('v4', env.url, {
        reconnection: true, // Socket.IO's defaults: 1 s delay, randomization 0.5, max 5 s
        query: { [tag]: String(i) },
        ...(polling ? { transports: ['polling'] } : {}),
      });
      c.connects = [];
      c.socket.on('connect', () => c.connects.push({ at: Date.now(), sid: c.engineId() }));
      await h.once(c.socket, 'connect', h.T.connect, `${tag} ${i} connect`, ['connect_error']);
      if (!polling && c.transport() !== 'websocket') await h.once(c.engine(), 'upgrade', h.T.connect, `${tag} ${i} upgrade`);
      assert.equal((await c.emitEventAck('echosid', i)).node, 'n2');
      return c;
    }),
  );
  for (const n of ['n1', 'n3']) assert.equal((await put(`/backends/${n}/state`, 'ready')).status, 200);
  return clients;
}

// Waits until every client connected again after `t0`; reconnections per second since t0.
async function reconnections(env, clients, t0, ms, what) {
  await h.until(() => clients.every((c) => c.connects.some((x) => x.at >= t0) && c.socket.connected), ms, what, 200);
  const again = clients.map((c) => c.connects.find((x) => x.at >= t0));
  const perSecond = [];
  for (const x of again) {
    const s = Math.floor((x.at - t0) / 1000);
    perSecond[s] = (perSecond[s] || 0) + 1;
  }
  // Every client ends on another node, with the session it has now.
  const owners = await env.cluster.owners(clients.map((c) => c.engineId()));
  for (const [sid, node] of owners) assert.ok(node && node !== 'n2', `sid ${sid} now on ${node}`);
  const span = Math.max(...again.map((x) => x.at)) - Math.min(...again.map((x) => x.at));
  return { perSecond: Array.from(perSecond, (n) => n || 0), peak: Math.max(...perSecond.filter(Boolean)), span };
}

test('x. evict over 10s paces the reconnections (about sessions/window per second); maint bursts', { timeout: 180000 }, async (t) => {
  const proxyOpts = { extra: { workers: 2, admin: { listen: '127.0.0.1:0', token: TOKEN } }, timeouts: { shutdown_grace: '2s' } };
  await h.scenario(t, { proxyOpts }, async (env) => {
    const p = env.proxy;
    const put = (path, body) => p.admin('PUT', path, { body, token: TOKEN });
    const post = (path, token = TOKEN) => p.admin('POST', path, { token });
    const backend = async (name) => {
      const res = await p.admin('GET', `/backends/${name}`, { token: TOKEN });
      assert.equal(res.status, 200, res.body);
      return JSON.parse(res.body);
    };

    // Errors first: same auth as other writes, bad windows, unknown nodes.
    assert.equal((await post('/backends/n2/evict?over=10s', 'wrong')).status, 401);
    for (const bad of ['soon', '-1s', '', '2d', '10x']) {
      const r = await post(`/backends/n2/evict?over=${encodeURIComponent(bad)}`);
      assert.equal(r.status, 400, `over=${bad}: ${r.body}`);
      assert.match(JSON.parse(r.body).error, /bad over/);
    }
    const ghost = await post('/backends/ghost/evict?over=10s');
    assert.equal(ghost.status, 404, ghost.body);
    assert.deepEqual(JSON.parse(ghost.body), { error: 'unknown backend' });
    assert.equal((await backend('n2')).state, 'ready', 'refused requests changed nothing');
    assert.equal((await backend('n2')).eviction, undefined);

    // Eviction.
    const evicting = await clientsOnN2(env, put, 'ev');
    const before = await backend('n2');
    assert.ok(before.sessions >= N, `n2 sessions before: ${before.sessions}`);
    const t0 = Date.now();
    const res = await post(`/backends/n2/evict?over=${WINDOW_S}s`);
    assert.equal(res.status, 200, res.body);
    const started = JSON.parse(res.body);
    assert.equal(started.state, 'drain');
    assert.equal(started.eviction.over_ms, WINDOW_S * 1000);
    assert.equal(started.eviction.total, before.sessions);
    assert.equal(started.eviction.done, false);
    // Progress while it runs: some moved, not all.
    const mid = await h.until(async () => {
      const b = await backend('n2');
      return b.eviction.evicted >= N / 4 && b;
    }, WINDOW_S * 1000 * h.SCALE, 'a quarter evicted');
    assert.equal(mid.eviction.done, false, JSON.stringify(mid.eviction));
    assert.ok(mid.sessions < before.sessions && mid.sessions > 0, `sessions mid-way: ${mid.sessions}`);
    assert.ok(Date.now() - t0 < WINDOW_S * 1000 * 0.75 || h.SCALE > 1, 'a quarter took most of the window');
    // A deploy script polls until sessions is 0.
    const end = await h.until(async () => {
      const b = await backend('n2');
      return b.sessions === 0 && b.eviction.done && b;
    }, (WINDOW_S + 10) * 1000 * h.SCALE, 'n2 sessions 0');
    assert.equal(end.eviction.evicted + end.eviction.left_on_their_own, end.eviction.total, JSON.stringify(end.eviction));
    assert.ok(end.eviction.elapsed_ms >= WINDOW_S * 1000 - 50, JSON.stringify(end.eviction));
    assert.equal(end.eviction.cancelled, false);
    assert.equal(end.state, 'drain');
    const ev = await reconnections(env, evicting, t0, 30000 * h.SCALE, 'every evicted client reconnected');
    const bound = Math.ceil((2 * N) / WINDOW_S) + 3;
    t.diagnostic(`evict: reconnections per second ${JSON.stringify(ev.perSecond)}, span ${ev.span} ms`);
    assert.ok(ev.peak <= bound, `evict peak ${ev.peak}/s > ${bound}/s: ${ev.perSecond}`);
    assert.ok(ev.span >= WINDOW_S * 1000 * 0.6, `reconnections spread over ${ev.span} ms only`);
    assert.ok(p.stderr.some((l) => / info backend eviction done backend=n2 evicted=\d+/.test(l)));
    evicting.forEach((c) => c.close());

    // `ready` brings it back (and would cancel a running eviction).
    assert.equal((await put('/backends/n2/state', 'ready')).status, 200);

    // The same clients' storm with maint.
    const storm = await clientsOnN2(env, put, 'mt');
    const t1 = Date.now();
    assert.equal((await put('/backends/n2/state', 'maint')).status, 200);
    const mt = await reconnections(env, storm, t1, 30000 * h.SCALE, 'every maint client reconnected');
    t.diagnostic(`maint: reconnections per second ${JSON.stringify(mt.perSecond)}, span ${mt.span} ms`);
    storm.forEach((c) => c.close());
    console.log(`evict over ${WINDOW_S}s: peak ${ev.peak}/s; maint: peak ${mt.peak}/s (${N} clients)`);

    // A running eviction is cancelled by ready.
    assert.equal((await put('/backends/n2/state', 'ready')).status, 200);
    const few = await clientsOnN2(env, put, 'cx', 6);
    assert.equal((await post('/backends/n2/evict?over=1m')).status, 200);
    assert.equal((await put('/backends/n2/state', 'ready')).status, 200);
    const cancelled = await backend('n2');
    assert.equal(cancelled.state, 'ready');
    assert.equal(cancelled.eviction.cancelled, true);
    assert.equal(cancelled.eviction.done, true);
    few.forEach((c) => c.close());
  });
});

test('x2. a node marked down by its health checks while it still serves: its clients (websocket and polling) move off at the health.evict_over pace; it comes back up', { timeout: 120000 }, async (t) => {
  const proxyOpts = {
    extra: {
      admin: { listen: '127.0.0.1:0', token: TOKEN },
      health: { path: '/health', interval: '300ms', timeout: '250ms', rise: 1, fall: 2, evict_over: '6s' },
    },
  };
  await h.scenario(t, { proxyOpts }, async (env) => {
    const p = env.proxy;
    const put = (path, body) => p.admin('PUT', path, { body, token: TOKEN });
    for (const n of ['n1', 'n2', 'n3']) await p.waitForLine(new RegExp(` info backend up backend=${n}\\b`), 5000, `${n} up`);
    const clients = await clientsOnN2(env, put, 'hc', 30);
    const n2 = env.cluster.nodes.find((n) => n.name === 'n2');
    const fail = await h.request({ port: Number(n2.address.split(':').pop()), method: 'PUT', path: '/health/fail' });
    assert.equal(fail.status, 200);
    const t0 = Date.now();
    const from = p.stderr.length;
    const started = await p.waitForLine(/backend eviction started backend=n2 .*cause="health down"/, 5000, 'eviction on health down', from);
    assert.match(started, /sessions=30\b/);
    const r = await reconnections(env, clients, t0, 30000, 'every client on another node');
    t.diagnostic(`health down, evict_over 6s: reconnects per second ${JSON.stringify(r.perSecond)} (peak ${r.peak}/s, over ${r.span} ms)`);
    // 30 sessions over 6 s is 5/s; Socket.IO's own backoff (1 s +- 50 %) adds jitter.
    assert.ok(r.peak <= 2 * Math.ceil(30 / 6) + 3, `peak ${r.peak}/s`);
    assert.ok(r.span >= 3000, `reconnections spread over ${r.span} ms`);
    for (const c of clients) c.close();
    // Back up: a new eviction would be cancelled; the node takes sessions again.
    await h.request({ port: Number(n2.address.split(':').pop()), method: 'PUT', path: '/health/ok' });
    await p.waitForLine(/ info backend up backend=n2\b/, 5000, 'n2 up again', from);
  });
});
