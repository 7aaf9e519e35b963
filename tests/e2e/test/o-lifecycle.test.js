'use strict';
// o. Observability and lifecycle.
//    - `headers`: headers.handshake on handshake responses only (polling EIO4/EIO3 and the
//      websocket-first 101), headers.all on every proxied response; real clients unaffected.
//    - JSON access log: one parseable line per request with backend/via/status/key.
//    - JSON access log stays JSON for requests stickyd answers itself and for odd sids.
//    - SIGTERM: stops accepting at once, closes idle keep-alive connections once idle for
//      timeouts.drain_idle (not at once: a request may be on its way), lets a held poll and a
//      websocket tunnel finish within shutdown_grace, exits 0 (more in w-drain).

const { test } = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const h = require('../lib/harness');

const HEADERS = { handshake: { 'X-Handshake': '1' }, all: { 'X-Proxy': 'stickyd' } };
const VIAS = new Set(['tag', 'table', 'server-cookie', 'balance', 'unknown-key', 'redispatch']);

const wsUpgrade = (q) =>
  h.rawRequest('GET', h.enginePath(q), {
    headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==' },
  });

async function upgradeResponse(port, q) {
  const c = await h.RawConnection.connect(port);
  try {
    return await c.roundTrip(wsUpgrade(q), '101');
  } finally {
    c.close();
  }
}

function connectRefused(port) {
  return h.withTimeout(
    new Promise((resolve) => {
      const s = net.connect({ host: h.HOST, port });
      s.once('connect', () => {
        s.destroy();
        resolve('connected');
      });
      s.once('error', (err) => resolve(err.code));
    }),
    h.T.http,
    'connect after SIGTERM',
  );
}

test('o. headers.handshake / headers.all, and the JSON access log of real traffic', { timeout: 120000 }, async (t) => {
  const proxyOpts = { extra: { headers: HEADERS, access_log: { format: 'json' } }, timeouts: { shutdown_grace: '2s' } };
  await h.scenario(t, { nodeCookie: true, proxyOpts }, async (env) => {
    const hs4 = await h.handshake(env.port);
    const hs3 = await h.request({ port: env.port, path: h.enginePath({ EIO: '3', transport: 'polling', t: 'hs3' }) });
    for (const r of [hs4.res, hs3]) {
      assert.equal(r.headers['x-handshake'], '1');
      assert.equal(r.headers['x-proxy'], 'stickyd');
    }
    const owner = await env.cluster.ownerOf(hs4.sid);
    const raw = new h.RawSession(env.port, hs4.sid);
    const post = await raw.post(['40']);
    assert.equal(post.headers['x-proxy'], 'stickyd');
    assert.equal(post.headers['x-handshake'], undefined, 'headers.handshake on a POST of a session');
    const poll = await h.request({ port: env.port, path: h.enginePath({ EIO: '4', transport: 'polling', sid: hs4.sid, t: 'poll1' }) });
    assert.equal(poll.status, 200);
    assert.deepEqual([poll.headers['x-proxy'], poll.headers['x-handshake']], ['stickyd', undefined]);
    const who = await h.request({ port: env.port, path: '/whoami?t=who1', headers: { Cookie: `io=${hs4.sid}` } });
    assert.deepEqual([who.headers['x-proxy'], who.headers['x-handshake'], JSON.parse(who.body).node], ['stickyd', undefined, owner]);
    const notFound = await h.request({ port: env.port, path: '/nope?t=nf' });
    assert.deepEqual([notFound.status, notFound.headers['x-proxy'], notFound.headers['x-handshake']], [404, 'stickyd', undefined]);
    const wsFirst = await upgradeResponse(env.port, { EIO: '4', transport: 'websocket', t: 'wsfirst' });
    assert.deepEqual([wsFirst.status, wsFirst.headers['x-handshake'], wsFirst.headers['x-proxy']], [101, '1', 'stickyd']);
    const wsUp = await upgradeResponse(env.port, { EIO: '4', transport: 'websocket', sid: hs4.sid, t: 'wsup' });
    assert.deepEqual([wsUp.status, wsUp.headers['x-handshake'], wsUp.headers['x-proxy']], [101, undefined, 'stickyd']);
    const sid3 = JSON.parse(h.decodePayload(hs3.body, 3)[0].slice(1)).sid;

    // Real clients.
    const results = await h.runClients((i) => h.makeClient(i % 3 === 2 ? 'v2' : 'v4', env.url, { withCredentials: true, query: { c: String(i) } }));
    await env.stopProxy();
    await h.assertClientsSticky(results, env.cluster);
    h.assertNodesClean(await env.stats(), results);

    // The access log: every line is JSON with the fields, each of our requests as routed.
    const log = env.proxy.accessLog();
    const lines = env.proxy.stderr.filter((l) => l.startsWith('{'));
    assert.equal(log.length, lines.length);
    for (const e of log) {
      assert.match(e.ts, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      assert.equal(e.event, 'request');
      assert.equal(e.client, '127.0.0.1');
      assert.equal(typeof e.status, 'number', JSON.stringify(e));
      assert.equal(typeof e.bytes, 'number');
      assert.equal(typeof e.ms, 'number');
      assert.equal(typeof e.sid, 'string', JSON.stringify(e));
      assert.ok(['n1', 'n2', 'n3'].includes(e.backend), JSON.stringify(e));
      assert.ok(VIAS.has(e.via), JSON.stringify(e));
    }
    const find = (pred, what) => {
      const found = log.filter(pred);
      assert.equal(found.length, 1, `${what}: ${found.length} lines`);
      return found[0];
    };
    const l4 = find((e) => e.target.startsWith('/socket.io/?EIO=4&transport=polling&t=h') && e.bytes === Buffer.byteLength(hs4.res.body), 'EIO4 handshake');
    assert.deepEqual([l4.method, l4.status, l4.backend, l4.via, l4.key], ['GET', 200, owner, 'balance', 'none']);
    const l3 = find((e) => e.target.includes('t=hs3'), 'EIO3 handshake');
    assert.deepEqual([l3.status, l3.backend, l3.via], [200, await env.cluster.ownerOf(sid3), 'balance']);
    const lp = find((e) => e.target.includes('t=poll1'), 'poll');
    assert.deepEqual([lp.status, lp.backend, lp.via, lp.key, lp.sid], [200, owner, 'table', 'sid', hs4.sid]);
    const lw = find((e) => e.target === '/whoami?t=who1', 'whoami');
    assert.deepEqual([lw.status, lw.backend, lw.via, lw.key, lw.sid], [200, owner, 'table', 'cookie', hs4.sid]);
    const ln = find((e) => e.target === '/nope?t=nf', '404');
    assert.equal(ln.status, 404);
    const lu = find((e) => e.target.includes('t=wsup'), 'upgrade');
    assert.deepEqual([lu.status, lu.backend, lu.via], [101, owner, 'table']);
    // The real clients: every sid request routed by the table to the sid's owner.
    const owners = await env.cluster.owners(results.map((r) => r.engineIdStart));
    for (const r of results) {
      const mine = log.filter((e) => e.sid === r.engineIdStart && e.key === 'sid');
      assert.ok(mine.length >= 2, `client ${r.index}: ${mine.length} lines`);
      for (const e of mine) assert.deepEqual([e.backend, e.via], [owners.get(r.engineIdStart), 'table'], JSON.stringify(e));
    }
  });
});

test('o. JSON access log stays JSON: requests stickyd answers itself, odd sids', { timeout: 60000 }, async (t) => {
  const proxyOpts = { extra: { access_log: { format: 'json' } }, timeouts: { shutdown_grace: '2s' } };
  await h.scenario(t, { proxyOpts }, async (env) => {
    // stickyd's own answers (no backend) and sids a client chose.
    const c = await h.RawConnection.connect(env.port);
    assert.equal((await c.roundTrip('GET http://example.test/ HTTP/1.1\r\nHost: example.test\r\n\r\n', 'absolute-form')).status, 400);
    c.close();
    for (const sid of ['0123', '12-34', '42']) {
      const res = await h.request({ port: env.port, path: h.enginePath({ EIO: '4', transport: 'polling', sid }) });
      assert.equal(res.status, 400);
    }
    await env.stopProxy();
    const lines = env.proxy.stderr.filter((l) => l.startsWith('{'));
    assert.equal(lines.length, 4);
    const bad = lines.filter((l) => {
      try {
        JSON.parse(l);
        return false;
      } catch {
        return true;
      }
    });
    assert.deepEqual(bad, [], 'access-log lines that are not JSON');
    const log = env.proxy.accessLog();
    for (const e of log) assert.equal(typeof e.sid, 'string', `sid logged as ${typeof e.sid}: ${JSON.stringify(e)}`);
    assert.deepEqual(log.map((e) => e.sid).slice(1), ['0123', '12-34', '42']);
    assert.equal(typeof log[0].backend, 'string');
  });
});

test('o. SIGTERM: refuses new connections, closes idle ones after drain_idle, finishes a held poll, exits 0 without waiting the grace', { timeout: 60000 }, async (t) => {
  const GRACE_S = 10;
  const DRAIN_IDLE_MS = 1000;
  const proxyOpts = { extra: { access_log: true }, timeouts: { shutdown_grace: `${GRACE_S}s`, drain_idle: `${DRAIN_IDLE_MS}ms` } };
  await h.scenario(t, { proxyOpts }, async (env) => {
    const p = env.proxy;
    // A polling session, connected; then a held poll (the node answers it at its next ping,
    // within pingInterval = 2 s) on a raw keep-alive connection.
    const hs = await h.handshake(env.port);
    const raw = new h.RawSession(env.port, hs.sid);
    await raw.connectNamespace();
    const held = await h.RawConnection.connect(env.port);
    held.write(h.rawRequest('GET', h.enginePath({ EIO: '4', transport: 'polling', sid: hs.sid })));
    // An idle keep-alive connection that has served one request.
    const idle = await h.RawConnection.connect(env.port);
    assert.equal((await idle.roundTrip(h.rawRequest('GET', '/whoami'), 'whoami')).status, 200);
    const idleSince = Date.now();
    // Wait until the held poll is at the node (its request counted), then SIGTERM.
    await h.until(async () => (await env.stats())[await env.cluster.ownerOf(hs.sid)].ownedSidByMethod.GET >= 2, 5000, 'held poll at the node', 20);
    const heldAtTerm = held.reader.responses.length === 0;
    let idleClosedAfter = null;
    let idleIdleFor = null;
    idle.socket.once('close', () => {
      idleClosedAfter = Date.now() - termAt;
      idleIdleFor = Date.now() - idleSince;
    });
    const idleClosed = h.once(idle.socket, 'close', DRAIN_IDLE_MS + 3000, 'idle keep-alive connection closed by the proxy');
    const termAt = Date.now();
    p.child.kill('SIGTERM');
    await p.waitForLine(/ info stopping signal=SIGTERM/, 5000, 'stopping');
    // "draining" is logged once the listeners are closed ("stopping" comes just before).
    await p.waitForLine(/ info draining /, 5000, 'draining');
    assert.equal(await connectRefused(p.port), 'ECONNREFUSED', 'a new connection right after SIGTERM');
    await idleClosed;
    const res = await held.next(5000, 'held poll');
    assert.equal(res.status, 200, `held poll: ${res.status} ${res.body}`);
    assert.deepEqual(h.decodePayload(res.body), ['2'], 'the node\'s ping, relayed');
    const info = await h.withTimeout(p.child.exited, (GRACE_S + 2) * 1000, 'stickyd exit');
    const exitAfter = Date.now() - termAt;
    t.diagnostic(`held poll open at SIGTERM: ${heldAtTerm}; idle connection closed after ${idleClosedAfter} ms (idle for ${idleIdleFor} ms); exit ${JSON.stringify(info)} after ${exitAfter} ms`);
    assert.deepEqual(info, { code: 0, signal: null });
    assert.ok(heldAtTerm, 'the poll was still held when SIGTERM came');
    // Closed once idle for drain_idle since its last response, not at drain start.
    assert.ok(idleIdleFor >= DRAIN_IDLE_MS - 50 && idleIdleFor < DRAIN_IDLE_MS + 700, `idle connection closed after ${idleIdleFor} ms idle`);
    assert.equal(res.headers.connection, 'close', 'the held poll answered during the drain');
    assert.ok(exitAfter < 4000, `exited ${exitAfter} ms after SIGTERM: it should not wait the ${GRACE_S} s grace once nothing is in flight`);
    assert.ok(p.stderr.some((l) => / info drained\b/.test(l)), 'drained log line');
    assert.ok(p.stderr.some((l) => / info stopped\b/.test(l)), 'stopped log line');
    assert.ok(!p.stderr.some((l) => /grace time over/.test(l)));
    held.close();
    idle.close();
  });
});

test('o. SIGTERM with an open websocket tunnel: it keeps working during the grace, then closes; exit 0', { timeout: 60000 }, async (t) => {
  const GRACE_MS = 2000;
  const proxyOpts = { extra: { access_log: true }, timeouts: { shutdown_grace: `${GRACE_MS}ms` } };
  await h.scenario(t, { proxyOpts }, async (env) => {
    const p = env.proxy;
    const ws = h.makeClient('v4', env.url, { transports: ['websocket'] });
    env.cleanups.push(() => ws.close());
    await h.once(ws.socket, 'connect', h.T.connect, 'websocket client');
    const node = (await ws.emitEventAck('echosid', 'before')).node;
    const poller = h.makeClient('v4', env.url, { transports: ['polling'] });
    env.cleanups.push(() => poller.close());
    await h.once(poller.socket, 'connect', h.T.connect, 'polling client');
    const disconnected = h.once(ws.socket, 'disconnect', GRACE_MS + 3000, 'tunnel closed at the end of the grace');
    const termAt = Date.now();
    p.child.kill('SIGTERM');
    await p.waitForLine(/ info stopping signal=SIGTERM/, 5000, 'stopping');
    // "draining" is logged once the listeners are closed ("stopping" comes just before).
    await p.waitForLine(/ info draining /, 5000, 'draining');
    assert.equal(await connectRefused(p.port), 'ECONNREFUSED');
    // The tunnel still carries traffic during the grace.
    for (let k = 0; k < 3; k++) assert.equal((await ws.emitEventAck('echosid', `during ${k}`)).node, node);
    const reason = [].concat(await disconnected)[0];
    const closedAfter = Date.now() - termAt;
    const info = await h.withTimeout(p.child.exited, 3000, 'stickyd exit');
    const exitAfter = Date.now() - termAt;
    t.diagnostic(`tunnel closed after ${closedAfter} ms (${reason}); exit ${JSON.stringify(info)} after ${exitAfter} ms`);
    assert.deepEqual(info, { code: 0, signal: null });
    assert.ok(closedAfter >= GRACE_MS - 200, `tunnel closed after ${closedAfter} ms, before the grace`);
    assert.ok(exitAfter <= GRACE_MS + 1500, `exit after ${exitAfter} ms (grace ${GRACE_MS})`);
    assert.ok(p.stderr.some((l) => /grace time over/.test(l)));
  });
});
