#!/usr/bin/env node
'use strict';
// Request smuggling, stickyd next to HAProxy 2.6: the corpus of tests/e2e/lib/smuggling-corpus.js
// (raw client inputs and backend-response cases) through each proxy in front of the same
// three kinds of recording backends (node:http strict, node:http insecureHTTPParser, a raw
// Content-Length-first parser; tests/e2e/lib/recording-backends.js), each input on a fresh
// and on a pooled backend connection (and some cut into 3 writes). Prints one row per case:
//
//   case | stickyd | haproxy
//
//   refused   nothing reached a backend, the client got only 4xx/5xx answers
//   closed    nothing reached a backend, the client got no answer at all
//   ok        backends framed only requests without the canary SMUGGLED, and the client got
//             exactly one backend response per request a backend framed completely
//   SMUGGLED  a backend framed the canary (a smuggled request, header or trailer), or those
//             counts differ
//   a/b       the verdicts differ between backend kinds or variants; [kind:variant] says
//             where SMUGGLED happened
//   response cases: "ok <statuses>" or "BAD <statuses>" against the expected answer (502
//             for invalid backend answers, never a tunnel)
//
// then per-proxy totals and why each SMUGGLED/BAD verdict was given. HAProxy has no
// forwarded-head log, so only the canary and the counts are compared here; the e2e test
// (tests/e2e/test/u-smuggling.test.js) also checks stickyd's logged heads.
//
//   node tests/bench/smuggling-compare.js                 # stickyd and haproxy
//   PROXIES=haproxy node tests/bench/smuggling-compare.js # one of them
//
// Environment: STICKYD_BIN (default build/stickyd), PROXIES (stickyd,haproxy). Everything
// listens on 127.0.0.1 (ephemeral ports); every wait is bounded; about 15 s.

const path = require('node:path');
const E2E_LIB = path.resolve(__dirname, '..', 'e2e', 'lib');
const h = require(path.join(E2E_LIB, 'harness'));
const sm = require(path.join(E2E_LIB, 'smuggling'));
const { corpus, responseCases } = require(path.join(E2E_LIB, 'smuggling-corpus'));

async function main() {
  const proxies = (process.env.PROXIES || 'stickyd,haproxy').split(',').map((s) => s.trim()).filter(Boolean);
  if (proxies.includes('haproxy') && !sm.haproxyBin()) {
    console.error('haproxy not found (apt-get install haproxy, or PROXIES=stickyd)');
    process.exit(2);
  }
  const started = Date.now();
  const lanes = await h.withTimeout(sm.runSuite({ proxies }), 300000 * h.SCALE, 'smuggling comparison');
  const table = sm.comparisonTable(lanes, proxies);
  console.log(`# ${corpus.length} client inputs + ${responseCases.length} backend-response cases; stickyd: ${proxies.includes('stickyd') ? h.STICKYD_BIN : '-'}`);
  console.log(table.text);
  if (table.notes.length) {
    console.log('\nwhy:');
    for (const n of table.notes) console.log(`  ${n}`);
  }
  console.log(`\n${((Date.now() - started) / 1000).toFixed(1)} s`);
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err && err.stack ? err.stack : err);
    process.exit(1);
  },
);
