'use strict';
// l. Failover: a node SIGKILLed in the middle of a run of real clients (reconnection on).
//    Its clients re-handshake onto the survivors and finish; the other clients notice
//    nothing; stickyd marks the node down (active checks, fall 2) and answers its sids with
//    Engine.IO's own 400 code 1 (redispatch) or 503 (strict); the node restarted on its port
//    comes back up after `rise` checks and takes new sessions again.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/harness');

const HEALTH = { interval: '500ms', timeout: '400ms', rise: 2, fall: 2, path: '/whoami' };
const SESSION_UNKNOWN = '{"code":1,"message":"Session ID unknown"}';
const ORIGIN = 'http://app.example.test';
const RECONNECT = { reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 300, randomizationFactor: 0 };

function proxyOpts(sticky = {}) {
  return {
    extra: { health: HEALTH, admin: { listen: '127.0.0.1:0' }, access_log: true, ...(Object.keys(sticky).length ? { sticky } : {}) },
    timeouts: { shutdown_grace: '2s', connect: '1s' },
  };
}

const upLine = (name) => new RegExp(` info backend up backend=${name}\\b`);
const downLine = (name) => new RegExp(` warn backend down backend=${name}\\b`);

async function allUp(p) {
  for (const n of ['n1', 'n2', 'n3']) await p.waitForLine(upLine(n), 5000 * h.SCALE, `${n} up at start`);
}

// Raw polling sessions (connected to "/") until `count` of them are on `node`.
async function sessionsOn(env, node, count, opts = {}) {
  const out = [];
  for (let i = 0; out.length < count && i < 6 * count; i++) {
    const hs = await h.handshake(env.port, opts);
    const raw = new h.RawSession(env.port, hs.sid);
    await raw.connectNamespace();
    if ((await raw.echo('hello')).node === node) out.push(raw);
    else await raw.close();
  }
  assert.equal(out.length, count, `no ${count} sessions on ${node}`);
  return out;
}

test('l. node SIGKILLed mid-run: its clients move to the survivors, the others see nothing; back up after rise', { timeout: 120000 }, async (t) => {
  await h.scenario(t, { proxyOpts: proxyOpts() }, async (env) => {
    const p = env.proxy;
    await allUp(p);
    const doomed = await sessionsOn(env, 'n2', 3);

    const N = 30;
    const MESSAGES = 12;
    const kinds = Array.from({ length: N }, (_, i) => (i < 12 ? 'v4-polling' : i < 21 ? 'v4-default' : 'v2'));
    const acks = h.counter();
    const run = h.runFaultClients(
      (i) => {
        const q = { query: { c: String(i) }, ...RECONNECT };
        if (kinds[i] === 'v4-polling') return h.makeClient('v4', env.url, { ...q, transports: ['polling'] });
        return h.makeClient(kinds[i] === 'v2' ? 'v2' : 'v4', env.url, q);
      },
      { clients: N, messages: MESSAGES, gapMin: 100, gapMax: 200, onAck: () => acks.add() },
    );
    await acks.reach((N * MESSAGES) / 3, 30000 * h.SCALE, 'a third of the acks');
    const before = await env.stats(); // n2's sids, before they die with it
    const killedAt = Date.now();
    await env.cluster.byName('n2').kill();
    const downLog = await p.waitForLine(downLine('n2'), 5000 * h.SCALE, 'n2 marked down');
    const downAfter = Date.now() - killedAt;
    t.diagnostic(`n2 down ${downAfter} ms after SIGKILL: ${downLog}`);

    // The dead node's sessions: stickyd answers for it, exactly as engine.io would, with CORS.
    for (const raw of doomed) {
      const res = await h.request({ port: p.port, path: h.enginePath({ EIO: '4', transport: 'polling', sid: raw.sid }), headers: { Origin: ORIGIN } });
      assert.equal(res.status, 400, `sid ${raw.sid} of dead n2: ${res.status} ${res.body}`);
      assert.equal(res.body, SESSION_UNKNOWN);
      assert.equal(res.headers['access-control-allow-origin'], ORIGIN);
      assert.equal(res.headers['access-control-allow-credentials'], 'true');
      // Without a sid (cookie only), the request is served by a healthy node.
      const who = await h.request({ port: p.port, path: '/whoami', headers: { Cookie: `io=${raw.sid}` } });
      assert.equal(who.status, 200);
      assert.notEqual(JSON.parse(who.body).node, 'n2');
    }

    const results = await run;
    const failed = results.filter((r) => !r.ok);
    assert.deepEqual(failed.map((r) => `${r.index} ${r.kind}: ${r.error}`), [], 'every client finished its acks');

    // Back on its port: up after `rise` (2) successful checks, 500 ms apart.
    const restartedAt = Date.now();
    await env.cluster.restart('n2');
    const upFrom = p.stderr.length;
    await p.waitForLine(upLine('n2'), 5000 * h.SCALE, 'n2 up again', upFrom);
    const upAfter = Date.now() - restartedAt;
    t.diagnostic(`n2 up ${upAfter} ms after its restart`);
    assert.ok(upAfter >= 400, `n2 up after ${upAfter} ms: fewer than rise=2 checks?`);
    const backends = await p.backends();
    assert.equal(backends.n2.health, 'up', JSON.stringify(backends.n2));
    const owners = [];
    for (let i = 0; i < 6; i++) owners.push(await env.cluster.ownerOf((await h.handshake(p.port)).sid));
    assert.ok(owners.includes('n2'), `new sessions after n2 came back: ${owners}`);
    const metrics = await p.metrics();
    await env.stopProxy();
    const stats = await env.stats();

    // Owners: n2's before the kill, every node's now.
    const ownerOf = (sid) => {
      if (before.n2.sids.includes(sid)) return 'n2';
      return Object.values(stats).find((s) => s.sids.includes(sid))?.node;
    };
    const lastBefore = (r) => r.acks.filter((a) => a.at < killedAt).pop();
    const onN2 = results.filter((r) => !lastBefore(r) || lastBefore(r).node === 'n2');
    const spared = results.filter((r) => !onN2.includes(r));
    t.diagnostic(`clients on n2 at the kill: ${onN2.length}; others: ${spared.length}`);
    assert.ok(onN2.length >= 5 && spared.length >= 10, 'round robin put clients on every node');
    for (const r of results) {
      for (const a of r.acks) assert.equal(a.node, ownerOf(a.sid), `client ${r.index} ack ${a.k}: from ${a.node}, sid ${a.sid} of ${ownerOf(a.sid)}`);
    }
    for (const r of spared) {
      assert.equal(r.sessions.length, 1, `client ${r.index} (${r.kind}) on ${r.acks[0].node} re-handshook: ${r.disconnects}`);
      assert.deepEqual(r.disconnects.filter((d) => d !== 'io client disconnect'), [], `client ${r.index}: disconnects`);
      assert.deepEqual(r.connectErrors, [], `client ${r.index}: connect errors`);
      assert.equal(new Set(r.acks.map((a) => a.node)).size, 1);
    }
    for (const r of onN2) {
      const last = r.acks[r.acks.length - 1];
      assert.notEqual(last.node, 'n2', `client ${r.index} still on n2 at the end`);
      if (r.acks.some((a) => a.node === 'n2')) assert.ok(r.sessions.length >= 2, `client ${r.index} moved without a new session?`);
    }
    // Survivors: no request for a sid they did not create, no Session ID unknown but a
    // client's own shutdown race (see i-stateless); the restarted n2 never got an old sid.
    const unknown = h.classifySessionUnknown(stats);
    assert.deepEqual(unknown.other, [], 'Session ID unknown for a live session');
    for (const u of unknown.late) assert.equal(u.closedReason, 'transport close', JSON.stringify(u));
    for (const s of Object.values(stats)) assert.equal(s.foreign, 0, `node ${s.node}: foreign ${JSON.stringify(s.foreignDetails.slice(0, 3))}`);

    // What stickyd says it did.
    const log = p.textAccessLog();
    // (the proxy's own answer: no backend; logged outcome=done, unlike other local answers)
    const local400 = log.filter((e) => e.status === '400' && e.backend === '-');
    assert.ok(local400.length >= doomed.length, `access log: ${local400.length} local 400s`);
    t.diagnostic(`stickyd answered ${local400.length} requests of dead sessions with 400 code 1 (${local400.filter((e) => /[?&]c=/.test(e.target)).length} of real clients); 502s: ${log.filter((e) => e.status === '502').length}`);
    for (const raw of doomed) assert.ok(local400.some((e) => e.target.includes(`sid=${raw.sid}`)), `no local 400 logged for ${raw.sid}`);
    assert.ok(log.some((e) => e.via === 'redispatch'), 'a cookie-only request of a dead session was redispatched');
    assert.ok(p.stderr.some((l) => /session's backend gone/.test(l)));
    assert.ok(metrics.get('stickyd_local_responses_total', { code: '400' }) >= doomed.length, 'metrics: local 400s');
    assert.equal(metrics.get('stickyd_backend_health_transitions_total', { backend: 'n2', to: 'down' }), 1);
    assert.ok(metrics.get('stickyd_backend_health_transitions_total', { backend: 'n2', to: 'up' }) >= 2, 'up at start and after the restart');
    assert.equal(metrics.get('stickyd_backend_health_transitions_total', { backend: 'n1', to: 'down' }), 0);
  });
});

test('l. on_down strict: the dead node\'s sessions get 503, others and new sessions are served', { timeout: 60000 }, async (t) => {
  await h.scenario(t, { proxyOpts: proxyOpts({ on_down: 'strict' }) }, async (env) => {
    const p = env.proxy;
    await allUp(p);
    const [dead] = await sessionsOn(env, 'n2', 1);
    const [alive] = await sessionsOn(env, 'n1', 1);
    await env.cluster.byName('n2').kill();
    await p.waitForLine(downLine('n2'), 5000 * h.SCALE, 'n2 marked down');
    const bySid = await h.request({ port: p.port, path: h.enginePath({ EIO: '4', transport: 'polling', sid: dead.sid }) });
    assert.equal(bySid.status, 503, `sid of dead n2: ${bySid.status} ${bySid.body}`);
    const byCookie = await h.request({ port: p.port, path: '/whoami', headers: { Cookie: `io=${dead.sid}` } });
    assert.equal(byCookie.status, 503, `cookie of dead n2: ${byCookie.status} ${byCookie.body}`);
    assert.equal((await alive.echo('still here')).node, 'n1');
    for (let i = 0; i < 4; i++) {
      const hs = await h.handshake(p.port);
      assert.notEqual(await env.cluster.ownerOf(hs.sid), 'n2');
    }
    await alive.close();
    const b = await p.backends();
    assert.equal(b.n2.health, 'down');
    assert.equal(b.n1.health, 'up');
  });
});
