'use strict';
// Request-smuggling runner shared by tests/e2e/test/u-smuggling.test.js and
// tests/bench/smuggling-compare.js: sends each corpus input (lib/smuggling-corpus.js) through
// a proxy (stickyd, or HAProxy for the comparison) in front of one recording backend
// (lib/recording-backends.js), collects what the client got, what the backend framed and
// (stickyd) the `forwarded head` debug lines and access-log lines of the case, and checks it:
//
//   (a) every request the backend framed matches, in order and 1:1, a `forwarded head` line
//       (method, target, header list: names case-insensitive, values exact; a logged head the
//       backend never read is allowed only for an aborted exchange); a complete body has the
//       length the logged head announced; the backend saw canonical framing only (one
//       `Content-Length: <digits>` or one `Transfer-Encoding: chunked`), could frame every byte
//       it was sent (no parse error) and got no trailer fields (stickyd drops trailers);
//   (b) nothing the backend framed (method, target, header and trailer names and values) and
//       no logged forwarded head contains the canary `SMUGGLED`;
//   (c) the client got exactly one well-formed final response per request stickyd answered
//       (access-log `request` lines with a non-zero status), no more, all parseable.
//
// A lane = one proxy listener + one backend, driven sequentially (cases are isolated: before
// each one the backend drops every connection, so nothing carries over; the pooled variant
// then parks one keep-alive backend connection with a benign request first).

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const net = require('node:net');
const h = require('./harness');
const { haproxyBin, startHaproxyConfig } = require('./haproxy');
const { CANARY, corpus: CORPUS, responseCases: RESPONSE_CASES } = require('./smuggling-corpus');
const rb = require('./recording-backends');

const SCALE = h.SCALE;
// Proxy-side timeouts: a complete input ends with the keep-alive timeout, an incomplete one
// with the header/body timeouts. The client never closes first (stickyd treats a client
// EOF as "client closed mid-exchange" and aborts, which would cut the input at a racy point);
// it waits for the proxy to close, bounded by CASE_MS, then closes.
const PROXY_TIMEOUTS = {
  connect: '1s',
  client: '1s',
  server: '1s',
  tunnel: '1s',
  keepalive: '200ms',
  client_header: '500ms',
  body_idle: '500ms',
  backend_keepalive: '10s',
};
const CASE_MS = 4000 * SCALE;
// SMUGGLING_HALF_CLOSE=1: half-close right after writing (the literal "write, end(), read")
// instead of waiting for the proxy to close first.
const HALF_CLOSE = process.env.SMUGGLING_HALF_CLOSE === '1';

const MARK_PREFIX = '/__mark/';
const ACCESS_LINE_RE = /^\S+ info request client=/;
const WARM_PREFIX = '/__warm/';

// ---------------------------------------------------------------------------------------
// stickyd's log: forwarded heads

// Inverse of stickyd's log escape: `\\` -> `\`, `\"` -> `"`, `\xNN` -> byte NN. Returns a
// latin1 string (one char per byte).
function unescapeLogValue(s) {
  return s.replace(/\\(x[0-9a-f]{2}|[\\"])/g, (_, e) => (e[0] === 'x' ? String.fromCharCode(parseInt(e.slice(1), 16)) : e));
}

const FIELD_RE = /(\w+)=("(?:[^"\\]|\\.)*"|\S*)/g;
function logFields(rest) {
  const out = {};
  let x;
  FIELD_RE.lastIndex = 0;
  while ((x = FIELD_RE.exec(rest))) out[x[1]] = x[2].startsWith('"') ? x[2].slice(1, -1) : x[2];
  return out;
}

// Request head bytes (latin1) -> {method, target, version, headers}. Strict: lines end in
// CRLF; a line without a colon is a name with an empty value (and will not match).
function parseRequestHead(text) {
  let t = text;
  if (t.endsWith('\r\n\r\n')) t = t.slice(0, -4);
  const lines = t.split('\r\n');
  const rl = lines[0].split(' ');
  const headers = [];
  for (const line of lines.slice(1)) {
    const c = line.indexOf(':');
    if (c < 0) headers.push([line, '']);
    else headers.push([line.slice(0, c), line.slice(c + 1).replace(/^[ \t]+|[ \t]+$/g, '')]);
  }
  return { method: rl[0], target: rl.length === 3 ? rl[1] : rl.slice(1, -1).join(' '), version: rl.length >= 3 ? rl[rl.length - 1] : '', headers };
}

const HEAD_LINE_RE = /^\S+ debug forwarded head (.*)$/;
const RETRY_LINE_RE = /^\S+ debug retrying on a fresh backend connection\b/;

// `forwarded head` lines -> [{backend, raw, method, target, version, headers, retried}]. A head
// followed by `retrying on a fresh backend connection` (its pooled connection had closed) is
// marked retried: it is sent again and logged again.
function parseForwardedHeads(lines) {
  const out = [];
  for (const line of lines) {
    if (RETRY_LINE_RE.test(line)) {
      if (out.length) out[out.length - 1].retried = true;
      continue;
    }
    const m = HEAD_LINE_RE.exec(line);
    if (!m) continue;
    const f = logFields(m[1]);
    const raw = unescapeLogValue(f.head || '');
    out.push({ backend: f.backend, client: f.client, raw, ...parseRequestHead(raw), retried: false });
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Client side


// The input cut in 3 writes: inside the head (before its last 3 bytes) and 2 bytes into what
// follows the head.
function splitParts(raw) {
  let end = raw.indexOf('\r\n\r\n');
  if (end < 0) end = raw.indexOf('\n\n');
  if (end < 0) end = Math.floor(raw.length / 2);
  const a = Math.max(1, end - 1);
  const b = Math.min(raw.length - 1, end + 6);
  if (b <= a) return [raw.subarray(0, a), raw.subarray(a)];
  return [raw.subarray(0, a), raw.subarray(a, b), raw.subarray(b)];
}

function variantsOf(c, { split = true } = {}) {
  const v = ['fresh', 'pooled'];
  if (split && c.split) v.push('split');
  return v;
}

// Two turns of the event loop: what the kernel already holds for the in-process backends has
// been read and parsed.
async function settle() {
  for (let i = 0; i < 2; i++) await new Promise((r) => setImmediate(r));
}

// ---------------------------------------------------------------------------------------
// Lanes

let caseSeq = 0;

// lane = {label, proxy: 'stickyd'|'haproxy', kind, port, backend, stickyd?}
async function runCase(lane, c, variant) {
  const id = `${process.pid}-${++caseSeq}`;
  if (c.before) c.before(lane);
  await withBound(lane.backend.dropConnections(), 'backend connections to close');
  const logFrom = lane.stickyd ? lane.stickyd.stderr.length : 0;
  const bmark = lane.backend.mark();
  let warm = null;
  if (variant === 'pooled') warm = await warmUp(lane, id);
  const parts = variant === 'split' ? splitParts(c.raw) : [c.raw];
  const ex = await h.rawExchange(lane.port, parts, c.caseMs || CASE_MS, { halfClose: HALF_CLOSE });
  const logTo = await barrier(lane, id, logFrom);
  const got = lane.backend.since(bmark);
  const isAux = (r) => typeof r.target === 'string' && (r.target.includes(MARK_PREFIX) || r.target.includes(WARM_PREFIX));
  const lines = lane.stickyd ? lane.stickyd.stderr.slice(logFrom, logTo) : [];
  // Access-log lines only ("<ts> info request client=..."; a warn line may also read "request ...").
  const access = h.parseTextAccessLog(lines.filter((l) => ACCESS_LINE_RE.test(l))).filter((e) => !String(e.target).includes(MARK_PREFIX));
  return {
    lane: lane.label,
    proxy: lane.proxy,
    kind: lane.kind,
    name: c.name,
    note: c.note,
    variant,
    raw: c.raw,
    exchange: ex,
    ...h.parseResponses(ex.data),
    warm,
    records: got.requests.filter((r) => !(typeof r.target === 'string' && r.target.includes(MARK_PREFIX))),
    caseRecords: got.requests.filter((r) => !isAux(r)),
    backendErrors: got.errors,
    heads: parseForwardedHeads(lines).filter((x) => !x.target.includes(MARK_PREFIX)),
    access: access.filter((e) => !String(e.target).includes(WARM_PREFIX)),
    warmAccess: access.filter((e) => String(e.target).includes(WARM_PREFIX)),
    logLines: lines,
    responseCase: c.responseCase || null,
  };
}

function withBound(p, what) {
  return h.withTimeout(p, 5000 * SCALE, what);
}

// One benign keep-alive request on its own client connection, answered; the client then
// closes, and the proxy parks the backend connection.
async function warmUp(lane, id) {
  const conn = await h.RawConnection.connect(lane.port);
  try {
    const res = await conn.roundTrip(`GET ${WARM_PREFIX}${id} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`, 'warm-up request');
    return { status: res.status };
  } catch (err) {
    return { error: err.message };
  } finally {
    conn.close();
  }
}

// Everything the case caused has been logged (stickyd) and parsed (backends): a marker
// request after the case. stickyd answers an absolute-form target itself (400, logged
// with its target): once that access line is read, every earlier stderr line is too.
// HAProxy forwards the marker (the backend records it; it is filtered out). Returns the
// stderr index of the marker's line (exclusive end of the case's lines).
async function barrier(lane, id, logFrom) {
  if (lane.stickyd) {
    const target = `http://mark.invalid${MARK_PREFIX}${id}`;
    await h.rawExchange(lane.port, [`GET ${target} HTTP/1.1\r\nHost: mark.invalid\r\n\r\n`], 2000 * SCALE);
    const re = new RegExp(` info request client=.*target=${target.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} `);
    await lane.stickyd.waitForLine(re, 2000 * SCALE, `marker ${id}`, logFrom);
    await settle();
    const i = lane.stickyd.stderr.findIndex((l, k) => k >= logFrom && re.test(l));
    return i;
  }
  await h.rawExchange(lane.port, [`GET ${MARK_PREFIX}${id} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`], 2000 * SCALE);
  await settle();
  return 0;
}

async function runLane(lane, cases, { variants = (c) => variantsOf(c), onResult } = {}) {
  const results = [];
  const started = Date.now();
  for (const c of cases) {
    for (const v of variants(c)) {
      const r = await runCase(lane, c, v);
      results.push(r);
      if (onResult) onResult(r);
    }
  }
  lane.ms = Date.now() - started;
  return results;
}

// ---------------------------------------------------------------------------------------
// Rules

const hasCanary = (s) => String(s).toUpperCase().includes(CANARY);

function describe(x, max = 200) {
  const s = Buffer.isBuffer(x) ? x.toString('latin1') : String(x);
  return JSON.stringify(s.length > max ? `${s.slice(0, max)}...(${s.length})` : s);
}

function showRecord(r) {
  return `${describe(r.method, 40)} ${describe(r.target, 80)} [${r.headers.map(([k, v]) => `${k}: ${v}`).join(' | ')}]`;
}

function sameHead(rec, head) {
  const diffs = [];
  if (rec.method !== head.method) diffs.push(`method ${describe(rec.method)} vs logged ${describe(head.method)}`);
  if (rec.target !== head.target) diffs.push(`target ${describe(rec.target)} vs logged ${describe(head.target)}`);
  if (rec.version && head.version && rec.version !== head.version) diffs.push(`version ${rec.version} vs logged ${head.version}`);
  const n = Math.max(rec.headers.length, head.headers.length);
  for (let i = 0; i < n; i++) {
    const a = rec.headers[i];
    const b = head.headers[i];
    if (!a || !b || a[0].toLowerCase() !== b[0].toLowerCase() || a[1] !== b[1]) {
      diffs.push(`header ${i}: backend ${a ? describe(`${a[0]}: ${a[1]}`) : '(none)'} vs logged ${b ? describe(`${b[0]}: ${b[1]}`) : '(none)'}`);
    }
  }
  return diffs;
}

function framingProblem(headers) {
  const te = headers.filter(([k]) => k.toLowerCase() === 'transfer-encoding');
  const cl = headers.filter(([k]) => k.toLowerCase() === 'content-length');
  if (te.length > 1) return `${te.length} Transfer-Encoding fields`;
  if (te.length === 1 && te[0][1] !== 'chunked') return `Transfer-Encoding: ${describe(te[0][1])}`;
  if (cl.length > 1) return `${cl.length} Content-Length fields`;
  if (cl.length === 1 && !/^\d+$/.test(cl[0][1])) return `Content-Length: ${describe(cl[0][1])}`;
  if (te.length && cl.length) return 'Transfer-Encoding and Content-Length';
  return null;
}

// Returns the violations of rules (a), (b), (c) for one stickyd case result: strings
// "(a) ...". `headLog`: false = stickyd does not log forwarded heads (development switch
// SMUGGLING_NO_HEAD_LOG=1): rule (a) then compares the framed requests with the access-log
// lines of forwarded requests (method and target only), marked "(a*)".
function checkCase(r, { headLog = true } = {}) {
  const v = [];
  // (a) Framed requests pair with logged heads in order. A logged head no backend framed is
  // tolerated only at the end and only as many as the case has aborted exchanges (access
  // status 0: stickyd closed the backend connection, e.g. on a body framing error, and the
  // head may never have been read).
  const aborted = r.access.filter((e) => e.status === '0').length;
  if (headLog) {
    const heads = r.heads.filter((x) => !x.retried);
    const n = Math.max(r.records.length, heads.length);
    let unframed = 0;
    for (let i = 0; i < n; i++) {
      const rec = r.records[i];
      const head = heads[i];
      if (!head) v.push(`(a) backend framed a request stickyd never logged: ${showRecord(rec)}`);
      else if (!rec) {
        if (++unframed > aborted) v.push(`(a) stickyd logged a forwarded head no backend framed (and no aborted exchange explains it): ${describe(head.raw, 300)}`);
      } else {
        const d = sameHead(rec, head);
        if (d.length) v.push(`(a) framed request ${i} differs from the logged head: ${d.join('; ')}`);
        // The body the backend framed is the one the logged head announced.
        const cl = head.headers.filter(([k]) => k.toLowerCase() === 'content-length');
        if (rec.complete && cl.length === 1 && /^\d+$/.test(cl[0][1]) && rec.bodyLength !== Number(cl[0][1])) {
          v.push(`(a) framed request ${i}: body of ${rec.bodyLength} bytes, logged head says Content-Length: ${cl[0][1]}`);
        }
      }
    }
  } else {
    // Access lines are written at the end of each exchange, not in send order: compared as
    // multisets of "method target".
    const fwd = [...r.warmAccess, ...r.access].filter((e) => e.backend && e.backend !== '-');
    const logged = fwd.map((e) => `${e.method} ${unescapeLogValue(e.target)}`);
    const unlogged = [];
    for (const x of r.records) {
      const i = logged.indexOf(`${x.method} ${x.target}`);
      if (i < 0) unlogged.push(`${x.method} ${x.target}`);
      else logged.splice(i, 1);
    }
    if (unlogged.length) v.push(`(a*) backend framed request(s) not in the access log: ${describe(unlogged.join(' , '), 400)}`);
    if (logged.length > aborted) v.push(`(a*) access-logged forwarded request(s) no backend framed: ${describe(logged.join(' , '), 400)}`);
  }
  // stickyd writes the framing itself: a backend never sees anything but one
  // `Content-Length: <digits>` or one `Transfer-Encoding: chunked` (or neither).
  for (const rec of r.records) {
    const bad = framingProblem(rec.headers);
    if (bad) v.push(`(a) backend got a non-canonical framing header (${bad}): ${showRecord(rec)}`);
  }
  for (const e of r.backendErrors) v.push(`(a) backend could not frame bytes it was sent: ${e.code} ${e.message} ${describe(e.bytes, 120)}`);
  for (const rec of r.records) {
    if (rec.trailers && rec.trailers.length) v.push(`(a) trailer fields reached the backend: ${describe(rec.trailers.map(([k, x]) => `${k}: ${x}`).join(' | '))}`);
  }
  // (b)
  for (const rec of r.records) {
    const fields = [rec.method, rec.target, ...rec.headers.flat(), ...(rec.trailers || []).flat()];
    if (fields.some(hasCanary)) v.push(`(b) backend framed the canary: ${showRecord(rec)}${rec.trailers && rec.trailers.length ? ` trailers ${describe(rec.trailers.flat().join(' '))}` : ''}`);
  }
  for (const head of r.heads) if (hasCanary(head.raw)) v.push(`(b) stickyd logged a forwarded head with the canary: ${describe(head.raw, 300)}`);
  // (c)
  if (r.error) v.push(`(c) client got bytes that are not HTTP responses: ${r.error}; got ${describe(r.exchange.data, 300)}`);
  const finals = r.responses.filter((x) => !x.interim);
  const answered = r.access.filter((e) => e.status && e.status !== '0' && e.status !== '-');
  if (finals.length !== answered.length) {
    v.push(`(c) client got ${finals.length} final response(s) [${finals.map((x) => x.status).join(',')}] for ${answered.length} answered request(s) in the access log [${answered.map((e) => `${e.method} ${e.target} ${e.status}`).join(', ')}]`);
  }
  if (r.exchange.timedOut) v.push(`(c) the proxy did not close the connection within ${CASE_MS} ms`);
  if (r.warm && r.warm.error) v.push(`(c) warm-up request failed: ${r.warm.error}`);
  v.push(...checkResponseCase(r));
  return v;
}

// Backend-response cases: the final statuses expected, no tunnel after an invalid 101, none
// of the bytes the backend sent after its answer reach the client.
function checkResponseCase(r) {
  const v = [];
  if (!r.responseCase) return v;
  const rc = r.responseCase;
  const statuses = r.responses.filter((x) => !x.interim).map((x) => x.status);
  if (statuses.length !== rc.expect.length || statuses.some((s, i) => s !== rc.expect[i])) v.push(`(c) expected final status(es) ${rc.expect.join(',')}, got ${statuses.join(',') || 'none'}`);
  if (!rc.tunnel && statuses.includes(101)) v.push('(c) an invalid 101 was tunnelled to the client');
  if (hasCanary(r.exchange.data.toString('latin1'))) v.push(`(c) the client got bytes the backend sent after its answer: ${describe(r.exchange.data, 300)}`);
  return v;
}

// The comparison's per-case verdict (rules (b) and counts only; usable for any proxy):
//   SMUGGLED  a backend framed the canary, or the client did not get exactly one backend
//             response per request the backend framed completely
//   refused   nothing framed, the client got only 4xx/5xx answers
//   closed    nothing framed, the client got no answer at all
//   ok        otherwise (complete requests only, each answered once, no canary)
function classify(r) {
  if (r.responseCase) {
    const statuses = r.responses.map((x) => x.status).join('+') || 'none';
    const bad = checkResponseCase(r);
    return { verdict: bad.length ? `BAD ${statuses}` : `ok ${statuses}`, why: bad.join('; ') };
  }
  const canary = r.records.some((rec) => [rec.method, rec.target, ...rec.headers.flat(), ...(rec.trailers || []).flat()].some(hasCanary));
  if (canary) {
    const bad = r.records.filter((rec) => [rec.method, rec.target, ...rec.headers.flat(), ...(rec.trailers || []).flat()].some(hasCanary));
    return { verdict: 'SMUGGLED', why: `canary framed: ${bad.map((rec) => `${showRecord(rec)}${rec.trailers.length ? ` trailers ${describe(rec.trailers.flat().join(' '))}` : ''}`).join(' ; ')}` };
  }
  const framed = r.caseRecords.filter((x) => x.complete);
  const finals = r.responses.filter((x) => !x.interim);
  const fromBackend = finals.filter((x) => /^(strict|insecure|clfirst|scripted) #\d+\n$/.test(x.body));
  if (r.caseRecords.length === 0) {
    if (finals.length === 0) return { verdict: 'closed', why: r.error || '' };
    if (finals.every((x) => x.status >= 400)) return { verdict: 'refused', why: finals.map((x) => x.status).join(',') };
  }
  if (fromBackend.length !== framed.length) return { verdict: 'SMUGGLED', why: `framed ${framed.length} complete, client got ${fromBackend.length} backend response(s)` };
  return { verdict: 'ok', why: '' };
}

function formatTable(caseNames, columns) {
  // columns: [{title, cells: Map(case -> string)}]
  const rows = caseNames.map((n) => [n, ...columns.map((c) => c.cells.get(n) || '-')]);
  const header = ['case', ...columns.map((c) => c.title)];
  const widths = header.map((x, i) => Math.max(x.length, ...rows.map((r) => r[i].length)));
  const fmt = (r) => r.map((x, i) => x.padEnd(widths[i])).join(' | ');
  const out = [fmt(header), widths.map((w) => '-'.repeat(w)).join('-|-'), ...rows.map(fmt)];
  for (const c of columns) {
    const count = {};
    for (const n of caseNames) {
      const cell = c.cells.get(n) || '-';
      const key = cell.includes('SMUGGLED') ? 'SMUGGLED' : cell;
      count[key] = (count[key] || 0) + 1;
    }
    out.push(`${c.title} totals: ${Object.entries(count).map(([k, x]) => `${k}=${x}`).join(' ')}`);
  }
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------
// Suites: lanes for every proxy x backend kind x variant group, run in parallel

// Per kind, two lanes (two proxy listeners, two backends): fresh (+ split) and pooled, so
// that both halves run at the same time.
const VARIANT_GROUPS = [['fresh', 'split'], ['pooled']];

// The backend-response cases as inputs: each sets the scripted backend's answer to its first
// request.
function responseInputs(responses = RESPONSE_CASES) {
  return responses.map((rc) => ({
    name: rc.name,
    note: rc.note,
    raw: Buffer.from(rc.request, 'latin1'),
    responseCase: rc,
    caseMs: rc.tunnel ? 3000 * SCALE : undefined,
    before(lane) {
      let used = false;
      lane.backend.script = (entry) => {
        if (used || entry.target.includes(MARK_PREFIX) || entry.target.includes(WARM_PREFIX)) {
          return rb.rawResponse(lane.backend.kind, ++lane.backend.counter);
        }
        used = true;
        return { bytes: rc.response, tunnel: rc.response.startsWith('HTTP/1.1 101') };
      };
    },
  }));
}

// Starts backends and proxies, runs every lane, stops everything. Returns the lanes:
// [{label, proxy, kind, group, backend, stickyd?, results, ms}]. `proxies`: ['stickyd'] and/or
// 'haproxy'. onStarted(lanes) is called once everything listens.
async function runSuite({ proxies = ['stickyd'], kinds = rb.KINDS, cases = CORPUS, responses = RESPONSE_CASES, groups = VARIANT_GROUPS, onStarted } = {}) {
  const cleanups = [];
  const lanes = [];
  try {
    for (const proxy of proxies) {
      const specs = [];
      for (const kind of kinds) for (const group of groups) specs.push({ proxy, kind, group, label: `${proxy}/${kind}/${group.join('+')}` });
      if (responses.length) specs.push({ proxy, kind: 'scripted', group: ['fresh'], label: `${proxy}/scripted`, responses: true });
      for (const s of specs) {
        s.backend = await rb.startRecordingBackend(s.kind);
        cleanups.push(() => s.backend.close());
      }
      if (proxy === 'stickyd') {
        await Promise.all(
          specs.map(async (s) => {
            s.stickyd = await h.startStickyd({ ...stickydOptions(s.kind, s.backend.address), label: s.label });
            cleanups.push(() => s.stickyd.stop());
            s.port = s.stickyd.port;
          }),
        );
      } else if (proxy === 'haproxy') {
        const hp = await startHaproxy(specs.map((s, i) => ({ name: `l${i}`, address: s.backend.address })));
        cleanups.push(() => hp.stop());
        specs.forEach((s, i) => {
          s.port = hp.ports[`l${i}`];
          s.haproxy = hp;
        });
      } else throw new Error(`unknown proxy ${proxy}`);
      lanes.push(...specs);
    }
    if (onStarted) onStarted(lanes);
    await Promise.all(
      lanes.map(async (lane) => {
        const list = lane.responses ? responseInputs(responses) : cases;
        lane.results = await runLane(lane, list, { variants: (c) => lane.group.filter((v) => v !== 'split' || c.split) });
      }),
    );
    return lanes;
  } finally {
    for (const f of cleanups.reverse()) await Promise.resolve().then(f).catch(() => {});
  }
}

// Comparison table over lanes of several proxies: one row per case, one column per proxy;
// a cell is the verdict when every kind and variant agree, else the distinct verdicts, with
// where SMUGGLED happened.
function comparisonTable(lanes, proxies) {
  const names = [];
  const seen = new Set();
  for (const l of lanes) for (const r of l.results) if (!seen.has(r.name)) seen.add(r.name), names.push(r.name);
  const columns = proxies.map((p) => {
    const byCase = new Map();
    for (const l of lanes.filter((x) => x.proxy === p)) {
      for (const r of l.results) {
        if (!byCase.has(r.name)) byCase.set(r.name, []);
        byCase.get(r.name).push({ where: `${l.kind}:${r.variant}`, ...classify(r) });
      }
    }
    const cells = new Map();
    for (const [name, list] of byCase) {
      const distinct = [...new Set(list.map((x) => x.verdict))];
      let cell = distinct.length === 1 ? distinct[0] : distinct.sort().join('/');
      const sm = list.filter((x) => x.verdict === 'SMUGGLED');
      if (sm.length && sm.length < list.length) cell += ` [${sm.map((x) => x.where).join(',')}]`;
      cells.set(name, cell);
    }
    return { title: p, cells, byCase };
  });
  // Why each SMUGGLED / BAD verdict was given.
  const notes = [];
  for (const c of columns) {
    for (const [name, list] of c.byCase) {
      for (const x of list) if (x.verdict === 'SMUGGLED' || x.verdict.startsWith('BAD')) notes.push(`${c.title} ${name} [${x.where}]: ${x.verdict}: ${x.why}`);
    }
  }
  return { text: formatTable(names, columns), notes, columns, names };
}

// ---------------------------------------------------------------------------------------
// Proxies

function stickydOptions(backendName, address) {
  return {
    backends: [{ name: backendName, address }],
    timeouts: PROXY_TIMEOUTS,
    extra: { workers: 1, log: { level: 'debug' }, access_log: true },
  };
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, h.HOST, () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// HAProxy (mode http, one frontend per backend, nbthread 1, short timeouts; `http-reuse
// always` so that the pooled variant really reuses an idle server connection across
// clients as stickyd does). backends: [{name, address}] -> {ports: {name: port}, stop()}.
async function startHaproxy(backends) {
  const bin = haproxyBin();
  if (!bin) throw new Error('haproxy not found');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smuggling-haproxy-'));
  const ports = {};
  for (const b of backends) ports[b.name] = await freePort();
  const cfg = [
    'global',
    '  nbthread 1',
    '  maxconn 1000',
    'defaults',
    '  mode http',
    '  timeout connect 1s',
    '  timeout client 1s',
    '  timeout server 1s',
    '  timeout http-request 500ms',
    '  timeout http-keep-alive 200ms',
    '  http-reuse always',
    ...backends.flatMap((b) => [
      `frontend f_${b.name}`,
      `  bind 127.0.0.1:${ports[b.name]}`,
      `  default_backend b_${b.name}`,
      `backend b_${b.name}`,
      `  server s_${b.name} ${b.address}`,
    ]),
    '',
  ].join('\n');
  const file = path.join(dir, 'haproxy.cfg');
  fs.writeFileSync(file, cfg);
  let hp;
  try {
    hp = await startHaproxyConfig(file, Object.values(ports));
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const stderr = hp.stderr;
  const stop = async () => {
    await hp.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  };
  return { ports, stop, stderr, configText: cfg, version: null };
}

module.exports = {
  CANARY,
  PROXY_TIMEOUTS,
  CASE_MS,
  unescapeLogValue,
  parseRequestHead,
  parseForwardedHeads,
  parseResponses: h.parseResponses,
  rawExchange: h.rawExchange,
  splitParts,
  variantsOf,
  runCase,
  runLane,
  checkCase,
  classify,
  formatTable,
  stickydOptions,
  startHaproxy,
  runSuite,
  responseInputs,
  comparisonTable,
  checkResponseCase,
  VARIANT_GROUPS,
  haproxyBin,
  describe,
};
