'use strict';
// k. Balancing policies for new sessions (`balance:` and backend weights).
//    least_conn: a node already holding many sessions and tunnels gets no new ones.
//    hash: the same client address (127.0.0.x, bound with localAddress) lands on the same
//          node, on every replica; under load, no node exceeds 1.25x its share.
//    random: spreads over all nodes.
//    weights: 3/1/1 is exact for round robin; weight 0 takes no new sessions but keeps its own.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/harness');

const GRACE = { shutdown_grace: '2s' };

// `n` connected clients that stay until closed; each has answered one `echosid`.
async function holdClients(n, factory) {
  const clients = await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const c = factory(i);
      await h.once(c.socket, 'connect', h.T.connect, `holder ${i} connect`, ['connect_error']);
      c.reply = await c.emitEventAck('echosid', { holder: i });
      return c;
    }),
  );
  return {
    clients,
    nodes: clients.map((c) => c.reply.node),
    close: () => clients.forEach((c) => c.close()),
  };
}

const countBy = (list) => list.reduce((m, x) => ((m[x] = (m[x] || 0) + 1), m), {});

test('k. least_conn: a node holding many sessions and tunnels gets no new sessions', { timeout: 120000 }, async (t) => {
  const proxyOpts = { extra: { balance: 'least_conn', admin: { listen: '127.0.0.1:0' } }, timeouts: GRACE };
  await h.scenario(t, { proxyOpts }, async (env) => {
    const p = env.proxy;
    // Load n1: with n2 and n3 draining, 24 websocket clients all land on n1 and stay.
    for (const n of ['n2', 'n3']) assert.equal((await p.admin('PUT', `/backends/${n}/state`, { body: 'drain' })).status, 200);
    const holders = await holdClients(24, (i) => h.makeClient('v4', env.url, { transports: ['websocket'], query: { hold: String(i) } }));
    env.cleanups.push(holders.close);
    assert.deepEqual(countBy(holders.nodes), { n1: 24 });
    let b = await p.backends();
    assert.equal(b.n1.sessions, 24, JSON.stringify(b.n1));
    assert.equal(b.n1.tunnels, 24, JSON.stringify(b.n1));
    for (const n of ['n2', 'n3']) assert.equal((await p.admin('PUT', `/backends/${n}/state`, { body: 'ready' })).status, 200);

    // 30 polling clients (load: session + held poll each): all go to n2 and n3, evenly.
    const results = await h.runClients((i) => h.makeClient('v4', env.url, { transports: ['polling'], query: { c: String(i) } }));
    await h.assertClientsSticky(results, env.cluster, { expectNodes: 2 });
    const spread = countBy(results.map((r) => r.nodes[0]));
    t.diagnostic(`new sessions: ${JSON.stringify(spread)}`);
    assert.equal(spread.n1 || 0, 0, `least_conn sent ${spread.n1} new sessions to the loaded n1`);
    assert.ok(Math.abs((spread.n2 || 0) - (spread.n3 || 0)) <= 4, `n2/n3 uneven: ${JSON.stringify(spread)}`);
    // The held websockets are intact.
    for (const c of holders.clients) assert.equal((await c.emitEventAck('echosid', 'again')).node, 'n1');
    b = await p.backends();
    assert.equal(b.n1.tunnels, 24);
    holders.close();
    await env.stopProxy();
    h.assertNodesClean(await env.stats(), results);
  });
});

test('k. hash: same client address -> same node (also on another replica); bounded loads', { timeout: 120000 }, async (t) => {
  const proxyOpts = { extra: { balance: 'hash', access_log: { format: 'json' } }, timeouts: GRACE };
  await h.scenario(t, { proxyOpts }, async (env) => {
    const A = env.proxy;
    const B = await env.startProxy();
    const addrs = Array.from({ length: 12 }, (_, i) => `127.0.0.${i + 2}`);
    // No load (one request at a time, no sessions): a pure function of the address.
    const mapping = {};
    const jobs = h.shuffled(addrs.flatMap((a) => [a, a, a, a]));
    for (const a of jobs) {
      const res = await h.request({ port: A.port, path: '/whoami', localAddress: a });
      const node = JSON.parse(res.body).node;
      if (mapping[a] === undefined) mapping[a] = node;
      assert.equal(node, mapping[a], `address ${a}: ${node}, earlier ${mapping[a]}`);
    }
    t.diagnostic(`address -> node: ${JSON.stringify(mapping)}`);
    assert.ok(new Set(Object.values(mapping)).size >= 2, `12 addresses all hashed to ${JSON.stringify(mapping)}`);
    for (const e of A.accessLog()) assert.ok(addrs.includes(e.client), `access log client ${e.client}`);
    // Another replica (own process, same config) computes the same mapping.
    for (const a of h.shuffled(addrs)) {
      const res = await h.request({ port: B.port, path: '/whoami', localAddress: a });
      assert.equal(JSON.parse(res.body).node, mapping[a], `replica B, address ${a}`);
    }
    // Handshakes (they add load: the sessions stay in the table). Each goes to its address's
    // node unless that node is at its bound ceil(1.25 * (load + 1) / 3); then elsewhere,
    // below the bound.
    const load = { n1: 0, n2: 0, n3: 0 };
    let onMapped = 0;
    for (const a of [...h.shuffled(addrs), ...h.shuffled(addrs)]) {
      const total = load.n1 + load.n2 + load.n3;
      const limit = Math.ceil((1.25 * (total + 1)) / 3);
      const hs = await h.handshake(A.port, { localAddress: a });
      const node = await env.cluster.ownerOf(hs.sid);
      if (load[mapping[a]] < limit) {
        assert.equal(node, mapping[a], `handshake from ${a}: ${node}, mapped ${mapping[a]} (loads ${JSON.stringify(load)})`);
        onMapped++;
      } else {
        assert.notEqual(node, mapping[a], `handshake from ${a}: ${mapping[a]} is at its bound ${limit} (loads ${JSON.stringify(load)})`);
        assert.ok(load[node] < limit, `handshake from ${a} went to ${node} over its bound ${limit} (loads ${JSON.stringify(load)})`);
      }
      load[node]++;
    }
    t.diagnostic(`handshakes on their address's node: ${onMapped}/24; loads ${JSON.stringify(load)}`);
    assert.ok(onMapped >= 12);

    // 30 real clients, all from 127.0.0.1 (one ring position): sticky, and the bound spreads
    // them over the three nodes.
    const results = await h.runClients((i) => h.makeClient('v4', B.url, { transports: ['polling'], query: { c: String(i) } }));
    await Promise.all(env.proxies.map((p) => p.stop()));
    await h.assertClientsSticky(results, env.cluster);
    const spread = countBy(results.map((r) => r.nodes[0]));
    t.diagnostic(`real clients from one address: ${JSON.stringify(spread)}`);
    for (const n of ['n1', 'n2', 'n3']) assert.ok((spread[n] || 0) <= Math.ceil(1.25 * 2 * 30 / 3) && (spread[n] || 0) >= 3, `bounded loads: ${JSON.stringify(spread)}`);
    h.assertNodesClean(await env.stats(), results);
  });
});

test('k. random: new sessions spread over all nodes, sticky afterwards', { timeout: 120000 }, async (t) => {
  await h.scenario(t, { proxyOpts: { extra: { balance: 'random' }, timeouts: GRACE } }, async (env) => {
    const owners = [];
    for (let i = 0; i < 30; i++) owners.push(await env.cluster.ownerOf((await h.handshake(env.port)).sid));
    const spread = countBy(owners);
    t.diagnostic(`30 handshakes: ${JSON.stringify(spread)} (${owners.join(' ')})`);
    for (const n of ['n1', 'n2', 'n3']) assert.ok((spread[n] || 0) >= 5, `random: ${JSON.stringify(spread)}`);
    // Not round robin in disguise: a period-3 sequence over 30 picks has odds ~(1/6)^9.
    assert.ok(owners.some((o, i) => i >= 3 && o !== owners[i - 3]), `periodic: ${owners.join(' ')}`);
    const results = await h.runClients((i) => h.makeClient(i % 3 ? 'v4' : 'v2', env.url, { query: { c: String(i) } }));
    await env.stopProxy();
    await h.assertClientsSticky(results, env.cluster);
    h.assertNodesClean(await env.stats(), results);
  });
});

test('k. weights: 3/1/1 round robin is exact; weight 0 takes no new sessions but keeps its own', { timeout: 120000 }, async (t) => {
  await h.scenario(t, { proxyOpts: { timeouts: GRACE } }, async (env) => {
    const W = await env.startProxy({ backends: (bs) => bs.map((b) => ({ ...b, weight: b.name === 'n1' ? 3 : 1 })), label: 'stickyd-311' });
    const owners = [];
    for (let i = 0; i < 25; i++) owners.push(await env.cluster.ownerOf((await h.handshake(W.port)).sid));
    assert.deepEqual(countBy(owners), { n1: 15, n2: 5, n3: 5 }, owners.join(' '));
    // Smooth: never more than two n1 in a row (a a b a c, repeated).
    assert.ok(!/n1 n1 n1/.test(owners.join(' ')), owners.join(' '));

    // Weight 0 on n3 in replica Z (tags: Z routes sessions it never saw). Clients connect
    // through X (all weights 1), then the relay sends everything to Z.
    const tagged = { extra: { sticky: { tag_sids: true }, access_log: { format: 'json' } } };
    const X = await env.startProxy({ ...tagged, label: 'stickyd-X' });
    const Z = await env.startProxy({ ...tagged, backends: (bs) => bs.map((b) => ({ ...b, weight: b.name === 'n3' ? 0 : 1 })), label: 'stickyd-Z-n3w0' });
    const relay = await h.startRelay([X.port]);
    env.cleanups.push(() => relay.close());
    const connected = h.counter();
    const early = h.runFaultClients(
      (i) => {
        const c = h.makeClient('v4', relay.url, { transports: ['polling'], query: { c: `old${i}` } });
        c.socket.once('connect', () => connected.add());
        return c;
      },
      { clients: 15, messages: 10 },
    );
    await connected.reach(15, h.T.connect, 'early clients connected through X');
    relay.setTargets([Z.port]);
    const late = await h.runClients((i) => h.makeClient('v4', relay.url, { query: { c: `new${i}` } }), { clients: 15 });
    const earlyResults = await early;
    await relay.close();
    await Promise.all(env.proxies.map((p) => p.stop()));
    const stats = await env.stats();
    const finals = [...late, ...earlyResults.map((r) => ({ engineIdEnd: r.sessions[r.sessions.length - 1] }))];
    h.assertNodesClean(stats, finals, { nodeSid: h.untag });
    assert.deepEqual(earlyResults.filter((r) => !r.ok).map((r) => r.error), []);
    const earlyOn = countBy(earlyResults.map((r) => r.acks[0].node));
    assert.ok(earlyOn.n3 >= 3, `early sessions on n3: ${JSON.stringify(earlyOn)}`);
    for (const r of earlyResults) {
      assert.equal(new Set(r.acks.map((a) => a.sid)).size, 1, `early client ${r.index}: one session`);
      assert.equal(new Set(r.acks.map((a) => a.node)).size, 1, `early client ${r.index}: one node`);
      assert.equal(r.sessions.length, 1);
    }
    await h.assertClientsSticky(late, env.cluster, { nodeSid: h.untag, expectNodes: 2 });
    assert.ok(!late.some((r) => r.nodes[0] === 'n3'), 'weight 0: no new session on n3');
    // Z routed the n3 sessions (weight 0 or not) and never balanced anything to n3.
    const z = Z.accessLog();
    assert.ok(z.filter((e) => e.backend === 'n3' && e.via === 'tag' && e.status === 200).length >= 10, 'Z served n3 sessions by tag');
    assert.deepEqual(z.filter((e) => e.backend === 'n3' && e.via !== 'tag'), [], 'Z chose n3 for something new');
  });
});
