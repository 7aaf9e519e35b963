'use strict';
// j. HAProxy-compatible server cookies (sticky.server_cookie) and persistence values.
//    insert (+indirect, nocache, httponly) with backend `cookie:` values and aliases; insert
//    with maxidle/maxlife dates read and written as HAProxy does; prefix mode on Socket.IO's
//    own io cookie; rewrite mode on a cookie the application sets; `sticky.secret`: opaque
//    values, identical on every replica with the same secret.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const h = require('../lib/harness');

// n1 has an explicit value and an alias (what an old HAProxy setup issued), n2 the default
// (its name), n3 an explicit value.
const VALUES = { n1: 'a1', n2: 'n2', n3: 'c3' };
const withValues = (backends) =>
  backends.map((b) =>
    b.name === 'n1' ? { ...b, cookie: 'a1', cookie_aliases: ['old1'] } : b.name === 'n3' ? { ...b, cookie: 'c3' } : b,
  );
const nodeOfValue = (v) => ({ a1: 'n1', old1: 'n1', n2: 'n2', c3: 'n3' })[v];
const GRACE = { shutdown_grace: '2s' };

const setCookies = (res) => h.headerValues(res.rawHeaders, 'set-cookie');
const whoami = (res) => {
  assert.equal(res.status, 200, `whoami: ${res.status} ${res.body}`);
  return JSON.parse(res.body);
};
// The value the client's cookie jar (socket.io-client in Node, withCredentials) holds.
const jarValue = (client, name) => {
  const jar = client.engine()._cookieJar;
  const c = jar && jar._cookies.get(name);
  return c ? c.value : undefined;
};

// h.runClients with v4 clients that keep a cookie jar; jars maps each client's index to the
// value of cookie `name` in its jar when it closes.
async function runClientsWithJars(env, name) {
  const jars = new Map();
  const results = await h.runClients((i) => {
    const c = h.makeClient('v4', env.url, { withCredentials: true, query: { c: String(i) } });
    const close = c.close;
    c.close = () => {
      jars.set(i, jarValue(c, name));
      close();
    };
    return c;
  });
  return { results, jars };
}

// HAProxy's date field, written here from HAProxy's source (src/proto_http.c, base64.c):
// s30tob64((date.tv_sec + 3) >> 2) with the standard base64 alphabet, 5 digits.
const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
function haproxyDate(unixSeconds) {
  let v = ((unixSeconds + 3) >> 2) & 0x3fffffff;
  let out = '';
  for (let i = 0; i < 5; i++) {
    out = B64[v & 63] + out;
    v >>= 6;
  }
  return out;
}
function decodeHaproxyDate(five) {
  assert.match(five, /^[A-Za-z0-9+/]{5}$/);
  let v = 0;
  for (const c of five) v = v * 64 + B64.indexOf(c);
  return v * 4;
}

test('j. insert + indirect + nocache + httponly: exact Set-Cookie, cookie-only routing, aliases, real clients', { timeout: 120000 }, async (t) => {
  const proxyOpts = {
    backends: withValues,
    extra: { sticky: { server_cookie: { name: 'SERVERID', mode: 'insert', indirect: true, nocache: true, httponly: true } }, access_log: { format: 'json' } },
    timeouts: GRACE,
  };
  await h.scenario(t, { nodeCookie: true, proxyOpts }, async (env) => {
    // 1. No cookie: the response of whichever node served it sets that node's value.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
    const served = new Set();
    for (let i = 0; i < 6; i++) {
      const res = await h.request({ port: env.port, path: `/whoami?i=${i}`, agent });
      const who = whoami(res);
      served.add(who.node);
      assert.deepEqual(setCookies(res), [`SERVERID=${VALUES[who.node]}; path=/; HttpOnly`], `response from ${who.node}`);
      assert.equal(res.headers['cache-control'], 'private', 'nocache: Cache-Control: private on a response that sets the cookie');
      assert.equal(who.cookie, null);
    }
    assert.equal(served.size, 3);
    // An Engine.IO handshake gets the node's io cookie and SERVERID; the node's own
    // Cache-Control (no-store) is left alone.
    const hs = await h.handshake(env.port, { agent });
    const owner = await env.cluster.ownerOf(hs.sid);
    assert.deepEqual(hs.setCookies, [`io=${hs.sid}; Path=/; HttpOnly; SameSite=Lax`, `SERVERID=${VALUES[owner]}; path=/; HttpOnly`]);
    assert.equal(hs.res.headers['cache-control'], 'no-store');

    // 2. Requests with only SERVERID (no sid, not Engine.IO) reach its node, in a random order
    //    over shared keep-alive connections; indirect: the node never sees the cookie and the
    //    client (whose cookie is valid) gets no Set-Cookie, except to replace an alias.
    const jobs = [];
    for (const v of ['a1', 'n2', 'c3', 'old1']) for (let k = 0; k < 8; k++) jobs.push({ v, k });
    await Promise.all(
      h.shuffled(jobs).map(async ({ v, k }) => {
        const cookie = k % 2 ? `SERVERID=${v}` : `a=1; SERVERID=${v}; b=2`;
        const res = await h.request({ port: env.port, path: `/whoami?v=${v}&k=${k}`, agent, headers: { Cookie: cookie } });
        const who = whoami(res);
        assert.equal(who.node, nodeOfValue(v), `SERVERID=${v} reached ${who.node}`);
        assert.equal(who.cookie, k % 2 ? null : 'a=1; b=2', `SERVERID=${v}: what the node saw`);
        // A valid main value needs no Set-Cookie; an alias (issued by an old setup) routes and
        // is replaced by the node's main value.
        const expected = v === 'old1' ? ['SERVERID=a1; path=/; HttpOnly'] : [];
        assert.deepEqual(setCookies(res), expected, `SERVERID=${v}: Set-Cookie`);
      }),
    );
    // An unknown value is ignored (balanced) and replaced, and not shown to the node either.
    const bad = await h.request({ port: env.port, path: '/whoami', agent, headers: { Cookie: 'SERVERID=zz' } });
    assert.deepEqual(setCookies(bad), [`SERVERID=${VALUES[whoami(bad).node]}; path=/; HttpOnly`]);
    assert.equal(whoami(bad).cookie, null);

    // 3. The sid comes first: a session of `owner` with a SERVERID of another node stays on
    //    `owner`, and the proxy corrects the cookie.
    const otherValue = VALUES[['n1', 'n2', 'n3'].find((n) => n !== owner)];
    const raw = new h.RawSession(env.port, hs.sid, { agent, headers: { Cookie: `io=${hs.sid}; SERVERID=${otherValue}` } });
    await raw.connectNamespace();
    assert.equal((await raw.echo({ x: 1 })).node, owner);
    const post = await h.request({
      port: env.port,
      method: 'POST',
      path: h.enginePath({ EIO: '4', transport: 'polling', sid: hs.sid }),
      agent,
      headers: { 'Content-Type': 'text/plain;charset=UTF-8', Cookie: `io=${hs.sid}; SERVERID=${otherValue}` },
      body: '42["echo",1]',
    });
    assert.equal(post.status, 200, post.body);
    assert.deepEqual(setCookies(post), [`SERVERID=${VALUES[owner]}; path=/; HttpOnly`]);
    await raw.close();
    agent.destroy();

    // 4. 30 real clients (polling + upgrade, cookie jar): sticky, and the jar holds the SERVERID
    //    of the node that served the client.
    const { results, jars } = await runClientsWithJars(env, 'SERVERID');
    await env.stopProxy();
    const stats = await env.stats();
    await h.assertClientsSticky(results, env.cluster, { transport: 'websocket', protocol: 4 });
    h.assertNodesClean(stats, results);
    for (const r of results) assert.equal(jars.get(r.index), VALUES[r.nodes[0]], `client ${r.index} (on ${r.nodes[0]}): SERVERID in its jar`);
    for (const s of Object.values(stats)) assert.equal(s.cookieNames.SERVERID, undefined, `node ${s.node} saw a SERVERID cookie (indirect)`);
    assert.ok(h.sum(stats, (s) => s.withIoCookie) >= results.length, 'the io cookie still reaches the nodes');
  });
});

test('j. insert with maxidle/maxlife: dates are HAProxy\'s (wall clock), HAProxy-issued cookies keep routing', { timeout: 60000 }, async (t) => {
  const proxyOpts = {
    backends: withValues,
    extra: { sticky: { server_cookie: { name: 'SERVERID', mode: 'insert', maxidle: '30m', maxlife: '8h' } }, access_log: { format: 'json' } },
    timeouts: GRACE,
  };
  await h.scenario(t, { proxyOpts }, async (env) => {
    const now = () => Math.floor(Date.now() / 1000);
    // What stickyd writes.
    const res = await h.request({ port: env.port, path: '/whoami' });
    const [sc] = setCookies(res);
    const m = /^SERVERID=([^|;]+)\|([^|;]{5})\|([^|;]{5}); path=\/$/.exec(sc || '');
    assert.ok(m, `Set-Cookie with dates: ${JSON.stringify(setCookies(res))}`);
    assert.equal(m[1], VALUES[whoami(res).node]);
    for (const d of [m[2], m[3]]) {
      const at = decodeHaproxyDate(d);
      assert.ok(Math.abs(at - now()) <= 60, `date field ${d} = ${at} s (${new Date(at * 1000).toISOString()}), wall clock is ${now()} s (${new Date().toISOString()})`);
    }
    // What HAProxy wrote a minute ago for n2 (first seen an hour ago): valid, routes to n2, not
    // re-issued yet.
    const fresh = `SERVERID=n2|${haproxyDate(now() - 60)}|${haproxyDate(now() - 3600)}`;
    for (let k = 0; k < 6; k++) {
      const r = await h.request({ port: env.port, path: `/whoami?k=${k}`, headers: { Cookie: fresh } });
      assert.equal(whoami(r).node, 'n2', `${fresh} (request ${k}) reached ${whoami(r).node}; Set-Cookie ${JSON.stringify(setCookies(r))}`);
      assert.deepEqual(setCookies(r), [], `${fresh}: re-issued although valid`);
    }
    // Idle too long (3 h > maxidle 30m) or too old (9 h > maxlife 8h): ignored and re-issued
    // with fresh dates.
    for (const stale of [
      `SERVERID=n2|${haproxyDate(now() - 3 * 3600)}|${haproxyDate(now() - 3 * 3600)}`,
      `SERVERID=n2|${haproxyDate(now() - 60)}|${haproxyDate(now() - 9 * 3600)}`,
    ]) {
      const r = await h.request({ port: env.port, path: '/whoami', headers: { Cookie: stale } });
      const [set] = setCookies(r);
      const d = /^SERVERID=([^|;]+)\|([^|;]{5})\|([^|;]{5}); path=\/$/.exec(set || '');
      assert.ok(d, `${stale}: expected a new cookie, got ${JSON.stringify(setCookies(r))}`);
      assert.equal(d[1], VALUES[whoami(r).node]);
      assert.ok(Math.abs(decodeHaproxyDate(d[2]) - now()) <= 60 && Math.abs(decodeHaproxyDate(d[3]) - now()) <= 60, `${stale}: new dates ${set}`);
    }
  });
});

test('j. prefix mode on the io cookie: client sees io=<value>~<sid>, the node its own sid', { timeout: 120000 }, async (t) => {
  const proxyOpts = {
    backends: withValues,
    extra: { sticky: { server_cookie: { name: 'io', mode: 'prefix' } }, access_log: { format: 'json' } },
    timeouts: GRACE,
  };
  await h.scenario(t, { nodeCookie: true, proxyOpts }, async (env) => {
    const sessions = [];
    for (let i = 0; i < 6; i++) {
      const hs = await h.handshake(env.port, { eio: i % 3 === 2 ? 3 : 4 });
      const owner = await env.cluster.ownerOf(hs.sid);
      assert.deepEqual(hs.setCookies, [`io=${VALUES[owner]}~${hs.sid}; Path=/; HttpOnly; SameSite=Lax`]);
      sessions.push({ sid: hs.sid, owner, eio: i % 3 === 2 ? 3 : 4 });
    }
    assert.equal(new Set(sessions.map((s) => s.owner)).size, 3);
    for (const s of h.shuffled([...sessions, ...sessions])) {
      // Cookie only (no sid): the prefix routes; the node gets its own cookie back.
      const who = whoami(await h.request({ port: env.port, path: '/whoami', headers: { Cookie: `x=1; io=${VALUES[s.owner]}~${s.sid}` } }));
      assert.equal(who.node, s.owner);
      assert.equal(who.cookie, `x=1; io=${s.sid}`);
    }
    for (const s of sessions) {
      const raw = new h.RawSession(env.port, s.sid, { eio: s.eio, headers: { Cookie: `io=${VALUES[s.owner]}~${s.sid}` } });
      await raw.connectNamespace();
      assert.equal((await raw.echo({ s: s.sid })).node, s.owner);
      await raw.close();
    }
    // Real clients with a cookie jar.
    const { results, jars } = await runClientsWithJars(env, 'io');
    await env.stopProxy();
    const stats = await env.stats();
    await h.assertClientsSticky(results, env.cluster, { transport: 'websocket', protocol: 4 });
    h.assertNodesClean(stats, results);
    for (const r of results) assert.equal(jars.get(r.index), `${VALUES[r.nodes[0]]}~${r.engineIdStart}`, `client ${r.index}: io cookie in the jar`);
    assert.ok(h.sum(stats, (s) => s.withIoCookie) >= results.length, 'clients sent the io cookie');
    for (const s of Object.values(stats)) {
      assert.equal(s.ioCookieMismatch, 0, `node ${s.node} got an io cookie that is not its sid: ${JSON.stringify(s.ioCookieMismatchDetails.slice(0, 3))}`);
    }
  });
});

test('j. rewrite mode: the application\'s SERVERID is rewritten to the backend value, and routes', { timeout: 60000 }, async (t) => {
  const proxyOpts = { backends: withValues, extra: { sticky: { server_cookie: { name: 'SERVERID', mode: 'rewrite' } } }, timeouts: GRACE };
  await h.scenario(t, { proxyOpts }, async (env) => {
    const seen = new Set();
    for (let i = 0; i < 6; i++) {
      const res = await h.request({ port: env.port, path: '/setserverid' });
      const who = whoami(res);
      seen.add(who.node);
      // The node wrote SERVERID=<its name>; the client gets the configured value.
      assert.deepEqual(setCookies(res), [`SERVERID=${VALUES[who.node]}; path=/`], `from ${who.node}`);
    }
    assert.equal(seen.size, 3);
    // A response without the application's cookie gets none.
    assert.deepEqual(setCookies(await h.request({ port: env.port, path: '/whoami' })), []);
    const jobs = [];
    for (const v of ['a1', 'n2', 'c3', 'old1']) for (let k = 0; k < 5; k++) jobs.push(v);
    for (const v of h.shuffled(jobs)) {
      const who = whoami(await h.request({ port: env.port, path: '/whoami', headers: { Cookie: `SERVERID=${v}` } }));
      assert.equal(who.node, nodeOfValue(v), `SERVERID=${v}`);
    }
  });
});

test('j. secret: opaque 16-char values, the same on every replica with the same secret (cookies and sid tags)', { timeout: 60000 }, async (t) => {
  const SECRET = 'e2e-secret-0123456789abcdef';
  const insert = { server_cookie: { name: 'SERVERID', mode: 'insert' } };
  await h.scenario(t, { proxyOpts: { extra: { sticky: { secret: SECRET, ...insert } }, timeouts: GRACE } }, async (env) => {
    const A = env.proxy;
    const B = await env.startProxy();
    const T = await env.startProxy({ extra: { sticky: { secret: SECRET, tag_sids: true } } });
    const O = await env.startProxy({ extra: { sticky: { secret: 'another-secret-0123456789', ...insert } } });
    const valuesOf = async (p) => {
      const out = {};
      for (let i = 0; i < 3; i++) {
        const res = await h.request({ port: p.port, path: '/whoami' });
        const m = /^SERVERID=([^;]*); path=\/$/.exec(setCookies(res)[0] || '');
        assert.ok(m, `${p.label}: ${JSON.stringify(setCookies(res))}`);
        out[whoami(res).node] = m[1];
      }
      assert.deepEqual(Object.keys(out).sort(), ['n1', 'n2', 'n3']);
      return out;
    };
    const a = await valuesOf(A);
    for (const [name, v] of Object.entries(a)) {
      assert.match(v, /^[A-Za-z0-9_-]{16}$/, `${name}: value ${v}`);
      assert.ok(!v.includes(name), `${name}: value ${v} reveals the name`);
    }
    assert.equal(new Set(Object.values(a)).size, 3);
    assert.deepEqual(await valuesOf(B), a, 'same secret, same values');
    const o = await valuesOf(O);
    for (const name of Object.keys(a)) assert.notEqual(o[name], a[name], `another secret, another value for ${name}`);
    // A cookie issued by A routes on B (and not on O).
    for (const name of h.shuffled(['n1', 'n2', 'n3', 'n1', 'n2', 'n3'])) {
      const res = await h.request({ port: B.port, path: '/whoami', headers: { Cookie: `SERVERID=${a[name]}` } });
      assert.equal(whoami(res).node, name);
      assert.deepEqual(setCookies(res), []);
    }
    // tag_sids with the same secret: the tag is the same opaque value.
    for (let i = 0; i < 3; i++) {
      const hs = await h.handshake(T.port, { sidRe: /^[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]+$/ });
      const owner = await env.cluster.ownerOf(h.untag(hs.sid));
      assert.equal(h.tagOf(hs.sid), a[owner], `tag of ${hs.sid} (owner ${owner})`);
      const raw = new h.RawSession(T.port, hs.sid);
      await raw.connectNamespace();
      assert.equal((await raw.echo(1)).node, owner);
      await raw.close();
    }
    await Promise.all(env.proxies.map((p) => p.stop()));
    h.assertNodesClean(await env.stats());
  });
});
