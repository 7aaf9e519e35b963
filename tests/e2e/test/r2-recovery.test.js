'use strict';
// r2. Socket.IO connection state recovery across the cluster (issue 17). Three nodes with
//     connectionStateRecovery (in-memory adapter: a session recovers only on its node) and
//     stickyd with `sticky.reconnect_hint: prev_sid`.
//     - socket.io-client v4, polling-only, websocket-only and upgrading: one client, then 20
//       at once, each losing its transport once: with the README's snippet every one recovers
//       (socket.recovered, same socket.id, the emits it missed delivered); the rate without
//       the snippet is printed. The hint never reaches a node; the handshakes it routed are
//       logged via=hint.
//     - A hint naming a drained node, a dead node, an unknown sid, a malformed value: the
//       client connects (balanced, not recovered), no error. A dead node that stickyd has
//       no health checks for: its failed connect is retried on another node at once.
//     - With tag_sids the hint routes by its tag, no table needed: clients cut by a stickyd
//       killed and restarted in their back recover through the new process.
//     (socket.io-client 2.x has no connection state recovery: nothing to test there.)

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/harness');
const rec = require('../lib/recovery-client');
const { io } = require('socket.io-client');

const HINT = { sticky: { reconnect_hint: 'prev_sid' } };
const CLIENTS = 20;
// Every wait of a client bounded like the harness's (E2E_TIME_SCALE).
const dropOnce = (url, kind, index, opts = {}) => rec.dropOnce(io, url, kind, index, { ms: h.T.connect, ...opts });
const dropMany = (url, kind, n, opts = {}) => rec.dropMany(io, url, kind, n, { ms: h.T.connect, ...opts });

function brief(results) {
  return results
    .filter((r) => !rec.recovered(r) || (r.gaps && r.gaps.length))
    .slice(0, 5)
    .map((r) => JSON.stringify(r))
    .join('\n');
}

function assertAllRecovered(results, what) {
  const failed = results.filter((r) => !rec.recovered(r));
  assert.equal(failed.length, 0, `${what}: ${failed.length}/${results.length} did not recover:\n${brief(results)}`);
  for (const r of results) {
    assert.deepEqual(r.connectErrors, [], `${what}: client ${r.index} connect errors`);
    assert.deepEqual(r.gaps, [], `${what}: client ${r.index} missed tocks ${JSON.stringify(r.gaps)}`);
  }
}

function assertHintNeverForwarded(stats) {
  for (const s of Object.values(stats)) assert.equal(s.queryKeys.prev_sid, undefined, `node ${s.node} saw prev_sid: ${JSON.stringify(s.queryKeys)}`);
}

test('r2. connection state recovery: with the reconnect hint every client recovers on its node; without it, some', { timeout: 240000 }, async (t) => {
  const proxyOpts = { extra: { ...HINT, access_log: { format: 'json' } } };
  await h.scenario(t, { nodeRecovery: true, proxyOpts }, async (env) => {
    const rates = [];
    for (const kind of Object.keys(rec.KINDS)) {
      const one = await dropOnce(env.url, kind, 0);
      assertAllRecovered([one], `${kind}, one client`);
      const many = await dropMany(env.url, kind, CLIENTS);
      assertAllRecovered(many, `${kind}, ${CLIENTS} at once`);
      assert.equal(new Set(many.map((r) => r.node1)).size, 3, `${kind}: sessions on every node`);
      const without = await dropMany(env.url, kind, CLIENTS, { hint: false });
      const failed = without.filter((r) => !r.ok);
      assert.equal(failed.length, 0, `${kind} without the hint: clients failed:\n${brief(failed)}`);
      const line = `${kind}: ${many.filter(rec.recovered).length}/${CLIENTS} recovered with the hint, ${without.filter(rec.recovered).length}/${CLIENTS} without`;
      rates.push(line);
      t.diagnostic(line);
    }
    await env.stopProxy();
    assertHintNeverForwarded(await env.stats());
    const stats = env.lastStats;
    const recoveredOnNodes = h.sum(stats, (s) => s.ioRecovered);
    t.diagnostic(`nodes: ${recoveredOnNodes} recovered connections (${rates.join('; ')})`);
    // Every handshake that carried the hint to a live, ready node went there: logged via=hint.
    const hinted = env.proxy.accessLog().filter((e) => /[?&]prev_sid=/.test(e.target) && !/[?&]sid=/.test(e.target));
    assert.ok(hinted.length >= 3 * (CLIENTS + 1), `${hinted.length} hinted handshakes logged`);
    const notHint = hinted.filter((e) => e.via !== 'hint');
    assert.deepEqual(notHint.slice(0, 5), [], 'a hinted handshake not routed by its hint');
  });
});

test('r2. a hint naming a drained node, a dead node, an unknown sid or a malformed value: balanced, no error', { timeout: 180000 }, async (t) => {
  const TOKEN = 'r2-recovery-admin-token';
  const HEALTH = { interval: '300ms', timeout: '250ms', rise: 2, fall: 2, path: '/whoami' };
  const proxyOpts = { extra: { ...HINT, admin: { listen: '127.0.0.1:0', token: TOKEN }, health: HEALTH, access_log: { format: 'json' } } };
  await h.scenario(t, { nodeRecovery: true, proxyOpts }, async (env) => {
    const p = env.proxy;
    const setState = async (name, state) => {
      const res = await p.admin('PUT', `/backends/${name}/state`, { body: state, token: TOKEN });
      assert.equal(res.status, 200, res.body);
    };
    const notRecovered = (r, what) => {
      assert.ok(r.ok, `${what}: ${r.error}`);
      assert.deepEqual(r.connectErrors, [], `${what}: connect errors`);
      assert.equal(r.recovered, false, `${what}: recovered`);
      assert.notEqual(r.node2, r.node1, `${what}: reconnected to ${r.node2}`);
      assert.notEqual(r.id2, r.id1, `${what}: same socket id`);
    };

    // Drained: the node keeps its sessions but takes no new one, recovered or not.
    for (const kind of Object.keys(rec.KINDS)) {
      let drained = null;
      const r = await dropOnce(env.url, kind, 0, {
        reconnectionDelay: 500,
        drop: async (c, socket) => {
          drained = c.node1;
          await setState(drained, 'drain');
          socket.io.engine.close();
        },
      });
      await setState(drained, 'ready');
      notRecovered(r, `${kind}, hint to the drained ${drained}`);
    }

    // Dead: the node is killed under the client (its transport breaks); stickyd's health
    // checks see it down before the client reconnects.
    {
      let dead = null;
      const r = await dropOnce(env.url, 'websocket-only', 0, {
        reconnectionDelay: 3000,
        drop: async (c) => {
          dead = c.node1;
          await env.cluster.byName(dead).kill();
        },
        beforeReconnect: () => h.until(async () => (await p.backends(TOKEN))[dead].health === 'down', 10000, `${dead} down`),
      });
      notRecovered(r, `hint to the dead ${dead}`);
      assert.ok(r.disconnects.length >= 1);
      await env.cluster.restart(dead);
      await h.until(async () => (await p.backends(TOKEN))[dead].health === 'up', 10000, `${dead} up again`);
    }

    // Unknown and malformed hints, from the first handshake on: balanced, no error.
    const values = ['AAAAAAAAAAAAAAAAAAAA', 'n9.xyz', '', '%zz', '..%2F..', '\u00e9\u{1F600}', 'x'.repeat(300), 'a b&c=d'];
    const seen = [];
    for (const [i, v] of values.entries()) {
      const c = h.makeClient('v4', env.url, { query: { prev_sid: v } });
      try {
        await h.once(c.socket, 'connect', h.T.connect, `client with prev_sid=${JSON.stringify(v)}`, ['connect_error']);
        const who = await c.socket.timeout(h.T.ack).emitWithAck('whoami');
        assert.equal(who.recovered, false);
        seen.push(who.node);
      } finally {
        c.close();
      }
      // Raw bytes a client library would have encoded: not even valid percent-encoding.
      const raw = await h.request({ port: p.port, path: `/socket.io/?EIO=4&transport=polling&prev_sid=${['%', '%zz', '&&', '=', '%00', `n1.${'%'.repeat(i)}`][i % 6]}&t=r${i}` });
      assert.equal(raw.status, 200, `raw handshake ${i}: ${raw.status} ${raw.body}`);
      assert.match(raw.body, /^0\{"sid":/);
    }
    assert.ok(new Set(seen).size >= 2, `unknown hints balanced: ${seen}`);
    const log = p.accessLog().filter((e) => /[?&]prev_sid=/.test(e.target) && !/[?&]sid=/.test(e.target));
    assert.deepEqual(log.filter((e) => e.via === 'hint').map((e) => e.target), [], 'only a live, ready node is hinted');
    assert.deepEqual(log.filter((e) => e.status !== 200 && e.status !== 101).map((e) => `${e.status} ${e.target}`), []);

    await env.stopProxy();
    assertHintNeverForwarded(await env.stats());
  });
});

test('r2. a hint naming a dead node that stickyd has no health checks for: the failed connect is retried on another node, no error', { timeout: 60000 }, async (t) => {
  // Without active checks stickyd learns that a node is dead only from its traffic; a hinted
  // handshake whose connect fails is balanced to another node at once (nothing was sent yet),
  // so the client sees no 502.
  await h.scenario(t, { nodeRecovery: true, proxyOpts: { extra: HINT } }, async (env) => {
    for (const kind of ['websocket-only', 'polling-only']) {
      const r = await dropOnce(env.url, kind, 0, { drop: (c) => env.cluster.byName(c.node1).kill() });
      assert.ok(r.ok, `${kind}: ${r.error}`);
      assert.equal(r.recovered, false);
      assert.notEqual(r.node2, r.node1);
      assert.equal(r.connectErrors.length, 0, `${kind}: ${r.connectErrors.length} failed attempts: ${r.connectErrors}`);
      t.diagnostic(`${kind}: hint to the dead ${r.node1}: ${r.connectErrors.length} failed attempts, then connected to ${r.node2}`);
      await env.cluster.restart(r.node1);
    }
  });
});

test('r2. with tag_sids the hint needs no table: clients cut by a stickyd restart recover through the new process', { timeout: 120000 }, async (t) => {
  const N = 6;
  const proxyOpts = { extra: { sticky: { reconnect_hint: 'prev_sid', tag_sids: true }, access_log: { format: 'json' } } };
  await h.scenario(t, { nodeRecovery: true, proxy: false, proxyOpts }, async (env) => {
    let p = await env.startProxy();
    const port = p.port;
    for (const kind of Object.keys(rec.KINDS)) {
      // Once every client is ready (tocks, `later` acked), stickyd is killed (every transport
      // breaks) and a new one starts on the same port, with an empty table, before anyone
      // reconnects. A node notices a cut websocket at once, a cut poll possibly only when its
      // ping times out (pingInterval + pingTimeout, 4 s here; reconnecting after 1 s, polling
      // clients came back to their node unrecovered): a session the node has not closed yet
      // cannot be recovered, so polling clients wait longer before reconnecting.
      let arrived = 0;
      let restarted;
      const barrier = new Promise((resolve) => (restarted = resolve));
      const results = await dropMany(`http://${h.HOST}:${port}`, kind, N, {
        ...(kind === 'polling-only' ? { reconnectionDelay: 5000, jitter: 0 } : { reconnectionDelay: 1000 }),
        drop: async () => {
          if (++arrived === N) {
            await p.kill();
            p = await env.startProxy({ listenPort: port });
            restarted();
          }
          await barrier;
        },
      });
      assertAllRecovered(results, `${kind}, across a stickyd restart`);
      assert.ok(new Set(results.map((r) => r.node1)).size >= 2, `${kind}: on ${results.map((r) => r.node1)}`);
      t.diagnostic(`${kind}: ${results.filter(rec.recovered).length}/${N} recovered across a stickyd restart (tag_sids)`);
    }
    const hinted = env.proxies.flatMap((x) => x.accessLog()).filter((e) => /[?&]prev_sid=/.test(e.target) && !/[?&]sid=/.test(e.target));
    assert.ok(hinted.length >= 3 * N && hinted.every((e) => e.via === 'hint'), JSON.stringify(hinted.filter((e) => e.via !== 'hint').slice(0, 3)));
    await Promise.all(env.proxies.map((x) => x.stop()));
    assertHintNeverForwarded(await env.stats());
  });
});
