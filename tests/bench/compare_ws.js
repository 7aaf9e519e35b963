'use strict';
// Websocket helper for tests/bench/compare.sh (run by hand, never by the test suite).
//
//   node compare_ws.js backend P1 P2 P3            fake Engine.IO websocket nodes on 3 ports
//   node compare_ws.js idle PORT N HOLD_SEC         open N idle tunnels, print READY, hold, close
//   node compare_ws.js push PORT CONNS MB FRAME_KB  push MB megabytes (client -> node) over CONNS
//                                                   tunnels in FRAME_KB binary frames
//
// The nodes send an Engine.IO open packet on every connection (so a proxy that reads the
// websocket-first handshake can learn the sid), discard binary frames and answer the text
// frame "fin" with "ack <bytes received on this connection>". Everything is on 127.0.0.1 and
// every mode is bounded in time (a watchdog exits the process).
const crypto = require('node:crypto');
const path = require('node:path');

const HOST = '127.0.0.1';
const E2E_DIR = path.resolve(__dirname, '..', 'e2e');
function loadWs() {
  const io = require.resolve('socket.io', { paths: [E2E_DIR] });
  return require(require.resolve('ws', { paths: [path.dirname(io)] }));
}
const WebSocket = loadWs();
const [mode, ...args] = process.argv.slice(2);
const URL_PATH = '/socket.io/?EIO=4&transport=websocket';

function watchdog(sec) { setTimeout(() => { console.error(`${mode}: watchdog`); process.exit(2); }, sec * 1000).unref(); }

if (mode === 'backend') {
  watchdog(Number(process.env.BACKEND_MAX_SEC || 900));
  for (const p of args.map(Number)) {
    const wss = new WebSocket.WebSocketServer({ host: HOST, port: p, perMessageDeflate: false, maxPayload: 1 << 20 });
    wss.on('connection', (ws) => {
      let bytes = 0;
      const sid = crypto.randomBytes(15).toString('base64url');
      ws.send('0' + JSON.stringify({ sid, upgrades: [], pingInterval: 25000, pingTimeout: 20000, maxPayload: 1000000 }));
      ws.on('message', (data, isBinary) => {
        if (isBinary) { bytes += data.length; return; }
        if (String(data) === 'fin') ws.send(`ack ${bytes}`);
      });
      ws.on('error', () => {});
    });
  }
  console.log('BACKENDS READY');
} else if (mode === 'idle') {
  const [port, n, hold] = args.map(Number);
  watchdog(hold + 120);
  const socks = [];
  let opened = 0, failed = 0, next = 0;
  const CONC = 100;
  function openOne() {
    if (next >= n) return;
    next++;
    const ws = new WebSocket(`ws://${HOST}:${port}${URL_PATH}`, { perMessageDeflate: false });
    socks.push(ws);
    let done = false;
    ws.on('message', () => { if (!done) { done = true; opened++; check(); openOne(); } });
    ws.on('error', () => { if (!done) { done = true; failed++; check(); openOne(); } });
  }
  function check() {
    if (opened + failed === n) {
      console.log(`READY opened=${opened} failed=${failed}`);
      setTimeout(() => { for (const s of socks) s.terminate(); setTimeout(() => process.exit(0), 300); }, hold * 1000);
    }
  }
  for (let i = 0; i < Math.min(CONC, n); i++) openOne();
} else if (mode === 'push') {
  const [port, conns, mb, frameKb] = args.map(Number);
  watchdog(300);
  const frame = crypto.randomBytes(frameKb * 1024);
  const framesPerConn = Math.ceil((mb * 1024 * 1024) / frame.length / conns);
  let ready = 0, finished = 0, total = 0, t0 = 0;
  const socks = [];
  for (let i = 0; i < conns; i++) {
    const ws = new WebSocket(`ws://${HOST}:${port}${URL_PATH}`, { perMessageDeflate: false });
    socks.push(ws);
    let gotOpen = false;
    ws.on('message', (data) => {
      if (!gotOpen) { gotOpen = true; if (++ready === conns) start(); return; }
      const m = /^ack (\d+)$/.exec(String(data));
      if (m) { total += Number(m[1]); ws.close(); if (++finished === conns) end(); }
    });
    ws.on('error', (e) => { console.error('push error', e.message); process.exit(1); });
  }
  function start() {
    console.log('START');
    t0 = process.hrtime.bigint();
    for (const ws of socks) pump(ws, framesPerConn);
  }
  function pump(ws, left) {
    // at most ~1 MiB buffered per connection
    while (left > 0 && ws.bufferedAmount < (1 << 20)) { ws.send(frame, { binary: true }); left--; }
    if (left > 0) setTimeout(() => pump(ws, left), 1);
    else ws.send('fin');
  }
  function end() {
    const sec = Number(process.hrtime.bigint() - t0) / 1e9;
    console.log(`DONE bytes=${total} sec=${sec.toFixed(3)} MBps=${(total / 1048576 / sec).toFixed(1)}`);
    setTimeout(() => process.exit(0), 200);
  }
} else {
  console.error('usage: see header'); process.exit(64);
}
