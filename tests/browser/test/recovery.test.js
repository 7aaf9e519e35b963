'use strict';
// Socket.IO connection state recovery in a real browser (issue 17), one test per transport
// setup: nodes with connectionStateRecovery (node.js --recovery), stickyd with
// `sticky.reconnect_hint: prev_sid`, without and with cookie injection (the tabs of one browser
// context share one `io` cookie, which names one tab's session at a time). 6 tabs load the page from
// the nodes through stickyd; each one connects, loses its transport once and reconnects
// (tests/e2e/lib/recovery-client.js, injected into the page). With the README's snippet every
// tab recovers (same socket.id on its node, the emits it missed delivered); the rate
// without the snippet (the handshake is balanced, or follows the shared cookie) is printed.

const path = require('node:path');
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../../e2e/lib/harness');
const rec = require('../../e2e/lib/recovery-client');
const b = require('../lib/browser');

const TABS = 6;
const RECOVERY_CLIENT = path.resolve(__dirname, '..', '..', 'e2e', 'lib', 'recovery-client.js');
const proxyOpts = { extra: { sticky: { reconnect_hint: 'prev_sid' } } };

let browser;
before(async () => {
  browser = await b.launch();
});
after(() => b.closeBrowser(browser));

// Without cookie injection the tabs' handshakes are balanced (round robin): spread over the
// nodes. With it, a handshake follows the jar's io cookie (the last handshake's session), so
// the tabs tend to gather on one node, and a reconnect without the hint goes where the cookie
// says.
const SETUPS = [
  { name: 'no cookie', proxyCookie: false, spread: true },
  { name: 'shared io cookie', proxyCookie: true, spread: false },
];

for (const setup of SETUPS) for (const kind of Object.keys(rec.KINDS)) {
  test(`${kind}, ${setup.name}: ${TABS} tabs lose their transport once and recover on their node with the reconnect hint`, { timeout: b.T.test }, async (t) => {
    await h.scenario(t, { proxyCookie: setup.proxyCookie, nodeStatic: b.PAGE_DIR, nodeRecovery: true, proxyOpts }, async (env) => {
      // Each round in a fresh browser context: its tabs start with an empty jar.
      const round = async (hint) => {
        const context = await browser.createBrowserContext();
        env.cleanups.push(() => context.close());
        const tabs = await b.openTabs(context, TABS, `${env.url}/static/client.html`);
        b.diagnoseTabs(env, tabs);
        await Promise.all(tabs.map((p) => p.addScriptTag({ path: RECOVERY_CLIENT })));
        await Promise.all(tabs.map((p) => p.waitForFunction(() => typeof window.io === 'function', { timeout: b.T.page })));
        // Every tab at once, in the page: the page's Socket.IO library, stickyd's origin.
        return h.withTimeout(
          Promise.all(tabs.map((p, i) => p.evaluate((k, index, o) => window.recoveryClient.dropOnce(window.io, window.client.server, k, index, o), kind, i, { hint, ms: b.T.connect }))),
          b.T.roundTrips + 2 * b.T.connect,
          `tabs drop and reconnect (hint ${hint})`,
        );
      };
      const withHint = await round(true);
      env.extraDiagnostics.push(() => `--- with the hint ---\n${withHint.map((r) => JSON.stringify(r)).join('\n')}`);
      const failed = withHint.filter((r) => !rec.recovered(r));
      assert.deepEqual(failed, [], `${failed.length}/${TABS} tabs did not recover`);
      for (const r of withHint) {
        assert.deepEqual(r.connectErrors, [], `tab ${r.index}: connect errors`);
        assert.deepEqual(r.gaps, [], `tab ${r.index}: missed tocks`);
      }
      if (setup.spread) assert.equal(new Set(withHint.map((r) => r.node1)).size, 3, `tabs on ${withHint.map((r) => r.node1)}`);
      const without = await round(false);
      const broken = without.filter((r) => !r.ok);
      assert.deepEqual(broken, [], 'tabs without the hint: every one reconnects');
      const on = (rs) => [...new Set(rs.map((r) => r.node1))].length;
      t.diagnostic(`${kind} (Chromium, ${setup.name}): ${withHint.filter(rec.recovered).length}/${TABS} recovered with the hint (tabs on ${on(withHint)} nodes), ${without.filter(rec.recovered).length}/${TABS} without (tabs on ${on(without)} nodes)`);
      await env.stopProxy();
      const stats = await env.stats();
      for (const s of Object.values(stats)) assert.equal(s.queryKeys.prev_sid, undefined, `node ${s.node} saw prev_sid`);
    });
  });
}
