'use strict';
// u. Differential request smuggling (issue 18). Every raw client input of
//    lib/smuggling-corpus.js (TE/CL obfuscations, chunk-size tricks, trailers, bare CR/LF,
//    NUL, obs-fold, Host tricks, HTTP/1.0 and 0.9, pipelining, upgrades, Expect, target
//    forms, CONNECT) goes through stickyd in front of each of three recording backends that
//    frame requests differently (node:http strict, node:http insecureHTTPParser, a raw parser
//    that frames by Content-Length first: lib/recording-backends.js), on a fresh backend
//    connection, on a pooled one (a benign keep-alive request parks it first), and for some
//    inputs cut into 3 writes. Per case (lib/smuggling.js checkCase):
//    (a) every request a backend framed is, in order and 1:1, a head stickyd logged as
//        `forwarded head` (debug), byte for byte in method, target and header list; the
//        backend saw canonical framing only, bodies of the announced length, could frame all
//        it was sent and got no trailers;
//    (b) no backend framed, and stickyd never forwarded, the canary `SMUGGLED` in a method,
//        target or field;
//    (c) the client got exactly one well-formed final response per request stickyd answered
//        (its access log), and no more.
//    Then backend answers stickyd must not pass on (101 without/with the wrong Upgrade, a
//    101 nobody asked for, TE + CL, a bare-LF head): 502, never a tunnel; a 103 before a 200
//    and a valid websocket 101 as controls.
//    The client writes the input and then waits for stickyd to close (keep-alive 200 ms,
//    header/body timeouts 500 ms) instead of half-closing at once: stickyd treats a client
//    EOF as "client closed mid-exchange" and aborts, which would cut each input at a racy
//    point (SMUGGLING_HALF_CLOSE=1 does the half-close, for comparison).
//    When `haproxy` is on PATH, the same corpus also runs through HAProxy 2.6 with its own
//    backends, and the side-by-side table is printed (informational; only stickyd is
//    asserted). tests/bench/smuggling-compare.js prints the same table on its own.
//
//    Environment: SMUGGLING_NO_HEAD_LOG=1 (development only: a stickyd that predates the
//    `forwarded head` debug line; rule (a) then compares framed requests with the access log's
//    forwarded requests, method and target only, and reports "(a*)"); SMUGGLING_HAPROXY=0
//    skips the HAProxy column; SMUGGLING_HALF_CLOSE=1 half-closes right after writing.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const h = require('../lib/harness');
const sm = require('../lib/smuggling');
const { corpus, responseCases } = require('../lib/smuggling-corpus');

const HEAD_LOG = process.env.SMUGGLING_NO_HEAD_LOG !== '1';
const WITH_HAPROXY = process.env.SMUGGLING_HAPROXY !== '0' && sm.haproxyBin() !== null;
const LOG_DIR = path.join(__dirname, '..', '.tmp', 'logs');
const SHOW = 40; // violations shown in a failure message (all are in the diagnostics file)

function ruleOf(v) {
  const m = /^\((\w\*?)\)/.exec(v);
  return m ? m[1] : '?';
}

function writeDiagnostics(name, text) {
  try {
    fs.mkdirSync(LOG_DIR, { recursive: true });
    const file = path.join(LOG_DIR, `${name}.log`);
    fs.writeFileSync(file, text);
    return file;
  } catch {
    return '(could not write diagnostics)';
  }
}

// The checker itself: synthetic results that each break one rule.
test('u. checkCase flags each rule (synthetic results)', () => {
  const line = '2026-01-01T00:00:00.000Z debug forwarded head client=127.0.0.1 backend=b head="GET /a?x=\\"\\\\ HTTP/1.1\\x0d\\x0aHost: h\\x0d\\x0aX-V: caf\\xc3\\xa9\\x0d\\x0a\\x0d\\x0a"';
  const heads = sm.parseForwardedHeads([line]);
  assert.equal(heads.length, 1);
  assert.equal(heads[0].raw, 'GET /a?x="\\ HTTP/1.1\r\nHost: h\r\nX-V: caf\xc3\xa9\r\n\r\n');
  assert.deepEqual(heads[0].headers, [['Host', 'h'], ['X-V', 'caf\xc3\xa9']]);
  const rec = { method: 'GET', target: '/a?x="\\', version: 'HTTP/1.1', headers: [['host', 'h'], ['X-V', 'caf\xc3\xa9']], trailers: [], complete: true };
  const base = () => ({ records: [{ ...rec, headers: rec.headers.map((x) => x.slice()) }], heads: sm.parseForwardedHeads([line]), access: [{ method: 'GET', target: '/a', status: '200' }], warmAccess: [], backendErrors: [], responses: [{ status: 200 }], error: null, exchange: { data: Buffer.alloc(0), timedOut: false }, warm: null, responseCase: null, caseRecords: [] });
  const rules = (r) => sm.checkCase(r).map((x) => x.slice(0, 3));
  assert.deepEqual(sm.checkCase(base()), []);
  const valueDiffers = base();
  valueDiffers.records[0].headers = [['Host', 'h'], ['X-V', 'cafe']];
  assert.deepEqual(rules(valueDiffers), ['(a)']);
  const unlogged = base();
  unlogged.records.push({ ...rec, target: '/other' });
  assert.deepEqual(rules(unlogged), ['(a)']);
  const unframed = base();
  unframed.records = [];
  assert.deepEqual(rules(unframed), ['(a)']);
  unframed.access[0].status = '0';
  unframed.responses = [];
  assert.deepEqual(rules(unframed), [], 'an aborted exchange explains a logged head no backend framed');
  const trailer = base();
  trailer.records[0].trailers = [['X-T', '1']];
  assert.deepEqual(rules(trailer), ['(a)']);
  const canary = base();
  canary.records[0].headers.push(['X-Evil', 'smuggled']);
  assert.deepEqual(rules(canary).sort(), ['(a)', '(b)']);
  const framing = base();
  framing.records[0].headers.push(['Transfer-Encoding', 'xchunked']);
  framing.heads[0].headers.push(['Transfer-Encoding', 'xchunked']);
  assert.deepEqual(rules(framing), ['(a)']);
  const twoAnswers = base();
  twoAnswers.responses.push({ status: 200 });
  assert.deepEqual(rules(twoAnswers), ['(c)']);
  const interim = base();
  interim.responses.unshift({ status: 100, interim: true });
  assert.deepEqual(rules(interim), []);
});

test('u. request smuggling: corpus x backend kinds x fresh/pooled/split through stickyd; backend answers', async (t) => {
  assert.ok(corpus.length >= 60, `corpus has ${corpus.length} inputs`);
  assert.ok(responseCases.length >= 6, `${responseCases.length} response cases`);
  const started = Date.now();
  const proxies = WITH_HAPROXY ? ['stickyd', 'haproxy'] : ['stickyd'];
  const lanes = await h.withTimeout(sm.runSuite({ proxies }), 240000 * h.SCALE, 'smuggling suite');
  const seconds = ((Date.now() - started) / 1000).toFixed(1);

  const stickydLanes = lanes.filter((l) => l.proxy === 'stickyd');
  const everLogged = stickydLanes.some((l) => l.stickyd.stderr.some((x) => / debug forwarded head /.test(x)));
  const byKind = new Map();
  const report = [];
  for (const lane of stickydLanes) {
    const kind = lane.kind;
    if (!byKind.has(kind)) byKind.set(kind, { runs: 0, violations: [], rules: {}, cases: new Set() });
    const k = byKind.get(kind);
    for (const r of lane.results) {
      k.runs++;
      const v = sm.checkCase(r, { headLog: HEAD_LOG });
      if (!v.length) continue;
      k.cases.add(r.name);
      for (const x of v) {
        k.rules[ruleOf(x)] = (k.rules[ruleOf(x)] || 0) + 1;
        k.violations.push(`${r.name} [${r.variant}, backend ${kind}]: ${x}`);
      }
      report.push(`=== ${r.name} [${r.variant}, backend ${kind}] (${r.note})`, `input: ${sm.describe(r.raw, 2000)}`, ...v.map((x) => `  ${x}`),
        `client got: ${sm.describe(r.exchange.data, 1500)}`, `backend framed: ${JSON.stringify(r.records)}`, 'stickyd lines:', ...r.logLines.map((x) => `  ${x}`));
    }
  }
  for (const [kind, k] of byKind) {
    const matched = stickydLanes.filter((l) => l.kind === kind).reduce((a, l) => a + l.results.reduce((b, r) => b + Math.min(r.records.length, r.heads.length), 0), 0);
    // The pooled variant must really reuse: the case's first request on the warm-up's connection.
    const pooled = stickydLanes.filter((l) => l.kind === kind).flatMap((l) => l.results.filter((r) => r.variant === 'pooled' && r.caseRecords.length));
    const reused = pooled.filter((r) => {
      const warm = r.records.find((x) => x.target.includes('/__warm/'));
      return warm && r.caseRecords[0].conn === warm.conn;
    }).length;
    const rules = Object.entries(k.rules).map(([r, n]) => `${r}=${n}`).join(' ') || 'none';
    const line = `u-smuggling stickyd/${kind}: ${k.runs} case runs, ${k.violations.length} violations in ${k.cases.size} cases (by rule: ${rules}), ${matched} framed requests paired with logged heads; pooled: ${reused}/${pooled.length} reached a backend on the parked connection`;
    console.log(line);
    t.diagnostic(line);
  }
  if (!HEAD_LOG) t.diagnostic('SMUGGLING_NO_HEAD_LOG=1: rule (a) compared against the access log only (development switch)');
  const table = sm.comparisonTable(lanes, proxies);
  console.log(table.text);
  for (const n of table.notes) console.log(`  ${n}`);
  t.diagnostic(`u-smuggling: ${corpus.length} inputs + ${responseCases.length} response cases, ${seconds} s`);
  const diag = writeDiagnostics('u-smuggling', [table.text, ...table.notes, '', ...report, '', ...stickydLanes.flatMap((l) => [`--- ${l.label} config ---`, l.stickyd.configText])].join('\n'));

  for (const [kind, k] of byKind) {
    await t.test(`stickyd with the ${kind} backend`, () => {
      if (HEAD_LOG && !everLogged) {
        assert.fail('stickyd never logged a `forwarded head` debug line: rule (a) cannot be checked (SMUGGLING_NO_HEAD_LOG=1 is the development switch for a binary without it)');
      }
      assert.equal(
        k.violations.length,
        0,
        `${k.violations.length} violations in ${k.cases.size} cases (details: ${diag}):\n${k.violations.slice(0, SHOW).join('\n')}${k.violations.length > SHOW ? `\n... ${k.violations.length - SHOW} more` : ''}`,
      );
    });
  }
});
