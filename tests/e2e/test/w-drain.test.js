'use strict';
// w. Graceful stop (issue 14): SIGTERM that no client notices.
//    - Keep-alive clients sending at random moments through the drain: every request gets its
//      full response, the first one after SIGTERM says Connection: close and stickyd then
//      closes cleanly (no reset, nothing unanswered); held polls are answered the same way;
//      an HTTP/1.0 request gets no keep-alive; a connection that sends nothing more closes
//      after timeouts.drain_idle from its last response, not at drain start. 5 rounds.
//    - timeouts.close_spread: websocket tunnels close spread over the last close_spread of
//      shutdown_grace, none before it, all by its end; exit 0.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/harness');

const DRAIN_IDLE_MS = 1000;
const GRACE_MS = 5000;

// One keep-alive client: requests `path` after random gaps (well under drain_idle, as a
// client's agent that drops idle sockets sooner) until a response says Connection: close.
async function keepAliveClient(c, path, log) {
  for (;;) {
    await h.pace(h.randomBetween(0, 300));
    const sentAt = Date.now();
    c.write(h.rawRequest('GET', path));
    const res = await c.next(h.T.http, `response to the request sent at ${sentAt}`);
    log.push({ at: Date.now(), sentAt, status: res.status, connection: res.headers.connection });
    if (res.headers.connection === 'close') return;
  }
}

// Resolves once the socket ended cleanly (FIN from stickyd, no error); rejects on a reset.
function cleanClose(c, ms, what) {
  return h.withTimeout(
    new Promise((resolve, reject) => {
      const check = () => {
        if (c.reader.error) return reject(new Error(`${what}: ${c.reader.error.message}`));
        if (c.closed) return resolve(Date.now());
        c.waiters.push(check);
      };
      check();
    }),
    ms,
    what,
  );
}

test('w. SIGTERM: keep-alive clients sending at random moments see no error; idle ones close after drain_idle', { timeout: 120000 }, async (t) => {
  const CLIENTS = 30;
  const HELD = 4;
  const ROUNDS = 5;
  const proxyOpts = { timeouts: { shutdown_grace: `${GRACE_MS}ms`, drain_idle: `${DRAIN_IDLE_MS}ms` } };
  await h.scenario(t, { proxy: false, proxyOpts }, async (env) => {
    const figures = [];
    for (let round = 0; round < ROUNDS; round++) {
      const p = await env.startProxy();
      // Held polls: polling sessions whose GET waits at the node (pingInterval 2 s).
      const sessions = [];
      for (let k = 0; k < HELD; k++) {
        const hs = await h.handshake(p.port);
        const raw = new h.RawSession(p.port, hs.sid);
        await raw.connectNamespace();
        sessions.push(hs.sid);
      }
      const conns = await Promise.all(Array.from({ length: CLIENTS + HELD + 2 }, () => h.RawConnection.connect(p.port)));
      const busy = conns.slice(0, CLIENTS);
      const held = conns.slice(CLIENTS, CLIENTS + HELD);
      const [idle, http10] = conns.slice(CLIENTS + HELD);
      const logs = busy.map(() => []);
      // Settled at once: a failure is reported by the assertions below, never left unhandled.
      const running = busy.map((c, i) => keepAliveClient(c, `/whoami?c=${i}&r=${round}`, logs[i]).then(() => null, (err) => `client ${i}: ${err.message}`));
      const heldRes = held.map((c, k) => {
        c.write(h.rawRequest('GET', h.enginePath({ EIO: '4', transport: 'polling', sid: sessions[k] })));
        return c.next(h.T.http, `held poll ${k}`).catch((err) => ({ status: `error: ${err.message}`, headers: {}, body: '' }));
      });
      // HTTP/1.0 client and the idle one: one request each before SIGTERM.
      for (const c of [idle, http10]) assert.equal((await c.roundTrip(h.rawRequest('GET', '/whoami'), 'before SIGTERM')).status, 200);
      const idleLastResponse = Date.now();
      const idleClosed = cleanClose(idle, GRACE_MS, 'idle connection closed by stickyd');
      await h.pace(h.randomBetween(100, 500)); // SIGTERM lands at a random moment of the traffic
      const termAt = Date.now();
      p.child.kill('SIGTERM');
      await p.waitForLine(/ info draining /, 5000, 'draining');
      // HTTP/1.0 during the drain: answered, Connection: close, no keep-alive.
      http10.write('GET /whoami HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n');
      const r10p = http10.next(h.T.http, 'HTTP/1.0 request during the drain').catch((err) => ({ status: `error: ${err.message}`, headers: {} }));

      const errors = (await Promise.all(running)).filter((e) => e);
      assert.deepEqual(errors, [], `round ${round}: requests that failed`);
      const r10 = await r10p;
      assert.equal(r10.status, 200);
      assert.equal(r10.headers.connection, 'close', 'HTTP/1.0 answer during the drain');
      assert.equal(r10.headers['keep-alive'], undefined);
      await cleanClose(http10, 3000, 'HTTP/1.0 connection closed after its response');
      for (let i = 0; i < CLIENTS; i++) {
        const log = logs[i];
        const last = log[log.length - 1];
        assert.equal(last.connection, 'close', `client ${i}: last response`);
        assert.ok(log.every((e) => e.status === 200), `client ${i}: ${JSON.stringify(log)}`);
        // A response that arrived before SIGTERM was sent was written before the drain.
        for (const e of log.slice(0, -1)) assert.notEqual(e.connection, 'close', `client ${i}: keep-alive before the drain`);
        assert.ok(log.filter((e) => e.at < termAt).every((e) => e.connection !== 'close'));
      }
      await Promise.all(busy.map((c, i) => cleanClose(c, 3000, `client ${i}: closed after its Connection: close response`)));
      for (const [k, pr] of heldRes.entries()) {
        const res = await pr;
        assert.equal(res.status, 200, `held poll ${k}: ${res.status} ${res.body}`);
        assert.equal(res.headers.connection, 'close', `held poll ${k}`);
        assert.deepEqual(h.decodePayload(res.body), ['2'], 'the node\'s ping, relayed');
        await cleanClose(held[k], 3000, `held poll ${k}: closed after its response`);
      }
      const idleAt = await idleClosed;
      const info = await h.withTimeout(p.child.exited, GRACE_MS + 2000, 'stickyd exit');
      const idleAfterTerm = idleAt - termAt;
      const idleAfterLast = idleAt - idleLastResponse;
      const requests = logs.reduce((n, l) => n + l.length, 0);
      figures.push({ round, requests, afterTerm: logs.reduce((n, l) => n + l.filter((e) => e.sentAt >= termAt).length, 0), idleAfterTerm, idleAfterLast, exitAfter: Date.now() - termAt });
      assert.deepEqual(info, { code: 0, signal: null });
      assert.ok(idleAfterLast >= DRAIN_IDLE_MS - 50, `idle connection closed ${idleAfterLast} ms after its last response`);
      assert.ok(idleAfterLast <= DRAIN_IDLE_MS + 700, `idle connection closed ${idleAfterLast} ms after its last response`);
      assert.ok(idleAfterTerm >= 300, `idle connection closed ${idleAfterTerm} ms after SIGTERM: at drain start`);
      assert.ok(p.stderr.some((l) => / info drained\b/.test(l)), 'drained log line');
      assert.ok(!p.stderr.some((l) => /grace time over/.test(l)), 'nothing left at the end of the grace');
      for (const c of conns) c.close();
    }
    console.log(`w-drain keep-alive rounds: ${JSON.stringify(figures)}`);
  });
});

async function spreadRound(t, { workers }) {
  const TUNNELS = 20;
  const GRACE = 3000;
  const SPREAD = 2000;
  const proxyOpts = { extra: { workers }, timeouts: { shutdown_grace: `${GRACE}ms`, close_spread: `${SPREAD}ms` } };
  await h.scenario(t, { proxyOpts }, async (env) => {
    const p = env.proxy;
    const clients = [];
    for (let i = 0; i < TUNNELS; i++) {
      const c = h.makeClient('v4', env.url, { transports: ['websocket'], query: { c: String(i) } });
      env.cleanups.push(() => c.close());
      clients.push(c);
    }
    await Promise.all(clients.map((c, i) => h.once(c.socket, 'connect', h.T.connect, `websocket client ${i}`)));
    let termAt = 0;
    const closed = clients.map((c, i) => h.once(c.socket, 'disconnect', GRACE + 3000, `tunnel ${i} closed`).then(() => Date.now() - termAt));
    termAt = Date.now();
    p.child.kill('SIGTERM');
    await p.waitForLine(/ info draining /, 5000, 'draining');
    // Still carrying traffic before the spread starts.
    for (const [i, c] of clients.entries()) assert.ok((await c.emitEventAck('echosid', `during ${i}`)).node);
    const times = (await Promise.all(closed)).sort((a, b) => a - b);
    const info = await h.withTimeout(p.child.exited, 3000, 'stickyd exit');
    const exitAfter = Date.now() - termAt;
    const spread = times[times.length - 1] - times[0];
    console.log(`w-drain close_spread (workers ${workers}): ${TUNNELS} tunnels closed from ${times[0]} to ${times[times.length - 1]} ms after SIGTERM (spread ${spread} ms of a ${SPREAD} ms window); exit after ${exitAfter} ms; close times ${JSON.stringify(times)}`);
    assert.deepEqual(info, { code: 0, signal: null });
    assert.ok(times[0] >= GRACE - SPREAD - 100, `first tunnel closed ${times[0]} ms after SIGTERM, before the spread window`);
    assert.ok(times[times.length - 1] <= GRACE + 500, `last tunnel closed ${times[times.length - 1]} ms after SIGTERM`);
    assert.ok(spread >= SPREAD / 2, `closes spread over ${spread} ms only`);
    const lines = p.stderr.filter((l) => / info closing tunnels spread/.test(l));
    // One line per worker that has tunnels (20 over 2 workers: all but surely both).
    assert.ok(lines.length >= 1 && lines.length <= workers, lines.join('\n'));
    const counted = lines.reduce((n, l) => n + Number(/ tunnels=(\d+)/.exec(l)[1]), 0);
    assert.equal(counted, TUNNELS, lines.join('\n'));
    assert.ok(lines.every((l) => / window_ms=(19\d\d|2000)\b/.test(l)), lines.join('\n'));
  });
}

test('w. close_spread: websocket tunnels close spread over the end of the grace', { timeout: 60000 }, async (t) => {
  await spreadRound(t, { workers: 1 });
});

test('w. close_spread with workers: 2 (each worker spreads its own tunnels)', { timeout: 60000 }, async (t) => {
  await spreadRound(t, { workers: 2 });
});
