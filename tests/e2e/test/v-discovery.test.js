'use strict';
// v. DNS discovery (issue 13) against a real dnsmasq (lib/dnsmasq.js) and Socket.IO nodes on
//    distinct loopback addresses sharing one port (127.0.0.11, .12, ... like pods behind a
//    headless Service). A/AAAA backends are named `<ip>_<port>`, SRV ones `<target>_<port>`.
//    - scale up under real clients: the new node gets new sessions within two intervals; the
//      running clients see nothing (0 switches, 0 Session ID unknown);
//    - scale down: the node leaves DNS while alive (drain: its sessions finish, no new one),
//      then dies (its clients re-handshake elsewhere at once, the backend is removed);
//    - TTL shorter than the interval, answer order shuffled, DNS stopped/restarted, SERVFAIL,
//      a truncated SRV answer (read over TCP) with and without `max`, an SRV target whose
//      address changes;
//    - stickyd started while DNS is down: 503 until DNS answers, then the set fills;
//    - two replicas discovering the same set behind an L4 relay (tag_sids + secret): same
//      names and persistence values, clients stay sticky across replicas.
//    Figures (time from a DNS change to the first new session, sessions lost) are printed as
//    TAP diagnostics.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const h = require('../lib/harness');
const { startDnsmasq, startServfail } = require('../lib/dnsmasq');

const SESSION_UNKNOWN = '{"code":1,"message":"Session ID unknown"}';
const RECONNECT = { reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 300, randomizationFactor: 0 };
const KINDS = ['v4-polling', 'v4-default', 'v2'];
const ip = (k) => `127.0.0.${10 + k}`; // pod k (1-based) -> its address

function esc(s) {
  return String(s).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
// "<ts> info discovery: <what> name=... backend=<backend>" (and other keys).
const discoLine = (what, backend) => new RegExp(` discovery: ${esc(what)}\\b.*\\bbackend=${esc(backend)}(?: |$)`);
const count = (p, re, from = 0) => p.stderr.slice(from).filter((l) => re.test(l)).length;

// ---------------------------------------------------------------------------------------
// Fixture: pods sharing a port, dnsmasq, stickyd processes, relays; diagnostics on failure.

async function withEnv(t, body) {
  const env = { pods: [], proxies: [], dns: [], relays: [] };
  const started = Date.now();
  // Pods 1..n on 127.0.0.(10+k), all on one port (retried if another address has it).
  env.startPods = async (names, { printSessions = true, first = 1 } = {}) => {
    for (let attempt = 0; ; attempt++) {
      const out = [];
      try {
        out.push(await h.startNode(names[0], { host: ip(first), printSessions, port: env.port || 0 }));
        env.port = out[0].port;
        for (let i = 1; i < names.length; i++) out.push(await h.startNode(names[i], { host: ip(first + i), printSessions, port: env.port }));
        env.pods.push(...out);
        return out;
      } catch (err) {
        await Promise.all(out.map((n) => n.kill()));
        if (attempt >= 3 || env.pods.length) throw err;
        env.port = 0;
      }
    }
  };
  env.startPod = async (name, k) => {
    const n = await h.startNode(name, { host: ip(k), printSessions: true, port: env.port });
    env.pods.push(n);
    return n;
  };
  env.pod = (name) => env.pods.find((n) => n.name === name && !n.child.exitInfo);
  env.dnsmasq = async (opts) => {
    const d = await startDnsmasq(opts);
    env.dns.push(d);
    return d;
  };
  env.stickyd = async ({ discover, resolvers, extra = {}, label, timeouts, backends = [] }) => {
    const p = await h.startStickyd({
      backends: [...backends, ...discover.map((d) => ({ discover: d }))],
      extra: { admin: { listen: '127.0.0.1:0' }, resolvers, ...extra },
      timeouts: { shutdown_grace: '1s', ...(timeouts || {}) },
      label: label || (env.proxies.length ? `stickyd#${env.proxies.length + 1}` : 'stickyd'),
    });
    env.proxies.push(p);
    return p;
  };
  // Pods n1..n3 all in DNS as io.test (A records), stickyd discovering them: the usual start.
  env.threePodsInDns = async (discover, opts = {}) => {
    await env.startPods(['n1', 'n2', 'n3']);
    const P = env.port;
    const dns = await env.dnsmasq({ hosts: [1, 2, 3].map((k) => `${ip(k)} io.test`) });
    const p = await env.stickyd({
      discover: [{ name: 'io.test', type: 'A', port: P, ...discover }],
      resolvers: { nameservers: [dns.address], interval: '300ms' },
      ...opts,
    });
    return { P, name3: `${ip(3)}_${P}`, dns, p };
  };
  env.relay = async (ports) => {
    const r = await h.startRelay(ports);
    env.relays.push(r);
    return r;
  };
  env.stats = async () => {
    const all = await Promise.all(env.pods.filter((n) => !n.child.exitInfo).map((n) => n.stats()));
    const out = {};
    for (const s of all) out[s.node] = s;
    return out;
  };
  try {
    await body(env);
  } catch (err) {
    const parts = [];
    for (const p of env.proxies) parts.push(`--- ${p.label} config ---\n${p.configText}\n--- ${p.label} stderr (${p.stderr.length} lines) ---\n${p.stderr.join('\n')}`);
    for (const d of env.dns) parts.push(d.diagnostics());
    for (const n of env.pods) if (n.stderr.length) parts.push(`--- node ${n.name} (${n.address}) stderr ---\n${n.stderr.join('\n')}`);
    const text = parts.join('\n');
    try {
      const dir = path.join(__dirname, '..', '.tmp', 'logs');
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, `${t.name.replace(/[^A-Za-z0-9_.-]+/g, '_').slice(0, 80)}.log`), `${err && err.stack}\n${text}\n`);
    } catch {
      /* best effort */
    }
    const lines = text.split('\n');
    console.error(`[e2e] FAILED ${t.name}: ${err && err.message}\n${(lines.length > 300 ? lines.slice(-300) : lines).join('\n')}`);
    throw err;
  } finally {
    await Promise.all(env.relays.map((r) => r.close().catch(() => {})));
    await Promise.all(env.proxies.map((p) => p.stop().catch(() => {})));
    await Promise.all(env.dns.map((d) => d.cleanup().catch(() => {})));
    await Promise.all(env.pods.map((n) => h.stopChild(n.child).catch(() => {})));
    t.diagnostic(`${t.name}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }
}

// Real clients (polling-only v4, upgrading v4, v2), each acking `echosid` messages.
function clients(url, n, { messages, gapMin = 80, gapMax = 140, reconnect = false, tag = 'c', onAck, onConnect } = {}) {
  const kinds = Array.from({ length: n }, (_, i) => KINDS[i % KINDS.length]);
  return h.runFaultClients(
    (i) => {
      const q = { query: { c: `${tag}${i}` }, ...(reconnect ? RECONNECT : {}) };
      if (kinds[i] === 'v4-polling') return h.makeClient('v4', url, { ...q, transports: ['polling'] });
      return h.makeClient(kinds[i] === 'v2' ? 'v2' : 'v4', url, q);
    },
    { clients: n, messages, gapMin, gapMax, onAck, onConnect },
  );
}

// One session from start to end, on the node that created it.
function stayedProblems(results, nodeSid = (id) => id) {
  const bad = [];
  for (const r of results) {
    const nodes = new Set(r.acks.map((a) => a.node));
    const why = [];
    if (!r.ok) why.push(`failed: ${r.error}`);
    if (r.sessions.length !== 1) why.push(`${r.sessions.length} sessions`);
    if (nodes.size !== 1) why.push(`nodes ${[...nodes]}`);
    if (r.disconnects.some((d) => d !== 'io client disconnect')) why.push(`disconnects ${r.disconnects}`);
    if (r.connectErrors.length) why.push(`connect errors ${r.connectErrors}`);
    if (r.acks.some((a) => a.sid !== nodeSid(a.engineId))) why.push('acked by a session that is not its own');
    if (why.length) bad.push(`client ${r.index} (${r.kind}): ${why.join('; ')}`);
  }
  return bad;
}

// "Session ID unknown" on the nodes: only the harness's known client close race is allowed.
function assertNoUnknown(t, stats, label) {
  const { late, other } = h.classifySessionUnknown(stats);
  assert.deepEqual(other, [], `${label}: Session ID unknown for a live session`);
  for (const u of late) assert.equal(u.closedReason, 'transport close', JSON.stringify(u));
  for (const s of Object.values(stats)) assert.equal(s.foreign, 0, `node ${s.node}: foreign sids ${JSON.stringify(s.foreignDetails.slice(0, 3))}`);
  return late.length;
}

// `count` raw handshakes that landed on `node` (at most `tries` handshakes made).
async function sessionsOn(env, port, node, count, tries) {
  const sids = [];
  for (let i = 0; i < tries && sids.length < count; i++) {
    const hs = await h.handshake(port);
    if ((await ownerOf(env, hs.sid)) === node) sids.push(hs.sid);
  }
  assert.equal(sids.length, count, `sessions on ${node}`);
  return sids;
}

async function ownerOf(env, sid) {
  const stats = await env.stats();
  return Object.values(stats).find((s) => s.sids.includes(sid))?.node;
}

// ---------------------------------------------------------------------------------------

test('v1. scale up while clients run: the new node takes new sessions within two intervals; running clients see nothing', { timeout: 60000 }, async (t) => {
  await withEnv(t, async (env) => {
    const [n1, n2, n3] = await env.startPods(['n1', 'n2', 'n3']);
    const P = env.port;
    const dns = await env.dnsmasq({ hosts: [`${ip(1)} io.test`, `${ip(2)} io.test`] });
    const INTERVAL = 500;
    const p = await env.stickyd({
      discover: [{ name: 'io.test', type: 'A', port: P }],
      resolvers: { nameservers: [dns.address], interval: `${INTERVAL}ms` },
    });
    await p.waitForLine(/ info backends discovered backends=2 /, 3000 * h.SCALE, 'first set');

    // Long sessions: 18 clients x 24 messages, ~2.6 s each.
    const N = 18;
    const connected = h.counter();
    const firstAcks = h.counter();
    const running = clients(p.url, N, { messages: 24, tag: 'run', onConnect: () => connected.add(), onAck: (r) => r.acks.length === 1 && firstAcks.add() });
    await firstAcks.reach(N, 15000 * h.SCALE, 'every running client acked once');

    const firstOnN3 = n3.waitForLine(/^SESSION /, 10000 * h.SCALE, 'first session on n3');
    const from = p.stderr.length;
    const changedAt = await dns.setHosts([`${ip(1)} io.test`, `${ip(2)} io.test`, `${ip(3)} io.test`]);
    // New clients keep arriving (one every 50 ms) while the change propagates.
    const fresh = [];
    let stopArrivals = false;
    const arrivals = (async () => {
      for (let i = 0; i < 24 && !stopArrivals; i++) {
        fresh.push(clients(p.url, 1, { messages: 5, tag: `new${i}-` }).then(([r]) => r));
        await h.pace(50);
      }
    })();
    await p.waitForLine(discoLine('backend added', `${ip(3)}_${P}`), 3 * INTERVAL * h.SCALE, 'n3 added', from);
    const addedAfter = Date.now() - changedAt;
    await firstOnN3;
    const firstSessionAfter = Date.now() - changedAt;
    stopArrivals = true;
    await arrivals;
    t.diagnostic(`scale up: backend added ${addedAfter} ms, first new session on the new node ${firstSessionAfter} ms after the DNS change (interval ${INTERVAL} ms)`);
    assert.ok(firstSessionAfter <= 2 * INTERVAL * h.SCALE, `first session on n3 ${firstSessionAfter} ms after the DNS change (> 2 intervals)`);

    const results = await running;
    const newcomers = await Promise.all(fresh);
    const stats = await env.stats();
    const lost = stayedProblems(results);
    t.diagnostic(`scale up: running clients ${results.length}, sessions lost ${lost.length}; new clients ${newcomers.length}, on n3: ${newcomers.filter((r) => r.acks[0] && r.acks[0].node === 'n3').length}`);
    assert.deepEqual(lost, [], 'running clients kept their session and node');
    assert.deepEqual(stayedProblems(newcomers), [], 'new clients kept their session and node');
    assert.ok(results.every((r) => r.acks[0].node !== 'n3'), 'no running client was on n3 before it existed');
    const late = assertNoUnknown(t, stats, 'scale up');
    t.diagnostic(`scale up: Session ID unknown: 0 for live sessions, ${late} close races`);
    const b = await p.backends();
    assert.deepEqual(Object.keys(b).sort(), [1, 2, 3].map((k) => `${ip(k)}_${P}`));
    for (const k of [1, 2, 3]) {
      assert.equal(b[`${ip(k)}_${P}`].address, `${ip(k)}:${P}`);
      assert.deepEqual(b[`${ip(k)}_${P}`].discovered, { name: 'io.test', identity: `${ip(k)}:${P}`, in_dns: true });
    }
    const m = await p.metrics();
    for (const k of [1, 2, 3]) assert.ok(m.samples.some((s) => s.labels.backend === `${ip(k)}_${P}`), `metrics label ${ip(k)}_${P}`);
    assert.equal(count(p, / discovery: backend (left DNS|removed)/), 0);
    void n1;
    void n2;
  });
});

test('v2. scale down with evict_over 0: the node leaves DNS while alive (drain), its sessions finish; then it dies: its clients move at once, it is removed', { timeout: 60000 }, async (t) => {
  await withEnv(t, async (env) => {
    const [, , n3] = await env.startPods(['n1', 'n2', 'n3']);
    const P = env.port;
    const name3 = `${ip(3)}_${P}`;
    const dns = await env.dnsmasq({ hosts: [1, 2, 3].map((k) => `${ip(k)} io.test`) });
    const p = await env.stickyd({
      discover: [{ name: 'io.test', type: 'A', port: P, hold: '20s', evict_over: '0s' }],
      resolvers: { nameservers: [dns.address], interval: '300ms' },
      extra: { health: { interval: '300ms', timeout: '250ms', rise: 1, fall: 2, path: '/whoami' } },
      timeouts: { connect: '1s' },
    });
    for (const k of [1, 2, 3]) await p.waitForLine(new RegExp(` info backend up backend=${esc(`${ip(k)}_${P}`)}\\b`), 5000 * h.SCALE, `pod ${k} up`);
    // Two raw sessions on n3, idle from now on: what stickyd answers them once n3 is removed.
    const doomed = await sessionsOn(env, p.port, 'n3', 2, 12);

    // A: short sessions that must finish normally; B: long ones (reconnection on) that will
    // still run when n3 dies.
    const connected = h.counter();
    const firstAcks = h.counter();
    const onAck = (r) => r.acks.length === 1 && firstAcks.add();
    const groupA = clients(p.url, 15, { messages: 14, tag: 'a', onAck, onConnect: () => connected.add() });
    const groupB = clients(p.url, 15, { messages: 45, gapMin: 100, gapMax: 150, tag: 'b', reconnect: true, onAck });
    let aDone = false;
    let bDone = 0;
    groupA.then(() => (aDone = true));
    groupB.then((rs) => (bDone = rs.length));
    await firstAcks.reach(30, 15000 * h.SCALE, 'every client acked once');

    const from = p.stderr.length;
    const leftAt = await dns.setHosts([1, 2].map((k) => `${ip(k)} io.test`));
    await p.waitForLine(discoLine('backend left DNS, draining', name3), 3000 * h.SCALE, 'n3 drained', from);
    t.diagnostic(`scale down: drain ${Date.now() - leftAt} ms after the DNS change`);
    assert.equal(aDone, false, 'group A still running when n3 left DNS (else the check is empty)');
    const b = await p.backends();
    assert.equal(b[name3].state, 'drain', JSON.stringify(b[name3]));
    assert.equal(b[name3].discovered.in_dns, false);
    assert.equal(b[name3].effective_weight, 0);
    // No new session for n3.
    const n3Before = (await n3.stats()).handshakes;
    for (let i = 0; i < 6; i++) {
      const hs = await h.handshake(p.port);
      assert.notEqual(await ownerOf(env, hs.sid), 'n3', 'a new session on draining n3');
    }

    const resultsA = await groupA;
    const onN3A = resultsA.filter((r) => r.acks[0] && r.acks[0].node === 'n3');
    t.diagnostic(`scale down: group A ${resultsA.length} clients (${onN3A.length} on n3) finished, sessions lost ${stayedProblems(resultsA).length}`);
    assert.ok(onN3A.length >= 1, `group A on n3: ${onN3A.length}`);
    assert.deepEqual(stayedProblems(resultsA), [], 'sessions of a draining node finish undisturbed');
    assert.equal((await n3.stats()).handshakes, n3Before, 'n3 got no new session while draining');
    assert.equal(count(p, discoLine('backend removed', name3)), 0, 'not removed while its sessions live');

    // Now n3 dies while group B still runs.
    assert.equal(bDone, 0, 'group B still running when n3 dies');
    const killedAt = Date.now();
    await n3.kill();
    const removed = await p.waitForLine(discoLine('backend removed', name3), 5000 * h.SCALE, 'n3 removed after it died', from);
    const removedAfter = Date.now() - killedAt;
    t.diagnostic(`scale down: n3 removed ${removedAfter} ms after it died (hold 20s): ${removed}`);
    const resultsB = await groupB;
    const onN3B = resultsB.filter((r) => r.acks.some((a) => a.node === 'n3'));
    const spared = resultsB.filter((r) => !onN3B.includes(r));
    assert.ok(onN3B.length >= 1, `group B on n3: ${onN3B.length}`);
    const moveTimes = [];
    for (const r of onN3B) {
      assert.ok(r.ok, `client ${r.index}: ${r.error}`);
      assert.ok(r.sessions.length >= 2, `client ${r.index} did not re-handshake`);
      const after = r.acks.find((a) => a.at > killedAt && a.node !== 'n3');
      assert.ok(after, `client ${r.index}: no ack from another node after n3 died`);
      assert.equal(r.acks[r.acks.length - 1].node === 'n3', false);
      moveTimes.push(after.at - killedAt);
    }
    const worst = Math.max(...moveTimes);
    t.diagnostic(`scale down: ${onN3B.length} clients of the dead n3 acked on another node after ${Math.min(...moveTimes)}..${worst} ms; others: ${spared.length}, sessions lost ${stayedProblems(spared).length}`);
    assert.ok(worst <= 5000 * h.SCALE, `a client of n3 needed ${worst} ms to move`);
    assert.deepEqual(stayedProblems(spared), [], 'clients of n1/n2 noticed nothing');
    const stats = await env.stats();
    assertNoUnknown(t, { n1: stats.n1, n2: stats.n2 }, 'survivors');
    // Sessions of the removed backend: Engine.IO's own 400 code 1, from stickyd.
    for (const sid of doomed) {
      const res = await h.request({ port: p.port, path: h.enginePath({ EIO: '4', transport: 'polling', sid }) });
      assert.equal(res.status, 400, `sid ${sid} of removed n3: ${res.status} ${res.body}`);
      assert.equal(res.body, SESSION_UNKNOWN);
    }
    const after = await p.backends();
    assert.deepEqual(Object.keys(after).sort(), [1, 2].map((k) => `${ip(k)}_${P}`), 'n3 gone from the admin API');
    assert.match(p.stderr.filter((l) => / info backends discovered /.test(l)).pop(), /backends=2 added=0 removed=1/);
  });
});

test('v3. TTL shorter than the interval, answers reordered: the change is seen after the TTL; a new order changes nothing', { timeout: 30000 }, async (t) => {
  await withEnv(t, async (env) => {
    const dns = await env.dnsmasq({ hosts: [`${ip(1)} io.test`], args: ['--local-ttl=1'] });
    const p = await env.stickyd({
      discover: [{ name: 'io.test', type: 'A', port: 3000 }],
      resolvers: { nameservers: [dns.address], interval: '30s' },
    });
    await p.waitForLine(/ info backends discovered backends=1 /, 3000 * h.SCALE, 'first set');
    const from = p.stderr.length;
    const changedAt = await dns.setHosts([`${ip(1)} io.test`, `${ip(2)} io.test`, `${ip(3)} io.test`]);
    await p.waitForLine(/ info backends discovered backends=3 added=2 /, 5000 * h.SCALE, 'change seen after the TTL', from);
    const seenAfter = Date.now() - changedAt;
    t.diagnostic(`TTL 1 s, interval 30 s: change seen ${seenAfter} ms after the DNS change`);
    assert.ok(seenAfter < 3000 * h.SCALE, `seen after ${seenAfter} ms`);

    // Same addresses, other orders: several lookups, no change.
    const stable = p.stderr.length;
    for (const order of [[3, 1, 2], [2, 3, 1]]) {
      await dns.setHosts(order.map((k) => `${ip(k)} io.test`));
      await dns.waitForQueries('io.test', 2, 5000 * h.SCALE, 'A');
    }
    assert.deepEqual(p.stderr.slice(stable).filter((l) => / discovery: | backends discovered /.test(l)), [], 'a reordered answer changed something');
    assert.deepEqual(Object.keys(await p.backends()).sort(), [1, 2, 3].map((k) => `${ip(k)}_3000`));
  });
});

test('v4. DNS stopped, SERVFAIL, timeouts: the set is kept, clients unaffected, one warn and one recovery line each time', { timeout: 60000 }, async (t) => {
  await withEnv(t, async (env) => {
    await env.startPods(['n1', 'n2']);
    const P = env.port;
    const hosts = [1, 2].map((k) => `${ip(k)} io.test`);
    const dns = await env.dnsmasq({ hosts });
    const servfail = await startServfail();
    env.relays.push(servfail); // closed with the relays
    const p = await env.stickyd({
      discover: [{ name: 'io.test', type: 'A', port: P, hold: '1s' }],
      resolvers: { nameservers: [dns.address], interval: '300ms', timeout: '300ms' },
    });
    await p.waitForLine(/ info backends discovered backends=2 /, 3000 * h.SCALE, 'first set');
    const setLines = () => p.stderr.filter((l) => / discovery: backend | backends discovered /.test(l)).length;
    const initial = setLines();
    const acks = h.counter();
    const firstAcks = h.counter();
    const run = clients(p.url, 12, { messages: 60, gapMin: 100, gapMax: 150, onAck: (r) => { acks.add(); if (r.acks.length === 1) firstAcks.add(); } });
    await firstAcks.reach(12, 15000 * h.SCALE, 'every client acked once');

    const WARN = / warn discovery: lookup failed, keeping the last good set /;
    const AGAIN = / info discovery: lookups answer again /;
    // Each outage: exactly one warn line, lookups go on failing (the clients ack ~0.9 s'
    // worth meanwhile, 3 intervals), then exactly one recovery line; the set never changes.
    const outage = async (what, begin, end, errorRe) => {
      const from = p.stderr.length;
      const began = Date.now();
      await begin();
      const warn = await p.waitForLine(WARN, 5000 * h.SCALE, `warn: ${what}`, from);
      t.diagnostic(`${what}: warned after ${Date.now() - began} ms: ${warn.replace(/^\S+ /, '')}`);
      assert.match(warn, errorRe);
      await acks.reach(acks.value + 12 * 7, 10000 * h.SCALE, `clients go on (${what})`);
      const b = await p.backends();
      assert.deepEqual(Object.keys(b).sort(), [1, 2].map((k) => `${ip(k)}_${P}`), `set kept (${what})`);
      for (const x of Object.values(b)) assert.equal(x.state, 'ready', JSON.stringify(x));
      await end();
      await p.waitForLine(AGAIN, 3000 * h.SCALE, `lookups answer again after ${what}`, from);
      await dns.waitForQueries('io.test', 2, 3000 * h.SCALE);
      assert.equal(count(p, WARN, from), 1, `one warn line (${what})`);
      assert.equal(count(p, AGAIN, from), 1, `one recovery line (${what})`);
    };
    await outage('DNS stopped', () => dns.stop(), () => dns.start(), /error="Could not contact DNS servers"/);
    // dnsmasq forwards io.test to an upstream that answers SERVFAIL.
    // dnsmasq (re-read on SIGHUP, no restart) forwards io.test to an upstream answering SERVFAIL.
    await outage('SERVFAIL', () => dns.setHosts([], { servers: [`server=/io.test/127.0.0.1#${servfail.port}`] }), () => dns.setHosts(hosts, { servers: [] }), /error=/);
    assert.ok(servfail.answered >= 2, `SERVFAIL answers: ${servfail.answered}`);
    // ... to a port where nothing answers: stickyd's queries time out.
    await outage('timeouts', () => dns.setHosts([], { servers: ['server=/io.test/127.0.0.1#9'] }), () => dns.setHosts(hosts, { servers: [] }), /error="Timeout while contacting DNS servers"/);

    const results = await run;
    const lost = stayedProblems(results);
    t.diagnostic(`DNS outages: ${results.length} clients, sessions lost ${lost.length}`);
    assert.deepEqual(lost, []);
    assertNoUnknown(t, await env.stats(), 'DNS outage');
    assert.equal(setLines(), initial, 'the set never changed');
  });
});

test('v5. truncated SRV answer (40 long targets): read over TCP, all 40 discovered; max bounds it', { timeout: 30000 }, async (t) => {
  await withEnv(t, async (env) => {
    const targets = Array.from({ length: 40 }, (_, i) => `pod-${String(i).padStart(2, '0')}-with-a-long-name-to-overflow-one-udp-answer.io.test`);
    const dns = await env.dnsmasq({
      hosts: targets.map((n, i) => `127.0.1.${i + 1} ${n}`),
      args: targets.map((n) => `--srv-host=_io._tcp.io.test,${n},3000`),
    });
    const udp = await dns.query('_io._tcp.io.test', 'SRV', { edns: 1232 });
    assert.equal(udp.tc, true, `the UDP answer is truncated (${JSON.stringify(udp)})`);
    const resolvers = { nameservers: [dns.address], interval: '500ms' };
    const all = await env.stickyd({ discover: [{ name: '_io._tcp.io.test', type: 'SRV' }], resolvers });
    const ten = await env.stickyd({ discover: [{ name: '_io._tcp.io.test', type: 'SRV', max: 10 }], resolvers });
    await all.waitForLine(/ info backends discovered backends=40 added=40 /, 5000 * h.SCALE, '40 backends');
    await ten.waitForLine(/ info backends discovered backends=10 added=10 /, 5000 * h.SCALE, '10 backends');
    const names = targets.map((n) => `${n}_3000`);
    const b = await all.backends();
    assert.deepEqual(Object.keys(b).sort(), names.slice().sort());
    targets.forEach((n, i) => {
      assert.equal(b[`${n}_3000`].address, `127.0.1.${i + 1}:3000`);
      assert.equal(b[`${n}_3000`].discovered.identity, `${n}:3000`);
    });
    const b10 = await ten.backends();
    assert.deepEqual(Object.keys(b10).sort(), names.slice().sort().slice(0, 10), 'max keeps the first identities');
    assert.ok(ten.stderr.some((l) => / warn discovery: more records than max/.test(l)));
    // Later lookups change nothing.
    const from = [all.stderr.length, ten.stderr.length];
    await dns.waitForQueries('_io._tcp.io.test', 4, 5000 * h.SCALE, 'SRV');
    assert.equal(count(all, / discovery: | backends discovered /, from[0]), 0);
    assert.equal(count(ten, / discovery: | backends discovered /, from[1]), 0);
    t.diagnostic(`truncated SRV: ${Object.keys(b).length} backends; with max 10: ${Object.keys(b10).length}`);
  });
});

test('v6. an SRV target whose address changes: same backend, "address changed"; the old process\'s sessions are gone with it', { timeout: 30000 }, async (t) => {
  await withEnv(t, async (env) => {
    const [n1, n2] = await env.startPods(['n1', 'n2']);
    const P = env.port;
    const dns = await env.dnsmasq({
      hosts: [`${ip(1)} n1.io.test`, `${ip(2)} n2.io.test`],
      args: [`--srv-host=_io._tcp.io.test,n1.io.test,${P}`, `--srv-host=_io._tcp.io.test,n2.io.test,${P}`],
    });
    const p = await env.stickyd({
      discover: [{ name: '_io._tcp.io.test', type: 'SRV', hold: '1s' }],
      resolvers: { nameservers: [dns.address], interval: '300ms' },
    });
    await p.waitForLine(/ info backends discovered backends=2 /, 3000 * h.SCALE, 'first set');
    const name1 = `n1.io.test_${P}`;
    assert.deepEqual(Object.keys(await p.backends()).sort(), [name1, `n2.io.test_${P}`]);

    const raws = { n1: [], n2: [] };
    for (let i = 0; i < 8 && (raws.n1.length < 2 || raws.n2.length < 1); i++) {
      const hs = await h.handshake(p.port);
      const raw = new h.RawSession(p.port, hs.sid);
      await raw.connectNamespace();
      raws[(await raw.echo('hi')).node].push(raw);
    }
    assert.ok(raws.n1.length >= 2 && raws.n2.length >= 1);

    // The pod restarts elsewhere: n1 dies, "n1b" runs on .13, DNS names the new address.
    await n1.kill();
    const n1b = await env.startPod('n1b', 3);
    const from = p.stderr.length;
    const changedAt = await dns.setHosts([`${ip(3)} n1.io.test`, `${ip(2)} n2.io.test`]);
    await p.waitForLine(discoLine('backend address changed', name1), 3000 * h.SCALE, 'address changed', from);
    t.diagnostic(`SRV target moved: seen ${Date.now() - changedAt} ms after the DNS change`);
    const b = await p.backends();
    assert.deepEqual(Object.keys(b).sort(), [name1, `n2.io.test_${P}`], 'same names');
    assert.equal(b[name1].address, `${ip(3)}:${P}`);
    assert.equal(b[name1].state, 'ready');
    assert.equal(count(p, / discovery: backend (left DNS|removed|added)/, from), 0);
    // The old process's sessions: Engine.IO's own 400 code 1 (from the new process).
    for (const raw of raws.n1) {
      const res = await h.request({ port: p.port, path: h.enginePath({ EIO: '4', transport: 'polling', sid: raw.sid }) });
      assert.equal(res.status, 400, `old n1 sid ${raw.sid}: ${res.status} ${res.body}`);
      assert.equal(res.body, SESSION_UNKNOWN);
    }
    assert.equal((await raws.n2[0].echo('still')).node, 'n2');
    // New sessions reach the new process under the same name.
    const owners = [];
    for (let i = 0; i < 4; i++) owners.push(await ownerOf(env, (await h.handshake(p.port)).sid));
    assert.ok(owners.includes('n1b'), `new sessions: ${owners}`);
    assert.ok(!owners.includes(undefined), `new sessions: ${owners}`);
    void n2;
    void n1b;
  });
});

test('v7. stickyd started while DNS is down: listens, answers 503, fills the set once DNS answers', { timeout: 30000 }, async (t) => {
  await withEnv(t, async (env) => {
    await env.startPods(['n1', 'n2']);
    const P = env.port;
    const dns = await env.dnsmasq({ hosts: [1, 2].map((k) => `${ip(k)} io.test`), start: false });
    const p = await env.stickyd({
      discover: [{ name: 'io.test', type: 'A', port: P }],
      resolvers: { nameservers: [dns.address], interval: '5s', timeout: '300ms' },
    });
    await p.waitForLine(/ warn discovery: lookup failed/, 3000 * h.SCALE, 'first lookup fails');
    const res = await h.request({ port: p.port, path: h.enginePath({ EIO: '4', transport: 'polling' }) });
    assert.equal(res.status, 503, `before DNS answers: ${res.status} ${res.body}`);
    assert.deepEqual(Object.keys(await p.backends()), []);
    const startedAt = Date.now();
    await dns.start();
    await p.waitForLine(/ info backends discovered backends=2 added=2 /, 5000 * h.SCALE, 'set filled');
    const filledAfter = Date.now() - startedAt;
    t.diagnostic(`DNS up ${filledAfter} ms before the set was filled (interval 5 s)`);
    assert.ok(filledAfter < 3000 * h.SCALE, `filled ${filledAfter} ms after DNS came up`);
    const hs = await h.handshake(p.port);
    const raw = new h.RawSession(p.port, hs.sid);
    await raw.connectNamespace();
    assert.match((await raw.echo('x')).node, /^n[12]$/);
  });
});

test('v8. two replicas discover the same set behind an L4 relay (tag_sids + secret): same names and values; clients stay sticky', { timeout: 60000 }, async (t) => {
  await withEnv(t, async (env) => {
    await env.startPods(['n1', 'n2', 'n3']);
    const P = env.port;
    const dns = await env.dnsmasq({ hosts: [1, 2, 3].map((k) => `${ip(k)} io.test`) });
    const cfg = {
      discover: [{ name: 'io.test', type: 'A', port: P }],
      resolvers: { nameservers: [dns.address], interval: '400ms' },
      extra: { sticky: { tag_sids: true, secret: 'one-secret-for-every-replica-0123456789' } },
    };
    const A = await env.stickyd({ ...cfg, label: 'stickyd-A' });
    await A.waitForLine(/ info backends discovered backends=3 /, 3000 * h.SCALE, 'set');
    // B starts later and sees the records in another order.
    await dns.setHosts([3, 1, 2].map((k) => `${ip(k)} io.test`));
    const B = await env.stickyd({ ...cfg, label: 'stickyd-B' });
    await B.waitForLine(/ info backends discovered backends=3 /, 3000 * h.SCALE, 'set');
    const names = [1, 2, 3].map((k) => `${ip(k)}_${P}`);
    assert.deepEqual(Object.keys(await A.backends()).sort(), names);
    assert.deepEqual(Object.keys(await B.backends()).sort(), names);
    // Persistence values: the tag of a sid names its backend; both replicas agree.
    const tags = { A: new Map(), B: new Map() };
    for (const [label, x] of [['A', A], ['B', B]]) {
      for (let i = 0; i < 6; i++) {
        const hs = await h.handshake(x.port, { sidRe: /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/ });
        const owner = await ownerOf(env, h.untag(hs.sid));
        assert.ok(owner, `sid ${hs.sid} (${label}): no node created ${h.untag(hs.sid)}`);
        const prev = tags[label].get(owner);
        assert.ok(!prev || prev === h.tagOf(hs.sid), `${label}: two tags for ${owner}`);
        tags[label].set(owner, h.tagOf(hs.sid));
      }
    }
    assert.equal(tags.A.size, 3, 'replica A handed sessions to every node');
    assert.equal(tags.B.size, 3, 'replica B handed sessions to every node');
    for (const [node, tag] of tags.A) assert.equal(tags.B.get(node), tag, `persistence value of ${node}`);
    assert.equal(new Set(tags.A.values()).size, tags.A.size);
    t.diagnostic(`persistence values: ${JSON.stringify(Object.fromEntries(tags.A))}`);
    const mA = await A.metrics();
    const mB = await B.metrics();
    const labels = (m) => [...new Set(m.samples.map((s) => s.labels.backend).filter(Boolean))].sort();
    assert.deepEqual(labels(mA), names);
    assert.deepEqual(labels(mB), names);

    const relay = await env.relay([A.port, B.port]);
    const results = await clients(relay.url, 18, { messages: 10 });
    const lost = stayedProblems(results, h.untag);
    t.diagnostic(`replicas: ${results.length} clients through the relay (A ${relay.count(A.port)}, B ${relay.count(B.port)} connections), sessions lost ${lost.length}`);
    assert.deepEqual(lost, [], 'clients stayed on their node across replicas');
    assert.equal(new Set(results.map((r) => r.acks[0].node)).size, 3, 'every node used');
    assert.ok(relay.count(A.port) > 10 && relay.count(B.port) > 10);
    assertNoUnknown(t, await env.stats(), 'replicas');
  });
});

test('v9. a backend that comes back to DNS before its hold ends is undrained: ready again, new sessions', { timeout: 30000 }, async (t) => {
  await withEnv(t, async (env) => {
    const [, n2] = await env.startPods(['n1', 'n2']);
    const P = env.port;
    const name2 = `${ip(2)}_${P}`;
    const hosts = [1, 2].map((k) => `${ip(k)} io.test`);
    const dns = await env.dnsmasq({ hosts });
    const p = await env.stickyd({
      discover: [{ name: 'io.test', type: 'A', port: P, hold: '20s' }],
      resolvers: { nameservers: [dns.address], interval: '300ms' },
    });
    await p.waitForLine(/ info backends discovered backends=2 /, 3000 * h.SCALE, 'first set');
    const firstAcks = h.counter();
    const run = clients(p.url, 9, { messages: 24, onAck: (r) => r.acks.length === 1 && firstAcks.add() });
    await firstAcks.reach(9, 15000 * h.SCALE, 'every client acked once');
    const from = p.stderr.length;
    await dns.setHosts([`${ip(1)} io.test`]);
    await p.waitForLine(discoLine('backend left DNS, draining', name2), 3000 * h.SCALE, 'n2 drained', from);
    assert.equal((await p.backends())[name2].state, 'drain');
    const backAt = await dns.setHosts(hosts);
    await p.waitForLine(discoLine('backend back in DNS', name2), 3000 * h.SCALE, 'n2 back', from);
    t.diagnostic(`back in DNS: seen ${Date.now() - backAt} ms after the DNS change`);
    const b = (await p.backends())[name2];
    assert.equal(b.state, 'ready', JSON.stringify(b));
    assert.equal(b.discovered.in_dns, true);
    const n2Sessions = (await n2.stats()).handshakes;
    for (let i = 0; i < 4; i++) await h.handshake(p.port);
    assert.ok((await n2.stats()).handshakes > n2Sessions, 'n2 takes new sessions again');
    const results = await run;
    assert.deepEqual(stayedProblems(results), []);
    assertNoUnknown(t, await env.stats(), 'undrain');
    assert.equal(count(p, / discovery: backend (removed|added)/, from), 0);
  });
});

test('v10. a backend out of DNS is removed `hold` after its last session, never while one lives', { timeout: 30000 }, async (t) => {
  await withEnv(t, async (env) => {
    const { P, name3, dns, p } = await env.threePodsInDns({ hold: '500ms' }, { extra: { affinity: { idle_timeout: '1s' } } });
    await p.waitForLine(/ info backends discovered backends=3 /, 3000 * h.SCALE, 'first set');
    const firstAcks = h.counter();
    const run = clients(p.url, 12, { messages: 30, gapMin: 100, gapMax: 150, onAck: (r) => r.acks.length === 1 && firstAcks.add() });
    await firstAcks.reach(12, 15000 * h.SCALE, 'every client acked once');
    const from = p.stderr.length;
    await dns.setHosts([1, 2].map((k) => `${ip(k)} io.test`));
    await p.waitForLine(discoLine('backend left DNS, draining', name3), 3000 * h.SCALE, 'n3 drained', from);
    const removedLine = p.waitForLine(discoLine('backend removed', name3), 20000 * h.SCALE, 'n3 removed', from);
    const results = await run;
    assert.deepEqual(stayedProblems(results), [], 'the draining node\'s sessions finished');
    const onN3 = results.filter((r) => r.acks[0].node === 'n3');
    assert.ok(onN3.length >= 1, `clients on n3: ${onN3.length}`);
    const lastSession = Math.max(...onN3.map((r) => r.acks[r.acks.length - 1].at));
    const line = await removedLine;
    const removedAt = Date.parse(line.split(' ')[0]);
    t.diagnostic(`hold 500ms, idle_timeout 1s: removed ${removedAt - lastSession} ms after the last ack of its last session: ${line.replace(/^\S+ /, '')}`);
    assert.ok(removedAt > lastSession, 'removed while a session still ran');
    assert.deepEqual(Object.keys(await p.backends()).sort(), [1, 2].map((k) => `${ip(k)}_${P}`));
  });
});

test('v11. SIGHUP while discovering: the discovered set, a drain in progress and the sessions are kept; discovery goes on', { timeout: 30000 }, async (t) => {
  await withEnv(t, async (env) => {
    const { P, name3, dns, p } = await env.threePodsInDns({ hold: '20s' });
    await p.waitForLine(/ info backends discovered backends=3 /, 3000 * h.SCALE, 'first set');
    const firstAcks = h.counter();
    const run = clients(p.url, 12, { messages: 24, onAck: (r) => r.acks.length === 1 && firstAcks.add() });
    await firstAcks.reach(12, 15000 * h.SCALE, 'every client acked once');
    let from = p.stderr.length;
    await dns.setHosts([1, 2].map((k) => `${ip(k)} io.test`));
    await p.waitForLine(discoLine('backend left DNS, draining', name3), 3000 * h.SCALE, 'n3 drained', from);
    from = p.stderr.length;
    p.child.kill('SIGHUP');
    await p.waitForLine(/ info config reloaded /, 3000 * h.SCALE, 'reloaded', from);
    await dns.waitForQueries('io.test', 2, 3000 * h.SCALE);
    const b = await p.backends();
    assert.deepEqual(Object.keys(b).sort(), [1, 2, 3].map((k) => `${ip(k)}_${P}`), 'the discovered set survives SIGHUP');
    assert.equal(b[name3].state, 'drain', `n3 after SIGHUP: ${JSON.stringify(b[name3])}`);
    assert.equal(b[name3].discovered.in_dns, false);
    const n3 = env.pod('n3');
    const before = (await n3.stats()).handshakes;
    for (let i = 0; i < 6; i++) await h.handshake(p.port);
    assert.equal((await n3.stats()).handshakes, before, 'draining n3 got new sessions after SIGHUP');
    const results = await run;
    assert.deepEqual(stayedProblems(results), [], 'SIGHUP disturbed a session');
    assertNoUnknown(t, await env.stats(), 'SIGHUP');
    // Discovery still follows DNS.
    await dns.setHosts([1, 2, 3].map((k) => `${ip(k)} io.test`));
    await p.waitForLine(discoLine('backend back in DNS', name3), 3000 * h.SCALE, 'n3 back after SIGHUP', from);
    assert.equal((await p.backends())[name3].state, 'ready');
  });
});

test('v12. tag_sids without a secret: discovered names contain dots (the tag separator); tagged sessions must still work', { timeout: 30000 }, async (t) => {
  await withEnv(t, async (env) => {
    await env.startPods(['n1', 'n2']);
    const P = env.port;
    const dns = await env.dnsmasq({ hosts: [1, 2].map((k) => `${ip(k)} io.test`) });
    const p = await env.stickyd({
      discover: [{ name: 'io.test', type: 'A', port: P }],
      resolvers: { nameservers: [dns.address], interval: '300ms' },
      extra: { sticky: { tag_sids: true }, access_log: true },
    });
    await p.waitForLine(/ info backends discovered backends=2 /, 3000 * h.SCALE, 'first set');
    const hs = await h.handshake(p.port, { sidRe: /./ });
    t.diagnostic(`tagged sid: ${hs.sid}`);
    const raw = new h.RawSession(p.port, hs.sid);
    await raw.connectNamespace();
    const reply = await raw.echo('tagged');
    assert.match(reply.node, /^n[12]$/);
  });
});

test('v13. with health checks, a new address that does not answer yet takes no session', { timeout: 30000 }, async (t) => {
  await withEnv(t, async (env) => {
    await env.startPods(['n1', 'n2']);
    const P = env.port;
    const dead = `${ip(4)}_${P}`; // in DNS, nothing listens there (a pod not started yet)
    const dns = await env.dnsmasq({ hosts: [1, 2].map((k) => `${ip(k)} io.test`) });
    const p = await env.stickyd({
      discover: [{ name: 'io.test', type: 'A', port: P }],
      resolvers: { nameservers: [dns.address], interval: '300ms' },
      extra: { health: { interval: '300ms', timeout: '250ms', rise: 2, fall: 2, path: '/whoami' }, access_log: true },
      timeouts: { connect: '1s' },
    });
    await p.waitForLine(/ info backends discovered backends=2 /, 3000 * h.SCALE, 'first set');
    for (const k of [1, 2]) await p.waitForLine(new RegExp(` info backend up backend=${esc(`${ip(k)}_${P}`)}\\b`), 5000 * h.SCALE, `pod ${k} up`);
    const from = p.stderr.length;
    await dns.setHosts([1, 2, 4].map((k) => `${ip(k)} io.test`));
    await p.waitForLine(discoLine('backend added', dead), 3000 * h.SCALE, 'dead address added', from);
    // New sessions right after it was added, before any check could mark it down.
    const statuses = [];
    for (let i = 0; i < 9; i++) {
      const res = await h.request({ port: p.port, path: h.enginePath({ EIO: '4', transport: 'polling' }) });
      statuses.push(res.status);
    }
    const log = p.textAccessLog(from);
    const toDead = log.filter((e) => e.backend === dead);
    t.diagnostic(`handshakes after a dead address was added: ${JSON.stringify(statuses)}; routed to it: ${toDead.length} (${toDead.map((e) => e.status)})`);
    assert.deepEqual(statuses.filter((s) => s !== 200), [], 'a client got an error because of the new address');
    // It starts down, waiting for its first successful check (which never comes).
    await p.waitForLine(new RegExp(` info backend waits for its first health check backend=${esc(dead)}\\b`), 5000 * h.SCALE, 'dead address waits for a check', from);
    assert.ok(!p.stderr.slice(from).some((l) => new RegExp(` info backend up backend=${esc(dead)}\\b`).test(l)), 'the dead address came up');
  });
});

test('v14. max with a rolling replacement: the newcomer is added once the one it replaces is removed', { timeout: 30000 }, async (t) => {
  await withEnv(t, async (env) => {
    await env.startPods(['n1', 'n2', 'n3']);
    const P = env.port;
    const dns = await env.dnsmasq({ hosts: [1, 2].map((k) => `${ip(k)} io.test`) });
    const p = await env.stickyd({
      discover: [{ name: 'io.test', type: 'A', port: P, max: 2, hold: '300ms' }],
      resolvers: { nameservers: [dns.address], interval: '300ms' },
      extra: { affinity: { idle_timeout: '1s' } },
    });
    await p.waitForLine(/ info backends discovered backends=2 /, 3000 * h.SCALE, 'first set');
    const from = p.stderr.length;
    const changedAt = await dns.setHosts([1, 3].map((k) => `${ip(k)} io.test`));
    await p.waitForLine(discoLine('backend left DNS, draining', `${ip(2)}_${P}`), 3000 * h.SCALE, 'n2 drained', from);
    await p.waitForLine(discoLine('backend removed', `${ip(2)}_${P}`), 5000 * h.SCALE, 'n2 removed', from);
    await p.waitForLine(discoLine('backend added', `${ip(3)}_${P}`), 3000 * h.SCALE, 'n3 added', from);
    t.diagnostic(`max 2, ${ip(2)} replaced by ${ip(3)}: added ${Date.now() - changedAt} ms after the DNS change; lines: ${p.stderr.slice(from).filter((l) => / discovery: /.test(l)).map((l) => l.replace(/^\S+ /, '')).join(' | ')}`);
    assert.deepEqual(Object.keys(await p.backends()).sort(), [1, 3].map((k) => `${ip(k)}_${P}`));
  });
});

test('v15. no active checks: a draining node that dies is marked down by connect failures and removed at once; its clients move', { timeout: 30000 }, async (t) => {
  await withEnv(t, async (env) => {
    const [, , n3] = await env.startPods(['n1', 'n2', 'n3']);
    const P = env.port;
    const name3 = `${ip(3)}_${P}`;
    const dns = await env.dnsmasq({ hosts: [1, 2, 3].map((k) => `${ip(k)} io.test`) });
    const p = await env.stickyd({
      discover: [{ name: 'io.test', type: 'A', port: P, hold: '20s' }],
      resolvers: { nameservers: [dns.address], interval: '300ms' },
      timeouts: { connect: '1s' },
    });
    await p.waitForLine(/ info backends discovered backends=3 /, 3000 * h.SCALE, 'first set');
    // Three raw sessions on n3: after it dies, one request each gives passive_fall (3)
    // connect failures whatever the real clients on n3 do (a websocket client whose tunnel
    // closes re-handshakes elsewhere without ever failing a connect).
    const doomed = await sessionsOn(env, p.port, 'n3', 3, 15);
    const firstAcks = h.counter();
    const run = clients(p.url, 15, { messages: 30, gapMin: 100, gapMax: 150, reconnect: true, onAck: (r) => r.acks.length === 1 && firstAcks.add() });
    await firstAcks.reach(15, 15000 * h.SCALE, 'every client acked once');
    const from = p.stderr.length;
    await dns.setHosts([1, 2].map((k) => `${ip(k)} io.test`));
    await p.waitForLine(discoLine('backend left DNS, draining', name3), 3000 * h.SCALE, 'n3 drained', from);
    const killedAt = Date.now();
    await n3.kill();
    const statuses = [];
    for (const sid of doomed) {
      const res = await h.request({ port: p.port, path: h.enginePath({ EIO: '4', transport: 'polling', sid }) });
      statuses.push(res.status);
    }
    const down = await p.waitForLine(new RegExp(` warn backend down backend=${esc(name3)}\\b`), 10000 * h.SCALE, 'n3 down (passive)', from);
    const removed = await p.waitForLine(discoLine('backend removed', name3), 5000 * h.SCALE, 'n3 removed', from);
    t.diagnostic(`passive: requests of n3's sessions after it died: ${statuses}; ${down.replace(/^\S+ /, '')}; removed ${Date.now() - killedAt} ms after n3 died: ${removed.replace(/^\S+ /, '')}`);
    for (const sid of doomed) {
      const res = await h.request({ port: p.port, path: h.enginePath({ EIO: '4', transport: 'polling', sid }) });
      assert.equal(res.status, 400, `sid ${sid} of removed n3: ${res.status} ${res.body}`);
      assert.equal(res.body, SESSION_UNKNOWN);
    }
    const results = await run;
    const moved = results.filter((r) => r.acks.some((a) => a.node === 'n3'));
    const spared = results.filter((r) => !moved.includes(r));
    const times = moved.map((r) => (r.acks.find((a) => a.at > killedAt && a.node !== 'n3') || { at: Infinity }).at - killedAt);
    t.diagnostic(`passive: ${moved.length} clients of n3 acked elsewhere after ${Math.min(...times)}..${Math.max(...times)} ms; others sessions lost ${stayedProblems(spared).length}`);
    assert.ok(moved.length >= 1, `clients of n3: ${moved.length}`);
    for (const r of moved) assert.ok(r.ok, `client ${r.index}: ${r.error}`);
    assert.ok(Math.max(...times) <= 5000 * h.SCALE);
    assert.deepEqual(stayedProblems(spared), []);
  });
});

// Pods n1..n3 (n3 not in DNS yet), health checks every 300 ms; resolves once n1, n2 are up.
async function healthEnv(env, { fall = 3 } = {}) {
  const pods = await env.startPods(['n1', 'n2', 'n3']);
  const P = env.port;
  const names = [1, 2, 3].map((k) => `${ip(k)}_${P}`);
  const dns = await env.dnsmasq({ hosts: [1, 2].map((k) => `${ip(k)} io.test`) });
  const p = await env.stickyd({
    discover: [{ name: 'io.test', type: 'A', port: P, hold: '20s' }],
    resolvers: { nameservers: [dns.address], interval: '200ms' },
    extra: { health: { interval: '300ms', timeout: '250ms', rise: 2, fall, path: '/whoami' } },
    timeouts: { connect: '1s' },
  });
  const up = (name) => new RegExp(` info backend up backend=${esc(name)}\\b`);
  for (const n of names.slice(0, 2)) await p.waitForLine(up(n), 5000 * h.SCALE, `${n} up`);
  return { pods, names, dns, p, up };
}

test('v16. a discovery change does not re-announce backends that are up (log line, health transition metric)', { timeout: 30000 }, async (t) => {
  await withEnv(t, async (env) => {
    const { names, dns, p, up } = await healthEnv(env);
    const from = p.stderr.length;
    await dns.setHosts([1, 2, 3].map((k) => `${ip(k)} io.test`));
    await p.waitForLine(up(names[2]), 5000 * h.SCALE, 'n3 up');
    await dns.waitForQueries('io.test', 3, 3000 * h.SCALE); // > 1 health interval later
    const again = p.stderr.slice(from).filter((l) => up(names[0]).test(l) || up(names[1]).test(l));
    const m = await p.metrics();
    const transitions = names.slice(0, 2).map((n) => m.get('stickyd_backend_health_transitions_total', { backend: n, to: 'up' }));
    t.diagnostic(`after one discovery change: ${again.length} repeated 'backend up' lines for n1/n2; up transitions counted: ${transitions}`);
    assert.deepEqual(again.map((l) => l.replace(/^\S+ /, '')), [], 'a discovery change re-announced backends that were up');
    assert.deepEqual(transitions, [1, 1], 'health transitions counted again after a discovery change');
  });
});

test('v17. a dead node still in DNS is marked down by active checks while other members come and go', { timeout: 30000 }, async (t) => {
  await withEnv(t, async (env) => {
    const { pods, names, dns, p } = await healthEnv(env, { fall: 3 });
    const from = p.stderr.length;
    // n3 joins and leaves every ~250 ms (each a discovery change); no client traffic, so only
    // active checks (interval 300 ms, fall 3) can mark the dead n2 down.
    const churn = { on: true, changes: 0 };
    const churning = (async () => {
      for (let i = 0; churn.on && i < 40; i++) {
        await dns.setHosts((i % 2 ? [1, 2] : [1, 2, 3]).map((k) => `${ip(k)} io.test`));
        churn.changes++;
        await h.pace(250);
      }
    })();
    const killedAt = Date.now();
    await pods[1].kill();
    try {
      await p.waitForLine(new RegExp(` warn backend down backend=${esc(names[1])}\\b`), 5000 * h.SCALE, 'n2 down while the set churns', from);
      t.diagnostic(`n2 down ${Date.now() - killedAt} ms after it died (health interval 300 ms, fall 3), ${churn.changes} DNS changes meanwhile`);
    } finally {
      churn.on = false;
      await churning;
      t.diagnostic(`${churn.changes} DNS changes, ${count(p, / info backends discovered /, from)} discovery reloads; n2 health now: ${(await p.backends())[names[1]].health}`);
    }
  });
});

test('v18. AAAA records: one backend per address, named from it ([::1]:3000 -> --1_3000)', { timeout: 20000 }, async (t) => {
  await withEnv(t, async (env) => {
    // No traffic: no node, no health check; only what the set and the admin API say.
    const dns = await env.dnsmasq({ hosts: ['::1 io6.test', '127.0.0.11 io6.test'] });
    const p = await env.stickyd({
      discover: [{ name: 'io6.test', type: 'AAAA', port: 3000, weight: 3 }],
      resolvers: { nameservers: [dns.address], interval: '300ms' },
    });
    await p.waitForLine(/ info backends discovered backends=1 added=1 /, 3000 * h.SCALE, 'AAAA set');
    const b = await p.backends();
    t.diagnostic(`AAAA: ${JSON.stringify(Object.values(b).map((x) => [x.name, x.address]))}`);
    assert.deepEqual(Object.keys(b), ['--1_3000']);
    assert.equal(b['--1_3000'].address, '[::1]:3000');
    assert.equal(b['--1_3000'].weight, 3);
    assert.deepEqual(b['--1_3000'].discovered, { name: 'io6.test', identity: '[::1]:3000', in_dns: true });
  });
});

test('v19. SIGUSR2 with discovered backends: the new process learns the old table before DNS answers it, and routes those sessions once discovery finds their nodes', { timeout: 60000 }, async (t) => {
  await withEnv(t, async (env) => {
    await env.startPods(['n1', 'n2']);
    const P = env.port;
    const dns = await env.dnsmasq({ hosts: [`${ip(1)} io.test`, `${ip(2)} io.test`] });
    const p = await env.stickyd({
      discover: [{ name: 'io.test', type: 'A', port: P }],
      resolvers: { nameservers: [dns.address], interval: '500ms' },
      timeouts: { shutdown_grace: '5s' },
    });
    await p.waitForLine(/ info backends discovered backends=2 /, 3000 * h.SCALE, 'first set');
    const sessions = [];
    for (let i = 0; i < 8; i++) {
      const hs = await h.handshake(p.port);
      const raw = new h.RawSession(p.port, hs.sid);
      await raw.connectNamespace();
      sessions.push({ raw, owner: await ownerOf(env, hs.sid) });
    }
    assert.equal(new Set(sessions.map((s) => s.owner)).size, 2, 'sessions on both pods');
    const from = p.stderr.length;
    p.child.kill('SIGUSR2');
    const started = await p.waitForLine(/ info started .*\bpid=(\d+)/, 10000, 'new process', from);
    const newPid = Number(/\bpid=(\d+)/.exec(started)[1]);
    try {
      const taken = await p.waitForLine(/upgrade: sessions taken over/, 5000, 'import', from);
      assert.match(taken, /sessions=0 waiting_for_discovery=8 dropped=0/);
      await p.waitForLine(/upgrade: sessions of discovered backends taken over sessions=8 still_waiting=0/, 5000, 'discovered', from);
      await h.withTimeout(p.child.exited, 10000, 'old process exit');
      for (const { raw, owner } of sessions) assert.equal((await raw.echo({ after: 'upgrade' })).node, owner, raw.sid);
    } finally {
      process.kill(newPid, 'SIGTERM');
      if (!p.child.stderr.readableEnded) await h.once(p.child.stderr, 'end', 10000, 'new process exit');
    }
  });
});

test('v20. scale down (default paced eviction): a node that leaves DNS has its clients moved off at a steady pace while it is still alive; all end on other nodes; then it is removed', { timeout: 60000 }, async (t) => {
  await withEnv(t, async (env) => {
    const { name3, dns, p } = await env.threePodsInDns({ hold: '1s', evict_over: '3s' });
    await p.waitForLine(/ info backends discovered backends=3 /, 3000 * h.SCALE, 'first set');
    // Long-running clients with Socket.IO's reconnection: they must all survive the scale-down.
    const reconnects = [];
    const firstAcks = h.counter();
    const running = clients(p.url, 24, {
      messages: 60, gapMin: 80, gapMax: 120, tag: 'e', reconnect: true,
      onAck: (r) => r.acks.length === 1 && firstAcks.add(),
      onConnect: (r) => r.sessions && r.sessions.length > 1 && reconnects.push(Date.now()),
    });
    await firstAcks.reach(24, 15000 * h.SCALE, 'every client acked once');
    const onN3 = (await p.backends())[name3].sessions;
    assert.ok(onN3 >= 3, `sessions on n3: ${onN3}`);
    const from = p.stderr.length;
    const leftAt = await dns.setHosts([1, 2].map((k) => `${ip(k)} io.test`));
    const started = await p.waitForLine(/backend eviction started .*cause="left DNS"/, 3000 * h.SCALE, 'eviction on DNS removal', from);
    assert.match(started, new RegExp(`backend=${esc(name3)}\\b`));
    await p.waitForLine(discoLine('backend removed', name3), 10000 * h.SCALE, 'n3 removed once its sessions moved', from);
    const results = await running;
    for (const r of results) {
      assert.ok(r.ok, `client ${r.index}: ${r.error}`);
      assert.notEqual(r.acks[r.acks.length - 1].node, 'n3', `client ${r.index} still on n3 at the end`);
    }
    const moved = results.filter((r) => new Set(r.acks.map((a) => a.node)).has('n3'));
    const span = reconnects.length ? Math.max(...reconnects) - Math.min(...reconnects) : 0;
    t.diagnostic(`DNS removal: ${moved.length} clients moved off n3 over ${span} ms (evict_over 3s), removal ${Date.now() - leftAt} ms after the change`);
    assert.ok(moved.length >= 3, `clients that were on n3: ${moved.length}`);
  });
});
