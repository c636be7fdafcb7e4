//! The alerts on the page: the header count and the Alerts panel follow the alerts stream, in words and icons; watched values coloured with an icon, firing elements outlined.
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
  // From here on the document is refused: what the page shows next comes pushed on the alerts stream.
  let refused = 0;
  await page.route(/\/admin\/monitor\/alerts$/, (r) => {
    refused += 1;
    return r.fulfill({ status: 503, body: '' });
  });

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
  assert.equal(refused, 0, 'the page polled while its stream was up');
  assert.deepEqual(problems, []);
  await page.close();
});

/** Colour of `var(--name)` in the page's current theme, and the card background's. */
function themeColours(page, name) {
  return page.evaluate((n) => {
    const probe = document.createElement('span');
    probe.style.color = `var(${n})`;
    probe.style.backgroundColor = 'var(--card)';
    document.body.append(probe);
    const s = getComputedStyle(probe);
    const out = { color: s.color, card: s.backgroundColor };
    probe.remove();
    return out;
  }, name);
}

/** WCAG contrast ratio of two `rgb(…)` colours. */
function contrast(a, b) {
  const lum = (c) => {
    const [r, g, bl] = c.match(/\d+(\.\d+)?/g).slice(0, 3).map((x) => {
      const v = Number(x) / 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * bl;
  };
  const [hi, lo] = [lum(a), lum(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}

test('values past a rule\'s threshold are amber or red with an icon, and the firing element is outlined', { timeout: 120000 }, async (t) => {
  if (skip) return skipTest(t, skip);
  const rack = join(dir, 'rack.json');
  const temps = (a, b, c) => JSON.stringify({ gpus: [0, 1, 2].map((i) => ({ index: i, temperature_celsius: [a, b, c][i] })) });
  writeFileSync(rack, temps(50, 80, 95));
  const colourHost = await startHost(`[collectors.rack]
command = ["cat", ${JSON.stringify(rack)}]
interval = "1s"

[[alerts]]
name = "rack_warm"
series = "rack.gpus.*.temperature_celsius"
condition = ">"
threshold = 70
for = "1h"
summary = "GPU {label} warm at {value}"

[[alerts]]
name = "rack_hot"
series = "rack.gpus.*.temperature_celsius"
condition = ">"
threshold = 90
severity = "critical"
summary = "GPU {label} hot at {value}"

[alerting]
stock_rules = false
`);
  try {
    const { page, problems } = await openPage(browser.context);
    await page.emulateMedia({ colorScheme: 'light' });
    await gotoPage(page, `${colourHost.base}/admin/monitor/`);
    const cell = (gpu) => `#card-rack table[data-table="rack.gpus"] tr[data-key="${gpu}"] td[data-col="temperature_celsius"]`;
    const row = (gpu) => `#card-rack table[data-table="rack.gpus"] tr[data-key="${gpu}"]`;
    await until('GPU 2 red and outlined', 30, () => page.$eval(row(2), (r) => r.dataset.alertTarget === 'critical').catch(() => false));
    const look = (sel) => page.$eval(sel, (e) => ({
      level: e.dataset.alertLevel ?? null,
      target: e.dataset.alertTarget ?? null,
      color: getComputedStyle(e).color,
      marker: getComputedStyle(e, '::before').content,
      outline: getComputedStyle(e).outlineStyle,
      note: e.getAttribute('aria-description') ?? e.getAttribute('title'),
    }));
    const light = { warn: await themeColours(page, '--warn'), bad: await themeColours(page, '--bad') };

    // GPU 1 at 80: past the warning rule (pending for an hour): amber with ▲, not outlined.
    const warm = await look(cell(1));
    assert.equal(warm.level, 'warning');
    assert.equal(warm.color, light.warn.color);
    assert.equal(warm.marker, '"▲ "');
    assert.match(warm.note, /warning \(pending\): GPU 1 warm at 80/);
    assert.equal((await look(row(1))).target, null);

    // GPU 2 at 95: past both; the critical one fires: red with ✖, its row outlined solid.
    const hot = await look(cell(2));
    assert.equal(hot.level, 'critical');
    assert.equal(hot.color, light.bad.color);
    assert.equal(hot.marker, '"✖ "');
    const hotRow = await look(row(2));
    assert.equal(hotRow.target, 'critical');
    assert.equal(hotRow.outline, 'solid');
    assert.match(hotRow.note, /critical: GPU 2 hot at 95/);

    // GPU 0 at 50: nothing.
    const calm = await look(cell(0));
    assert.deepEqual([calm.level, calm.marker], [null, 'none']);
    assert.notEqual(calm.color, light.bad.color);
    assert.equal((await look(row(0))).target, null);
    await screenshot(page, 'alerts-values-light');

    // The dark theme: its own amber and red, each readable on a card (WCAG AA, 4.5:1).
    await page.emulateMedia({ colorScheme: 'dark' });
    const dark = { warn: await themeColours(page, '--warn'), bad: await themeColours(page, '--bad') };
    assert.notEqual(dark.bad.color, light.bad.color);
    assert.equal((await look(cell(2))).color, dark.bad.color);
    for (const [name, c] of Object.entries({ lightWarn: light.warn, lightBad: light.bad, darkWarn: dark.warn, darkBad: dark.bad })) {
      assert.ok(contrast(c.color, c.card) >= 4.5, `${name}: ${c.color} on ${c.card} is ${contrast(c.color, c.card).toFixed(2)}:1`);
    }
    await screenshot(page, 'alerts-values-dark');

    // Cooled down: the marks go with the alerts.
    writeFileSync(rack, temps(50, 60, 60));
    await until('the marks gone', 30, () => page.$$eval('#card-rack [data-alert-level], #card-rack [data-alert-target]', (l) => l.length === 0));
    assert.equal((await look(cell(2))).marker, 'none');
    assert.deepEqual(problems, []);
    await page.close();
  } finally {
    await colourHost.stop();
  }
});

/** Guards the tailored GPU card: a firing GPU alert outlines that GPU and colours its temperature line and chart value, with the icon. */
test('a firing GPU alert outlines that GPU on its card and colours its temperature', { timeout: 120000 }, async (t) => {
  const fake = join(TARGET, 'libnvidia_ml.so');
  const why = skip || missing(fake);
  if (why) return skipTest(t, why);
  // The fake reads its boards from the environment the host inherits.
  process.env.VITALS_FAKE_NVML_BOARDS = 'health';
  const gpuHost = await startHost(`[collectors.gpu]
interval = "1s"

[collectors.gpu.config]
source = "nvml"
nvml_library = ${JSON.stringify(fake)}

[alerting.stock.gpu_temperature]
threshold = 1
for = "0s"
severity = "critical"
`);
  try {
    const { page, problems } = await openPage(browser.context);
    await gotoPage(page, `${gpuHost.base}/admin/monitor/`);
    const gpu = 'article.gpu[data-gpu="0"]';
    await until('GPU 0 outlined', 30, () => page.$eval(gpu, (e) => e.dataset.alertTarget === 'critical').catch(() => false));
    assert.match(await page.$eval(gpu, (e) => e.title), /critical: GPU 0 is at \d+ °C/);
    assert.equal(await page.$eval(gpu, (e) => getComputedStyle(e).outlineStyle), 'solid');
    const line = await page.$eval(`${gpu} dd[data-field="temperature"]`, (e) => [e.dataset.alertLevel, getComputedStyle(e, '::before').content]);
    assert.deepEqual(line, ['critical', '"✖ "']);
    await until('the chart value marked', 30, () => page.$eval(`${gpu} figure[data-chart="gpu.0.temperature_celsius"] .now`, (e) => e.dataset.alertLevel === 'critical').catch(() => false));
    // Other lines of the GPU are not marked.
    assert.equal(await page.$eval(`${gpu} dd[data-field="power"]`, (e) => e.dataset.alertLevel ?? null), null);
    await screenshot(page, 'alerts-gpu');
    assert.deepEqual(problems, []);
    await page.close();
  } finally {
    await gpuHost.stop();
  }
});
