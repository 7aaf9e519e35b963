'use strict';
// Browser side of the stickyd browser tests: Debian's chromium-headless-shell driven by
// puppeteer-core, the test page (page/client.html) and the checks on what its tabs saw. The
// nodes, stickyd and the bounds come from the end-to-end harness (tests/e2e/lib/harness.js).
// 127.0.0.1/localhost only; every wait is on an event and bounded.

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const assert = require('node:assert/strict');
const puppeteer = require('puppeteer-core');
const h = require('../../e2e/lib/harness');

const PAGE_DIR = path.resolve(__dirname, '..', 'page');
const T = {
  launch: 30000 * h.SCALE,
  page: 15000 * h.SCALE,
  connect: 15000 * h.SCALE,
  roundTrips: 30000 * h.SCALE,
  upgrade: 10000 * h.SCALE,
  close: 10000 * h.SCALE,
  test: 120000 * h.SCALE, // a whole test, a last resort over the bounds above
};

// CHROMIUM_BIN, else the executable that the Debian package chromium-headless-shell installed.
function chromiumPath() {
  if (process.env.CHROMIUM_BIN) return process.env.CHROMIUM_BIN;
  let files;
  try {
    files = execFileSync('dpkg', ['-L', 'chromium-headless-shell'], { encoding: 'utf8' }).split('\n');
  } catch {
    throw new Error('chromium-headless-shell is not installed (apt-get install chromium-headless-shell, or set CHROMIUM_BIN)');
  }
  // The executable itself, not /usr/bin's wrapper script (which would outlive a kill).
  const bins = files.filter((f) => /\/(chrome|chromium)-headless-shell$/.test(f) && fs.statSync(f, { throwIfNoEntry: false })?.isFile());
  const bin = bins.find((f) => !f.startsWith('/usr/bin/')) || bins[0];
  assert.ok(bin, `no chromium-headless-shell executable in: ${files.join(' ')}`);
  return bin;
}

// One headless browser; tests open their tabs in contexts of their own (one cookie jar each).
async function launch({ ignoreCertificateErrors = false } = {}) {
  const args = [
    '--no-sandbox', // root in CI
    '--disable-dev-shm-usage',
    '--disable-gpu',
    '--no-first-run',
    // Every tab runs its timers and sockets at full speed, in front or not.
    '--disable-background-timer-throttling',
    '--disable-backgrounding-occluded-windows',
    '--disable-renderer-backgrounding',
  ];
  if (ignoreCertificateErrors) args.push('--ignore-certificate-errors');
  return puppeteer.launch({
    executablePath: chromiumPath(),
    headless: 'shell',
    args,
    timeout: T.launch,
    protocolTimeout: T.roundTrips * 2,
  });
}

async function closeBrowser(browser) {
  if (!browser) return;
  const proc = browser.process();
  try {
    await h.withTimeout(browser.close(), T.close, 'browser close');
  } catch {
    if (proc) proc.kill('SIGKILL');
  }
}

// `n` tabs of `context`, each with `url` loaded; every console error and page error is kept
// on tab.errors for the diagnostics.
async function openTabs(context, n, url) {
  const tabs = [];
  for (let i = 0; i < n; i++) {
    const page = await context.newPage();
    page.errors = [];
    page.on('pageerror', (err) => page.errors.push(`pageerror: ${err.message}`));
    page.on('console', (msg) => {
      if (msg.type() === 'error') page.errors.push(`console: ${msg.text()}`);
    });
    const res = await page.goto(url, { waitUntil: 'load', timeout: T.page });
    assert.equal(res.status(), 200, `tab ${i}: GET ${url}: ${res.status()}`);
    tabs.push(page);
  }
  return tabs;
}

const connect = (page, opts) => page.evaluate((o) => window.connect(o), opts);
const roundTrips = (page, n, gap) => page.evaluate((a, b) => window.roundTrips(a, b), n, gap);
const snapshot = (page) => page.evaluate(() => window.snapshot());
const waitTransport = (page, name) =>
  page.waitForFunction((x) => window.client.socket && window.client.socket.io.engine.transport.name === x, { timeout: T.upgrade }, name);

// Every tab: one connect, one Engine.IO session for the whole run, `messages` acks all from
// one node that knows the session under the tab's sid, no connect_error or disconnect, and
// the expected final transport; the nodes' own records (/stats) confirm which node created
// each sid, and no node saw a sid it did not create. Returns the node of each tab.
function assertTabsSticky(snaps, stats, { messages, transport }) {
  const byNode = new Map(Object.values(stats).map((s) => [s.node, new Set(s.sids)]));
  const nodes = snaps.map((s, i) => {
    const what = `tab ${i} ${JSON.stringify({ ...s, acks: s.acks.length })}`;
    assert.deepEqual(s.connectErrors, [], `${what}: connect_error`);
    assert.deepEqual(s.disconnects, [], `${what}: disconnected`);
    assert.equal(s.sessions.length, 1, `${what}: sessions`);
    assert.equal(s.acks.length, messages, `${what}: acks`);
    const sid = s.sessions[0];
    assert.equal(s.sid, sid, `${what}: Engine.IO session changed`);
    const node = s.acks[0].node;
    for (const a of s.acks) {
      assert.equal(a.node, node, `${what}: acks from ${node} and ${a.node}`);
      assert.equal(a.sid, sid, `${what}: node ${a.node} answered for session ${a.sid}`);
    }
    assert.ok(byNode.get(node) && byNode.get(node).has(sid), `${what}: acks from ${node}, which did not create ${sid}`);
    if (transport) assert.equal(s.transport, transport, `${what}: final transport`);
    return node;
  });
  for (const s of Object.values(stats)) {
    assert.equal(s.foreign, 0, `node ${s.node}: ${s.foreign} requests for sids it did not create: ${JSON.stringify(s.foreignDetails.slice(0, 5))}`);
    assert.equal(s.connectionErrors['1'] || 0, 0, `node ${s.node}: 'Session ID unknown': ${JSON.stringify(s.connectionErrorDetails.slice(0, 5))}`);
  }
  return nodes;
}

// The first half of `tabs` polling-only, the others on the default transports (polling, then
// the upgrade to websocket): all connect at once (io options `connectOpts` too), then
// `messages` acked round trips each. Every tab stays on its node and ends on its transport.
// Returns {snaps, stats}.
async function pollingAndUpgradingTabs(env, tabs, { messages, connectOpts = {} }) {
  const half = Math.floor(tabs.length / 2);
  const seen = (i) => (i < half ? ['polling'] : ['polling', 'websocket']);
  await h.withTimeout(
    Promise.all(tabs.map((p, i) => connect(p, i < half ? { ...connectOpts, transports: ['polling'] } : connectOpts))),
    T.connect,
    'tabs connect',
  );
  await Promise.all(tabs.slice(half).map((p) => waitTransport(p, 'websocket')));
  await h.withTimeout(Promise.all(tabs.map((p) => roundTrips(p, messages, 10))), T.roundTrips, 'round trips');
  const snaps = await Promise.all(tabs.map((p) => snapshot(p)));
  const stats = await env.stats();
  assertTabsSticky(snaps.slice(0, half), stats, { messages, transport: 'polling' });
  assertTabsSticky(snaps.slice(half), stats, { messages, transport: 'websocket' });
  snaps.forEach((s, i) => assert.deepEqual(s.transports, seen(i), `tab ${i}: transports`));
  return { snaps, stats };
}

// Tab errors and snapshots go to the scenario's diagnostics on failure.
function diagnoseTabs(env, tabs) {
  env.extraDiagnostics.push(() => `--- tabs ---\n${tabs.map((p, i) => `tab ${i} ${p.url()}: ${p.errors.join(' | ') || 'no page errors'}`).join('\n')}`);
}

// A static file server for `dir` on 127.0.0.1 (a page of another origin than stickyd's).
async function staticServer(dir) {
  const server = http.createServer((req, res) => {
    const name = req.url.split('?')[0].slice(1);
    if (!/^[A-Za-z0-9_-][A-Za-z0-9_.-]*\.html$/.test(name)) {
      res.writeHead(404).end();
      return;
    }
    fs.readFile(path.join(dir, name), (err, data) => {
      if (err) res.writeHead(404).end();
      else res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' }).end(data);
    });
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, h.HOST, resolve);
  });
  return {
    port: server.address().port,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

module.exports = {
  PAGE_DIR,
  T,
  chromiumPath,
  launch,
  closeBrowser,
  openTabs,
  connect,
  roundTrips,
  snapshot,
  waitTransport,
  assertTabsSticky,
  pollingAndUpgradingTabs,
  diagnoseTabs,
  staticServer,
};
