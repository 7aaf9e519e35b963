'use strict';
// a. A real browser's tabs through stickyd, one test per transport setup: 6 tabs of ONE
// browser context (one cookie jar) load the test page from the nodes through stickyd (cookie
// injection on: every handshake sets the shared `io` cookie), connect all at once and make
// acknowledged round trips. Then the jar's `io` cookie is set to a session of another node
// (what another tab's handshake does in a real browser) and the tabs go on: every request of
// a tab carries its own sid and that foreign cookie, and must still reach the tab's node.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../../e2e/lib/harness');
const b = require('../lib/browser');

const TABS = 6;
const PHASE = 20; // acked round trips before, and again after, the cookie points elsewhere

const MODES = [
  { name: 'polling-only', opts: { transports: ['polling'] }, transport: 'polling', seen: ['polling'] },
  { name: 'upgrade (default transports)', opts: {}, transport: 'websocket', seen: ['polling', 'websocket'] },
  { name: 'websocket-only', opts: { transports: ['websocket'] }, transport: 'websocket', seen: ['websocket'] },
];

let browser;
before(async () => {
  browser = await b.launch();
});
after(() => b.closeBrowser(browser));

// A session created through stickyd, not on `avoid` (round robin: 3 tries reach every node).
async function sessionElsewhere(env, avoid) {
  for (let i = 0; i < 3; i++) {
    const { sid } = await h.handshake(env.port);
    const owner = await env.cluster.ownerOf(sid);
    if (owner !== avoid) return { sid, owner };
  }
  throw new Error(`3 handshakes through stickyd all landed on ${avoid}`);
}

for (const mode of MODES) {
  test(`${mode.name}: ${TABS} tabs sharing one cookie jar each stay on their node`, { timeout: b.T.test }, async (t) => {
    await h.scenario(t, { proxyCookie: true, nodeStatic: b.PAGE_DIR }, async (env) => {
      const context = await browser.createBrowserContext();
      env.cleanups.push(() => context.close());
      const tabs = await b.openTabs(context, TABS, `${env.url}/static/client.html`);
      b.diagnoseTabs(env, tabs);

      // All handshakes at once: the jar's cookie is whichever answer came last.
      await h.withTimeout(Promise.all(tabs.map((p) => b.connect(p, mode.opts))), b.T.connect, 'tabs connect');
      if (mode.transport === 'websocket') await Promise.all(tabs.map((p) => b.waitTransport(p, 'websocket')));
      await h.withTimeout(Promise.all(tabs.map((p) => b.roundTrips(p, PHASE, 10))), b.T.roundTrips, 'round trips (phase 1)');

      const first = await b.snapshot(tabs[0]);
      const other = await sessionElsewhere(env, first.acks[0].node);
      await tabs[0].setCookie({ name: 'io', value: other.sid, url: env.url, httpOnly: true, sameSite: 'Lax' });
      const jar = (await tabs[0].cookies(env.url)).filter((c) => c.name === 'io');
      assert.deepEqual(jar.map((c) => c.value), [other.sid], 'the shared jar holds one io cookie: the other node\'s session');

      await h.withTimeout(Promise.all(tabs.map((p) => b.roundTrips(p, PHASE, 10))), b.T.roundTrips, 'round trips (phase 2)');
      const snaps = await Promise.all(tabs.map((p) => b.snapshot(p)));
      const stats = await env.stats();
      const nodes = b.assertTabsSticky(snaps, stats, { messages: 2 * PHASE, transport: mode.transport });
      snaps.forEach((s, i) => assert.deepEqual(s.transports, mode.seen, `tab ${i}: transports`));
      assert.ok(nodes.some((n) => n !== other.owner), `no tab on another node than ${other.owner}`);
      const mismatched = h.sum(stats, (s) => s.ioCookieMismatch);
      if (mode.transport === 'polling') {
        // Polling requests carried the other session's cookie next to their own sid.
        assert.ok(mismatched >= TABS, `only ${mismatched} requests carried another session's io cookie`);
      }
      t.diagnostic(`tabs per node: ${JSON.stringify(nodes.reduce((m, n) => ({ ...m, [n]: (m[n] || 0) + 1 }), {}))}; requests whose io cookie named another session: ${mismatched}`);
    });
  });
}
