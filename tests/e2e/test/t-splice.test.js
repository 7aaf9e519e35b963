'use strict';
// t. Websocket tunnels moved with splice(2) (`tunnel_splice: true`, the default) and with the
//    copy path (`tunnel_splice: false`): every test runs once each way.
//
//    - raw tunnels to tiny raw TCP backends that answer the upgrade with a 101 and then pump
//      bytes: several MB both ways at once on a few tunnels, every byte checked (SHA-256 and
//      count), the per-backend byte counters of /metrics exact, and half-closes in both
//      orders (the client's FIN first, then the backend's; the backend's first);
//    - a slow reader: a backend floods a client that does not read; stickyd's RSS stays
//      bounded (the bytes wait in the kernel, not in stickyd), then the client reads it all;
//      with splice, the stalled direction holds a pipe, and once every tunnel is gone
//      stickyd's fd count is back at its baseline (the pipe pool is emptied);
//    - real Socket.IO 4 clients (websocket only) echoing large binary messages through a
//      real cluster, each echo compared byte for byte;
//    - splice(2) or pipe2(2) failing inside stickyd (an LD_PRELOAD shim,
//      tests/e2e/fault/splice_fault.c): tunnels fall back to the copy path, or wait for a pipe,
//      and every byte still arrives.
//    Loopback only; every wait is a bounded condition wait.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const h = require('../lib/harness');

const POLL_MS = 50;
const MB = 1024 * 1024;
const WAIT_MS = 30000 * h.SCALE;

// ---------------------------------------------------------------------------------------
// helpers

const pipeCount = (proxy) => h.fdTargets(proxy).filter((l) => l.startsWith('pipe:')).length;

function rssKiB(proxy) {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${proxy.child.pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

function listen(server) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, h.HOST, () => resolve(server.address().port));
  });
}

// Deterministic bytes: block i of a stream seeded by `seed` (64 KiB blocks).
function block(seed, i) {
  return crypto.createHash('sha512').update(`${seed}:${i}`).digest().toString('hex').repeat(512).slice(0, 65536);
}
function blockBuf(seed, i) {
  return Buffer.from(block(seed, i), 'latin1');
}

// Writes `total` bytes (0 = until stop()) of the `seed` stream to `s`, honouring
// backpressure; `hash`/`sent` describe what was written; resolves when done.
function pump(s, seed, total) {
  const w = { hash: crypto.createHash('sha256'), sent: 0, waiting: false, stopped: false, done: null };
  w.done = new Promise((resolve) => {
    let i = 0;
    const more = () => {
      w.waiting = false;
      while (!w.stopped && (total === 0 || w.sent < total)) {
        let b = blockBuf(seed, i++);
        if (total && w.sent + b.length > total) b = b.subarray(0, total - w.sent);
        w.hash.update(b);
        w.sent += b.length;
        if (!s.write(b)) {
          w.waiting = true;
          s.once('drain', more);
          return;
        }
      }
      w.digest = w.hash.digest('hex');
      resolve();
    };
    more();
  });
  w.stop = () => {
    w.stopped = true;
    if (w.waiting) s.emit('drain');
  };
  return w;
}

// Resolves once the pump `w` has waited for 'drain' over several polls in a row, its byte
// count unchanged: the receiving side has stopped taking bytes.
function waitStalled(w, what) {
  let polls = 0;
  let last = -1;
  return h.until(() => {
    if (w.waiting && w.sent === last) polls++;
    else polls = 0;
    last = w.sent;
    return polls >= 6;
  }, WAIT_MS, what, POLL_MS);
}

// Hashes and counts what `s` receives; `ended` resolves on its FIN.
function sink(s) {
  const r = { hash: crypto.createHash('sha256'), got: 0 };
  r.ended = new Promise((resolve) => {
    s.on('data', (c) => {
      r.hash.update(c);
      r.got += c.length;
    });
    s.on('end', () => {
      r.digest = r.hash.digest('hex');
      resolve();
    });
  });
  return r;
}

// The stalled client `s` reads again: returns its sink once the pump `flood` (writing to the
// other end of the tunnel) has moved 4 MB further and been stopped.
async function resumeFlood(s, flood) {
  const from = flood.sent;
  const r = sink(s);
  s.resume();
  await h.until(() => flood.sent > from + 4 * MB, WAIT_MS, 'the flood moves again', POLL_MS);
  flood.stop();
  await h.withTimeout(flood.done, WAIT_MS, 'flood stopped');
  return r;
}

// A raw backend: answers any upgrade request with a 101, then calls onTunnel(socket, path, rest).
function rawWsBackend(onTunnel) {
  const sockets = new Set();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    let buf = Buffer.alloc(0);
    const onData = (c) => {
      buf = Buffer.concat([buf, c]);
      const i = buf.indexOf('\r\n\r\n');
      if (i < 0) return;
      s.off('data', onData);
      const head = buf.subarray(0, i).toString('latin1');
      const rest = buf.subarray(i + 4);
      const path = head.split(' ')[1];
      s.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
      onTunnel(s, path, rest);
    };
    s.on('data', onData);
  });
  return {
    server,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

// Opens a raw websocket-style tunnel through stickyd; resolves with the socket once the 101
// head is read (anything after it is pushed back for the caller's 'data' handler).
async function openTunnel(port, path) {
  const s = net.connect({ host: h.HOST, port, allowHalfOpen: true });
  s.on('error', () => {});
  await h.once(s, 'connect', h.T.http, `${path}: connect`, ['error']);
  s.write(`GET ${path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
  let buf = Buffer.alloc(0);
  await h.withTimeout(
    new Promise((resolve, reject) => {
      const onData = (c) => {
        buf = Buffer.concat([buf, c]);
        const i = buf.indexOf('\r\n\r\n');
        if (i < 0) return;
        s.off('data', onData);
        s.pause();
        const head = buf.subarray(0, i).toString('latin1');
        if (!head.startsWith('HTTP/1.1 101')) return reject(new Error(`${path}: ${head}`));
        const rest = buf.subarray(i + 4);
        if (rest.length) s.unshift(rest);
        resolve();
      };
      s.on('data', onData);
      s.once('close', () => reject(new Error(`${path}: closed before the 101`)));
    }),
    h.T.http,
    `${path}: 101`,
  );
  return s;
}

async function backendBytes(proxy, backend) {
  const m = await proxy.metrics();
  return {
    toClient: m.get('stickyd_backend_to_client_bytes_total', { backend }),
    toBackend: m.get('stickyd_backend_to_backend_bytes_total', { backend }),
  };
}

async function waitFds(proxy, baseline, what) {
  await h.until(() => h.fdTargets(proxy).length === baseline, 5000 * h.SCALE, `${proxy.label}: fds back to ${baseline} after ${what} (now ${h.fdTargets(proxy).join(' ')})`, POLL_MS);
}

async function withRawProxy(t, splice, backend, body, { env } = {}) {
  const cleanups = [backend.close];
  let proxy;
  try {
    const port = await listen(backend.server);
    proxy = await h.startStickyd({
      label: `splice-${splice}`,
      backends: [{ name: 'raw', address: `${h.HOST}:${port}` }],
      // One worker: a second one starts its loop (epoll, pipes, listener) after the
      // `listening` line, which would race with the fd baselines below.
      extra: { tunnel_splice: splice, workers: 1, admin: { listen: `${h.HOST}:0` } },
      env,
    });
    await body(proxy);
  } catch (err) {
    if (proxy) console.error(`[e2e] ${t.name}: stickyd stderr:\n${proxy.stderr.join('\n')}`);
    throw err;
  } finally {
    if (proxy) await proxy.stop().catch(() => {});
    for (const f of cleanups) await f().catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------

// Several MB both ways at once on 3 raw tunnels, half-closed in both orders (the client's FIN
// first on even tunnels, the backend's on odd ones): every byte checked, the byte counters
// exact, fds back to their baseline; then `extraChecks(proxy, {pipes0})` for the caller's.
async function bothWaysWithHalfCloses(t, splice, { env, idPrefix = String(splice), extraChecks } = {}) {
  const TUNNELS = 3;
  const UP = 4 * MB + 12345; // client -> backend, per tunnel
  const DOWN = 5 * MB + 777; // backend -> client, per tunnel
  const seen = new Map(); // tunnel id -> {r (what the backend received), w (what it sent)}
  const backend = rawWsBackend((s, path, rest) => {
    const id = path.split('/').pop();
    const clientFirst = path.startsWith('/ws/client-fin/');
    const r = sink(s);
    if (rest.length) s.unshift(rest);
    const entry = { r, w: null };
    seen.set(id, entry);
    if (clientFirst) {
      // Both ways at once; the client ends first; this side keeps sending after it and
      // ends once its own bytes are out.
      entry.w = pump(s, `down-${id}`, DOWN);
      Promise.all([entry.w.done, r.ended]).then(() => s.end());
    } else {
      // This side sends and ends first; the client then still sends its bytes.
      entry.w = pump(s, `down-${id}`, DOWN);
      entry.w.done.then(() => s.end());
    }
  });
  await withRawProxy(t, splice, backend, async (proxy) => {
    const fd0 = h.fdTargets(proxy).length;
    const pipes0 = pipeCount(proxy); // libuv's own (signals, wakeups)
    const before = await backendBytes(proxy, 'raw');
    const runs = [];
    for (let k = 0; k < TUNNELS; k++) {
      const clientFirst = k % 2 === 0;
      const id = `${idPrefix}-${k}`;
      runs.push((async () => {
        const s = await openTunnel(proxy.port, `/ws/${clientFirst ? 'client-fin' : 'backend-fin'}/${id}`);
        const r = sink(s);
        s.resume();
        let w;
        if (clientFirst) {
          w = pump(s, `up-${id}`, UP);
          await h.withTimeout(w.done, WAIT_MS, `${id}: client sends`);
          s.end(); // half-close: the backend must see the FIN while it still sends
          await h.withTimeout(r.ended, WAIT_MS, `${id}: backend's bytes and FIN`);
        } else {
          await h.withTimeout(r.ended, WAIT_MS, `${id}: backend's bytes and FIN first`);
          w = pump(s, `up-${id}`, UP); // the tunnel is half-closed: this way still works
          await h.withTimeout(w.done, WAIT_MS, `${id}: client sends after the backend's FIN`);
          s.end();
        }
        await h.withTimeout(h.once(s, 'close', WAIT_MS, `${id}: closed`), WAIT_MS, `${id}: closed`);
        const e = seen.get(id);
        await h.withTimeout(e.r.ended, WAIT_MS, `${id}: backend sees the client's FIN`);
        assert.equal(r.got, DOWN, `${id}: bytes to the client`);
        assert.equal(r.digest, e.w.digest, `${id}: backend -> client bytes intact`);
        assert.equal(e.r.got, UP, `${id}: bytes to the backend`);
        assert.equal(e.r.digest, w.digest, `${id}: client -> backend bytes intact`);
      })());
    }
    await Promise.all(runs);
    // Counters: exactly the tunnelled bytes (plus the 101 heads towards the client).
    let after;
    await h.until(async () => {
      after = await backendBytes(proxy, 'raw');
      return after.toBackend - before.toBackend >= TUNNELS * UP;
    }, 5000 * h.SCALE, 'byte counters', POLL_MS);
    assert.equal(after.toBackend - before.toBackend, TUNNELS * UP, 'stickyd_backend_to_backend_bytes_total');
    const toClient = after.toClient - before.toClient;
    assert.ok(toClient >= TUNNELS * DOWN && toClient <= TUNNELS * (DOWN + 200), `stickyd_backend_to_client_bytes_total ${toClient} vs ${TUNNELS * DOWN}`);
    const m = await proxy.metrics();
    assert.equal(m.get('stickyd_backend_tunnels_open', { backend: 'raw' }), 0, 'no tunnel left open');
    await waitFds(proxy, fd0, 'the tunnels');
    if (extraChecks) await extraChecks(proxy, { pipes0 });
  }, { env });
}

for (const splice of [true, false]) {
  test(`t1. tunnel_splice: ${splice} — MB both ways on raw tunnels, intact, exact byte counters, half-closes both orders`, { timeout: 60000 }, (t) => bothWaysWithHalfCloses(t, splice));

  test(`t2. tunnel_splice: ${splice} — slow reader: the flood waits in the kernel, stickyd's RSS stays bounded, then every byte arrives`, { timeout: 60000 }, async (t) => {
    let flood = null;
    let floodSocket = null;
    const backend = rawWsBackend((s) => {
      floodSocket = s;
      flood = pump(s, 'flood', 0); // until stopped
    });
    await withRawProxy(t, splice, backend, async (proxy) => {
      // Warm up (allocator, pools), then take the baselines.
      const fd0 = h.fdTargets(proxy).length;
      const pipes0 = pipeCount(proxy); // libuv's own (signals, wakeups)
      const warm = await openTunnel(proxy.port, '/ws/warm');
      warm.resume();
      await h.until(() => flood && flood.sent > 2 * MB, WAIT_MS, 'warm-up bytes', POLL_MS);
      flood.stop();
      floodSocket.end();
      warm.end();
      await h.withTimeout(h.once(warm, 'close', WAIT_MS, 'warm-up closed'), WAIT_MS, 'warm-up closed');
      await waitFds(proxy, fd0, 'the warm-up tunnel');
      const rss0 = rssKiB(proxy);
      flood = null;

      const s = await openTunnel(proxy.port, '/ws/flood'); // paused: the client does not read
      await h.until(() => flood, h.T.http, 'flood started', POLL_MS);
      await waitStalled(flood, 'the backend blocked by the slow client');
      const stalledAt = flood.sent;
      const rss1 = rssKiB(proxy);
      t.diagnostic(`splice ${splice}: backend blocked after ${(stalledAt / MB).toFixed(1)} MB; stickyd RSS ${rss0} -> ${rss1} KiB`);
      assert.ok(stalledAt > MB, `the backend sent ${stalledAt} bytes before blocking`);
      assert.ok(rss1 - rss0 < 16 * 1024, `stickyd RSS grew by ${rss1 - rss0} KiB while the client did not read`);
      if (splice) assert.ok(pipeCount(proxy) >= pipes0 + 2, `a pipe holds the stalled bytes: ${h.fdTargets(proxy).join(' ')}`);
      else assert.equal(pipeCount(proxy), pipes0, 'no pipe on the copy path');

      // The client reads again: everything arrives, in order, until the backend's FIN.
      const r = await resumeFlood(s, flood);
      floodSocket.end();
      await h.withTimeout(r.ended, WAIT_MS, 'every flooded byte and the FIN');
      assert.equal(r.got, flood.sent, 'flooded bytes received');
      assert.equal(r.digest, flood.digest, 'flooded bytes intact');
      s.end();
      await h.withTimeout(h.once(s, 'close', WAIT_MS, 'closed'), WAIT_MS, 'closed');
      await waitFds(proxy, fd0, 'the slow reader');
      assert.equal(pipeCount(proxy), pipes0, 'no pipe kept once no tunnel is left');
    });
  });

  test(`t3. tunnel_splice: ${splice} — socket.io-client 4 over websocket: large binary echoes through a real cluster`, { timeout: 60000 }, async (t) => {
    await h.scenario(t, { proxyOpts: { extra: { tunnel_splice: splice, admin: { listen: `${h.HOST}:0` } } } }, async (env) => {
      const CLIENTS = 4;
      const MESSAGES = 6;
      const SIZE = 200 * 1024;
      let sent = 0;
      await Promise.all(Array.from({ length: CLIENTS }, async (_, c) => {
        const client = h.makeClient('v4', env.url, { transports: ['websocket'] });
        try {
          await h.once(client.socket, 'connect', h.T.connect, `client ${c}: connect`, ['connect_error']);
          for (let i = 0; i < MESSAGES; i++) {
            const data = crypto.randomBytes(SIZE);
            const reply = await client.emitAck(data);
            assert.ok(Buffer.isBuffer(reply.data), `client ${c}: a binary echo`);
            assert.equal(crypto.createHash('sha256').update(reply.data).digest('hex'),
                         crypto.createHash('sha256').update(data).digest('hex'), `client ${c} message ${i}: echo intact`);
            sent += SIZE;
          }
        } finally {
          client.close();
        }
      }));
      const m = await env.proxy.metrics();
      const up = m.sum('stickyd_backend_to_backend_bytes_total');
      const down = m.sum('stickyd_backend_to_client_bytes_total');
      t.diagnostic(`splice ${splice}: ${sent} payload bytes each way; counters up ${up} down ${down}`);
      assert.ok(up >= sent && down >= sent, `byte counters cover the payloads: up ${up}, down ${down}, payload ${sent}`);
    });
  });
}

// ---------------------------------------------------------------------------------------
// t4: splice(2) or pipe2(2) failing inside stickyd (LD_PRELOAD shim built next to stickyd).

const faultEnv = h.faultEnv;
const SPLICE_UNAVAILABLE = /tunnel splice unavailable/;

for (const [fault, error] of [['splice-einval', 'EINVAL'], ['pipe-emfile', 'EMFILE']]) {
  test(`t4. tunnel_splice: true, ${fault} — tunnels fall back to the copy path: t1's bytes, half-closes and counters, one log line`, { timeout: 60000 }, (t) =>
    bothWaysWithHalfCloses(t, true, {
      env: faultEnv(fault),
      idPrefix: fault,
      extraChecks: (proxy, { pipes0 }) => {
        const lines = proxy.stderr.filter((l) => SPLICE_UNAVAILABLE.test(l));
        assert.equal(lines.length, 1, `one "tunnel splice unavailable" line per process: ${lines.join(' | ')}`);
        assert.match(lines[0], new RegExp(`error=${error}`));
        assert.equal(pipeCount(proxy), pipes0, 'no pipe left behind');
      },
    }));
}

test('t4. tunnel_splice: true, pipe-emfile-after-1 — no second pipe while the first holds stalled bytes: the tunnel moves to the copy path mid-stream, the pipe\'s bytes first, and every byte arrives', { timeout: 60000 }, async (t) => {
  const UP = 6 * MB + 321;
  let flood = null;
  let up = null;
  let floodSocket = null;
  const backend = rawWsBackend((s, p, rest) => {
    floodSocket = s;
    up = sink(s);
    if (rest.length) s.unshift(rest);
    flood = pump(s, 'flood-after-1', 0); // until stopped
  });
  await withRawProxy(t, true, backend, async (proxy) => {
    const fd0 = h.fdTargets(proxy).length;
    const pipes0 = pipeCount(proxy);
    const s = await openTunnel(proxy.port, '/ws/after-1'); // paused: the client does not read yet
    await h.until(() => flood, h.T.http, 'flood started', POLL_MS);
    // The backend -> client direction stalls with bytes in stickyd's only pipe.
    await waitStalled(flood, 'the backend blocked by the paused client');
    assert.ok(pipeCount(proxy) >= pipes0 + 2, `a pipe holds the stalled bytes: ${h.fdTargets(proxy).join(' ')}`);
    // The client sends: that direction needs a second pipe, which pipe2() refuses (EMFILE).
    // The tunnel goes on through the copy path (the stalled pipe's bytes are read back and
    // queued for the client) instead of failing.
    const w = pump(s, 'up-after-1', UP);
    await h.withTimeout(w.done, WAIT_MS, 'the client sends everything');
    await h.until(() => up.got === UP, WAIT_MS, `the backend receives ${UP} bytes (has ${up && up.got})`, POLL_MS);
    assert.equal(up.hash.copy().digest('hex'), w.digest, 'client -> backend bytes intact');
    const lines = proxy.stderr.filter((l) => SPLICE_UNAVAILABLE.test(l));
    assert.equal(lines.length, 1, `one "tunnel splice unavailable" line: ${lines.join(' | ')}`);
    assert.match(lines[0], /error=EMFILE/);
    // The client reads: the bytes that were in the pipe come first, then the rest of the flood.
    const floodAtResume = flood.sent;
    const down = await resumeFlood(s, flood);
    s.end();
    floodSocket.end();
    await h.withTimeout(Promise.all([down.ended, up.ended]), WAIT_MS, 'both FINs');
    t.diagnostic(`${(floodAtResume / MB).toFixed(1)} MB down when stalled, ${(flood.sent / MB).toFixed(1)} MB in all`);
    assert.equal(down.got, flood.sent, 'bytes to the client');
    assert.equal(down.digest, flood.digest, 'backend -> client bytes intact, the pipe\'s first');
    await waitFds(proxy, fd0, 'the tunnel');
    assert.equal(pipeCount(proxy), pipes0, 'no pipe left behind');
  }, { env: faultEnv('pipe-emfile-after-1') });
});
