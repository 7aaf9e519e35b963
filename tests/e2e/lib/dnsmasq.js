'use strict';
// A real DNS server for the discovery tests: dnsmasq (Debian `dnsmasq-base`) on 127.0.0.1 and
// a free high port (UDP and TCP), answering only from what the test gives it: no upstream,
// no /etc/hosts, no config file. Records come from an addn-hosts file (rewritten by
// setHosts(), re-read on SIGHUP) and from command-line options (--host-record, --srv-host,
// --local-ttl) and from a servers file (setHosts(lines, {servers}): server=/name/... lines
// for a failing upstream; re-read on SIGHUP as well). --log-queries is on: every query
// dnsmasq receives is an event (waitForQueries), so a test can await "stickyd asked again"
// instead of sleeping. Same helper in C++: tests/unit/dnsmasq.hpp.
//
//   const dns = await startDnsmasq({hosts: ['127.0.0.11 io.test'], args: ['--local-ttl=1']});
//   dns.address                      // "127.0.0.1:PORT" for resolvers.nameservers
//   await dns.setHosts([...])        // rewrite the file, SIGHUP, await dnsmasq's re-read line
//   await dns.stop(); await dns.start({args, hosts})   // same port, possibly other records
//   await dns.query('io.test', 'A')  // one UDP query: {rcode, tc, answers}

const { spawn } = require('node:child_process');
const dgram = require('node:dgram');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const h = require('./harness');

const TYPES = { A: 1, AAAA: 28, SRV: 33, ANY: 255 };

// A port free for both UDP and TCP on 127.0.0.1 (dnsmasq binds both).
async function freePort() {
  const net = require('node:net');
  for (let attempt = 0; attempt < 20; attempt++) {
    const udp = dgram.createSocket('udp4');
    const port = await new Promise((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(0, '127.0.0.1', () => resolve(udp.address().port));
    });
    const tcpOk = await new Promise((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    udp.close();
    if (tcpOk) return port;
  }
  throw new Error('no port free for both UDP and TCP');
}

// A DNS query message: id, RD, one question; `edns`: an OPT record advertising that UDP size.
function encodeQuery(id, name, type, edns) {
  const labels = name.split('.').filter(Boolean);
  const parts = [Buffer.from([id >> 8, id & 0xff, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, edns ? 1 : 0])];
  for (const l of labels) parts.push(Buffer.from([l.length]), Buffer.from(l, 'ascii'));
  parts.push(Buffer.from([0, TYPES[type] >> 8, TYPES[type] & 0xff, 0, 1]));
  if (edns) parts.push(Buffer.from([0, 0, 41, edns >> 8, edns & 0xff, 0, 0, 0, 0, 0, 0]));
  return Buffer.concat(parts);
}

function decodeHeader(msg) {
  return {
    id: msg.readUInt16BE(0),
    tc: Boolean(msg[2] & 0x02),
    rcode: msg[3] & 0x0f,
    answers: msg.readUInt16BE(6),
    size: msg.length,
  };
}

// One UDP query to 127.0.0.1:port; resolves with the reply's header, rejects after `ms`.
function udpQuery(port, name, type = 'A', { edns = 0, ms = 1000 } = {}) {
  const id = Math.floor(Math.random() * 0xffff);
  const sock = dgram.createSocket('udp4');
  const reply = new Promise((resolve, reject) => {
    sock.on('error', reject);
    sock.on('message', (msg) => {
      if (msg.length >= 12 && msg.readUInt16BE(0) === id) resolve(decodeHeader(msg));
    });
  });
  sock.send(encodeQuery(id, name, type, edns), port, '127.0.0.1');
  return h.withTimeout(reply, ms, `DNS ${type} ${name} on 127.0.0.1:${port}`).finally(() => sock.close());
}

async function startDnsmasq({ hosts = [], args = [], port = 0, start = true } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stickyd-dns-'));
  const hostsFile = path.join(dir, 'hosts');
  const serversFile = path.join(dir, 'servers');
  fs.writeFileSync(hostsFile, hosts.map((l) => `${l}\n`).join(''));
  fs.writeFileSync(serversFile, '');
  const dns = {
    port: port || (await freePort()),
    hostsFile,
    args,
    child: null,
    log: [], // every stderr line of every process, for diagnostics
    queries: [], // {name, type, at} of every query logged
  };
  dns.address = `127.0.0.1:${dns.port}`;
  const waiters = new Set();

  dns.start = async (opts = {}) => {
    if (dns.child && !dns.child.exitInfo) throw new Error('dnsmasq already running');
    if (opts.args) dns.args = opts.args;
    if (opts.hosts) fs.writeFileSync(hostsFile, opts.hosts.map((l) => `${l}\n`).join(''));
    const argv = [
      '-k', `--port=${dns.port}`, '--listen-address=127.0.0.1', '--bind-interfaces', '--no-resolv',
      '--no-hosts', '--pid-file=', '--user=root', '--group=root', '--log-facility=-',
      '--conf-file=/dev/null', '--log-queries', `--addn-hosts=${hostsFile}`,
      `--servers-file=${serversFile}`, ...dns.args,
    ];
    const child = h.trackChild(spawn('dnsmasq', argv, { stdio: ['ignore', 'ignore', 'pipe'] }));
    dns.child = child;
    h.lineCollector(child.stderr, (line) => {
      dns.log.push(line);
      const m = /query\[(\w+)\] (\S+) from/.exec(line);
      if (m) dns.queries.push({ type: m[1], name: m[2].toLowerCase(), at: Date.now() });
      for (const w of waiters) w(line);
    });
    // Ready: it answers a query (anything, even REFUSED), or it died.
    const died = child.exited.then((info) => {
      throw new Error(`dnsmasq exited at start: ${JSON.stringify(info)}\n${dns.log.join('\n')}`);
    });
    died.catch(() => {});
    const deadline = Date.now() + 5000 * h.SCALE;
    for (;;) {
      try {
        await Promise.race([udpQuery(dns.port, '.', 'A', { ms: 100 }), died]);
        return dns;
      } catch (err) {
        if (child.exitInfo || Date.now() > deadline) {
          await h.stopChild(child);
          throw new Error(`dnsmasq did not answer on ${dns.address}: ${err.message}\n${dns.log.join('\n')}`);
        }
      }
    }
  };

  // Resolves with the first stderr line from now on that matches `re`.
  dns.waitForLine = (re, ms, what) =>
    h.withTimeout(
      new Promise((resolve) => {
        const w = (line) => {
          if (re.test(line)) {
            waiters.delete(w);
            resolve(line);
          }
        };
        waiters.add(w);
      }),
      ms,
      `dnsmasq log line ${re} (${what})`,
    );

  // Resolves once `n` more queries for `name` (any type unless given) have arrived.
  dns.waitForQueries = (name, n, ms, type) => {
    const re = new RegExp(`query\\[${type || '\\w+'}\\] ${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} from`, 'i');
    let left = n;
    return h.withTimeout(
      new Promise((resolve) => {
        const w = (line) => {
          if (re.test(line) && --left === 0) {
            waiters.delete(w);
            resolve();
          }
        };
        waiters.add(w);
      }),
      ms,
      `${n} more queries for ${name}`,
    );
  };
  dns.queryCount = (name) => dns.queries.filter((q) => q.name === name.toLowerCase()).length;

  // Rewrites the addn-hosts file ("ip name" lines) and has dnsmasq re-read it; resolves once
  // dnsmasq logged the re-read ("read <file> - N names").
  // `servers`: lines of the --servers-file (also re-read on SIGHUP), e.g.
  // ["server=/io.test/127.0.0.1#9"]: forward io.test there instead of answering it.
  dns.setHosts = async (lines, { servers } = {}) => {
    fs.writeFileSync(hostsFile, lines.map((l) => `${l}\n`).join(''));
    if (servers) fs.writeFileSync(serversFile, servers.map((l) => `${l}\n`).join(''));
    const reread = dns.waitForLine(new RegExp(`read ${hostsFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} - \\d+ names`), 5000 * h.SCALE, 'hosts re-read');
    dns.child.kill('SIGHUP');
    await reread;
    return Date.now();
  };

  dns.stop = async () => {
    if (dns.child) await h.stopChild(dns.child);
  };
  dns.restart = async (opts = {}) => {
    await dns.stop();
    return dns.start(opts);
  };
  dns.query = (name, type = 'A', opts) => udpQuery(dns.port, name, type, opts);
  dns.cleanup = async () => {
    await dns.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  };
  dns.diagnostics = () => `--- dnsmasq ${dns.address} (${dns.log.length} lines, last 200) ---\n${dns.log.slice(-200).join('\n')}`;

  if (start) await dns.start();
  return dns;
}

// An upstream for dnsmasq's --server=/name/127.0.0.1#PORT that answers every query with
// SERVFAIL (dnsmasq passes it on to its client). Returns {port, answered, close()}.
async function startServfail() {
  const sock = dgram.createSocket('udp4');
  const s = { answered: 0 };
  sock.on('message', (msg, rinfo) => {
    if (msg.length < 12) return;
    const reply = Buffer.from(msg);
    reply[2] = 0x80 | (msg[2] & 0x01); // QR, keep RD
    reply[3] = 0x80 | 2; // RA, RCODE 2 = SERVFAIL
    reply.writeUInt16BE(0, 6); // no answer, authority or additional records
    reply.writeUInt16BE(0, 8);
    reply.writeUInt16BE(0, 10);
    // Keep the question only: its end is the first zero label + 4 bytes.
    let i = 12;
    while (i < reply.length && reply[i] !== 0) i += reply[i] + 1;
    s.answered++;
    sock.send(reply.subarray(0, Math.min(reply.length, i + 5)), rinfo.port, rinfo.address);
  });
  s.port = await new Promise((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(0, '127.0.0.1', () => resolve(sock.address().port));
  });
  s.close = () => new Promise((resolve) => sock.close(resolve));
  return s;
}

module.exports = { startDnsmasq, startServfail, freePort, udpQuery };
