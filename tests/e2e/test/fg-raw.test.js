'use strict';
// f. One raw keep-alive TCP connection carrying two sessions owned by two nodes: interleaved
//    requests, then pipelined ones (several requests in one write), answered in order.
// g. CORS preflights (OPTIONS with the sid, no cookie) reach the session's node.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const h = require('../lib/harness');

const EIO_PATH = (sid) => h.enginePath({ EIO: '4', transport: 'polling', ...(sid ? { sid } : {}) });

// Engine.IO polling over a RawConnection (no pipelining inside: one round trip at a time).
class RawConnSession {
  constructor(conn, sid, owner) {
    this.conn = conn;
    this.sid = sid;
    this.owner = owner;
    this.pending = [];
    this.ackId = 0;
    this.acks = [];
  }

  postReq(packets) {
    return h.rawRequest('POST', EIO_PATH(this.sid), {
      headers: { 'Content-Type': 'text/plain;charset=UTF-8' },
      body: h.encodePayload(packets),
    });
  }

  getReq() {
    return h.rawRequest('GET', EIO_PATH(this.sid));
  }

  echoReq(data) {
    const id = ++this.ackId;
    return { id, req: this.postReq([`42${id}${JSON.stringify(['echo', data])}`]) };
  }

  checkPostResponse(res, what) {
    assert.equal(res.status, 200, `${what}: ${res.status} ${res.body}`);
    assert.equal(res.body, 'ok', what);
  }

  // Takes a GET response; answers pings (one round trip) and keeps the other packets.
  async takePoll(res, what) {
    assert.equal(res.status, 200, `${what}: ${res.status} ${res.body}`);
    for (const p of h.decodePayload(res.body)) {
      if (p === '2') this.checkPostResponse(await this.conn.roundTrip(this.postReq(['3']), 'pong'), 'pong');
      else this.pending.push(p);
    }
  }

  async waitPacket(pred, what) {
    const deadline = Date.now() + h.T.ack;
    for (;;) {
      const i = this.pending.findIndex(pred);
      if (i >= 0) return this.pending.splice(i, 1)[0];
      assert.ok(Date.now() < deadline, `sid ${this.sid}: no ${what}`);
      await this.takePoll(await this.conn.roundTrip(this.getReq(), `GET ${what}`), `GET ${what}`);
    }
  }

  // Returns the ack reply {node, data} of echo `id`.
  async ack(id) {
    const p = await this.waitPacket((x) => x.startsWith(`43${id}[`), `ack ${id}`);
    const [reply] = JSON.parse(p.slice(2 + String(id).length));
    this.acks.push(reply.node);
    return reply;
  }
}

function whoamiReq(sid, extra = '') {
  return h.rawRequest('GET', `/whoami${extra}`, { headers: { Cookie: `io=${sid}` } });
}

function checkWhoami(res, s, what) {
  assert.equal(res.status, 200, `${what}: ${res.status} ${res.body}`);
  const who = JSON.parse(res.body);
  assert.equal(who.cookie, `io=${s.sid}`, `${what}: response belongs to another request (order)`);
  assert.equal(who.node, s.owner, `${what}: cookie io=${s.sid} reached ${who.node}, owner is ${s.owner}`);
}

async function rawHandshake(conn, cluster) {
  const res = await conn.roundTrip(h.rawRequest('GET', EIO_PATH()), 'handshake');
  return parseHandshake(res, cluster);
}

async function parseHandshake(res, cluster) {
  assert.equal(res.status, 200, `handshake: ${res.status} ${res.body}`);
  const [open] = h.decodePayload(res.body);
  assert.equal(open[0], '0');
  const { sid } = JSON.parse(open.slice(1));
  // Nodes run with cookie: true and the proxy with cookie: false: exactly the node's cookie.
  assert.deepEqual(h.headerValues(res.rawHeaders, 'set-cookie'), [`io=${sid}; Path=/; HttpOnly; SameSite=Lax`]);
  return { sid, owner: await cluster.ownerOf(sid) };
}

test('f. one keep-alive connection: interleaved and pipelined requests of sessions on two nodes', { timeout: 60000 }, async (t) => {
  await h.scenario(t, { nodeCookie: true, proxyCookie: false }, async (env) => {
    const conn = await h.RawConnection.connect(env.port);
    try {
      // Two handshakes on this one connection; round robin puts them on different nodes.
      const a = await rawHandshake(conn, env.cluster);
      const b = await rawHandshake(conn, env.cluster);
      assert.ok(a.owner && b.owner, 'owners known');
      assert.notEqual(a.owner, b.owner, 'consecutive handshakes on different nodes');
      const A = new RawConnSession(conn, a.sid, a.owner);
      const B = new RawConnSession(conn, b.sid, b.owner);

      // Interleaved, one request at a time.
      A.checkPostResponse(await conn.roundTrip(A.postReq(['40']), 'POST A 40'), 'POST A 40');
      B.checkPostResponse(await conn.roundTrip(B.postReq(['40']), 'POST B 40'), 'POST B 40');
      await A.waitPacket((p) => p.startsWith('40{'), 'A CONNECT');
      await B.waitPacket((p) => p.startsWith('40{'), 'B CONNECT');
      checkWhoami(await conn.roundTrip(whoamiReq(A.sid), 'whoami A'), A, 'whoami A');
      checkWhoami(await conn.roundTrip(whoamiReq(B.sid), 'whoami B'), B, 'whoami B');
      for (let k = 0; k < 5; k++) {
        const ea = A.echoReq(`A${k}`);
        const eb = B.echoReq(`B${k}`);
        A.checkPostResponse(await conn.roundTrip(ea.req, 'POST A echo'), 'POST A echo');
        B.checkPostResponse(await conn.roundTrip(eb.req, 'POST B echo'), 'POST B echo');
        assert.deepEqual(await B.ack(eb.id), { node: B.owner, data: `B${k}` });
        assert.deepEqual(await A.ack(ea.id), { node: A.owner, data: `A${k}` });
        checkWhoami(await conn.roundTrip(whoamiReq(k % 2 ? A.sid : B.sid), 'whoami'), k % 2 ? A : B, `whoami ${k}`);
      }

      // Pipelined: eight requests of both sessions in ONE write, answered in order.
      const ea = A.echoReq('A-pipe');
      const eb = B.echoReq('B-pipe');
      const writesBefore = conn.writes;
      conn.write(
        whoamiReq(A.sid, '?p=1'),
        whoamiReq(B.sid, '?p=2'),
        ea.req,
        eb.req,
        A.getReq(),
        B.getReq(),
        whoamiReq(B.sid, '?p=3'),
        whoamiReq(A.sid, '?p=4'),
      );
      assert.equal(conn.writes, writesBefore + 1);
      const r = [];
      for (let i = 0; i < 8; i++) r.push(await conn.next(h.T.http, `pipelined response ${i + 1}/8`));
      checkWhoami(r[0], A, 'pipelined whoami A');
      checkWhoami(r[1], B, 'pipelined whoami B');
      A.checkPostResponse(r[2], 'pipelined POST A');
      B.checkPostResponse(r[3], 'pipelined POST B');
      await A.takePoll(r[4], 'pipelined GET A');
      await B.takePoll(r[5], 'pipelined GET B');
      checkWhoami(r[6], B, 'pipelined whoami B (2)');
      checkWhoami(r[7], A, 'pipelined whoami A (2)');
      assert.deepEqual(await A.ack(ea.id), { node: A.owner, data: 'A-pipe' });
      assert.deepEqual(await B.ack(eb.id), { node: B.owner, data: 'B-pipe' });

      // A handshake in the middle of a pipeline: the proxy learns the new sid from it.
      conn.write(whoamiReq(A.sid, '?p=5'), h.rawRequest('GET', EIO_PATH()), whoamiReq(B.sid, '?p=6'));
      checkWhoami(await conn.next(h.T.http, 'whoami A before handshake'), A, 'whoami A before handshake');
      const c = await parseHandshake(await conn.next(h.T.http, 'pipelined handshake'), env.cluster);
      checkWhoami(await conn.next(h.T.http, 'whoami B after handshake'), B, 'whoami B after handshake');
      const C = new RawConnSession(conn, c.sid, c.owner);
      conn.write(whoamiReq(C.sid, '?p=7'), C.postReq(['40']), whoamiReq(A.sid, '?p=8'), C.getReq());
      checkWhoami(await conn.next(h.T.http, 'whoami C'), C, 'whoami C');
      C.checkPostResponse(await conn.next(h.T.http, 'POST C 40'), 'POST C 40');
      checkWhoami(await conn.next(h.T.http, 'whoami A (3)'), A, 'whoami A (3)');
      await C.takePoll(await conn.next(h.T.http, 'GET C'), 'GET C');
      await C.waitPacket((p) => p.startsWith('40{'), 'C CONNECT');
      const ec = C.echoReq('C1');
      C.checkPostResponse(await conn.roundTrip(ec.req, 'POST C echo'), 'POST C echo');
      assert.deepEqual(await C.ack(ec.id), { node: C.owner, data: 'C1' });

      // Close the sessions (Engine.IO close packet) on the same connection.
      for (const S of [A, B, C]) S.checkPostResponse(await conn.roundTrip(S.postReq(['1']), 'close'), 'close');
      assert.equal(conn.closed, false, 'the keep-alive connection stayed open');

      for (const S of [A, B, C]) {
        assert.ok(S.acks.length >= 1);
        assert.deepEqual(new Set(S.acks), new Set([S.owner]), `sid ${S.sid}: acks from ${S.acks}`);
      }
    } finally {
      conn.close();
    }
    await env.stopProxy();
    h.assertNodesClean(await env.stats());
  });
});

const PREFLIGHT_SESSIONS = 30;
const ORIGIN = 'http://app.example.test';

test('g. CORS preflight OPTIONS with a sid reaches the session node', { timeout: 60000 }, async (t) => {
  await h.scenario(t, { nodeCookie: false, proxyCookie: false }, async (env) => {
    // Few shared keep-alive connections: requests of different sessions share connections.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
    const sessions = [];
    for (let i = 0; i < PREFLIGHT_SESSIONS; i++) {
      const hs = await h.handshake(env.port, { agent, headers: { Origin: ORIGIN } });
      sessions.push({ sid: hs.sid });
    }
    const owners = await env.cluster.owners(sessions.map((s) => s.sid));
    for (const s of sessions) s.owner = owners.get(s.sid);
    assert.equal(new Set(sessions.map((s) => s.owner)).size, 3, 'sessions spread over the 3 nodes');

    await Promise.all(
      h.shuffled(sessions).map(async (s) => {
        for (const method of ['POST', 'GET']) {
          const res = await h.request({
            port: env.port,
            method: 'OPTIONS',
            path: EIO_PATH(s.sid),
            agent,
            headers: {
              Origin: ORIGIN,
              'Access-Control-Request-Method': method,
              'Access-Control-Request-Headers': 'content-type',
            },
          });
          assert.equal(res.status, 204, `preflight ${s.sid}: ${res.status} ${res.body}`);
          assert.equal(res.headers['access-control-allow-origin'], ORIGIN);
          assert.equal(res.headers['access-control-allow-credentials'], 'true');
        }
        // The session is alive on its node: connect and echo, as a browser would after it.
        const raw = new h.RawSession(env.port, s.sid, { agent, headers: { Origin: ORIGIN } });
        await raw.connectNamespace();
        s.acks = [];
        for (let k = 0; k < 3; k++) s.acks.push((await raw.echo({ k })).node);
        await raw.close();
      }),
    );
    agent.destroy();
    await env.stopProxy();
    const stats = await env.stats();
    for (const s of sessions) {
      assert.deepEqual(new Set(s.acks), new Set([s.owner]), `sid ${s.sid}: acks from ${s.acks}, owner ${s.owner}`);
      assert.equal(stats[s.owner].optionsBySid[s.sid], 2, `owner ${s.owner} saw the 2 preflights of ${s.sid}`);
    }
    assert.equal(h.sum(stats, (x) => x.ownedSidByMethod.OPTIONS), 2 * PREFLIGHT_SESSIONS);
    assert.equal(h.sum(stats, (x) => x.engineRequestsByMethod.OPTIONS), 2 * PREFLIGHT_SESSIONS);
    h.assertNodesClean(stats);
  });
});
