'use strict';
// n. Bad input and bad backends get precise statuses, the proxy keeps serving everyone else.
//    400 malformed / absolute-form, 405 CONNECT, 414 long target, 431 big head,
//    502 refused backend, 504 silent backend; a real Socket.IO client runs through the same
//    proxy meanwhile and never notices.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const h = require('../lib/harness');

// Sends raw bytes, reads until the proxy closes (it closes after every error answer).
function rawExchange(port, bytes) {
  return h.withTimeout(
    new Promise((resolve, reject) => {
      const s = net.connect({ host: h.HOST, port });
      const chunks = [];
      s.on('connect', () => s.write(bytes));
      s.on('data', (c) => chunks.push(c));
      s.on('error', reject);
      s.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    }),
    h.T.http,
    'raw exchange',
  );
}

const statusOf = (text) => {
  const m = /^HTTP\/1\.1 (\d{3}) /.exec(text);
  return m ? Number(m[1]) : 0;
};

test('n. hostile requests get 400/405/414/431 and close; a live client is unaffected', { timeout: 60000 }, async () => {
  const cluster = await h.startCluster();
  const proxy = await h.startStickyd({
    backends: cluster.nodes.map((n) => ({ name: n.name, address: n.address })),
  });
  try {
    // A real client keeps a session going through the whole test.
    const client = h.makeClient('v4', proxy.url, { transports: ['polling'] });
    await h.once(client.socket, 'connect', h.T.connect, 'client connect');
    const first = await client.emitAck('before');

    const cases = [
      ['garbage', 'GARBAGE\r\n\r\n', 400],
      ['smuggling CL+TE', 'POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n', 400],
      ['absolute-form', 'GET http://evil.example/ HTTP/1.1\r\nHost: evil.example\r\n\r\n', 400],
      ['CONNECT', 'CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n', 405],
      ['long target', `GET /${'a'.repeat(9000)} HTTP/1.1\r\nHost: a\r\n\r\n`, 414],
      ['CR LF in sid', 'GET /socket.io/?EIO=4&transport=polling&sid=a\rb HTTP/1.1\r\nHost: a\r\n\r\n', 400],
      ['huge head', `GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${'b'.repeat(40000)}\r\n\r\n`, 431],
    ];
    for (const [name, bytes, status] of cases) {
      const text = await rawExchange(proxy.port, bytes);
      assert.equal(statusOf(text), status, `${name}: got ${JSON.stringify(text.slice(0, 120))}`);
      assert.match(text, /\r\nConnection: close\r\n/i, `${name}: connection closed`);
    }
    // Every bad request left a log line (stderr may lag the answers: wait for the last).
    await proxy.waitForLine(/bad request.*status=431/, h.T.http, 'log line of the last case (431)');
    const warns = proxy.stderr.filter((l) => / warn /.test(l));
    assert.ok(warns.length >= cases.length, `log lines: ${warns.join('\n')}`);

    // The live session never noticed: same node, same sid.
    const after = await client.emitAck('after');
    assert.equal(after.node, first.node);
    client.close();
  } finally {
    await proxy.stop();
    await cluster.stop();
  }
});

test('n. refused backend -> 502, silent backend -> 504, both logged', { timeout: 60000 }, async () => {
  // Accepts connections and never answers.
  const silent = net.createServer(() => {});
  await new Promise((r) => silent.listen(0, h.HOST, r));
  const refusedProxy = await h.startStickyd({ backends: [{ name: 'gone', address: `${h.HOST}:1` }] });
  const silentProxy = await h.startStickyd({
    backends: [{ name: 'mute', address: `${h.HOST}:${silent.address().port}` }],
    timeouts: { server: '1s' },
  });
  try {
    const a = await h.request({ port: refusedProxy.port, path: h.enginePath({ EIO: '4', transport: 'polling' }) });
    assert.equal(a.status, 502);
    // The log line is written before the answer, but stderr may be read after it: wait for it.
    await refusedProxy.waitForLine(/backend connect failed.*backend=gone/, h.T.http, '502 log line');
    const b = await h.request({ port: silentProxy.port, path: '/anything' });
    assert.equal(b.status, 504);
    await silentProxy.waitForLine(/backend timeout.*backend=mute/, h.T.http, '504 log line');
  } finally {
    await refusedProxy.stop();
    await silentProxy.stop();
    silent.close();
  }
});

test('n. a slowloris flood writes a bounded number of log lines: 10 a second per event, then one line with how many were held back', { timeout: 60000 }, async (t) => {
  const N = 300;
  const proxyOpts = { extra: { log: { rate_limit: 10 } }, timeouts: { client_header: '1s' } };
  await h.scenario(t, { proxyOpts }, async (env) => {
    const p = env.proxy;
    const from = p.stderr.length;
    // N connections that start a request head and never finish it: each gets a 408.
    const closed = [];
    for (let i = 0; i < N; i++) {
      const s = net.connect({ host: h.HOST, port: env.port });
      s.on('error', () => {});
      s.resume();  // read the 408: 'close' comes after the data is consumed
      closed.push(new Promise((resolve) => s.on('close', resolve)));
      s.on('connect', () => s.write('GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: a\r\nX-Slow: '));
    }
    await h.withTimeout(Promise.all(closed), 20000, 'every slow connection closed by stickyd');
    // The last held-back lines are reported within a second of the flood.
    const reported = await h.until(() => {
      const lines = p.stderr.slice(from);
      const written = lines.filter((l) => / warn client timeout /.test(l)).length;
      const held = lines
        .map((l) => / warn log lines suppressed event="client timeout" suppressed=(\d+)/.exec(l))
        .filter(Boolean)
        .reduce((a, m) => a + Number(m[1]), 0);
      return written + held === N && { written, held, lines: lines.length };
    }, 5000, 'written + suppressed lines account for every timeout');
    t.diagnostic(`slowloris: ${N} timeouts, ${reported.written} lines written, ${reported.held} suppressed (${reported.lines} stderr lines in all)`);
    assert.ok(reported.written <= 10 * 4, `lines written: ${reported.written}`);
    assert.ok(reported.lines < 60, `stderr lines: ${reported.lines}`);
    // The proxy still serves.
    assert.equal((await h.handshake(env.port)).res.status, 200);
  });
});
