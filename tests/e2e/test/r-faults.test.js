'use strict';
// r. Faults on both sides of stickyd, and what they leave behind: stickyd's open file
//    descriptors (/proc/<pid>/fd) are counted after startup and one warm-up request; after
//    every fault they must come back to exactly that baseline (bounded condition wait:
//    pooled backend connections close after timeouts.backend_keepalive = 1s).
//
//    Two stickyd processes (same binary, each with its own baseline):
//    - `main` in front of 3 real Socket.IO nodes: a node SIGKILLed under websocket tunnels,
//      a client vanishing in the middle of a held poll, and in the middle of an upload; at the
//      end a fresh batch of real clients;
//    - `raw` in front of tiny raw TCP backends reached by an HAProxy-style SERVERID cookie
//      (weight 0: no new sessions): a backend that closes mid-response, one that accepts and
//      never answers (timeouts.server 1s -> 504), a closed port (-> 502).

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const h = require('../lib/harness');

const FD_SETTLE_MS = 5000 * h.SCALE; // > backend_keepalive (1s) + lingering closes
const POLL_MS = 50;

// ---------------------------------------------------------------------------------------
// /proc helpers

function fdList(proxy) {
  const dir = `/proc/${proxy.child.pid}/fd`;
  return fs.readdirSync(dir).map((fd) => {
    try {
      return `${fd}->${fs.readlinkSync(`${dir}/${fd}`)}`;
    } catch {
      return `${fd}->?`;
    }
  });
}

function fdCount(proxy) {
  return fs.readdirSync(`/proc/${proxy.child.pid}/fd`).length;
}

function rssKiB(proxy) {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${proxy.child.pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

// Waits (polling every 50 ms, bounded) until the fd count is back at the baseline, then
// asserts it; on failure, lists the descriptors still open.
async function assertFdsBack(proxy, what) {
  const deadline = Date.now() + FD_SETTLE_MS;
  let n = fdCount(proxy);
  while (n !== proxy.fdBaseline && Date.now() < deadline) {
    await h.pace(POLL_MS);
    n = fdCount(proxy);
  }
  assert.equal(n, proxy.fdBaseline, `${proxy.label} after ${what}: ${n} fds, baseline ${proxy.fdBaseline}:\n  now: ${fdList(proxy).join(' ')}\n  baseline: ${proxy.fdBaselineList.join(' ')}`);
  return n;
}

// Baseline: the count right after startup; one warm-up request must bring it back there
// (its client connection closes, its pooled backend connection expires after 1s).
async function takeBaseline(proxy, warmUp) {
  proxy.fdBaseline = fdCount(proxy);
  proxy.fdBaselineList = fdList(proxy);
  await warmUp();
  await assertFdsBack(proxy, 'the warm-up request');
  proxy.rssBaseline = rssKiB(proxy);
}

// ---------------------------------------------------------------------------------------
// Raw TCP backends

function listen(server) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, h.HOST, () => resolve(server.address().port));
  });
}

// Calls onRequest(socket, head) for each request head; tracks its sockets.
function rawBackend(onRequest) {
  const sockets = new Set();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    let buf = '';
    s.on('data', (c) => {
      buf += c.toString('latin1');
      let i;
      while ((i = buf.indexOf('\r\n\r\n')) >= 0) {
        const head = buf.slice(0, i);
        buf = buf.slice(i + 4);
        onRequest(s, head);
      }
    });
  });
  return {
    server,
    sockets,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

// A port nothing listens on: bound, then closed.
async function closedPort() {
  const s = net.createServer();
  const port = await listen(s);
  await new Promise((resolve) => s.close(resolve));
  return port;
}

const BODY_LENGTH = 1000;

// ---------------------------------------------------------------------------------------
// Raw client helpers

// Opens a connection, writes `bytes`, resolves once `ready()` says the far end has it.
async function sendAndWait(port, bytes, ready, what) {
  const s = net.connect({ host: h.HOST, port });
  s.on('error', () => {});
  await h.once(s, 'connect', h.T.http, `${what}: connect`, ['error']);
  s.write(bytes);
  await h.until(ready, h.T.http, what, POLL_MS);
  return s;
}

function enginePollPath(sid) {
  return h.enginePath({ EIO: '4', transport: 'polling', sid, t: `r${Date.now().toString(36)}` });
}

async function nodeCount(node, f) {
  return f(await node.stats());
}

// ---------------------------------------------------------------------------------------

test('r. backend and client faults release every fd; real clients work afterwards', { timeout: 60000 }, async (t) => {
  const cleanups = [];
  const proxies = [];
  let cluster;
  const diag = [];
  try {
    cluster = await h.startCluster();

    // --- raw backends
    const requestsSeen = { ok: 0, midclose: 0, silent: 0 };
    const ok = rawBackend((s) => {
      requestsSeen.ok++;
      s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    });
    const midclose = rawBackend((s, head) => {
      requestsSeen.midclose++;
      // Headers and half the body, then the connection ends (FIN), or is reset (RST) once
      // the bytes are out.
      s.write(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${BODY_LENGTH}\r\n\r\n${'h'.repeat(BODY_LENGTH / 2)}`, () => {
        if (head.startsWith('GET /reset ')) setTimeout(() => s.resetAndDestroy(), 50);
      });
      if (!head.startsWith('GET /reset ')) s.end();
    });
    const silent = rawBackend(() => {
      requestsSeen.silent++; // accepts, reads, never answers
    });
    cleanups.push(ok.close, midclose.close, silent.close);
    const okPort = await listen(ok.server);
    const midPort = await listen(midclose.server);
    const silentPort = await listen(silent.server);
    const deadPort = await closedPort();

    const main = await h.startStickyd({
      label: 'main',
      backends: cluster.nodes.map((n) => ({ name: n.name, address: n.address })),
      timeouts: { backend_keepalive: '1s' },
      extra: { access_log: true },
    });
    proxies.push(main);
    const raw = await h.startStickyd({
      label: 'raw',
      backends: [
        { name: 'ok', address: `${h.HOST}:${okPort}` },
        { name: 'midclose', address: `${h.HOST}:${midPort}`, weight: 0 },
        { name: 'silent', address: `${h.HOST}:${silentPort}`, weight: 0 },
        { name: 'closed', address: `${h.HOST}:${deadPort}`, weight: 0 },
      ],
      timeouts: { backend_keepalive: '1s', server: '1s' },
      extra: { access_log: true, sticky: { server_cookie: { name: 'SERVERID', mode: 'insert' } } },
    });
    proxies.push(raw);
    const viaCookie = (name, p = '/x') => h.rawRequest('GET', p, { headers: { Cookie: `SERVERID=${name}` } });

    await takeBaseline(main, async () => {
      const res = await h.request({ port: main.port, path: '/whoami' });
      assert.equal(res.status, 200);
    });
    await takeBaseline(raw, async () => {
      const res = await h.request({ port: raw.port, path: '/warm' });
      assert.equal(res.status, 200);
      assert.equal(res.body, 'ok');
    });
    diag.push(`baselines: main ${main.fdBaseline} fds ${main.rssBaseline} KiB, raw ${raw.fdBaseline} fds ${raw.rssBaseline} KiB`);

    // ------------------------------------------------------------------ raw backends
    for (const [how, p] of [['closes (FIN)', '/file'], ['resets (RST)', '/reset']]) {
      await t.test(`a backend that ${how} mid-response: the client gets a cut-off response, logged`, async () => {
        const seen = requestsSeen.midclose;
        const from = raw.stderr.length;
        const conn = await h.RawConnection.connect(raw.port);
        try {
          conn.write(viaCookie('midclose', p));
          const err = await conn.next(h.T.http, 'cut-off response').then((r) => new Error(`complete: ${JSON.stringify(r)}`), (e) => e);
          assert.match(err.message, /closed in the middle of a response|ECONNRESET/, err.message);
          const cur = conn.reader.cur;
          assert.equal(cur && cur.status, 200, 'the head was streamed');
          assert.equal(cur.headers['content-length'], String(BODY_LENGTH));
          const got = Buffer.concat(cur.body).length;
          assert.ok(got <= BODY_LENGTH / 2, `${got} body bytes`);
        } finally {
          conn.close();
        }
        assert.equal(requestsSeen.midclose, seen + 1, 'sent once, not retried');
        await raw.waitForLine(/ warn backend failed mid-response backend=midclose /, 2000 * h.SCALE, 'mid-response log', from);
        await raw.waitForLine(new RegExp(` info request .*target=${p} .*backend=midclose .*outcome=aborted`), 2000 * h.SCALE, 'access line', from);
        await assertFdsBack(raw, `the mid-response ${how}`);
      });
    }

    await t.test('a backend that accepts and never answers: 504 after timeouts.server, connection to it closed', async () => {
      const from = raw.stderr.length;
      const started = Date.now();
      const conn = await h.RawConnection.connect(raw.port);
      let res;
      try {
        res = await conn.roundTrip(viaCookie('silent'), '504');
      } finally {
        conn.close();
      }
      const took = Date.now() - started;
      assert.equal(res.status, 504, JSON.stringify(res));
      assert.ok(took >= 900 && took < 4000 * h.SCALE, `504 after ${took} ms (timeouts.server 1s)`);
      assert.equal(requestsSeen.silent, 1);
      await raw.waitForLine(/ warn backend timeout backend=silent/, 2000 * h.SCALE, '504 log', from);
      // stickyd closed its connection to the silent backend.
      await h.until(() => silent.sockets.size === 0, 2000 * h.SCALE, 'silent backend connection closed by stickyd', POLL_MS);
      await assertFdsBack(raw, 'the backend timeout');
    });

    await t.test('a closed backend port: 502, logged', async () => {
      const from = raw.stderr.length;
      const conn = await h.RawConnection.connect(raw.port);
      let res;
      try {
        res = await conn.roundTrip(viaCookie('closed'), '502');
      } finally {
        conn.close();
      }
      assert.equal(res.status, 502, JSON.stringify(res));
      await raw.waitForLine(/ warn backend connect failed backend=closed error=/, 2000 * h.SCALE, '502 log', from);
      await assertFdsBack(raw, 'the refused connect');
    });

    await t.test('after the raw-backend faults: a keep-alive client is served normally', async () => {
      const conn = await h.RawConnection.connect(raw.port);
      try {
        for (let i = 0; i < 3; i++) {
          const res = await conn.roundTrip(h.rawRequest('GET', `/again${i}`), `again ${i}`);
          assert.equal(res.status, 200);
          assert.equal(res.body, 'ok');
        }
      } finally {
        conn.close();
      }
      await assertFdsBack(raw, 'good requests');
    });

    // ------------------------------------------------------------------ real Socket.IO
    await t.test('a node SIGKILLed under websocket tunnels: its clients disconnect, the others notice nothing', async () => {
      const clients = [];
      let victim = null;
      try {
        for (let i = 0; i < 9; i++) {
          const c = h.makeClient('v4', main.url, { transports: ['websocket'] });
          c.disconnects = [];
          c.socket.on('disconnect', (r) => c.disconnects.push(r));
          clients.push(c);
        }
        await Promise.all(clients.map((c, i) => h.once(c.socket, 'connect', h.T.connect, `ws client ${i} connect`, ['connect_error'])));
        for (const c of clients) {
          c.node = (await c.emitAck('hello')).node;
          c.id = c.engineId();
          assert.equal(c.transport(), 'websocket');
        }
        const byNode = {};
        for (const c of clients) (byNode[c.node] = byNode[c.node] || []).push(c);
        victim = Object.keys(byNode).sort((a, b) => byNode[b].length - byNode[a].length)[0];
        assert.ok(Object.keys(byNode).length >= 2, `clients on ${Object.keys(byNode)}`);
        const doomed = byNode[victim];
        const survivors = clients.filter((c) => c.node !== victim);
        diag.push(`tunnels: ${Object.entries(byNode).map(([n, cs]) => `${n}=${cs.length}`).join(' ')}, killing ${victim}`);

        await cluster.byName(victim).kill();
        // Every tunnel to the dead node ends: its clients see a disconnection.
        await Promise.all(
          doomed.map((c, i) =>
            c.disconnects.length ? null : h.once(c.socket, 'disconnect', 5000 * h.SCALE, `client ${i} on ${victim} disconnects`),
          ),
        );
        for (const c of doomed) assert.equal(c.socket.connected, false);
        // The others still echo, same node, same session, no disconnection.
        for (const c of survivors) {
          const reply = await c.emitAck('still there');
          assert.equal(reply.node, c.node);
          assert.equal(c.engineId(), c.id);
          assert.deepEqual(c.disconnects, []);
        }
      } finally {
        for (const c of clients) c.close();
      }
      // Bring the node back on its port for the rest of the test.
      if (victim) await cluster.restart(victim);
      await assertFdsBack(main, 'the tunnels cut by a dead node');
    });

    await t.test('a client that disappears mid-poll: stickyd drops the held backend request at once', async () => {
      const hs = await h.handshake(main.port);
      const owner = cluster.byName(await cluster.ownerOf(hs.sid));
      const getsBefore = await nodeCount(owner, (s) => s.ownedSidByMethod.GET || 0);
      const bytes = h.rawRequest('GET', enginePollPath(hs.sid));
      // The node holds this poll until it has a packet (its first ping, pingInterval 2s).
      const s = await sendAndWait(main.port, bytes, async () => (await nodeCount(owner, (x) => x.ownedSidByMethod.GET || 0)) > getsBefore, 'poll held by the node');
      s.destroy();
      // The node sees its request connection close before it answered: Engine.IO closes the
      // session with "transport error" ("poll connection closed prematurely"). Had stickyd
      // kept the backend request, the node would have answered it with a ping instead.
      const closed = await h.until(async () => (await owner.stats()).closedSids[hs.sid], 3000 * h.SCALE, 'the node sees the poll aborted', POLL_MS);
      assert.equal(closed.reason, 'transport error', JSON.stringify(closed));
      await assertFdsBack(main, 'the vanished poller');
    });

    await t.test('a client that disappears mid-upload: the backend request is aborted, nothing left open', async () => {
      const hs = await h.handshake(main.port);
      const owner = cluster.byName(await cluster.ownerOf(hs.sid));
      const postsBefore = await nodeCount(owner, (s) => s.ownedSidByMethod.POST || 0);
      const from = main.stderr.length;
      const head = `POST ${enginePollPath(hs.sid)} HTTP/1.1\r\nHost: ${h.HOST}\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: 100000\r\n\r\n`;
      const bytes = Buffer.concat([Buffer.from(head), Buffer.alloc(1000, 'x')]);
      const s = await sendAndWait(main.port, bytes, async () => (await nodeCount(owner, (x) => x.ownedSidByMethod.POST || 0)) > postsBefore, 'upload reached the node');
      s.destroy();
      const closed = await h.until(async () => (await owner.stats()).closedSids[hs.sid], 3000 * h.SCALE, 'the node sees the upload aborted', POLL_MS);
      assert.equal(closed.reason, 'transport error', JSON.stringify(closed));
      await main.waitForLine(/ info request .*method=POST .*outcome=aborted/, 2000 * h.SCALE, 'access line of the aborted upload', from);
      await assertFdsBack(main, 'the vanished uploader');
    });

    // ------------------------------------------------------------------ afterwards
    await t.test('after all faults: a fresh batch of real clients is sticky and fds are at baseline', async () => {
      const kinds = [{ transports: ['polling'] }, { transports: ['websocket'] }, {}];
      const results = await h.runClients((i) => h.makeClient('v4', main.url, kinds[i % kinds.length]), { clients: 9, messages: 3 });
      await h.assertClientsSticky(results, cluster, { messages: 3 });
      const res = await h.request({ port: raw.port, path: '/final' });
      assert.equal(res.status, 200);
      await assertFdsBack(main, 'the fresh batch');
      await assertFdsBack(raw, 'everything');
      const rss = { main: rssKiB(main), raw: rssKiB(raw) };
      diag.push(`RSS KiB: main ${main.rssBaseline} -> ${rss.main}, raw ${raw.rssBaseline} -> ${rss.raw}`);
      // A loose bound: a leak per fault would show; allocator noise does not.
      assert.ok(rss.main - main.rssBaseline < 16 * 1024, `main RSS grew ${rss.main - main.rssBaseline} KiB`);
      assert.ok(rss.raw - raw.rssBaseline < 16 * 1024, `raw RSS grew ${rss.raw - raw.rssBaseline} KiB`);
    });

    for (const p of proxies) {
      assert.equal(p.child.exitInfo, null, `${p.label} died: ${JSON.stringify(p.child.exitInfo)}`);
    }
  } catch (err) {
    for (const p of proxies) console.error(`--- ${p.label} stderr ---\n${p.stderr.slice(-80).join('\n')}`);
    throw err;
  } finally {
    for (const line of diag) t.diagnostic(line);
    for (const p of proxies) await p.stop().catch(() => {});
    for (const f of cleanups) await f().catch(() => {});
    if (cluster) await cluster.stop();
  }
});
