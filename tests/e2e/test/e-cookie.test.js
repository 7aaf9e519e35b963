'use strict';
// e. stickyd injects the Set-Cookie (nodes have no cookie option), with every attribute the
// `cookie` npm package knows, and routes requests that carry only that cookie.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const h = require('../lib/harness');

const DOMAIN = 'example.test';
const EXPIRES = 'Sat, 21 Oct 2045 07:28:00 GMT'; // in the future: clients keep the cookie
const PROXY_COOKIE = {
  name: 'io',
  path: '/',
  domain: DOMAIN,
  httpOnly: true,
  secure: true,
  sameSite: 'strict',
  maxAge: 3600,
  expires: EXPIRES,
  partitioned: true,
  priority: 'high',
};
// Attribute order of the `cookie` package (serialize): Max-Age, Domain, Path, Expires,
// HttpOnly, Secure, Partitioned, Priority, SameSite.
const expectedSetCookie = (sid) =>
  `io=${sid}; Max-Age=3600; Domain=${DOMAIN}; Path=/; Expires=${EXPIRES}; HttpOnly; Secure; Partitioned; Priority=High; SameSite=Strict`;

const SESSIONS = 30;

test('e. proxy-injected cookie: exact Set-Cookie, cookie-only routing, real clients', { timeout: 120000 }, async (t) => {
  await h.scenario(t, { nodeCookie: false, proxyCookie: PROXY_COOKIE }, async (env) => {
    // The literal above is what engine.io itself would write with these options.
    const cookiePkg = require(require.resolve('cookie', { paths: [require.resolve('engine.io')] }));
    assert.equal(
      cookiePkg.serialize('io', 'SID', { ...PROXY_COOKIE, expires: new Date(EXPIRES) }),
      expectedSetCookie('SID'),
    );

    // 1. Raw handshakes (EIO4 and EIO3) through the proxy, sequentially so that they spread.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
    const sessions = [];
    for (let i = 0; i < SESSIONS; i++) {
      const eio = i % 5 === 4 ? 3 : 4;
      const hs = await h.handshake(env.port, { eio, agent });
      assert.equal(hs.setCookies.length, 1, `handshake ${i}: Set-Cookie headers ${JSON.stringify(hs.setCookies)}`);
      assert.equal(hs.setCookies[0], expectedSetCookie(hs.sid));
      const value = /^io=([^;]*)/.exec(hs.setCookies[0])[1];
      assert.equal(value, hs.sid, 'cookie value = sid of the open packet');
      sessions.push({ sid: hs.sid, eio });
    }
    const owners = await env.cluster.owners(sessions.map((s) => s.sid));
    for (const s of sessions) {
      s.owner = owners.get(s.sid);
      assert.ok(s.owner, `sid ${s.sid} has no owner`);
    }
    assert.equal(new Set(sessions.map((s) => s.owner)).size, 3, 'handshakes spread over the 3 nodes');

    // 2. Requests carrying only the cookie (no sid parameter) reach the owner; twice each, in
    //    a random order (so that no round-robin phase can pass by chance), interleaved across
    //    sessions on shared keep-alive connections.
    for (let round = 0; round < 2; round++) {
      await Promise.all(
        h.shuffled(sessions).map(async (s) => {
          const res = await h.request({ port: env.port, path: '/whoami', agent, headers: { Cookie: `io=${s.sid}` } });
          assert.equal(res.status, 200, `whoami ${s.sid}: ${res.status} ${res.body}`);
          const who = JSON.parse(res.body);
          assert.equal(who.node, s.owner, `cookie io=${s.sid} routed to ${who.node}, owner ${s.owner}`);
          assert.equal(who.cookie, `io=${s.sid}`);
          // No Set-Cookie on anything but a handshake.
          assert.deepEqual(h.headerValues(res.rawHeaders, 'set-cookie'), []);
        }),
      );
    }
    // The cookie among others, not first.
    for (const s of h.shuffled(sessions).slice(0, 10)) {
      const res = await h.request({ port: env.port, path: '/whoami', agent, headers: { Cookie: `a=1; io=${s.sid}; b=2` } });
      assert.equal(JSON.parse(res.body).node, s.owner);
    }

    // 3. The raw sessions also work on their owner with sid + cookie (connect, one echo). Every
    //    other session sends a stale cookie of another session owned by ANOTHER node: the sid
    //    parameter wins over the cookie.
    const other = (s) => sessions.find((x) => x.owner !== s.owner && x !== s);
    await Promise.all(
      h.shuffled(sessions).map(async (s, i) => {
        const cookieSid = i % 2 ? other(s).sid : s.sid;
        const raw = new h.RawSession(env.port, s.sid, { agent, eio: s.eio, headers: { Cookie: `io=${cookieSid}` } });
        await raw.connectNamespace();
        const reply = await raw.echo({ sid: s.sid });
        assert.equal(reply.node, s.owner);
        await raw.close();
      }),
    );
    agent.destroy();

    // 4. Real clients (default transports, cookie jar on) through the same proxy.
    const cookieRequestsBefore = h.sum(await env.stats(), (s) => s.withIoCookie);
    const results = await h.runClients((i) =>
      h.makeClient('v4', env.url, { withCredentials: true, query: { c: String(i) } }),
    );
    await env.stopProxy();
    const stats = await env.stats();
    await h.assertClientsSticky(results, env.cluster, { transport: 'websocket', protocol: 4 });
    h.assertNodesClean(stats, results);
    // The clients' cookie jar kept the injected cookie and sent it back.
    const withCookie = h.sum(stats, (s) => s.withIoCookie) - cookieRequestsBefore;
    t.diagnostic(`real clients' engine requests carrying an io cookie: ${withCookie}`);
    assert.ok(withCookie > 0, 'real clients sent the injected cookie back');
  });
});
