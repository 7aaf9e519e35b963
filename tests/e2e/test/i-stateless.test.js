'use strict';
// i. Stateless replicas: stickyd processes that share nothing, with `sticky.tag_sids`, behind
//    an L4 TCP relay that alternates every new TCP connection between them. Node's polling
//    transport opens a new TCP connection per request, so consecutive requests of one session
//    reach different replicas: only the tag in the sid can route them.
//    - 40 real clients (v4 default/polling-only/websocket-only, v2): 0 node switches, 0
//      Session ID unknown, 0 foreign sids; the handshake wire format (EIO4, EIO3 length
//      prefix, io cookie) carries the tag.
//    - a replica SIGKILLed mid-run and replaced by a new process on another port: sessions
//      continue through the newcomer, which never saw their handshakes.
//    - one proxy restarted on its own port: every raw session continues.
//    - backend-made tags (`backend_tags`): a proxy that never saw the handshake routes them.
//    - control: the same relay in front of two replicas WITHOUT tags fails the checks.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/harness');

const TAGGED = /^n[123]\.[A-Za-z0-9_-]+$/;
const TAG_PROXY = {
  extra: { sticky: { tag_sids: true }, access_log: { format: 'json' } },
  timeouts: { shutdown_grace: '2s' },
};

// sid (node-side) -> Set of proxy labels that routed a tagged request of it; checks on the way
// that every tag-routed request went to the node its tag names.
function tagRoutes(proxies) {
  const seen = new Map();
  for (const p of proxies) {
    for (const e of p.accessLog()) {
      if (e.via !== 'tag') continue;
      const q = e.target.indexOf('?');
      const sid = q >= 0 ? new URLSearchParams(e.target.slice(q + 1)).get('sid') : null;
      if (sid) {
        assert.equal(h.tagOf(sid), e.backend, `${p.label}: ${e.target} routed to ${e.backend}`);
        assert.equal(h.untag(sid), e.sid, `${p.label}: logged key of ${e.target}`);
      }
      if (!seen.has(e.sid)) seen.set(e.sid, new Set());
      seen.get(e.sid).add(p.label);
    }
  }
  return seen;
}

// No request of any proxy was routed by an unknown key, or failed (400/5xx). `lateSids`: sids
// whose node had already closed the session (their 400 is the node's correct answer).
function assertNoLostSessions(proxies, lateSids = new Set()) {
  for (const p of proxies) {
    const bad = p.accessLog().filter((e) => e.via === 'unknown-key' || (e.status === 400 && !lateSids.has(e.sid)) || e.status >= 500);
    assert.deepEqual(bad, [], `${p.label}: requests routed by an unknown key or failed`);
  }
}

test('i. two stateless replicas behind an L4 relay: real v4/v2 clients, no table needed', { timeout: 120000 }, async (t) => {
  await h.scenario(t, { nodeCookie: true, proxyOpts: TAG_PROXY }, async (env) => {
    const A = env.proxy;
    const B = await env.startProxy();
    const relay = await h.startRelay([A.port, B.port]);
    env.cleanups.push(() => relay.close());

    // Wire format of tagged handshakes (through the relay: each request a new connection).
    const hs4 = await h.handshake(relay.port, { sidRe: TAGGED });
    assert.ok(hs4.res.body.startsWith(`0{"sid":"${hs4.sid}"`), `EIO4 open packet: ${hs4.res.body}`);
    assert.match(hs4.res.body, /^0\{"sid":"n[123]\./);
    assert.equal(Number(hs4.res.headers['content-length']), Buffer.byteLength(hs4.res.body));
    const owner4 = await env.cluster.ownerOf(h.untag(hs4.sid));
    assert.equal(h.tagOf(hs4.sid), owner4, `tag of ${hs4.sid} names the node that created it`);
    // Nodes run with cookie: true; their io cookie carries the tagged sid.
    assert.deepEqual(hs4.setCookies, [`io=${hs4.sid}; Path=/; HttpOnly; SameSite=Lax`]);

    const hs3 = await h.request({ port: relay.port, path: h.enginePath({ EIO: '3', transport: 'polling' }) });
    assert.equal(hs3.status, 200, hs3.body);
    const m3 = /^(\d+):(0\{.*)$/s.exec(hs3.body);
    assert.ok(m3, `EIO3 payload: ${JSON.stringify(hs3.body)}`);
    const packet3 = h.decodePayload(hs3.body, 3)[0];
    assert.equal(Number(m3[1]), packet3.length, `EIO3 length prefix ${m3[1]} for a ${packet3.length}-char packet`);
    assert.equal(packet3, m3[2], 'the payload is exactly one packet');
    assert.equal(Number(hs3.headers['content-length']), Buffer.byteLength(hs3.body));
    const sid3 = JSON.parse(packet3.slice(1)).sid;
    assert.match(sid3, TAGGED);
    assert.equal(h.tagOf(sid3), await env.cluster.ownerOf(h.untag(sid3)));

    // Both raw sessions work through the relay (alternating replicas), by sid and by io cookie.
    for (const [sid, eio] of [[hs4.sid, 4], [sid3, 3]]) {
      const raw = new h.RawSession(relay.port, sid, { eio });
      await raw.connectNamespace();
      for (let k = 0; k < 3; k++) assert.equal((await raw.echo({ k })).node, h.tagOf(sid));
      for (let k = 0; k < 2; k++) {
        const who = await h.request({ port: relay.port, path: '/whoami', headers: { Cookie: `io=${sid}` } });
        assert.equal(JSON.parse(who.body).node, h.tagOf(sid), `io cookie ${sid}`);
        assert.equal(JSON.parse(who.body).cookie, `io=${h.untag(sid)}`, 'the node sees its own sid in the cookie');
      }
      await raw.close();
    }

    // 40 real clients through the relay.
    const kinds = [];
    for (let i = 0; i < 40; i++) kinds.push(i < 12 ? 'v4-default' : i < 24 ? 'v4-polling' : i < 30 ? 'v4-websocket' : 'v2');
    const results = await h.runClients((i) => {
      const q = { query: { c: String(i) } };
      if (kinds[i] === 'v4-default') return h.makeClient('v4', relay.url, { ...q, withCredentials: true });
      if (kinds[i] === 'v4-polling') return h.makeClient('v4', relay.url, { ...q, transports: ['polling'], withCredentials: false });
      if (kinds[i] === 'v4-websocket') return h.makeClient('v4', relay.url, { ...q, transports: ['websocket'] });
      return h.makeClient('v2', relay.url, q);
    }, { clients: kinds.length });
    await Promise.all(env.proxies.map((p) => p.stop()));
    await relay.close();
    const stats = await env.stats();
    await h.assertClientsSticky(results, env.cluster, { nodeSid: h.untag });
    const late = h.assertNodesClean(stats, results, { nodeSid: h.untag });
    if (late.length) t.diagnostic(`close packet overtook a last poll (other replica): ${late.length}`);
    for (const r of results) {
      assert.match(r.engineIdStart, TAGGED, `client ${r.index} (${kinds[r.index]}) got an untagged sid`);
      assert.equal(h.tagOf(r.engineIdStart), r.nodes[0], `client ${r.index}: tag vs node`);
      assert.equal(r.protocol, kinds[r.index] === 'v2' ? 3 : 4);
      assert.equal(r.transport, kinds[r.index] === 'v4-polling' ? 'polling' : 'websocket', `client ${r.index} transport`);
    }
    assert.equal(h.sum(stats, (s) => s.handshakesByTransport.websocket), 6, 'websocket-first handshakes');
    assert.ok(relay.count(A.port) > 50 && relay.count(B.port) > 50, `relay spread: A ${relay.count(A.port)}, B ${relay.count(B.port)}`);

    // The point of the test: sessions really were served by both replicas.
    const seen = tagRoutes([A, B]);
    const both = (r) => (seen.get(h.untag(r.engineIdStart)) || new Set()).size === 2;
    const polling = results.filter((r) => kinds[r.index] === 'v4-polling');
    assert.deepEqual(polling.filter((r) => !both(r)).map((r) => r.engineIdStart), [], 'polling sessions routed by tag on both replicas');
    const upgraded = results.filter((r) => kinds[r.index] === 'v4-default' || kinds[r.index] === 'v2');
    t.diagnostic(`upgrading sessions seen by both replicas: ${upgraded.filter(both).length}/${upgraded.length}; relay A ${relay.count(A.port)} B ${relay.count(B.port)}`);
    assert.ok(upgraded.filter(both).length >= upgraded.length / 2, 'most upgrading sessions used both replicas');
    assertNoLostSessions([A, B], new Set(late.map((u) => u.sid)));
  });
});

test('i. a replica SIGKILLed mid-run and replaced: sessions continue through the new one', { timeout: 120000 }, async (t) => {
  await h.scenario(t, { nodeCookie: false, proxyOpts: TAG_PROXY }, async (env) => {
    const A = env.proxy;
    const B = await env.startProxy();
    const relay = await h.startRelay([A.port, B.port]);
    env.cleanups.push(() => relay.close());

    const N = 30;
    const MESSAGES = 12;
    const kinds = [];
    for (let i = 0; i < N; i++) kinds.push(i < 18 ? 'v4-polling' : i < 24 ? 'v4-default' : i < 27 ? 'v2' : 'v2-polling');
    const acks = h.counter();
    const reconnecting = { reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 300, randomizationFactor: 0 };
    let C = null;
    let killedAt = 0;
    let restartedAt = 0;
    const run = h.runFaultClients(
      (i) => {
        const q = { query: { c: String(i) }, ...reconnecting };
        if (kinds[i] === 'v4-polling') return h.makeClient('v4', relay.url, { ...q, transports: ['polling'], withCredentials: false });
        if (kinds[i] === 'v4-default') return h.makeClient('v4', relay.url, q);
        if (kinds[i] === 'v2-polling') return h.makeClient('v2', relay.url, { ...q, transports: ['polling'] });
        return h.makeClient('v2', relay.url, q);
      },
      { clients: N, messages: MESSAGES, gapMin: 100, gapMax: 200, onAck: () => acks.add() },
    );
    // Mid-run (a third of all acks in): the L4 balancer takes A out, A dies (SIGKILL: its
    // in-flight requests and tunnels are cut), a new replica C comes up elsewhere and joins.
    await acks.reach((N * MESSAGES) / 3, 30000 * h.SCALE, 'a third of the acks');
    relay.setTargets([B.port]);
    // Whose requests or tunnels does the SIGKILL cut? (The client index is in every query.)
    const cutHeads = relay.openTo(A.port);
    const cut = new Set(cutHeads.map((l) => Number((/[?&]c=(\d+)/.exec(l) || [])[1])));
    killedAt = Date.now();
    await A.kill();
    C = await env.startProxy({ label: 'stickyd-C' });
    relay.setTargets([B.port, C.port]);
    restartedAt = Date.now();
    const acksAtRestart = acks.value;
    const results = await run;
    await relay.close();
    await Promise.all(env.proxies.map((p) => p.stop()));
    const stats = await env.stats();

    const failed = results.filter((r) => !r.ok);
    assert.deepEqual(failed.map((r) => `${r.index} ${r.kind}: ${r.error}`), [], 'every client finished its acks');
    // No request ever reached a node that did not create its sid.
    for (const s of Object.values(stats)) assert.equal(s.foreign, 0, `node ${s.node}: foreign sids ${JSON.stringify(s.foreignDetails.slice(0, 5))}`);
    // SIGKILL cuts the held polls that went through A; each node closes those sessions
    // ("transport error") and a request the client already had under way through B finds
    // the session gone: a node's "Session ID unknown" for ITS OWN, already closed, session.
    // Any other "Session ID unknown" is a routing failure.
    const unknown = h.classifySessionUnknown(stats);
    assert.deepEqual(unknown.other, [], 'Session ID unknown for a session that was not closed by its node');
    // (Also benign: a client's own shutdown, "41" and the close packet "1" as two POSTs: the
    // node closes on the first, "transport close", and answers the second with code 1. And a
    // cut client's engine.io sends a close packet itself, so its replaced session may also
    // end with "transport close".)
    const replacedBy = new Map(results.flatMap((r) => r.sessions.slice(0, -1).map((x) => [h.untag(x), r])));
    const finalSid = new Map(results.map((r) => [h.untag(r.sessions[r.sessions.length - 1]), r]));
    const lateChecks = [];
    for (const u of unknown.late) {
      if (replacedBy.has(u.sid)) {
        assert.ok(['transport error', 'transport close'].includes(u.closedReason), `late request of ${u.sid}: ${u.closedReason}`);
        lateChecks.push(() => assert.ok(cut.has(replacedBy.get(u.sid).index), `late request of ${u.sid}: its client ${replacedBy.get(u.sid).index} had nothing through A`));
      } else {
        assert.equal(u.closedReason, 'transport close', `late request of ${u.sid} (not a replaced session)`);
        const r = finalSid.get(u.sid);
        assert.ok(r && u.at >= r.acks[r.acks.length - 1].at, `late request of ${u.sid} (transport close) is not a client's shutdown`);
      }
    }
    // C never saw the handshakes of sessions that started before it existed, yet routed them.
    const cHandshakes = new Set(C.accessLog().filter((e) => e.via === 'balance').map((e) => e.sid));
    const cTagged = new Set(C.accessLog().filter((e) => e.via === 'tag').map((e) => e.sid));
    const carried = results.filter((r) => {
      const before = r.acks.filter((a) => a.at < killedAt);
      const after = r.acks.filter((a) => a.at > restartedAt);
      return before.length && after.length && before[0].sid === after[after.length - 1].sid && cTagged.has(before[0].sid) && !cHandshakes.has(before[0].sid);
    });
    const lost = results.filter((r) => r.sessions.length > 1);
    t.diagnostic(`acks at restart ${acksAtRestart}/${N * MESSAGES}; clients with a request or tunnel through A when it died: ${cut.size}; sessions carried across the restart through C: ${carried.length}; clients that re-handshook: ${lost.length}; late requests of cut sessions: ${unknown.late.length}; C tag-routed ${cTagged.size} sessions`);
    assert.ok(!cut.has(NaN), `a connection through A without a client index: ${JSON.stringify(cutHeads)}`);
    for (const check of lateChecks) check();
    // Every client that had nothing under way through A keeps its one session, without a
    // single error, and (if it polls) continues through C, which never saw its handshake.
    const spared = results.filter((r) => !cut.has(r.index));
    for (const r of spared) {
      assert.equal(r.sessions.length, 1, `client ${r.index} (${r.kind}, nothing cut) had to re-handshake: ${JSON.stringify(r.sessions)} ${r.disconnects}`);
      assert.deepEqual(r.disconnects.filter((x) => x !== 'io client disconnect'), [], `client ${r.index}: disconnects`);
      assert.deepEqual(r.connectErrors, [], `client ${r.index}: connect errors`);
      assert.equal(new Set(r.acks.map((a) => a.sid)).size, 1, `client ${r.index}: one session`);
      assert.ok(!unknown.late.some((u) => u.sid === r.acks[0].sid && u.closedReason !== 'transport close'), `spared session ${r.acks[0].sid} got Session ID unknown`);
    }
    const sparedPolling = spared.filter((r) => /polling/.test(kinds[r.index]));
    assert.ok(sparedPolling.length >= 3, `too few polling clients spared by the kill (${sparedPolling.length}) to test the restart`);
    assert.deepEqual(sparedPolling.filter((r) => !carried.includes(r)).map((r) => r.index), [], 'spared polling clients continued through C by tag');
    // Clients that lost their session lost it to the cut connections, not to a proxy answer.
    for (const r of lost) {
      assert.ok(cut.has(r.index), `client ${r.index} lost its session but had nothing through A`);
      for (const d of r.disconnects.filter((x) => x !== 'io client disconnect')) {
        assert.match(d, /transport (error|close)|ping timeout/, `client ${r.index} disconnect reason`);
      }
    }
    assertNoLostSessions([B, C], new Set(unknown.late.map((u) => u.sid)));
  });
});

test('i. one proxy restarted on its own port: raw tagged sessions continue (EIO4, EIO3, io cookie)', { timeout: 60000 }, async (t) => {
  await h.scenario(t, { nodeCookie: false, proxyOpts: TAG_PROXY }, async (env) => {
    const sessions = [];
    for (let i = 0; i < 12; i++) {
      const eio = i % 3 === 2 ? 3 : 4;
      const hs = await h.handshake(env.port, { eio, sidRe: TAGGED });
      const raw = new h.RawSession(env.port, hs.sid, { eio });
      await raw.connectNamespace();
      assert.equal((await raw.echo({ i })).node, h.tagOf(hs.sid));
      sessions.push({ sid: hs.sid, eio, raw });
    }
    assert.equal(new Set(sessions.map((s) => h.tagOf(s.sid))).size, 3);
    const port = env.port;
    await env.proxy.kill();
    const P2 = await env.startProxy({ listenPort: port, label: 'stickyd-restarted' });
    assert.equal(P2.port, port);
    await Promise.all(
      sessions.map(async (s) => {
        for (let k = 0; k < 3; k++) assert.equal((await s.raw.echo({ k })).node, h.tagOf(s.sid), `sid ${s.sid} after restart`);
        const who = await h.request({ port, path: '/whoami', headers: { Cookie: `io=${s.sid}` } });
        assert.equal(JSON.parse(who.body).node, h.tagOf(s.sid));
        await s.raw.close();
      }),
    );
    await P2.stop();
    h.assertNodesClean(await env.stats());
    const routed = P2.accessLog().filter((e) => e.via === 'tag');
    assert.ok(routed.length >= sessions.length * 4, `restarted proxy routed ${routed.length} requests by tag`);
    assertNoLostSessions([P2]);
  });
});

test('i. backend-made tags (generateId): a proxy that never saw the handshake routes the session', { timeout: 90000 }, async (t) => {
  await h.scenario(
    t,
    {
      nodeCookie: true,
      nodeTagPrefix: true,
      proxyOpts: { extra: { sticky: { backend_tags: { separator: '.' } }, access_log: { format: 'json' } }, timeouts: { shutdown_grace: '2s' } },
    },
    async (env) => {
      const A = env.proxy;
      const B = await env.startProxy();
      // Handshakes through A; the sid is the node's own (the proxy forwards it unchanged).
      const sessions = [];
      for (let i = 0; i < 12; i++) {
        const eio = i % 4 === 3 ? 3 : 4;
        const hs = await h.handshake(A.port, { eio, sidRe: TAGGED });
        assert.equal(await env.cluster.ownerOf(hs.sid), h.tagOf(hs.sid), `node-made sid ${hs.sid}`);
        assert.deepEqual(hs.setCookies, [`io=${hs.sid}; Path=/; HttpOnly; SameSite=Lax`]);
        sessions.push({ sid: hs.sid, eio });
      }
      assert.equal(new Set(sessions.map((s) => h.tagOf(s.sid))).size, 3);
      // Everything else through B, which has an empty table.
      await Promise.all(
        sessions.map(async (s) => {
          const raw = new h.RawSession(B.port, s.sid, { eio: s.eio });
          await raw.connectNamespace();
          for (let k = 0; k < 3; k++) assert.equal((await raw.echo({ k })).node, h.tagOf(s.sid));
          const who = await h.request({ port: B.port, path: '/whoami', headers: { Cookie: `io=${s.sid}` } });
          assert.equal(JSON.parse(who.body).node, h.tagOf(s.sid));
          assert.equal(JSON.parse(who.body).cookie, `io=${s.sid}`, 'backend tags are forwarded unchanged');
          await raw.close();
        }),
      );
      // Real clients through a relay alternating A and B per TCP connection: each replica
      // routes the other's sessions by the nodes' own tags.
      const relay = await h.startRelay([A.port, B.port]);
      env.cleanups.push(() => relay.close());
      const results = await h.runClients(
        (i) => h.makeClient(i % 3 === 2 ? 'v2' : 'v4', relay.url, i % 3 === 0 ? { transports: ['polling'] } : {}),
        { clients: 15, messages: 6 },
      );
      await Promise.all(env.proxies.map((p) => p.stop()));
      await relay.close();
      const stats = await env.stats();
      await h.assertClientsSticky(results, env.cluster, { messages: 6 });
      const late = h.assertNodesClean(stats, results);
      for (const r of results) assert.equal(h.tagOf(r.engineIdStart), r.nodes[0]);
      const bTag = B.accessLog().filter((e) => e.via === 'tag' && e.key === 'sid');
      assert.ok(bTag.length >= sessions.length * 5, `B routed ${bTag.length} requests by the nodes' tags`);
      for (const e of bTag) assert.ok(e.target.includes(`sid=${e.backend}.`), `B: ${e.target} -> ${e.backend}`);
      assertNoLostSessions([A, B], new Set(late.map((u) => u.sid)));
    },
  );
});

test('i. control: the same relay in front of two replicas WITHOUT tags loses sessions', { timeout: 60000 }, async (t) => {
  await h.scenario(t, { proxyOpts: { extra: { access_log: { format: 'json' } }, timeouts: { shutdown_grace: '2s' } } }, async (env) => {
    const B = await env.startProxy();
    const relay = await h.startRelay([env.proxy.port, B.port]);
    env.cleanups.push(() => relay.close());
    const results = await h.runClients(
      (i) => h.makeClient('v4', relay.url, { transports: ['polling'], withCredentials: false, query: { c: String(i) } }),
      { clients: 10, messages: 3 },
    );
    await relay.close();
    await Promise.all(env.proxies.map((p) => p.stop()));
    const stats = await env.stats();
    assert.ok(results.some((r) => !r.ok), 'some clients must fail without tags');
    assert.ok(h.sum(stats, (s) => s.connectionErrors['1']) > 0, 'nodes must see Session ID unknown');
    assert.throws(() => h.assertNodesClean(stats));
    assert.ok(B.accessLog().some((e) => e.via === 'unknown-key') || env.proxy.accessLog().some((e) => e.via === 'unknown-key'));
  });
});
