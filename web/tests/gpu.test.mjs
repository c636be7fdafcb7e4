//! The GPU card's health strip, MIG devices and utilization note, from the fake NVML's health boards, in a real browser.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { CHROMIUM, TARGET, gotoPage, launchBrowser, missing, openPage, skipTest, startHost, until } from './harness.mjs';

let skip = null;
let host;
let browser;

before(async () => {
  const fake = join(TARGET, 'libnvidia_ml.so');
  skip = missing(CHROMIUM, join(TARGET, 'vitals'), fake);
  if (skip) return;
  // The fake reads its boards from the environment the host inherits.
  process.env.VITALS_FAKE_NVML_BOARDS = 'health';
  host = await startHost(`[collectors.gpu]\ninterval = "1s"\n\n[collectors.gpu.config]\nsource = "nvml"\nnvml_library = ${JSON.stringify(fake)}\n`);
  browser = await launchBrowser();
  await until('the gpu section', 30, async () => {
    const g = await host.json('/admin/monitor/gpu');
    return (g.section?.gpus || []).length === 4;
  });
});

after(async () => {
  if (browser) await browser.close();
  if (host) await host.stop();
});

/** The health strip of GPU `i`: each item's text and whether it is marked as a problem. */
async function strip(page, i) {
  return page.$$eval(`article.gpu[data-gpu="${i}"] ul.gpu-health li`, (lis) => lis.map((li) => [li.textContent, li.classList.contains('problem')]));
}

/** Guards the health strip: a problem is marked (colour) and said in words with a ⚠; a healthy board has no marked item; a MIG GPU says why it has no utilization, lists its instances with their processes and charts their memory. */
test('the GPU health strip marks only what is wrong, in words too', { timeout: 90000 }, async (t) => {
  if (skip) return skipTest(t, skip);
  const { page, problems } = await openPage(browser.context);
  await gotoPage(page, `${host.base}/admin/monitor/`);
  await page.waitForSelector('article.gpu[data-gpu="3"] ul.gpu-health li', { timeout: 30000 });

  const l4 = await strip(page, 0);
  assert.deepEqual(l4.filter(([, bad]) => bad).map(([text]) => text), ['⚠ throttled: power cap'], JSON.stringify(l4));
  assert.ok(l4.some(([text, bad]) => !bad && text.startsWith('encoder 87 % · decoder 64 % · JPEG 5 %') && text.includes('6 encoder sessions')), JSON.stringify(l4));

  const a100 = await strip(page, 1);
  const bad = a100.filter(([, b]) => b).map(([text]) => text);
  assert.ok(bad.includes('⚠ ECC on: 17 corrected, 2 uncorrected, 5 uncorrected over its life'), JSON.stringify(a100));
  assert.ok(bad.some((text) => text.startsWith('⚠ remapped rows pending (4 correctable, 1 uncorrectable)')), JSON.stringify(a100));
  assert.ok(bad.includes('⚠ throttled: hardware slowdown'), JSON.stringify(a100));

  const rtx = await strip(page, 3);
  assert.deepEqual(rtx.filter(([, b]) => b), [], `a healthy board has nothing marked: ${JSON.stringify(rtx)}`);
  assert.ok(rtx.some(([text]) => text === 'no XID errors'), JSON.stringify(rtx));
  const colours = await page.$$eval('article.gpu[data-gpu="3"] ul.gpu-health li', (lis) => lis.map((li) => getComputedStyle(li).backgroundColor));
  const marked = await page.$eval('article.gpu[data-gpu="0"] ul.gpu-health li.problem', (li) => getComputedStyle(li).backgroundColor);
  assert.ok(colours.every((c) => c !== marked), `only problems are coloured: ${colours} vs ${marked}`);

  const note = await page.$eval('article.gpu[data-gpu="2"] .gpu-note', (p) => (p.hidden ? '' : p.textContent));
  assert.match(note, /not reported for a GPU in MIG mode/);
  const migs = await page.$$eval('article.gpu[data-gpu="2"] table[data-table="gpu.2.mig"] tbody tr', (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent)));
  assert.equal(migs.length, 3, JSON.stringify(migs));
  const row = migs.find((r) => r[0] === '5/0');
  assert.ok(row, JSON.stringify(migs));
  assert.equal(row[1], '2g.20gb');
  assert.equal(row[4], '32002');
  // Its instances are charted instead of the whole-GPU utilization.
  await page.waitForSelector('article.gpu[data-gpu="2"] figure[data-chart="gpu.2.mig_memory_used_bytes"]:not(.nodata)', { timeout: 30000 });
  assert.deepEqual(problems, []);
});

/** Guards the health strip's wording and the container names: a throttled board is a problem only for reasons that cost performance, XID errors are problems with their last code, a container is named from the Docker section and shown by its short id otherwise. */
test('health items and container labels', async () => {
  const { gpuHealth, containerLabel, noteContainerNames } = await import('../static/sections.js');
  assert.deepEqual(gpuHealth({ throttle_reasons: ['gpu-idle'], xid_errors: 0 }), [['clocks: idle', false], ['no XID errors', false]]);
  const bad = gpuHealth({ throttle_reasons: ['sw-thermal-slowdown', 'gpu-idle'], xid_errors: 2, last_xid: { gpu: 0, xid: 79, time_ms: 0 } });
  assert.equal(bad[0][0], 'throttled: thermal (software)');
  assert.equal(bad[0][1], true);
  assert.match(bad[1][0], /^2 XID errors, last XID 79 at /);
  assert.equal(bad[1][1], true);
  assert.deepEqual(gpuHealth({ throttle_reasons: null, ecc: null, xid_errors: null }), []);
  const id = 'c'.repeat(64);
  assert.equal(containerLabel({ id, runtime: 'docker' }), 'cccccccccccc');
  noteContainerNames([{ id, name: 'trainer' }]);
  assert.equal(containerLabel({ id, runtime: 'docker' }), 'trainer');
  assert.equal(containerLabel(null), '–');
});

/** Guards the Docker table's GPU column: each container's GPUs (by index) and the GPU memory its processes use, from the GPU section; `–` for a container with no GPU process. */
test('the Docker table names the GPUs each container uses', async () => {
  const { noteContainerGpus, containerGpuText } = await import('../static/sections.js');
  const a = 'a'.repeat(64);
  const b = 'b'.repeat(64);
  noteContainerGpus([
    { index: 1, processes: [{ pid: 10, used_memory_bytes: 1 << 30, container: { id: a, runtime: 'docker' } }] },
    { index: 0, processes: [
      { pid: 11, used_memory_bytes: 512 << 20, container: { id: a, runtime: 'docker' } },
      { pid: 12, used_memory_bytes: 1 << 20, container: null },
    ] },
  ]);
  assert.equal(containerGpuText(a), '0, 1 · 1.5 GiB');
  assert.equal(containerGpuText(b), '–');
  noteContainerGpus([]);
  assert.equal(containerGpuText(a), '–');
});
