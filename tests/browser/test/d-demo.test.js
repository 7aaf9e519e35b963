'use strict';
// d. The demo (packaging/demo.sh) as a visitor sees it: started on a free port with the
// binary already built (DEMO_SKIP_BUILD=1), three tabs (each its own browser context, as three
// visitors) show a node and a transport; the kill button of one tab kills its node, and the
// tab shows another node within seconds; the sessions view lists the three nodes, and the
// killed one comes back up. SIGTERM stops the demo, its nodes and stickyd, and removes its
// temp files.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const h = require('../../e2e/lib/harness');
const b = require('../lib/browser');

const DEMO = path.resolve(__dirname, '..', '..', '..', 'packaging', 'demo.sh');
// The first run of the demo may install its npm packages (npm ci) before it starts.
const T_START = 180000 * h.SCALE;
const T_SWITCH = 15000 * h.SCALE;

let browser;
before(async () => {
  browser = await b.launch();
});
after(() => b.closeBrowser(browser));

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer().once('error', reject);
    s.listen(0, h.HOST, () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function refused(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: h.HOST, port });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
}

const NODE_RE = /^n[123]$/;

test('demo: three tabs show node and transport; kill moves a tab to another node; sessions view', { timeout: T_START + 2 * b.T.test }, async (t) => {
  const port = await freePort();
  // Its own process group: a failed test kills the demo with everything it started.
  const demo = h.trackChild(
    spawn('bash', [DEMO], {
      env: { ...process.env, DEMO_PORT: String(port), DEMO_SKIP_BUILD: '1', STICKYD_BIN: h.STICKYD_BIN },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    }),
  );
  let onReady;
  const ready = new Promise((resolve) => (onReady = resolve));
  const stdout = h.lineCollector(demo.stdout, (line) => {
    if (/Ctrl-C stops everything/.test(line)) onReady(); // the last line of the banner
  });
  const stderr = h.lineCollector(demo.stderr);
  const contexts = [];
  try {
    const died = demo.exited.then((info) => {
      throw new Error(`demo.sh exited before it was ready: ${JSON.stringify(info)}`);
    });
    await h.withTimeout(Promise.race([ready, died]), T_START, 'demo.sh: its banner');
    died.catch(() => {});
    const url = /^\s*open\s+(\S+)/.exec(stdout.find((l) => /^\s*open\s/.test(l)) || '')?.[1];
    assert.equal(url, `http://127.0.0.1:${port}/`);
    const nodePorts = [...stdout.find((l) => /^\s*nodes\s/.test(l)).matchAll(/127\.0\.0\.1:(\d+)/g)].map((m) => Number(m[1]));
    assert.equal(nodePorts.length, 3, 'three node addresses printed');

    const tabs = [];
    for (let i = 0; i < 3; i++) {
      const context = await browser.createBrowserContext();
      contexts.push(context);
      tabs.push(...(await b.openTabs(context, 1, url)));
    }
    const shown = (page) =>
      page.evaluate(() => ({ node: document.getElementById('node').textContent, transport: document.getElementById('transport').textContent, sid: document.getElementById('sid').textContent }));
    await Promise.all(
      tabs.map((page) =>
        page.waitForFunction(
          (re) => new RegExp(re).test(document.getElementById('node').textContent) && /^(polling|websocket)$/.test(document.getElementById('transport').textContent),
          { timeout: T_SWITCH },
          NODE_RE.source,
        ),
      ),
    );
    const before = await shown(tabs[0]);
    t.diagnostic(`tabs: ${JSON.stringify(await Promise.all(tabs.map(shown)))}`);

    await tabs[0].click('#kill');
    await tabs[0].waitForFunction(
      (re, old) => {
        const n = document.getElementById('node').textContent;
        return new RegExp(re).test(n) && n !== old && /^(polling|websocket)$/.test(document.getElementById('transport').textContent);
      },
      { timeout: T_SWITCH },
      NODE_RE.source,
      before.node,
    );
    const afterKill = await shown(tabs[0]);
    assert.notEqual(afterKill.sid, before.sid, 'a new session after the kill');

    // The sessions view lists every node; the killed one is started again and checked up.
    await tabs[0].waitForFunction(
      (killed) => {
        const rows = [...document.querySelectorAll('#sessions tr[data-node]')];
        return rows.map((r) => r.dataset.node).join() === 'n1,n2,n3' && rows.some((r) => r.dataset.node === killed && r.dataset.health === 'up');
      },
      { timeout: T_SWITCH },
      before.node,
    );
    assert.ok(stdout.some((l) => l.includes(`node ${before.node} exited`)), 'demo.sh saw the node exit');

    demo.kill('SIGTERM');
    const info = await h.withTimeout(demo.exited, 10000 * h.SCALE, 'demo.sh to exit on SIGTERM');
    assert.equal(info.code, 0, `demo.sh exit ${JSON.stringify(info)}`);
    for (const p of [port, ...nodePorts]) assert.ok(await refused(p), `port ${p} still open after the demo stopped`);
    // stickyd logged its config file, in the demo's temp directory: removed.
    const config = /\bconfig=(\S+\/stickyd\.yaml)\b/.exec(stderr.find((l) => / info started /.test(l)) || '')?.[1];
    assert.ok(config, 'stickyd started line with its config file');
    assert.equal(fs.existsSync(path.dirname(config)), false, `${path.dirname(config)} left behind`);
  } catch (err) {
    console.error(`--- demo.sh stdout ---\n${stdout.join('\n')}\n--- demo.sh stderr ---\n${stderr.join('\n')}`);
    throw err;
  } finally {
    for (const c of contexts) await c.close().catch(() => {});
    if (!demo.exitInfo) {
      try {
        process.kill(-demo.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
});
