//! The alerts on the page: the header count and the Alerts panel follow /admin/monitor/alerts, in words and icons.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CHROMIUM, TARGET, gotoPage, launchBrowser, missing, openPage, screenshot, skipTest, startHost, until } from './harness.mjs';

let host;
let browser;
let skip;
let dir;
let file;

before(async () => {
  skip = missing(CHROMIUM, join(TARGET, 'vitals'));
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), 'vitals-alerts-'));
  file = join(dir, 'value.json');
  writeFileSync(file, '{"level": 10}');
  host = await startHost(`[collectors.probe]
command = ["cat", ${JSON.stringify(file)}]
interval = "1s"
series = [{ name = "level", pointer = "/level", unit = "" }]

[[alerts]]
name = "probe_high"
series = "probe.level"
condition = ">"
threshold = 50
severity = "critical"
summary = "probe level at {value}"

[alerting]
stock_rules = false
`);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await host?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('the header counts firing alerts and the panel lists them, then shows them resolved', { timeout: 90000 }, async (t) => {
  if (skip) return skipTest(t, skip);
  const { page, problems } = await openPage(browser.context);
  await gotoPage(page, `${host.base}/admin/monitor/`);
  await until('the quiet count', 20, () => page.$eval('#alert-count', (e) => !e.hidden && e.textContent === '✓ no alerts'));
  assert.match(await page.$eval('#alerts .alert-list', (e) => e.textContent), /nothing is wrong \(1 rules watching\)/);

  writeFileSync(file, '{"level": 90}');
  await until('the critical count', 30, () => page.$eval('#alert-count', (e) => e.dataset.severity === 'critical' && e.textContent === '✖ 1 alert'));
  const row = await page.$eval('#alerts .alert-row[data-state="firing"]', (e) => e.textContent);
  assert.match(row, /critical/);
  assert.match(row, /probe_high/);
  assert.match(row, /probe level at 90/);
  await screenshot(page, 'alerts-firing');

  writeFileSync(file, '{"level": 5}');
  await until('the alert resolved on the page', 30, () => page.$eval('#alert-count', (e) => e.dataset.severity === 'none'));
  assert.match(await page.$eval('#alerts .alert-row[data-state="resolved"]', (e) => e.textContent), /resolved.*probe_high/);
  assert.deepEqual(problems, []);
  await page.close();
});
