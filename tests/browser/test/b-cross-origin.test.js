'use strict';
// b. Cross-origin: the page comes from http://localhost:<port> (a static server of its own),
// stickyd is http://127.0.0.1:<port>; the client sends credentials (withCredentials: true) and
// the nodes answer CORS with credentials (the test node reflects the origin). Polling-only tabs
// and upgrading tabs of one context stay on their nodes.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../../e2e/lib/harness');
const b = require('../lib/browser');

const MESSAGES = 30;

let browser;
before(async () => {
  browser = await b.launch();
});
after(() => b.closeBrowser(browser));

test('cross-origin page (localhost -> 127.0.0.1) with credentials: polling and upgrade, sticky', { timeout: b.T.test }, async (t) => {
  await h.scenario(t, { proxyCookie: true }, async (env) => {
    const pages = await b.staticServer(b.PAGE_DIR);
    env.cleanups.push(() => pages.close());
    const context = await browser.createBrowserContext();
    env.cleanups.push(() => context.close());
    const url = `http://localhost:${pages.port}/client.html?server=${encodeURIComponent(env.url)}`;
    const tabs = await b.openTabs(context, 6, url);
    b.diagnoseTabs(env, tabs);
    const origin = await tabs[0].evaluate(() => location.origin);
    assert.equal(origin, `http://localhost:${pages.port}`);
    assert.notEqual(origin, env.url);

    await b.pollingAndUpgradingTabs(env, tabs, { messages: MESSAGES, connectOpts: { withCredentials: true } });
    // (A credentialed cross-origin XHR fails in the browser unless the answer allows this
    // origin with credentials: the connects above are that check.)
  });
});
