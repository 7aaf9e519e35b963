'use strict';
// Recording HTTP backends for the request-smuggling suite (tests/e2e/test/u-smuggling.test.js,
// tests/bench/smuggling-compare.js). Each listens on 127.0.0.1:0, records every request it
// frames (per TCP connection: method, target, header list [name, value] in order, trailers,
// body length) and answers each with `HTTP/1.1 200 OK`, a Content-Length and a small body
// naming the backend and a request counter ("strict #3").
//
//   strict    node:http, default parser (llhttp, strict)
//   insecure  node:http with insecureHTTPParser: true
//   clfirst   raw net server with its own lenient parser that frames by Content-Length FIRST
//             (the first one, even next to Transfer-Encoding), else chunked if any
//             Transfer-Encoding value contains "chunked", else no body
//   scripted  raw net server: for each request head it reads, writes the bytes `script(rec)`
//             returns (the backend-response cases)
//
// Bytes a backend could not frame are recorded as errors (rec.errors): node:http's
// clientError (HPE_* codes), the raw parsers' invalid chunk sizes. dropConnections()
// destroys every open connection and resolves once all are closed (a test isolates cases
// with it: the next request stickyd sends goes on a fresh backend connection).

const http = require('node:http');
const net = require('node:net');

const HOST = '127.0.0.1';

function bodyFor(kind, n) {
  return `${kind} #${n}\n`;
}

function rawResponse(kind, n) {
  const body = bodyFor(kind, n);
  return `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Backend: ${kind}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

// State and bookkeeping shared by every kind.
function makeRecorder(kind) {
  const rec = {
    kind,
    port: null,
    address: null,
    requests: [], // every request framed, in order: {seq, conn, method, target, version, headers, trailers, bodyLength, complete}
    errors: [], // {conn, code, message, bytes}
    sockets: new Set(),
    connSeq: 0,
    counter: 0,
  };
  rec.track = (socket) => {
    socket.connId = ++rec.connSeq;
    rec.sockets.add(socket);
    socket.on('close', () => rec.sockets.delete(socket));
    socket.on('error', () => {});
  };
  rec.record = (socket, r) => {
    const entry = { seq: rec.requests.length, conn: socket.connId, trailers: [], bodyLength: 0, complete: false, ...r };
    rec.requests.push(entry);
    return entry;
  };
  rec.error = (socket, code, message, bytes) => {
    rec.errors.push({ conn: socket ? socket.connId : null, code, message, bytes: bytes ? Buffer.from(bytes).toString('latin1').slice(0, 300) : '' });
  };
  // Index marks: what happened since mark() (the requests and errors of one case).
  rec.mark = () => ({ requests: rec.requests.length, errors: rec.errors.length });
  rec.since = (m) => ({ requests: rec.requests.slice(m.requests), errors: rec.errors.slice(m.errors) });
  rec.dropConnections = () => {
    const waits = [];
    for (const s of rec.sockets) {
      waits.push(new Promise((resolve) => s.once('close', resolve)));
      s.destroy();
    }
    return Promise.all(waits);
  };
  return rec;
}

function listen(server, rec) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, () => {
      rec.port = server.address().port;
      rec.address = `${HOST}:${rec.port}`;
      rec.close = async () => {
        await rec.dropConnections();
        await new Promise((r) => server.close(() => r()));
      };
      resolve(rec);
    });
  });
}

function pairs(rawHeaders) {
  const out = [];
  for (let i = 0; i < rawHeaders.length; i += 2) out.push([rawHeaders[i], rawHeaders[i + 1]]);
  return out;
}

// Ignored client errors: the peer went away, or a body cut short by the peer closing (a
// proxy aborting a request it had streamed: not a framing fault).
const BENIGN_CLIENT_ERRORS = new Set(['ECONNRESET', 'EPIPE', 'HPE_INVALID_EOF_STATE', 'ERR_HTTP_REQUEST_TIMEOUT']);

async function startNodeBackend(kind, options) {
  const rec = makeRecorder(kind);
  const server = http.createServer(options);
  server.keepAliveTimeout = 30000;
  server.on('connection', (s) => rec.track(s));
  server.on('request', (req, res) => {
    const entry = rec.record(req.socket, {
      method: req.method,
      target: req.url,
      version: `HTTP/${req.httpVersion}`,
      headers: pairs(req.rawHeaders),
    });
    req.on('data', (c) => (entry.bodyLength += c.length));
    req.on('end', () => {
      entry.complete = true;
      entry.trailers = pairs(req.rawTrailers);
      const n = ++rec.counter;
      const body = bodyFor(kind, n);
      res.writeHead(200, { 'Content-Type': 'text/plain', 'X-Backend': kind, 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
    });
    req.on('error', () => {});
  });
  // CONNECT: recorded, answered, closed (no tunnel).
  server.on('connect', (req, socket) => {
    rec.record(socket, { method: req.method, target: req.url, version: `HTTP/${req.httpVersion}`, headers: pairs(req.rawHeaders), complete: true });
    socket.end(rawResponse(kind, ++rec.counter));
  });
  server.on('clientError', (err, socket) => {
    if (!BENIGN_CLIENT_ERRORS.has(err.code)) rec.error(socket, err.code || 'error', err.message, err.rawPacket);
    if (socket.writable && !BENIGN_CLIENT_ERRORS.has(err.code)) {
      socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    } else {
      socket.destroy();
    }
  });
  return listen(server, rec);
}

// Splits off one line (up to LF, a preceding CR dropped); null when no LF yet.
function takeLine(state) {
  const i = state.buf.indexOf(0x0a);
  if (i < 0) return null;
  let line = state.buf.subarray(0, i);
  if (line.length && line[line.length - 1] === 0x0d) line = line.subarray(0, line.length - 1);
  state.buf = state.buf.subarray(i + 1);
  return line.toString('latin1');
}

// Head text -> {method, target, version, headers}. Lenient: CRLF or LF lines, obs-fold lines
// appended to the previous value, names and values trimmed, a line without a colon is a name
// with an empty value.
function parseLenientHead(text) {
  const lines = text.split(/\r?\n/);
  const parts = lines[0].split(' ');
  const headers = [];
  for (const line of lines.slice(1)) {
    if (/^[ \t]/.test(line) && headers.length) {
      headers[headers.length - 1][1] += ` ${line.trim()}`;
      continue;
    }
    const c = line.indexOf(':');
    if (c < 0) headers.push([line.trim(), '']);
    else headers.push([line.slice(0, c).trim(), line.slice(c + 1).trim()]);
  }
  return { method: parts[0], target: parts[1] || '', version: parts.slice(2).join(' '), headers };
}

// Index and length of the first head terminator (CRLFCRLF or LFLF), or null.
function headEnd(buf) {
  const a = buf.indexOf('\r\n\r\n');
  const b = buf.indexOf('\n\n');
  if (a < 0 && b < 0) return null;
  if (b < 0 || (a >= 0 && a < b)) return { at: a, len: 4 };
  return { at: b, len: 2 };
}

async function startClFirstBackend(kind = 'clfirst') {
  const rec = makeRecorder(kind);
  const server = net.createServer((socket) => {
    rec.track(socket);
    const st = { buf: Buffer.alloc(0), cur: null };
    const fail = (code, message) => {
      rec.error(socket, code, message, st.buf);
      socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      st.failed = true;
    };
    const respond = () => {
      const c = st.cur;
      c.entry.complete = true;
      st.cur = null;
      socket.write(rawResponse(kind, ++rec.counter));
      if (c.close) {
        socket.end();
        st.failed = true;
      }
    };
    const pump = () => {
      while (!st.failed) {
        if (!st.cur) {
          // Empty lines before a request line are skipped (RFC 9112 §2.2).
          while (st.buf.length && (st.buf[0] === 0x0d || st.buf[0] === 0x0a)) st.buf = st.buf.subarray(1);
          const end = headEnd(st.buf);
          if (!end) return;
          const head = parseLenientHead(st.buf.subarray(0, end.at).toString('latin1'));
          st.buf = st.buf.subarray(end.at + end.len);
          const entry = rec.record(socket, head);
          const find = (n) => head.headers.filter(([k]) => k.toLowerCase() === n);
          const cl = find('content-length');
          const te = find('transfer-encoding');
          const conn = find('connection').map(([, v]) => v.toLowerCase()).join(',');
          st.cur = { entry, close: /\bclose\b/.test(conn) || head.version === 'HTTP/1.0' };
          if (cl.length) {
            const n = parseInt(cl[0][1], 10);
            st.cur.mode = 'length';
            st.cur.left = Number.isFinite(n) && n > 0 ? n : 0;
          } else if (te.some(([, v]) => v.toLowerCase().includes('chunked'))) {
            st.cur.mode = 'chunked';
            st.cur.phase = 'size';
          } else {
            st.cur.mode = 'none';
          }
        }
        const c = st.cur;
        if (c.mode === 'none') {
          respond();
          continue;
        }
        if (c.mode === 'length') {
          const n = Math.min(c.left, st.buf.length);
          c.entry.bodyLength += n;
          c.left -= n;
          st.buf = st.buf.subarray(n);
          if (c.left > 0) return;
          respond();
          continue;
        }
        // chunked, lenient: hex size (0x prefix, spaces tolerated), extensions ignored,
        // the CRLF (or LF) after the data skipped when present.
        if (c.phase === 'size') {
          const line = takeLine(st);
          if (line === null) return;
          const size = parseInt(line.split(';')[0].trim(), 16);
          if (!Number.isFinite(size) || size < 0) return fail('BAD_CHUNK_SIZE', `invalid chunk size line ${JSON.stringify(line)}`);
          if (size === 0) c.phase = 'trailers';
          else {
            c.phase = 'data';
            c.left = size;
          }
          continue;
        }
        if (c.phase === 'data') {
          const n = Math.min(c.left, st.buf.length);
          c.entry.bodyLength += n;
          c.left -= n;
          st.buf = st.buf.subarray(n);
          if (c.left > 0 || st.buf.length === 0) return;
          if (st.buf[0] === 0x0d) {
            if (st.buf.length < 2) return;
            if (st.buf[1] === 0x0a) st.buf = st.buf.subarray(2);
          } else if (st.buf[0] === 0x0a) st.buf = st.buf.subarray(1);
          c.phase = 'size';
          continue;
        }
        // trailers: lines until an empty one
        const line = takeLine(st);
        if (line === null) return;
        if (line === '') {
          respond();
          continue;
        }
        const colon = line.indexOf(':');
        c.entry.trailers.push(colon < 0 ? [line, ''] : [line.slice(0, colon).trim(), line.slice(colon + 1).trim()]);
      }
    };
    socket.on('data', (d) => {
      if (st.failed) return;
      st.buf = st.buf.length ? Buffer.concat([st.buf, d]) : d;
      pump();
    });
  });
  return listen(server, rec);
}

// Raw backend whose answer is scripted: for each request head (CRLFCRLF or LFLF) it records
// the request and writes `rec.script(entry)` (a string/Buffer, or {bytes, close}). The
// default script answers 200. Request bodies are not framed (the cases send none).
async function startScriptedBackend(kind = 'scripted') {
  const rec = makeRecorder(kind);
  rec.script = () => rawResponse(kind, ++rec.counter);
  const server = net.createServer((socket) => {
    rec.track(socket);
    let buf = Buffer.alloc(0);
    let tunnel = false;
    socket.on('data', (d) => {
      if (tunnel) return; // after a 101 the bytes are the peer's, not requests
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      for (;;) {
        const end = headEnd(buf);
        if (!end) return;
        const head = parseLenientHead(buf.subarray(0, end.at).toString('latin1'));
        buf = buf.subarray(end.at + end.len);
        const entry = rec.record(socket, { ...head, complete: true });
        let out = rec.script(entry);
        if (typeof out === 'string' || Buffer.isBuffer(out)) out = { bytes: out };
        socket.write(out.bytes);
        if (out.tunnel) tunnel = true;
        if (out.close) {
          socket.end();
          return;
        }
      }
    });
  });
  return listen(server, rec);
}

const KINDS = ['strict', 'insecure', 'clfirst'];

function startRecordingBackend(kind) {
  if (kind === 'strict') return startNodeBackend('strict', {});
  if (kind === 'insecure') return startNodeBackend('insecure', { insecureHTTPParser: true });
  if (kind === 'clfirst') return startClFirstBackend('clfirst');
  if (kind === 'scripted') return startScriptedBackend('scripted');
  throw new Error(`unknown backend kind ${kind}`);
}

// The three recording backends: {strict, insecure, clfirst}.
async function startRecordingBackends(kinds = KINDS) {
  const started = await Promise.all(kinds.map((k) => startRecordingBackend(k)));
  const out = {};
  kinds.forEach((k, i) => (out[k] = started[i]));
  out.closeAll = () => Promise.all(started.map((b) => b.close()));
  return out;
}

module.exports = {
  KINDS,
  startRecordingBackend,
  startRecordingBackends,
  parseLenientHead,
  rawResponse,
  bodyFor,
};
