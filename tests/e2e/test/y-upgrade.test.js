'use strict';
// y. Replacing a running stickyd (issue 14): SIGUSR2 starts the binary again, hands it the
//    listening sockets and the affinity table, and the old process drains once the new one
//    serves. Real clients of every kind run across the upgrade while a prober opens a new
//    connection every 20 ms: nothing is refused, no client errs or switches node, and no
//    session is unknown, without sid tagging. A new process that fails leaves the old one
//    serving. The new process reads a hand-over it is given on fd 3 and refuses a malformed
//    one; under systemd socket activation it serves on the socket systemd passes.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { spawn } = require('node:child_process');
const h = require('../lib/harness');

const STARTED_RE = / info started .*\bpid=(\d+)/;

// Opens a new connection every `everyMs` and sends one request on it; counts answers and
// failures (refused, reset, no answer) until stop().
function startProber(port, everyMs = 20) {
  const stats = { sent: 0, answered: 0, failures: [] };
  let inFlight = 0;
  let stopped = false;
  let onIdle = null;
  const one = () => {
    stats.sent++;
    inFlight++;
    const s = net.connect({ host: h.HOST, port });
    let got = '';
    let done = false;
    const finish = (err) => {
      if (done) return;
      done = true;
      inFlight--;
      if (err) stats.failures.push(err);
      else stats.answered++;
      s.destroy();
      if (stopped && inFlight === 0 && onIdle) onIdle();
    };
    s.setTimeout(5000, () => finish('no answer within 5 s'));
    s.on('connect', () => s.write(`GET /probe/${stats.sent} HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n`));
    s.on('data', (d) => {
      got += d;
      if (/^HTTP\/1\.1 \d{3} /.test(got)) finish();
    });
    s.on('error', (e) => finish(e.code || String(e)));
    s.on('close', () => finish(got ? `bad answer ${JSON.stringify(got.slice(0, 40))}` : 'closed without an answer'));
  };
  const timer = setInterval(one, everyMs);
  one();
  return {
    stats,
    stop: () =>
      h.withTimeout(
        new Promise((resolve) => {
          stopped = true;
          clearInterval(timer);
          if (inFlight === 0) resolve(stats);
          else onIdle = () => resolve(stats);
        }),
        10000,
        'prober to finish',
      ),
  };
}

function pidAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// The process that took over writes to the same stderr pipe: its end means every process
// that shared it is gone.
function stderrEnded(p) {
  return p.child.stderr.readableEnded ? Promise.resolve() : h.once(p.child.stderr, 'end', 15000, 'stderr of every process to close');
}

async function stopTakenOver(p, pid) {
  if (pid && pidAlive(pid)) process.kill(pid, 'SIGTERM');
  await stderrEnded(p).catch(() => {
    if (pid && pidAlive(pid)) process.kill(pid, 'SIGKILL');
  });
}

const UPGRADE_OPTS = {
  extra: { workers: 2, admin: { listen: '127.0.0.1:0' } },
  // The old process's tunnels are closed (spread) only in the last 5 s of a 20 s grace: the
  // clients of this test end long before, so it exits when its last client is done.
  timeouts: { shutdown_grace: '20s', close_spread: '5s' },
  args: ['--pid-file', '{dir}/stickyd.pid'],
};

test('y1. SIGUSR2 mid-run: 0 refused, 0 client errors, 0 node switches, 0 Session ID unknown; the old process exits when its clients are done', { timeout: 180000 }, async (t) => {
  await h.scenario(t, { proxyOpts: UPGRADE_OPTS }, async (env) => {
    const p = env.proxy;
    const pidFile = path.join(p.dir, 'stickyd.pid');
    assert.equal(Number(fs.readFileSync(pidFile, 'utf8')), p.child.pid, 'pid file names the serving process');
    let newPid = null;
    env.cleanups.push(() => stopTakenOver(p, newPid));

    // Raw polling sessions learnt by the old process, echoing back to back through the whole
    // upgrade and after the old process is gone (which also keeps them alive on their node):
    // every answer must come from the session's own node.
    const early = [];
    for (let i = 0; i < 6; i++) {
      const hs = await h.handshake(env.port);
      const raw = new h.RawSession(env.port, hs.sid);
      await raw.connectNamespace();
      early.push({ raw, owner: await env.cluster.ownerOf(hs.sid) });
    }
    let stopEchoes = false;
    const echoes = early.map(async ({ raw, owner }) => {
      let n = 0;
      while (!stopEchoes && n < 2000) assert.equal((await raw.echo({ n: n++ })).node, owner, `session ${raw.sid}`);
      return n;
    });

    const prober = startProber(env.port);
    const kinds = ['v4-polling', 'v4-default', 'v2', 'v4-polling-eio3'];
    const messages = 24;
    const run = h.runClients(
      (i) => {
        const q = { query: { c: String(i) } };
        const kind = kinds[i % kinds.length];
        if (kind === 'v4-polling') return h.makeClient('v4', env.url, { ...q, transports: ['polling'] });
        if (kind === 'v2') return h.makeClient('v2', env.url, q);
        if (kind === 'v4-polling-eio3') return h.makeClient('v2', env.url, { ...q, transports: ['polling'] });
        return h.makeClient('v4', env.url, q);
      },
      { clients: 24, messages },
    );
    // Mid-run: once the clients have made a good part of their requests.
    await h.until(async () => {
      const b = await p.backends();
      return Object.values(b).reduce((a, x) => a + x.requests, 0) >= 24 * 8;
    }, 30000, 'clients under way');
    const from = p.stderr.length;
    p.child.kill('SIGUSR2');
    const started = await p.waitForLine(STARTED_RE, 15000, 'the new process started', from);
    newPid = Number(STARTED_RE.exec(started)[1]);
    assert.notEqual(newPid, p.child.pid);
    await p.waitForLine(/upgrade: the new process serves/, 15000, 'the old process hands over', from);
    assert.ok(p.stderr.slice(from).some((l) => / info listening .*inherited=yes/.test(l)), 'the new process adopted the sockets');
    assert.equal(Number(fs.readFileSync(pidFile, 'utf8')), newPid, 'pid file rewritten by the new process');
    // A stray signal from a script holding the old pid neither kills the draining process nor
    // starts anything.
    p.child.kill('SIGUSR2');
    p.child.kill('SIGHUP');

    const results = await run;
    // The old process exits by itself once its last clients are done, well before its grace.
    const exit = await h.withTimeout(p.child.exited, 15000, 'the old process to exit');
    assert.equal(exit.code, 0, `old process exit ${JSON.stringify(exit)}`);
    assert.equal(p.stderr.filter((l) => / info started /.test(l)).length, 2, 'one new process only');
    assert.ok(!p.stderr.some((l) => /grace time over/.test(l)), 'the old process drained before its grace ended');

    // Sessions the old process learnt route in the new one (no sid tagging configured).
    const before = await Promise.all(early.map(async ({ raw, owner }) => (await raw.echo({ after: 'upgrade' })).node === owner));
    assert.ok(before.every(Boolean), 'raw sessions on their node after the upgrade');
    stopEchoes = true;
    const counts = await Promise.all(echoes);
    t.diagnostic(`raw sessions: ${counts.join(', ')} echoes each across the upgrade`);
    assert.ok(counts.every((n) => n > 5), `echoes: ${counts}`);
    const probes = await prober.stop();
    t.diagnostic(`prober: ${probes.sent} connections, ${probes.answered} answered, ${probes.failures.length} failed`);
    assert.deepEqual(probes.failures, [], 'no connection refused or dropped');
    assert.ok(probes.answered > 50, `prober answered ${probes.answered}`);
    const taken = p.stderr.find((l) => /upgrade: sessions taken over/.test(l));
    assert.match(taken, /sessions=([1-9]\d*)/, taken);

    await h.assertClientsSticky(results, env.cluster, { messages });
    await stopTakenOver(p, newPid);
    h.assertNodesClean(await env.stats(), null);
    assert.ok(!fs.existsSync(pidFile), 'pid file removed by the last process');
  });
});

test('y2. SIGUSR2 with a new process that cannot start: the old one keeps serving, with a log line', { timeout: 60000 }, async (t) => {
  await h.scenario(t, { proxyOpts: UPGRADE_OPTS }, async (env) => {
    const p = env.proxy;
    const pidFile = path.join(p.dir, 'stickyd.pid');
    const hs = await h.handshake(env.port);
    const owner = await env.cluster.ownerOf(hs.sid);
    const raw = new h.RawSession(env.port, hs.sid);
    await raw.connectNamespace();
    const prober = startProber(env.port);
    const good = fs.readFileSync(p.configFile, 'utf8');
    fs.writeFileSync(p.configFile, `${good}no_such_key: 1\n`);
    const from = p.stderr.length;
    p.child.kill('SIGUSR2');
    const failed = await p.waitForLine(/upgrade failed/, 15000, 'the failed upgrade logged', from);
    assert.match(failed, /still serving/);
    assert.match(failed, /exit status 1/);
    assert.ok(p.stderr.slice(from).some((l) => /unknown key 'no_such_key'/.test(l)), 'the new process said why');
    assert.equal(Number(fs.readFileSync(pidFile, 'utf8')), p.child.pid, 'pid file unchanged');
    assert.equal((await raw.echo({ still: 'here' })).node, owner);
    assert.equal((await h.handshake(env.port)).res.status, 200);
    // Fixed config: the next SIGUSR2 works.
    fs.writeFileSync(p.configFile, good);
    p.child.kill('SIGUSR2');
    const started = await p.waitForLine(STARTED_RE, 15000, 'second upgrade started', p.stderr.length);
    const newPid = Number(STARTED_RE.exec(started)[1]);
    env.cleanups.push(() => stopTakenOver(p, newPid));
    await h.withTimeout(p.child.exited, 25000, 'the old process to exit');
    assert.equal((await raw.echo({ after: 'upgrade' })).node, owner);
    const probes = await prober.stop();
    assert.deepEqual(probes.failures, [], 'no connection refused or dropped');
    await stopTakenOver(p, newPid);
  });
});

// A stickyd started the way an upgrade starts it, with a hand-over socket on fd 3.
async function startWithHandover(env, writeHandover) {
  const dir = fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'stickyd-y3-'));
  const config = path.join(dir, 'stickyd.yaml');
  fs.writeFileSync(config, h.stickydConfig({ backends: env.backends() }));
  const child = h.trackChild(
    spawn(h.STICKYD_BIN || process.env.STICKYD_BIN, ['-c', config], {
      stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
      env: { ...process.env, STICKYD_UPGRADE_FD: '3' },
    }),
  );
  const stderr = h.lineCollector(child.stderr);
  const fromProxy = h.lineCollector(child.stdio[3]);
  writeHandover(child.stdio[3]);
  const line = await h.until(() => stderr.find((l) => / info listening /.test(l)), 10000, 'listening');
  const port = Number(/127\.0\.0\.1:(\d+)/.exec(line)[1]);
  env.cleanups.push(async () => {
    await h.stopChild(child);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return { child, stderr, fromProxy, port };
}

test('y3. the new process imports a hand-over, says ready, shares what it learns; refuses a malformed one and starts empty', { timeout: 60000 }, async (t) => {
  await h.scenario(t, { proxy: false }, async (env) => {
    // A real session created on n2 directly: only the hand-over can route its sid there.
    const n2 = env.cluster.nodes.find((n) => n.name === 'n2');
    const port2 = Number(n2.address.split(':').pop());
    const direct = await h.handshake(port2);
    const s = await startWithHandover(env, (w) => {
      w.write(`stickyd-affinity 1 3\ne ${direct.sid} n2 60000\ne other n1 60000\ne third gone 60000\nend\n`);
    });
    assert.ok(s.stderr.some((l) => /upgrade: sessions taken over sessions=2 waiting_for_discovery=0 dropped=1/.test(l)), s.stderr.join('\n'));
    await h.until(() => s.fromProxy.some((l) => l === `ready ${s.child.pid}`), 5000, 'ready on the hand-over socket');
    const raw = new h.RawSession(s.port, direct.sid);
    await raw.connectNamespace();
    for (let k = 0; k < 5; k++) assert.equal((await raw.echo({ k })).node, 'n2');
    // What it learns goes back to the old process (the other end of fd 3).
    const hs = await h.handshake(s.port);
    const owner = await env.cluster.ownerOf(hs.sid);
    await h.until(() => s.fromProxy.some((l) => l.startsWith(`+ ${hs.sid} ${owner} `)), 5000, 'learnt session streamed back');

    const bad = await startWithHandover(env, (w) => w.write('stickyd-affinity 1 1\ne x n1 -5\nend\n'));
    const refused = bad.stderr.find((l) => /affinity hand-over refused/.test(l));
    assert.match(refused || '', /line 2: bad ttl/, bad.stderr.join('\n'));
    assert.equal((await h.handshake(bad.port)).res.status, 200, 'serves with an empty table');
  });
});

test('y4. systemd socket activation: stickyd serves on the socket systemd-socket-activate passes; a connection made before it started is answered', { timeout: 60000 }, async (t) => {
  await h.scenario(t, { proxy: false }, async (env) => {
    const port = await require('../lib/dnsmasq').freePort();
    const dir = fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'stickyd-y4-'));
    const config = path.join(dir, 'stickyd.yaml');
    fs.writeFileSync(config, h.stickydConfig({ backends: env.backends(), listenPort: port }));
    const child = h.trackChild(
      spawn('systemd-socket-activate', ['-l', `127.0.0.1:${port}`, process.env.STICKYD_BIN || h.STICKYD_BIN, '-c', config], {
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    const stderr = h.lineCollector(child.stderr);
    env.cleanups.push(async () => {
      await h.stopChild(child);
      fs.rmSync(dir, { recursive: true, force: true });
    });
    await h.until(() => stderr.some((l) => /Listening on/.test(l)), 10000, 'systemd-socket-activate listening');
    // stickyd is started by this first connection and answers it on the inherited socket.
    const hs = await h.handshake(port);
    assert.equal(hs.res.status, 200);
    assert.ok(stderr.some((l) => / info listening .*inherited=yes/.test(l)), stderr.join('\n'));
    const raw = new h.RawSession(port, hs.sid);
    await raw.connectNamespace();
    assert.equal((await raw.echo({ k: 1 })).node, await env.cluster.ownerOf(hs.sid));
  });
});
