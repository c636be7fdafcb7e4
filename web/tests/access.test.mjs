//! The dashboard with access control: the login form with auth on, the page hidden for the `web` role and in cloud mode.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { CHROMIUM, TARGET, launchBrowser, missing, openPage, plugin, skipTest, startHost, until } from './harness.mjs';

const sha = (t) => `sha256:${createHash('sha256').update(t).digest('hex')}`;
const VIEWER = 'viewer-token-for-the-dashboard-test';
const WEB = 'web-token-for-the-dashboard-test';

const collectors = `
[collectors.cpu]
interval = "1s"

[collectors.memory]
interval = "1s"

[collectors.system]
interval = "5s"
`;

let browser;
after(async () => {
  if (browser) await browser.close();
});

function needs() {
  return missing(CHROMIUM, join(TARGET, 'vitals'), plugin('cpu'), plugin('memory'), plugin('system'));
}

test('with auth on, the page asks for a token, refuses a wrong one and works with the right one', { timeout: 90000 }, async (t) => {
  const skip = needs();
  if (skip) return skipTest(t, skip);
  const host = await startHost(`[server]
[[server.tokens]]
name = "viewer"
role = "viewer"
hash = "${sha(VIEWER)}"
${collectors}`);
  try {
    browser = browser || await launchBrowser();
    const { page, problems } = await openPage(browser.context);
    const resp = await page.goto(`${host.base}/admin/monitor/`);
    assert.equal(resp.status(), 200, 'the page itself needs no session');
    await page.waitForSelector('#login:not([hidden])', { timeout: 10000 });
    assert.equal(await page.$eval('#conn', (e) => e.dataset.state), 'login');
    assert.equal(await page.$eval('#cards', (e) => e.hidden), true);

    await page.fill('#token', 'not-the-token');
    await page.click('#login-form button[type="submit"]');
    await until('the refusal', 10, async () => (await page.$eval('#login-error', (e) => e.textContent)) === 'That token is not valid.');
    assert.equal(await page.$eval('#login', (e) => e.hidden), false);

    await page.fill('#token', VIEWER);
    await page.click('#login-form button[type="submit"]');
    await until('the live dashboard', 20, () => page.$eval('#conn', (e) => e.dataset.state === 'live'));
    assert.equal(await page.$eval('#login', (e) => e.hidden), true);
    assert.ok(await page.$('#card-cpu table[data-table="cpu.cores"] tbody tr'), 'CPU cores shown');
    // The session is an HttpOnly cookie: the page's script cannot read it.
    const cookies = await browser.context.cookies(host.base);
    const session = cookies.find((c) => c.name === 'vitals_session');
    assert.ok(session && session.httpOnly && session.sameSite === 'Strict', JSON.stringify(cookies));
    assert.equal(await page.evaluate(() => document.cookie), '');

    // A reload keeps the session; logging out brings the form back.
    await page.reload();
    await until('live after a reload', 20, () => page.$eval('#conn', (e) => e.dataset.state === 'live'));
    await page.click('#logout');
    await page.waitForSelector('#login:not([hidden])', { timeout: 10000 });
    const r = await page.evaluate(async () => (await fetch('system')).status);
    assert.equal(r, 401, 'the session is gone after logout');
    // The refused login and the post-logout probe log failed requests; nothing else may.
    assert.deepEqual(problems.filter((p) => !/401|Unauthorized/.test(p)), []);
    await page.close();
    await browser.context.clearCookies();
  } finally {
    await host.stop();
  }
});

test('the page is absent for the web role', { timeout: 60000 }, async (t) => {
  const skip = needs();
  if (skip) return skipTest(t, skip);
  const host = await startHost(`[server]
[[server.tokens]]
name = "front"
role = "web"
hash = "${sha(WEB)}"
${collectors}`);
  try {
    browser = browser || await launchBrowser();
    const { page } = await openPage(browser.context);
    await page.setExtraHTTPHeaders({ authorization: `Bearer ${WEB}` });
    const withToken = await page.goto(`${host.base}/admin/monitor/`);
    assert.equal(withToken.status(), 404, 'the web role does not see the page');
    const asset = await page.goto(`${host.base}/admin/monitor/assets/app.js`);
    assert.equal(asset.status(), 404, 'nor its files');
    await page.close();
  } finally {
    await host.stop();
  }
});

test('the page is absent in cloud mode', { timeout: 60000 }, async (t) => {
  const skip = needs();
  if (skip) return skipTest(t, skip);
  const host = await startHost(`[server]\nmode = "cloud"\n${collectors}`);
  try {
    browser = browser || await launchBrowser();
    const { page } = await openPage(browser.context);
    for (const path of ['/admin/monitor/', '/admin/monitor', '/admin/monitor/assets/app.js', '/admin/monitor/assets/vendor/chart.umd.min.js']) {
      const resp = await page.goto(`${host.base}${path}`);
      assert.equal(resp.status(), 404, path);
      assert.doesNotMatch(await resp.text(), /vitals|<script/i, `${path} gives nothing away`);
    }
    await page.close();
  } finally {
    await host.stop();
  }
});
