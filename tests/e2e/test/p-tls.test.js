'use strict';
// p. TLS: HTTPS/WSS termination, SNI, protocol versions, Secure cookies, hostile bytes on
// both kinds of listener, handshake timeouts, TLS to backends, --check errors, SIGHUP
// certificate reload. The certificates are made at test time with the openssl command line
// (lib/tls-helpers.js). Real Socket.IO 4.8 nodes behind the proxy where the test needs them;
// a small in-process Socket.IO node on HTTPS where the backend itself speaks TLS.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const tls = require('node:tls');
const h = require('../lib/harness');
const x = require('../lib/tls-helpers');

let pki;
let CA;
before(() => {
  pki = x.makePki();
  CA = pki.pem('ca.pem');
});
after(() => {
  x.rawProbe.destroyAll();
  if (pki) pki.cleanup();
});

// The listener of the core cases: the whole documented syntax, two certificates (a.test is the
// default and has IP:127.0.0.1, which is what the clients verify).
const FULL_TLS = {
  certificates: [
    { cert: 'a.pem', key: 'a.key' },
    { cert: 'b.pem', key: 'b.key' },
  ],
  min_version: '1.2',
  session_tickets: true,
  handshake_timeout: '10s',
  secure_cookies: true,
};
const A_TLS = { cert: 'a.pem', key: 'a.key' };

const HANDSHAKE_FAILED = (why) => new RegExp(`^\\S+ warn TLS handshake failed client=127\\.0\\.0\\.1 error="${why}"`);
const ANY_HANDSHAKE_FAILED = /TLS handshake failed/;

// A 3-node cluster (h.scenario) with a TLS stickyd in front; the proxy goes into env.proxies so
// that the scenario stops it and dumps its config and stderr on failure.
async function tlsScenario(t, { nodeCookie = false, proxyCookie = false, listen = [{ tls: FULL_TLS }], timeouts, extra } = {}, body) {
  await h.scenario(t, { nodeCookie, proxy: false }, async (env) => {
    const p = await x.startTlsStickyd(pki, { listen, backends: env.backends(), cookie: proxyCookie, timeouts, extra });
    env.proxies.push(p);
    env.proxy = p;
    env.port = p.port;
    env.url = p.url;
    await body(env, p);
  });
}

async function finish(env, results, opts) {
  await env.stopProxy();
  const stats = await env.stats();
  await h.assertClientsSticky(results, env.cluster, opts);
  h.assertNodesClean(stats, results);
  return stats;
}

// Raw Engine.IO polling handshake over HTTPS: {sid, setCookies, res}.
async function httpsHandshake(port, { eio = 4, servername } = {}) {
  const res = await x.httpsRequest({ port, ca: CA, servername, path: h.enginePath({ EIO: String(eio), transport: 'polling', t: `h${Date.now().toString(36)}` }) });
  assert.equal(res.status, 200, `handshake: ${res.status} ${res.body}`);
  const open = h.decodePayload(res.body, eio)[0];
  assert.ok(open && open[0] === '0', `no open packet in ${JSON.stringify(res.body)}`);
  return { sid: JSON.parse(open.slice(1)).sid, setCookies: h.headerValues(res.rawHeaders, 'set-cookie'), res };
}

// A long-lived wss client (socket.io-client 4, websocket only) and a check that it still works
// on the same node and the same Engine.IO session.
async function liveClient(url) {
  const c = h.makeClient('v4', url, { transports: ['websocket'], ca: CA });
  const disconnects = [];
  c.socket.on('disconnect', (r) => disconnects.push(String(r)));
  await h.once(c.socket, 'connect', h.T.connect, 'live wss client connect', ['connect_error']);
  const first = await c.emitAck({ hello: 1 });
  const engineId = c.engineId();
  let n = 0;
  return {
    client: c,
    node: first.node,
    disconnects,
    async check(what) {
      assert.deepEqual(disconnects, [], `live client disconnected (${what})`);
      const data = { k: ++n, what };
      const reply = await c.emitAck(data);
      assert.deepEqual(reply.data, data, `live client echo (${what})`);
      assert.equal(reply.node, first.node, `live client moved to another node (${what})`);
      assert.equal(c.engineId(), engineId, `live client's session changed (${what})`);
      assert.equal(c.transport(), 'websocket');
    },
    close: () => c.close(),
  };
}

// ---------------------------------------------------------------------------------------
// 1. Real clients over HTTPS/WSS

test('p1a. TLS: socket.io-client 4 over https, polling then websocket upgrade, withCredentials, nodes with cookie', { timeout: 60000 }, async (t) => {
  await tlsScenario(t, { nodeCookie: true }, async (env, p) => {
    const results = await h.runClients((i) => h.makeClient('v4', p.url, { withCredentials: true, ca: CA, query: { c: String(i) } }));
    const stats = await finish(env, results, { transport: 'websocket', protocol: 4 });
    const n = results.length;
    assert.equal(h.sum(stats, (s) => s.handshakesByTransport.polling), n);
    assert.equal(h.sum(stats, (s) => s.transportUpgrades), n);
    assert.ok(h.sum(stats, (s) => s.ownedSidByMethod.UPGRADE) >= n);
    assert.ok(h.sum(stats, (s) => s.withIoCookie) >= n, `requests with an io cookie: ${h.sum(stats, (s) => s.withIoCookie)}`);
    assert.deepEqual(p.linesSince(0, ANY_HANDSHAKE_FAILED), [], 'TLS errors with well-behaved clients');
  });
});

test('p1b. TLS: socket.io-client 4 over https, polling only, no cookie jar', { timeout: 60000 }, async (t) => {
  await tlsScenario(t, {}, async (env, p) => {
    const results = await h.runClients((i) => h.makeClient('v4', p.url, { transports: ['polling'], withCredentials: false, ca: CA, query: { c: String(i) } }));
    const stats = await finish(env, results, { transport: 'polling', protocol: 4 });
    assert.equal(h.sum(stats, (s) => s.withIoCookie), 0);
    assert.equal(h.sum(stats, (s) => s.upgrades), 0);
    assert.ok(h.sum(stats, (s) => s.ownedSidByMethod.GET) >= results.length * h.WORKLOAD.messages);
    assert.deepEqual(p.linesSince(0, ANY_HANDSHAKE_FAILED), [], 'TLS errors with well-behaved clients');
  });
});

test('p1c. TLS: socket.io-client 4, websocket only over wss://', { timeout: 60000 }, async (t) => {
  await tlsScenario(t, {}, async (env, p) => {
    const url = `wss://${h.HOST}:${p.port}`;
    const results = await h.runClients((i) => h.makeClient('v4', url, { transports: ['websocket'], ca: CA, query: { c: String(i) } }));
    const stats = await finish(env, results, { transport: 'websocket', protocol: 4 });
    assert.equal(h.sum(stats, (s) => s.handshakesByTransport.websocket), results.length);
    assert.equal(h.sum(stats, (s) => s.handshakesByTransport.polling), 0);
    assert.deepEqual(p.linesSince(0, ANY_HANDSHAKE_FAILED), [], 'TLS errors with well-behaved clients');
  });
});

test('p1d. TLS: socket.io-client 2.x (EIO=3) over https with the CA, default transports', { timeout: 60000 }, async (t) => {
  await tlsScenario(t, {}, async (env, p) => {
    const results = await h.runClients((i) => h.makeClient('v2', p.url, { ca: CA, query: { c: String(i) } }));
    const stats = await finish(env, results, { transport: 'websocket', protocol: 3 });
    const n = results.length;
    assert.equal(h.sum(stats, (s) => s.handshakesByProtocol['3']), n);
    assert.equal(h.sum(stats, (s) => s.handshakesByTransport.polling), n);
    assert.equal(h.sum(stats, (s) => s.transportUpgrades), n);
    assert.deepEqual(p.linesSince(0, ANY_HANDSHAKE_FAILED), [], 'TLS errors with well-behaved clients');
  });
});

// ---------------------------------------------------------------------------------------
// 2. Secure on the injected cookie

test('p2. TLS: the injected Set-Cookie gets Secure on a TLS listener with secure_cookies only', { timeout: 30000 }, async (t) => {
  const listen = [{ tls: FULL_TLS }, { tls: { ...A_TLS, secure_cookies: false } }, {}];
  await tlsScenario(t, { nodeCookie: false, proxyCookie: true, listen }, async (env, p) => {
    const [securePort, insecurePort, plainPort] = p.ports;
    const secure = (sid) => `io=${sid}; Path=/; HttpOnly; Secure; SameSite=Lax`;
    const plain = (sid) => `io=${sid}; Path=/; HttpOnly; SameSite=Lax`;
    const sessions = [];
    for (let i = 0; i < 6; i++) {
      const eio = i % 3 === 2 ? 3 : 4;
      const hs = await httpsHandshake(securePort, { eio });
      assert.deepEqual(hs.setCookies, [secure(hs.sid)], `TLS listener, EIO${eio}`);
      sessions.push(hs.sid);
    }
    const hs2 = await httpsHandshake(insecurePort);
    assert.deepEqual(hs2.setCookies, [plain(hs2.sid)], 'TLS listener with secure_cookies: false');
    const hs3 = await h.handshake(plainPort);
    assert.deepEqual(hs3.setCookies, [plain(hs3.sid)], 'plain listener');

    // The cookie alone routes over TLS (a request with no sid parameter reaches the owner).
    const owners = await env.cluster.owners(sessions);
    assert.ok(new Set(owners.values()).size > 1, 'handshakes spread over the nodes');
    for (const sid of h.shuffled(sessions)) {
      const res = await x.httpsRequest({ port: securePort, ca: CA, path: '/whoami', headers: { Cookie: `io=${sid}` } });
      assert.equal(res.status, 200);
      assert.equal(JSON.parse(res.body).node, owners.get(sid), `cookie io=${sid} over TLS`);
      assert.deepEqual(h.headerValues(res.rawHeaders, 'set-cookie'), []);
    }
  });
});

// ---------------------------------------------------------------------------------------
// 3. SNI; 4. protocol versions

test('p3. TLS: SNI picks the certificate (a.test, b.test); an unknown or missing name gets the default', { timeout: 30000 }, async (t) => {
  const backend = await x.startEchoBackend('plain1');
  const p = await x.startTlsStickyd(pki, { listen: [{ tls: FULL_TLS }], backends: [{ name: 'plain1', address: backend.address }] });
  try {
    const ca = pki.file('ca.pem');
    const runs = await Promise.all([
      x.sClient(p.port, ['-servername', 'a.test', '-CAfile', ca, '-verify_return_error', '-verify_hostname', 'a.test']),
      x.sClient(p.port, ['-servername', 'b.test', '-CAfile', ca, '-verify_return_error', '-verify_hostname', 'b.test']),
      x.sClient(p.port, ['-servername', 'unknown.test', '-CAfile', ca, '-verify_return_error']),
      x.sClient(p.port, ['-noservername', '-CAfile', ca, '-verify_return_error', '-verify_ip', '127.0.0.1']),
    ]);
    const want = ['CN = a.test', 'CN = b.test', 'CN = a.test', 'CN = a.test'];
    runs.forEach((r, i) => {
      assert.equal(r.code, 0, `s_client #${i}: exit ${r.code}\n${r.stderr}\n${r.stdout}`);
      assert.equal(r.subject, want[i], `s_client #${i} subject`);
      assert.equal(r.verify, '0 (ok)', `s_client #${i} verify`);
    });
    // A full HTTPS request with name verification against b.test, and X-Forwarded-Proto.
    const res = await x.httpsRequest({ port: p.port, ca: CA, servername: 'b.test', path: '/headers', headers: { 'X-Forwarded-Proto': 'http' } });
    assert.equal(res.status, 200, res.body);
    assert.equal(res.peer, 'b.test');
    const seen = JSON.parse(res.body);
    assert.deepEqual(h.headerValues(seen.rawHeaders, 'x-forwarded-proto'), ['https'], 'X-Forwarded-Proto over TLS (the client\'s own one dropped)');
    assert.equal(seen.tls, null, 'the backend is plain HTTP');
    assert.deepEqual(p.linesSince(0, ANY_HANDSHAKE_FAILED), []);
  } finally {
    await p.stop();
    await backend.close();
  }
});

test('p4. TLS: 1.0 and 1.1 refused by stickyd, 1.2 and 1.3 accepted; min_version 1.3 refuses 1.2', { timeout: 30000 }, async (t) => {
  const backend = await x.startEchoBackend('plain1');
  const p = await x.startTlsStickyd(pki, {
    listen: [{ tls: { ...A_TLS, min_version: '1.2' } }, { tls: { ...A_TLS, min_version: '1.3' } }],
    backends: [{ name: 'plain1', address: backend.address }],
  });
  try {
    const [p12, p13] = p.ports;
    // SECLEVEL=0: OpenSSL 3 would otherwise refuse TLS 1.0/1.1 itself, client-side.
    const old = ['-cipher', 'DEFAULT:@SECLEVEL=0'];
    const cases = [
      { port: p12, args: ['-tls1', ...old], ok: false, name: 'TLS 1.0 -> min 1.2' },
      { port: p12, args: ['-tls1_1', ...old], ok: false, name: 'TLS 1.1 -> min 1.2' },
      { port: p12, args: ['-tls1_2'], ok: true, proto: 'TLSv1.2', name: 'TLS 1.2 -> min 1.2' },
      { port: p12, args: ['-tls1_3'], ok: true, proto: 'TLSv1.3', name: 'TLS 1.3 -> min 1.2' },
      { port: p13, args: ['-tls1_2'], ok: false, name: 'TLS 1.2 -> min 1.3' },
      { port: p13, args: ['-tls1_1', ...old], ok: false, name: 'TLS 1.1 -> min 1.3' },
      { port: p13, args: ['-tls1_3'], ok: true, proto: 'TLSv1.3', name: 'TLS 1.3 -> min 1.3' },
    ];
    const mark = p.mark();
    const runs = await Promise.all(cases.map((c) => x.sClient(c.port, [...c.args, '-CAfile', pki.file('ca.pem')])));
    cases.forEach((c, i) => {
      const r = runs[i];
      const detail = `${c.name}: exit ${r.code}\n${r.stderr}\n${r.stdout}`;
      if (c.ok) {
        assert.equal(r.code, 0, detail);
        assert.equal(r.protocol, c.proto, detail);
        assert.equal(r.subject, 'CN = a.test', detail);
        assert.notEqual(r.cipher, '(NONE)', detail);
      } else {
        assert.notEqual(r.code, 0, detail);
        // The refusal is stickyd's: a protocol_version alert (70) came back from the server.
        assert.match(r.stderr, /alert protocol version|SSL alert number 70/, detail);
        assert.equal(r.subject, null, detail);
      }
    });
    const refused = cases.filter((c) => !c.ok).length;
    await p.waitForLines(HANDSHAKE_FAILED('unsupported protocol'), refused, h.T.http, 'one log line per refused version', mark);
    assert.equal(p.linesSince(mark, ANY_HANDSHAKE_FAILED).length, refused, 'nothing else failed');

    // Node's own client: TLS 1.3 by default, 1.2 when capped.
    const r13 = await x.httpsRequest({ port: p12, ca: CA, path: '/headers' });
    assert.equal(r13.protocol, 'TLSv1.3');
    const r12 = await new Promise((resolve, reject) => {
      const s = tls.connect({ host: h.HOST, port: p12, ca: CA, maxVersion: 'TLSv1.2' }, () => {
        resolve(s.getProtocol());
        s.end();
      });
      s.on('error', reject);
    });
    assert.equal(r12, 'TLSv1.2');
  } finally {
    await p.stop();
    await backend.close();
  }
});

// ---------------------------------------------------------------------------------------
// 5. Hostile or stuck connections while a wss client lives

test('p5. TLS: plain HTTP to the TLS port, a ClientHello to the plain port, stuck handshakes: closed, logged, live wss client unaffected', { timeout: 30000 }, async (t) => {
  const listen = [{ tls: { ...FULL_TLS, handshake_timeout: '1s' } }, {}];
  await tlsScenario(t, { listen }, async (env, p) => {
    const [tlsPort, plainPort] = p.ports;
    const live = await liveClient(p.url);
    const clientHello = await x.captureClientHello();
    assert.equal(clientHello[0], 0x16, 'captured a TLS handshake record');
    t.diagnostic(`ClientHello: ${clientHello.length} bytes`);

    // a. Plain HTTP on the TLS port.
    let mark = p.mark();
    const http1 = await x.rawProbe(tlsPort, `GET ${h.enginePath({ EIO: '4', transport: 'polling' })} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`, h.T.http, 'plain HTTP to the TLS port');
    await p.waitForLine(HANDSHAKE_FAILED('http request'), h.T.http, 'plain HTTP to the TLS port', mark);
    t.diagnostic(`plain HTTP to the TLS port: closed after ${http1.closedAfterMs} ms (${http1.how}), ${http1.received.length} bytes back: ${http1.received.toString('hex')}`);
    assert.ok(!/^HTTP\//.test(http1.received.toString('latin1')), 'no HTTP answer on the TLS port');
    await live.check('after plain HTTP on the TLS port');

    // b. A TLS ClientHello on the plain port: closed, no HTTP error page.
    mark = p.mark();
    const hello = await x.rawProbe(plainPort, clientHello, h.T.http, 'ClientHello to the plain port');
    await p.waitForLine(/^\S+ warn TLS handshake on a plain HTTP listener client=127\.0\.0\.1/, h.T.http, 'ClientHello to the plain port', mark);
    assert.equal(hello.received.length, 0, `bytes back on the plain port: ${hello.received.toString('latin1')}`);
    // Node's TLS client sees the connection drop before the handshake.
    const nodeErr = await new Promise((resolve) => {
      const s = tls.connect({ host: h.HOST, port: plainPort, ca: CA, servername: 'a.test' }, () => resolve(null));
      s.on('error', (err) => resolve(err));
    });
    assert.ok(nodeErr, 'a TLS handshake with the plain port succeeded');
    t.diagnostic(`tls.connect to the plain port: ${nodeErr.code || ''} ${nodeErr.message}`);
    await live.check('after a ClientHello on the plain port');

    // c. Handshakes that never finish: nothing at all, half a ClientHello. Both closed after
    //    handshake_timeout (1 s); the live client echoes while they hang.
    mark = p.mark();
    const stuck = [
      x.rawProbe(tlsPort, null, 5000 * h.SCALE, 'silent TCP connection to the TLS port'),
      x.rawProbe(tlsPort, clientHello.subarray(0, Math.floor(clientHello.length / 2)), 5000 * h.SCALE, 'half a ClientHello'),
    ];
    for (let i = 0; i < 5; i++) await live.check(`while handshakes hang (${i})`);
    const [silent, half] = await Promise.all(stuck);
    t.diagnostic(`stuck handshakes closed after ${silent.closedAfterMs} ms (${silent.how}) and ${half.closedAfterMs} ms (${half.how}); bytes back: ${silent.received.length}, ${half.received.length}`);
    for (const r of [silent, half]) {
      assert.ok(r.closedAfterMs >= 900, `closed after ${r.closedAfterMs} ms, before handshake_timeout`);
      assert.ok(r.closedAfterMs < 1000 + 2500 * h.SCALE, `closed after ${r.closedAfterMs} ms`);
    }
    t.diagnostic(`log lines for the stuck handshakes: ${JSON.stringify(p.stderr.slice(mark))}`);
    await live.check('after the stuck handshakes were closed');

    // Plenty of clients after all that.
    const results = await h.runClients((i) => h.makeClient('v4', p.url, { ca: CA, query: { c: String(i) } }), { clients: 10, messages: 3 });
    await live.check('at the end');
    live.close();
    await finish(env, results, { messages: 3, transport: 'websocket', protocol: 4 });
    assert.ok(p.stopInfo && p.stopInfo.code === 0, `stickyd exit ${JSON.stringify(p.stopInfo)}`);
  });
});

test('p5b. TLS: handshake_timeout bounds the handshake only, and per listener (idle after a finished handshake = client timeout)', { timeout: 30000 }, async (t) => {
  const backend = await x.startEchoBackend('plain1');
  // Listener 0: handshake_timeout 1s; listener 1: 10s. timeouts.client 60s.
  const p = await x.startTlsStickyd(pki, {
    listen: [{ tls: { ...A_TLS, handshake_timeout: '1s' } }, { tls: { ...A_TLS, handshake_timeout: '10s' } }],
    backends: [{ name: 'plain1', address: backend.address }],
  });
  const WAIT = 2500 * h.SCALE; // well past 1s, well before 10s / 60s
  // Finishes a TLS handshake, stays silent for WAIT ms (or until the server closes), then sends
  // one request. {closedAt (ms after connect, or null), status}.
  const idleAfterHandshake = (port) =>
    h.withTimeout(
      new Promise((resolve) => {
        const t0 = Date.now();
        let timer = null;
        let sent = false;
        let buf = '';
        const s = tls.connect({ host: h.HOST, port, ca: CA }, () => {
          timer = setTimeout(() => {
            sent = true;
            s.write('GET /headers HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
          }, WAIT);
        });
        s.on('data', (d) => (buf += d.toString('latin1')));
        s.on('error', (err) => (buf += `[${err.code || err.message}]`));
        s.on('close', () => {
          clearTimeout(timer);
          const m = /^HTTP\/1\.1 (\d{3})/.exec(buf);
          resolve({ closedAt: Date.now() - t0, sent, status: m ? Number(m[1]) : null, handshake: timer !== null, tail: buf.slice(0, 80) });
        });
      }),
      WAIT + h.T.http,
      `idle TLS connection on ${port}`,
    );
  // A handshake that stalls on the 10s listener must not be cut at the other listener's 1s.
  const stallOn10s = x.rawProbe(p.ports[1], null, WAIT, 'silent connection to the 10s listener').then(
    (r) => ({ closedAfterMs: r.closedAfterMs }),
    (err) => (err instanceof h.TimeoutError ? { closedAfterMs: null } : Promise.reject(err)),
  );
  try {
    const [idle1, idle10, stall] = await Promise.all([idleAfterHandshake(p.ports[0]), idleAfterHandshake(p.ports[1]), stallOn10s]);
    t.diagnostic(`idle after handshake: 1s listener ${JSON.stringify(idle1)}, 10s listener ${JSON.stringify(idle10)}; stalled handshake on the 10s listener closed after ${stall.closedAfterMs} ms`);
    const problems = [];
    if (idle1.status !== 200) problems.push(`handshake_timeout 1s listener: a connection idle ${WAIT} ms after a finished handshake was closed at ${idle1.closedAt} ms (client timeout is 60s)`);
    if (idle10.status !== 200) problems.push(`handshake_timeout 10s listener: a connection idle ${WAIT} ms after a finished handshake was closed at ${idle10.closedAt} ms`);
    if (stall.closedAfterMs !== null) problems.push(`handshake_timeout 10s listener: a stalled handshake was closed after ${stall.closedAfterMs} ms (the other listener's 1s applied)`);
    assert.deepEqual(problems, []);
  } finally {
    x.rawProbe.destroyAll();
    await p.stop();
    await backend.close();
  }
});

// ---------------------------------------------------------------------------------------
// 6. TLS to a backend

test('p6. TLS to a backend: verified with the CA and sni; wrong sni -> 502 and "backend TLS failed"; real clients through TLS on both sides', { timeout: 40000 }, async (t) => {
  const backend = await x.startEchoBackend('tls1', { cert: pki.pem('node.pem'), key: pki.pem('node.key') });
  const proxies = [];
  const start = async (backendTls, listen = [{ tls: A_TLS }, {}]) => {
    const p = await x.startTlsStickyd(pki, { listen, backends: [{ name: 'tls1', address: backend.address, tls: backendTls }], label: `stickyd-tls#${proxies.length + 1}` });
    proxies.push(p);
    return p;
  };
  try {
    // Verified: the CA and the name the certificate carries.
    const good = await start({ ca: 'ca.pem', verify: true, sni: 'node.test' });
    const [tlsPort, plainPort] = good.ports;
    const viaTls = await x.httpsRequest({ port: tlsPort, ca: CA, path: '/headers?via=tls', headers: { 'X-Forwarded-Proto': 'http' } });
    assert.equal(viaTls.status, 200, viaTls.body);
    const seenTls = JSON.parse(viaTls.body);
    assert.equal(seenTls.node, 'tls1');
    assert.ok(seenTls.tls, 'the backend connection is not TLS');
    assert.equal(seenTls.tls.servername, 'node.test', 'SNI stickyd sent to the backend');
    assert.deepEqual(h.headerValues(seenTls.rawHeaders, 'x-forwarded-proto'), ['https']);
    const viaPlain = await h.request({ port: plainPort, path: '/headers?via=plain', headers: { 'X-Forwarded-Proto': 'https' } });
    assert.equal(viaPlain.status, 200, viaPlain.body);
    const seenPlain = JSON.parse(viaPlain.body);
    assert.ok(seenPlain.tls, 'plain listener: the backend connection is not TLS');
    assert.deepEqual(h.headerValues(seenPlain.rawHeaders, 'x-forwarded-proto'), ['http'], 'X-Forwarded-Proto on the plain listener');

    // Real clients: polling then websocket (TLS tunnel on both sides), EIO3 too.
    const clients = 8;
    const results = await h.runClients((i) => h.makeClient(i % 4 === 3 ? 'v2' : 'v4', good.url, { ca: CA, query: { c: String(i) } }), { clients, messages: 3 });
    const failed = results.filter((r) => !r.ok);
    assert.deepEqual(failed.map((r) => r.error), []);
    for (const r of results) {
      assert.deepEqual(new Set(r.nodes), new Set(['tls1']));
      assert.equal(r.transport, 'websocket', `client ${r.index} transport`);
      assert.equal(r.engineIdEnd, r.engineIdStart);
    }
    assert.equal(backend.upgrades, clients, 'websocket upgrades the TLS backend completed');
    assert.deepEqual(good.linesSince(0, /backend TLS|TLS handshake failed/), []);

    // verify on, wrong name: the backend's certificate is refused -> 502, logged.
    const wrong = await start({ ca: 'ca.pem', verify: true, sni: 'wrong.test' });
    let mark = wrong.mark();
    const r502 = await x.httpsRequest({ port: wrong.port, ca: CA, path: '/headers?via=wrong-sni' });
    assert.equal(r502.status, 502, `wrong sni: ${r502.status} ${r502.body}`);
    const line = await wrong.waitForLine(/^\S+ warn backend TLS failed backend=tls1 error="certificate verify failed: hostname mismatch"/, h.T.http, 'wrong sni', mark);
    t.diagnostic(line);
    const hs502 = await x.httpsRequest({ port: wrong.port, ca: CA, path: h.enginePath({ EIO: '4', transport: 'polling' }) });
    assert.equal(hs502.status, 502, 'Engine.IO handshake to an unverifiable backend');

    // verify on, the wrong CA: refused too.
    const wrongCa = await start({ ca: 'ca2.pem', verify: true, sni: 'node.test' }, [{ tls: A_TLS }]);
    mark = wrongCa.mark();
    const rCa = await x.httpsRequest({ port: wrongCa.port, ca: CA, path: '/headers?via=wrong-ca' });
    assert.equal(rCa.status, 502);
    await wrongCa.waitForLine(/^\S+ warn backend TLS failed backend=tls1 error="certificate verify failed/, h.T.http, 'wrong CA', mark);

    // verify off: the same wrong name passes (the 502 above was verification).
    const noVerify = await start({ verify: false, sni: 'wrong.test' }, [{ tls: A_TLS }]);
    const rNo = await x.httpsRequest({ port: noVerify.port, ca: CA, path: '/headers?via=no-verify' });
    assert.equal(rNo.status, 200, rNo.body);
    assert.equal(JSON.parse(rNo.body).tls.servername, 'wrong.test');
  } finally {
    for (const p of proxies) await p.stop().catch(() => {});
    await backend.close();
  }
});

// ---------------------------------------------------------------------------------------
// 7. --check

test('p7. TLS: stickyd --check reports bad TLS settings as file:line:col: message, exit 1', { timeout: 30000 }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stickyd-e2e-tlscheck-'));
  pki.copyTo(dir);
  const abs = (f) => path.join(dir, f);
  // Each case: the listener/backend YAML lines, and `at` = the text whose position the error
  // must name (the first occurrence in the file).
  const listen = (tlsLines) => ['listen:', '  - address: 127.0.0.1:0', '    tls:', ...tlsLines.map((l) => `      ${l}`)];
  const backends = (more = []) => ['backends:', '  - name: n1', '    address: 127.0.0.1:1', ...more];
  const cases = [
    { name: 'missing cert file', lines: [...listen(['cert: missing.pem', 'key: a.key']), ...backends()], at: 'missing.pem', msg: `certificate file '${abs('missing.pem')}': No such file or directory` },
    { name: 'missing key file', lines: [...listen(['cert: a.pem', 'key: missing.key']), ...backends()], at: 'missing.key', msg: `private key file '${abs('missing.key')}': No such file or directory` },
    { name: 'key mismatch', lines: [...listen(['cert: a.pem', 'key: other.key']), ...backends()], at: 'other.key', msg: `private key file '${abs('other.key')}': key does not match certificate '${abs('a.pem')}'` },
    { name: 'key mismatch in certificates', lines: [...listen(['certificates:', '  - {cert: a.pem, key: a.key}', '  - {cert: b.pem, key: a.key}']), ...backends()], at: 'a.key}\n', occurrence: 2, msg: `private key file '${abs('a.key')}': key does not match certificate '${abs('b.pem')}'` },
    { name: 'expired cert', lines: [...listen(['cert: expired.pem', 'key: a.key']), ...backends()], at: 'expired.pem', msg: `certificate file '${abs('expired.pem')}': certificate expired on 2020-01-02 00:00:00 UTC` },
    { name: 'min_version 1.1', lines: [...listen(['cert: a.pem', 'key: a.key', 'min_version: "1.1"']), ...backends()], at: '"1.1"', msg: 'TLS 1.0/1.1 are insecure and not supported (use 1.2 or 1.3)' },
    { name: 'min_version 1.0', lines: [...listen(['cert: a.pem', 'key: a.key', 'min_version: "1.0"']), ...backends()], at: '"1.0"', msg: 'TLS 1.0/1.1 are insecure and not supported (use 1.2 or 1.3)' },
    { name: 'backend CA missing', lines: ['listen: 127.0.0.1:0', ...backends(['    tls: {ca: nope.pem, sni: node.test}'])], at: 'nope.pem', msg: `CA file '${abs('nope.pem')}': No such file or directory` },
    { name: 'sameSite None with a plain listener', lines: ['listen:', '  - address: 127.0.0.1:0', '    tls: {cert: a.pem, key: a.key}', '  - 127.0.0.1:0', ...backends(), 'cookie: {sameSite: none}'], at: 'none}', msg: 'sameSite=None requires secure: true' },
  ];
  const okCases = [
    { name: 'valid TLS config', lines: [...listen(['certificates: [{cert: a.pem, key: a.key}, {cert: b.pem, key: b.key}]', 'min_version: "1.3"', 'session_tickets: true', 'handshake_timeout: 10s', 'secure_cookies: true']), ...backends(['    tls: {ca: ca.pem, verify: true, sni: node.test}'])] },
    { name: 'sameSite None, every listener TLS with secure_cookies', lines: [...listen(['cert: a.pem', 'key: a.key']), ...backends(), 'cookie: {sameSite: none}'] },
  ];
  try {
    const runs = await Promise.all(
      [...cases, ...okCases].map(async (c, i) => {
        const file = path.join(dir, `check${i}.yaml`);
        const text = `${c.lines.join('\n')}\n`;
        fs.writeFileSync(file, text);
        return { c, file, text, r: await x.stickydCheck(file) };
      }),
    );
    for (const { c, file, text, r } of runs) {
      const detail = `${c.name}:\n${text}stdout: ${r.stdout.join('\n')}\nstderr: ${r.stderr.join('\n')}`;
      if (!c.at) {
        assert.equal(r.code, 0, detail);
        assert.deepEqual(r.stdout, [`${file}: ok`], detail);
        continue;
      }
      assert.equal(r.code, 1, detail);
      // Where `at` starts: 1-based line and column.
      let idx = -1;
      for (let k = 0; k < (c.occurrence || 1); k++) idx = text.indexOf(c.at, idx + 1);
      assert.ok(idx >= 0, `test bug: ${c.at} not in the config`);
      const before = text.slice(0, idx);
      const line = before.split('\n').length;
      const col = idx - before.lastIndexOf('\n');
      const want = `${file}:${line}:${col}: ${c.msg}`;
      assert.ok(r.stderr.some((l) => l.startsWith(want)), `${c.name}: no line starting with\n  ${want}\n${detail}`);
      for (const l of r.stderr) assert.match(l, /^\/\S+:\d+:\d+: \S/, `${c.name}: not file:line:col: message: ${l}`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------------------
// 8. SIGHUP: new certificates for new connections, live tunnels kept

test('p8. TLS: SIGHUP reloads the certificate; a wss client connected before keeps working; a broken pair is refused', { timeout: 40000 }, async (t) => {
  await tlsScenario(t, { listen: [{ tls: { ...A_TLS, handshake_timeout: '10s' } }] }, async (env, p) => {
    const ca = pki.file('ca.pem');
    const subject = async (what) => {
      const r = await x.sClient(p.port, ['-CAfile', ca, '-verify_return_error', '-verify_ip', '127.0.0.1']);
      assert.equal(r.code, 0, `${what}: s_client exit ${r.code}\n${r.stderr}`);
      return r.subject;
    };
    assert.equal(await subject('before'), 'CN = a.test');
    const live = await liveClient(p.url);
    await live.check('before the reload');

    // Swap the files the config names (a.pem/a.key) for another pair, then SIGHUP.
    const swap = (from, to) => {
      fs.copyFileSync(p.file(from), p.file(`${to}.tmp`));
      fs.renameSync(p.file(`${to}.tmp`), p.file(to));
    };
    swap('a2.pem', 'a.pem');
    swap('a2.key', 'a.key');
    let mark = p.mark();
    p.hup();
    await p.waitForLine(/^\S+ info config reloaded\b/, h.T.http, 'reload after SIGHUP', mark);
    assert.deepEqual(p.linesSince(mark, /error|refused/), []);
    assert.equal(await subject('after the reload'), 'CN = a-reloaded.test');
    const res = await x.httpsRequest({ port: p.port, ca: CA, path: '/whoami' });
    assert.equal(res.status, 200);
    assert.equal(res.peer, 'a-reloaded.test');
    await live.check('after the reload');

    // A new client gets the new certificate and works.
    const fresh = h.makeClient('v4', p.url, { ca: CA });
    await h.once(fresh.socket, 'connect', h.T.connect, 'client after the reload', ['connect_error']);
    assert.ok((await fresh.emitAck({ fresh: 1 })).node);
    fresh.close();

    // A reload with a key that does not match is refused; the running certificate stays.
    fs.copyFileSync(p.file('other.key'), p.file('a.key'));
    mark = p.mark();
    p.hup();
    const refusedLine = await p.waitForLine(/^\S+ error reload refused: keeping the running config/, h.T.http, 'refused reload', mark);
    const why = p.linesSince(mark, /reload refused .*key does not match certificate/);
    assert.equal(why.length, 1, `reload refusal reason: ${p.stderr.slice(mark).join('\n')}`);
    t.diagnostic(`${why[0]}\n${refusedLine}`);
    assert.equal(await subject('after a refused reload'), 'CN = a-reloaded.test');
    await live.check('after the refused reload');
    live.close();
    assert.equal(p.child.exitInfo, null, 'stickyd still running');
  });
});
