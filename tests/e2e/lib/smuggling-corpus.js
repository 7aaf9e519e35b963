'use strict';
// Raw client inputs for the request-smuggling suite (u-smuggling.test.js and
// tests/bench/smuggling-compare.js): {name, raw, note, split?}.
//
// The canary: every byte sequence that a correct proxy must NEVER deliver to a backend as a
// request or as a header (or trailer) field contains `SMUGGLED` (a smuggled request
// `GET /SMUGGLED HTTP/1.1`, a trailer `X-Evil: SMUGGLED`, ...). A canary is placed only where
// every RFC 9110/9112-conforming handling keeps it out of a forwarded head: as chunk data or
// body data (data is fine), behind a framing that must be refused, or after a message with
// both Transfer-Encoding and Content-Length (RFC 9112 §6.1: the connection must be closed
// after it). Where a conforming proxy may legitimately forward the bytes as a field (bare LF
// as a line end, a NUL/CR/obs-fold replaced by SP), the input carries no canary and the
// forwarded-head comparison (rule (a)) is what checks it.
// Legitimate requests never contain the canary in their method, target or headers.
//
// `split: true`: the test also sends the input in 3 writes (cut inside the head and at the
// start of the body).

const CANARY = 'SMUGGLED';
const HOST = 'Host: 127.0.0.1\r\n';

// The smuggled request (44 bytes: its size in hex is 2 digits, "2c").
const S = `GET /${CANARY} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`;
const hexS = S.length.toString(16);
// Chunked body whose only chunk is S (S is data).
const chunkedS = `${hexS}\r\n${S}\r\n0\r\n\r\n`;
// CL covering exactly "2c\r\n": a Content-Length-framed parser sees S as the next request.
const CL_OF_SIZE_LINE = `${hexS}\r\n`.length;

// TE.CL: Transfer-Encoding line(s) + Content-Length: 4, body chunked around S.
function teCl(teLines, { target = '/te-cl', version = 'HTTP/1.1' } = {}) {
  return `POST ${target} ${version}\r\n${HOST}${teLines}\r\nContent-Length: ${CL_OF_SIZE_LINE}\r\n\r\n${chunkedS}`;
}
// CL.TE: Content-Length covering the whole rest, then the Transfer-Encoding line(s); the
// body is a last chunk followed by S (a chunked parser sees S as the next request).
function clTe(teLines, { target = '/cl-te' } = {}) {
  const body = `0\r\n\r\n${S}`;
  return `POST ${target} HTTP/1.1\r\n${HOST}Content-Length: ${body.length}\r\n${teLines}\r\n\r\n${body}`;
}
// TE only: an obfuscated Transfer-Encoding and a chunked body carrying S as data. A proxy
// that does not take it as chunked must refuse it (RFC 9112 §6.3); one that forwards the head
// and then reads the body as requests delivers S.
function teOnly(teLines, { target = '/te-only' } = {}) {
  return `POST ${target} HTTP/1.1\r\n${HOST}${teLines}\r\n\r\n${chunkedS}`;
}

// Transfer-Encoding obfuscations (each used as TE.CL, CL.TE and TE only).
const TE_VARIANTS = [
  ['te', 'Transfer-Encoding: chunked', 'plain chunked'],
  ['two-te-chunked-identity', 'Transfer-Encoding: chunked\r\nTransfer-Encoding: identity', 'two TE fields, chunked not last'],
  ['two-te-identity-chunked', 'Transfer-Encoding: identity\r\nTransfer-Encoding: chunked', 'two TE fields, chunked last'],
  ['te-chunked-identity', 'Transfer-Encoding: chunked, identity', 'chunked not the final coding: 400'],
  ['te-identity-chunked', 'Transfer-Encoding: identity, chunked', 'list with chunked last'],
  ['te-xchunked', 'Transfer-Encoding: xchunked', 'unknown coding'],
  ['te-space-chunked', 'Transfer-Encoding:  chunked', 'two spaces (valid OWS)'],
  ['te-tab', 'Transfer-Encoding:\tchunked', 'tab as OWS'],
  ['te-obs-fold', 'Transfer-Encoding:\r\n chunked', 'value on an obs-fold line'],
  ['te-space-before-colon', 'Transfer-Encoding : chunked', 'whitespace before the colon: must be 400'],
  ['te-upper', 'Transfer-Encoding: CHUNKED', 'uppercase coding'],
  ['te-param', 'Transfer-Encoding: chunked;q=1', 'coding with a parameter'],
  // Unfolded (a legitimate handling) it is part of X-Pad's value and CL: 4 frames the
  // request, so S would be a legitimate pipelined request: no TE.CL form for it.
  ['te-leading-space-line', 'X-Pad: x\r\n Transfer-Encoding: chunked', 'TE as a continuation of X-Pad', { noTeCl: true }],
  ['te-vtab', 'Transfer-Encoding:\x0bchunked', 'vertical tab before the value'],
  ['te-trailing-comma', 'Transfer-Encoding: chunked,', 'empty list element after chunked'],
];

const corpus = [];
function add(name, raw, note, opts = {}) {
  corpus.push({ name, raw: Buffer.from(raw, 'latin1'), note, ...opts });
}

// --- Transfer-Encoding / Content-Length obfuscations
for (const [id, te, note, opts = {}] of TE_VARIANTS) {
  if (!opts.noTeCl) add(`${id}+cl`, teCl(te), `TE.CL, ${note}`, { split: id === 'te' || id === 'te-xchunked' });
  add(`cl+${id}`, clTe(te), `CL.TE, ${note}`, { split: id === 'te' });
  if (id !== 'te') add(`${id}-only`, teOnly(te), `TE only, ${note}`);
}

// Content-Length tricks. The body is S: a proxy that takes the length as invalid/absent and
// goes on parsing delivers S as a request.
const clBody = (clLines, target) => `POST ${target} HTTP/1.1\r\n${HOST}${clLines}\r\n\r\n${S}`;
add('cl-dup-0-n', clBody(`Content-Length: 0\r\nContent-Length: ${S.length}`, '/cl-dup'), 'two different Content-Length (first 0)');
add('cl-dup-n-0', clBody(`Content-Length: ${S.length}\r\nContent-Length: 0`, '/cl-dup2'), 'two different Content-Length (last 0)');
add('cl-dup-same', clBody(`Content-Length: ${S.length}\r\nContent-Length: ${S.length}`, '/cl-dup-same'), 'the same Content-Length twice (S is body)');
add('cl-plus', clBody(`Content-Length: +${S.length}`, '/cl-plus'), 'Content-Length with a + sign');
add('cl-minus', clBody('Content-Length: -1', '/cl-minus'), 'negative Content-Length');
add('cl-leading-zeros', clBody(`Content-Length: 000${S.length}`, '/cl-zeros'), 'leading zeros (valid 1*DIGIT: S is body)');
add('cl-list', clBody(`Content-Length: ${S.length},${S.length}`, '/cl-list'), 'Content-Length: n,n');
add('cl-1-1', `POST /cl-1-1 HTTP/1.1\r\n${HOST}Content-Length: 1,1\r\n\r\nx`, 'Content-Length: 1,1 (no canary: one byte of body)');
add('cl-hex', clBody(`Content-Length: 0x${hexS}`, '/cl-hex'), 'hex Content-Length');
add('cl-space-inside', clBody(`Content-Length: ${String(S.length)[0]} ${String(S.length).slice(1)}`, '/cl-space'), 'a space between the digits');

// --- chunk-size tricks (S is chunk data unless the size is misread)
const chunked = (target, body) => `POST ${target} HTTP/1.1\r\n${HOST}Transfer-Encoding: chunked\r\n\r\n${body}`;
add('chunk-16-digits', chunked('/c16', `${hexS.padStart(16, '0')}\r\n${S}\r\n0\r\n\r\n`), '16-digit chunk size (leading zeros)', { split: true });
add('chunk-overflow-to-0', chunked('/covf', `10000000000000000\r\n${S}\r\n0\r\n\r\n`), '17-digit size that truncates to 0 in 64 bits');
add('chunk-0x', chunked('/c0x', `0x${hexS}\r\n${S}\r\n0\r\n\r\n`), '0x prefix: a parser reading "0" ends the body');
add('chunk-negative', chunked('/cneg', `-${hexS}\r\n${S}\r\n0\r\n\r\n`), 'negative chunk size');
add('chunk-leading-space', chunked('/csp1', ` ${hexS}\r\n${S}\r\n0\r\n\r\n`), 'space before the size');
add('chunk-trailing-space', chunked('/csp2', `${hexS} \r\n${S}\r\n0\r\n\r\n`), 'space after the size');
add('chunk-bare-cr', chunked('/ccr', `${hexS}\r${S}\r\n0\r\n\r\n`), 'bare CR ends the size line');
add('chunk-lf-only', chunked('/clf', `${hexS}\n${S}\n0\n\n`), 'LF-only chunk lines');
add('chunk-missing-crlf', chunked('/cmiss', '5\r\nhelloAB0\r\n\r\n'), 'no CRLF after the data (review case)');
add('chunk-too-long-data', chunked('/clong', `3\r\nabcde\r\n0\r\n\r\n${S}`), 'more data than the size: must be refused');
add('chunk-huge-ext', chunked('/cext', `5;ext=${'x'.repeat(20000)}\r\nhello\r\n0\r\n\r\n`), '20 kB chunk extension');
add('chunk-ext-quoted-crlf', chunked('/cextq', `5;a="x\r\n0\r\n\r\n${S}"\r\nhello\r\n0\r\n\r\n`), 'quoted extension containing CRLF and a request');
add('chunk-ext-bare-cr', chunked('/cextcr', `5;a=b\rc\r\nhello\r\n0\r\n\r\n`), 'bare CR inside an extension');
add('chunk-size-lf-then-request', chunked('/cnolast', `5\r\nhello\r\n0\r\n${S}`), 'no empty line after the last chunk: S lines are trailers');

// --- trailers
add('trailer-host', chunked('/tr-host', `5\r\nhello\r\n0\r\nHost: ${CANARY}.example\r\n\r\n`), 'Host in the trailers', { split: true });
add('trailer-cl', chunked('/tr-cl', `5\r\nhello\r\n0\r\nContent-Length: 5\r\nX-Evil: ${CANARY}\r\n\r\n`), 'Content-Length in the trailers');
add('trailer-te', chunked('/tr-te', `5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\nX-Evil: ${CANARY}\r\n\r\n`), 'Transfer-Encoding in the trailers');
add('trailer-evil', chunked('/tr-evil', `0\r\nX-Evil: ${CANARY}\r\n\r\n`), 'a plain trailer field (dropped by the proxy)');
add('trailer-request', chunked('/tr-req', `0\r\nX-Evil: ${CANARY}\nGET /${CANARY}-trailer HTTP/1.1\nHost: x\n\n`), 'bare-LF trailers hiding a request');

// --- line endings, control bytes, odd bytes in heads (no canary where SP replacement or LF
// as a line end is a legitimate handling; rule (a) checks those)
add('head-bare-cr-value', `GET /bare-cr HTTP/1.1\r\n${HOST}X-A: a\rX-B: b\r\n\r\n`, 'bare CR inside a value');
add('head-bare-cr-te', clTe('X-A: a\rTransfer-Encoding: chunked', { target: '/bare-cr-te' }), 'TE hidden behind a bare CR (CL.TE)');
add('head-bare-lf-line', `GET /bare-lf HTTP/1.1\n${HOST.replace('\r\n', '\n')}X-A: a\n\n`, 'bare LF line endings everywhere');
add('head-bare-lf-te', clTe('X-A: a\nTransfer-Encoding: chunked', { target: '/bare-lf-te' }), 'TE behind a bare LF (CL.TE)');
add('head-nul-value', `GET /nul HTTP/1.1\r\n${HOST}X-A: a\x00b\r\n\r\n`, 'NUL in a value');
add('head-nul-name', `GET /nul2 HTTP/1.1\r\n${HOST}X-\x00A: a\r\n\r\n`, 'NUL in a name');
add('head-obs-fold', `GET /fold HTTP/1.1\r\n${HOST}X-A: a\r\n b\r\n\r\n`, 'obs-fold line');
add('target-tab', `GET /a\tb HTTP/1.1\r\n${HOST}\r\n`, 'tab in the request target');
add('target-0xff', `GET /a\xffb HTTP/1.1\r\n${HOST}\r\n`, '0xff in the request target');
add('target-space-smuggle', `GET /a HTTP/1.1 /${CANARY} HTTP/1.1\r\n${HOST}\r\n`, 'spaces in the request line');
add('host-list', `GET /host-list HTTP/1.1\r\nHost: a,${CANARY}.example\r\n\r\n`, 'Host: a,evil (invalid)');
add('host-missing', 'GET /no-host HTTP/1.1\r\nX-A: a\r\n\r\n', 'HTTP/1.1 without Host: 400');
add('host-two', `GET /two-hosts HTTP/1.1\r\n${HOST}Host: ${CANARY}.example\r\n\r\n`, 'two Host fields: 400');
add('host-space-before-colon', `GET /host-sp HTTP/1.1\r\nHost : ${CANARY}.example\r\n${HOST}\r\n`, 'Host with whitespace before the colon');
add('http10-te', teOnly('Transfer-Encoding: chunked', { target: '/http10-te' }).replace('HTTP/1.1', 'HTTP/1.0'), 'HTTP/1.0 with TE chunked: 400');
add('http10-te-cl', teCl('Transfer-Encoding: chunked', { target: '/http10-te-cl', version: 'HTTP/1.0' }), 'HTTP/1.0, TE chunked and CL');
add('http09', `GET /${CANARY}-09\r\n\r\n`, 'HTTP/0.9 simple request');
add('version-2', `GET /v2 HTTP/2.0\r\n${HOST}\r\n`, 'HTTP/2.0 on an HTTP/1 connection');

// --- pipelining (legitimate: no canary)
add('pipeline-2-get', `GET /p1 HTTP/1.1\r\n${HOST}\r\nGET /p2 HTTP/1.1\r\n${HOST}\r\n`, 'two GETs in one write', { split: true });
add('pipeline-post-get', `POST /p1 HTTP/1.1\r\n${HOST}Content-Length: 5\r\n\r\nhelloGET /p2 HTTP/1.1\r\n${HOST}\r\n`, 'POST with a body, then GET');
add('pipeline-3-mixed', `POST /p1 HTTP/1.1\r\n${HOST}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nPOST /p2 HTTP/1.1\r\n${HOST}Content-Length: 3\r\n\r\nabcGET /p3 HTTP/1.1\r\n${HOST}\r\n`, 'chunked POST, CL POST, GET', { split: true });
add('pipeline-body-looks-like-request', `POST /p1 HTTP/1.1\r\n${HOST}Content-Length: ${S.length}\r\n\r\n${S}GET /p2 HTTP/1.1\r\n${HOST}\r\n`, 'a body that looks like a request (data), then GET');

// --- upgrades
const WS = 'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n';
const WS_TARGET = '/socket.io/?EIO=4&transport=websocket';
add('upgrade-h2c', `GET /h2c HTTP/1.1\r\n${HOST}Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n`, 'h2c upgrade: proxied as plain HTTP, never tunnelled');
add('upgrade-h2c-early', `GET /h2c HTTP/1.1\r\n${HOST}Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\nGET /after-h2c HTTP/1.1\r\n${HOST}\r\n`, 'h2c upgrade followed at once by a request');
add('upgrade-ws-post', `POST ${WS_TARGET} HTTP/1.1\r\n${HOST}${WS}Content-Length: ${S.length}\r\n\r\n${S}`, 'websocket upgrade on POST, body S (data)');
add('upgrade-ws-mixed-case', `GET ${WS_TARGET} HTTP/1.1\r\n${HOST}${WS.replace('websocket', 'WebSocket')}\r\n`, 'Upgrade: WebSocket');
add('upgrade-ws-body', `GET ${WS_TARGET} HTTP/1.1\r\n${HOST}${WS}Content-Length: ${S.length}\r\n\r\n${S}`, 'websocket upgrade with a body S (data)');
add('upgrade-ws-early', `GET ${WS_TARGET} HTTP/1.1\r\n${HOST}${WS}\r\nGET /after-ws HTTP/1.1\r\n${HOST}\r\n`, 'websocket upgrade followed at once by a request (the node answers 200)', { split: true });
add('upgrade-connection-only', `GET /conn-upgrade HTTP/1.1\r\n${HOST}Connection: Upgrade\r\n\r\n`, 'Connection: Upgrade without Upgrade');
add('upgrade-foo-te', `GET /foo HTTP/1.1\r\n${HOST}Connection: Upgrade\r\nUpgrade: foo\r\nTransfer-Encoding: chunked\r\nContent-Length: ${CL_OF_SIZE_LINE}\r\n\r\n${chunkedS}`, 'unknown upgrade token with TE.CL');

// --- Expect, target forms, CONNECT
add('expect-100', `POST /expect HTTP/1.1\r\n${HOST}Expect: 100-continue\r\nContent-Length: 5\r\n\r\nhello`, 'Expect: 100-continue with the body sent at once');
add('target-absolute', `GET http://127.0.0.1/abs HTTP/1.1\r\n${HOST}\r\n`, 'absolute-form target');
add('target-asterisk', `OPTIONS * HTTP/1.1\r\n${HOST}\r\n`, 'asterisk-form target');
add('connect', `CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n\r\n${S}`, 'CONNECT followed by S (tunnel bytes)');
add('method-get-body-cl', `GET /get-body HTTP/1.1\r\n${HOST}Content-Length: ${S.length}\r\n\r\n${S}`, 'GET with a body S (data)');

// ---------------------------------------------------------------------------------------
// Backend-response cases (a scripted raw backend answers). expect: the final statuses the
// client must get ('502' for invalid answers), tunnel: whether a 101 may reach the client.
// The backend's answer is followed, in the same write, by bytes with the canary: they must
// never reach the client (no tunnel of an invalid 101, no second response).

const WS_REQ = `GET ${WS_TARGET} HTTP/1.1\r\n${HOST}${WS}\r\n`;
const PLAIN_REQ = `GET /plain HTTP/1.1\r\n${HOST}\r\n`;
const TAIL = `HTTP/1.1 200 OK\r\nX-Evil: ${CANARY}\r\nContent-Length: 0\r\n\r\n`;
const ACCEPT = 'Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n';

const responseCases = [
  {
    name: 'resp-101-bare',
    request: WS_REQ,
    response: `HTTP/1.1 101 Switching Protocols\r\n\r\n${TAIL}`,
    expect: [502],
    note: '101 without Upgrade/Connection to a websocket upgrade',
  },
  {
    name: 'resp-101-unrequested',
    request: PLAIN_REQ,
    response: `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n${ACCEPT}\r\n${TAIL}`,
    expect: [502],
    note: '101 to a request that did not ask for an upgrade',
  },
  {
    name: 'resp-101-h2c',
    request: WS_REQ,
    response: `HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n${TAIL}`,
    expect: [502],
    note: '101 with Upgrade: h2c to a websocket upgrade',
  },
  {
    name: 'resp-101-no-connection',
    request: WS_REQ,
    response: `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n${ACCEPT}\r\n${TAIL}`,
    expect: [502],
    note: '101 with Upgrade: websocket but no Connection: upgrade',
  },
  {
    name: 'resp-101-to-h2c-request',
    request: `GET /h2c HTTP/1.1\r\n${HOST}Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n`,
    response: `HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n${TAIL}`,
    expect: [502],
    note: 'h2c upgrade request answered 101 h2c: only websocket is tunnelled',
  },
  {
    name: 'resp-101-to-ws-post',
    request: `POST ${WS_TARGET} HTTP/1.1\r\n${HOST}${WS}Content-Length: 0\r\n\r\n`,
    response: `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n${ACCEPT}\r\n${TAIL}`,
    expect: [502],
    note: 'websocket upgrade on POST answered 101: only GET is tunnelled',
  },
  {
    name: 'resp-te-cl',
    request: PLAIN_REQ,
    response: `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n${TAIL}`,
    expect: [502],
    note: 'response with Transfer-Encoding: chunked and Content-Length',
  },
  {
    name: 'resp-bare-lf',
    request: PLAIN_REQ,
    response: `HTTP/1.1 200 OK\nContent-Length: 2\nX-A: a\n\nok${TAIL}`,
    expect: [502],
    note: 'bare-LF response head',
  },
  {
    name: 'resp-103-then-200',
    request: PLAIN_REQ,
    response: 'HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok',
    expect: [200],
    note: '103 Early Hints before the 200 (interim passed or dropped, one final answer)',
  },
  {
    name: 'resp-101-valid',
    request: WS_REQ,
    response: `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n${ACCEPT}\r\n`,
    expect: [101],
    tunnel: true,
    note: 'control: a valid websocket 101 is tunnelled',
  },
];

module.exports = { CANARY, corpus, responseCases, S };
