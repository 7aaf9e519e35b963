'use strict';
// c. HTTPS/WSS: stickyd terminates TLS (a throw-away certificate from the e2e test PKI; the
// browser runs with --ignore-certificate-errors) and injects `io` with SameSite=None and
// Secure. The browser keeps the cookie (HttpOnly: not in document.cookie) and sends it: the
// node's own view of the Cookie header (/whoami) has it; tabs stay on their nodes over
// polling and over wss.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../../e2e/lib/harness');
const x = require('../../e2e/lib/tls-helpers');
const b = require('../lib/browser');

const MESSAGES = 30;

let browser;
let pki;
before(async () => {
  pki = x.makePki();
  browser = await b.launch({ ignoreCertificateErrors: true });
});
after(async () => {
  await b.closeBrowser(browser);
  if (pki) pki.cleanup();
});

test('TLS listener, cookie sameSite none + secure: cookie set and sent, tabs sticky over polling and wss', { timeout: b.T.test }, async (t) => {
  await h.scenario(t, { proxy: false, nodeStatic: b.PAGE_DIR }, async (env) => {
    const proxy = await x.startTlsStickyd(pki, {
      listen: [{ tls: { cert: 'a.pem', key: 'a.key' } }],
      backends: env.backends(),
      cookie: { sameSite: 'none', secure: true },
    });
    env.proxies.push(proxy);
    const context = await browser.createBrowserContext();
    env.cleanups.push(() => context.close());
    const tabs = await b.openTabs(context, 6, `${proxy.url}/static/client.html`);
    b.diagnoseTabs(env, tabs);

    const { snaps, stats } = await b.pollingAndUpgradingTabs(env, tabs, { messages: MESSAGES });

    // The injected cookie, as the browser stored it: one `io` with the configured attributes,
    // naming one of the tabs' sessions (the last handshake's).
    const jar = (await tabs[0].cookies(proxy.url)).filter((c) => c.name === 'io');
    assert.equal(jar.length, 1, `io cookies in the jar: ${JSON.stringify(jar)}`);
    const [io] = jar;
    assert.ok(snaps.some((s) => s.sid === io.value), `io=${io.value} is no tab's session`);
    assert.equal(io.secure, true, 'Secure');
    assert.equal(io.httpOnly, true, 'HttpOnly');
    assert.equal(io.sameSite, 'None', 'SameSite');
    assert.equal(io.path, '/');

    // HttpOnly: the page cannot see it, yet the browser sends it (the node's view).
    const seen = await tabs[0].evaluate(async () => {
      const res = await fetch('/whoami', { credentials: 'same-origin', cache: 'no-store' });
      return { documentCookie: document.cookie, whoami: await res.json() };
    });
    assert.doesNotMatch(seen.documentCookie, /(^|;\s*)io=/, 'io cookie visible to scripts');
    assert.match(String(seen.whoami.cookie), new RegExp(`(^|;\\s*)io=${io.value}(;|$)`), `cookie header at ${seen.whoami.node}`);
    assert.ok(h.sum(stats, (s) => s.withIoCookie) > 0, 'no Engine.IO request carried the io cookie');
  });
});
