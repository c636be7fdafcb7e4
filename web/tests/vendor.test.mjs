//! Guards the vendored Chart.js: byte-identical to the pinned npm package, and no file of the page loads anything from elsewhere.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ROOT } from './harness.mjs';

const WEB = join(ROOT, 'web');

/** Guards the pin: node_modules holds the version package-lock.json names (npm ci was run). */
test('installed chart.js is the version package-lock.json pins', () => {
  const lock = JSON.parse(readFileSync(join(WEB, 'package-lock.json'), 'utf8'));
  const pinned = lock.packages['node_modules/chart.js'];
  assert.ok(pinned, 'package-lock.json pins chart.js');
  const manifest = join(WEB, 'node_modules', 'chart.js', 'package.json');
  assert.ok(existsSync(manifest), `${manifest} is missing: run \`npm ci\` in web/ (make test-deps does)`);
  const installed = JSON.parse(readFileSync(manifest, 'utf8')).version;
  assert.equal(installed, pinned.version);
  const declared = JSON.parse(readFileSync(join(WEB, 'package.json'), 'utf8')).dependencies['chart.js'];
  assert.equal(declared, pinned.version, 'package.json names an exact version');
});

/** Guards the vendored copy the host embeds: the very file of the pinned package. */
test('static/vendor/chart.umd.min.js is byte-identical to the pinned package', () => {
  const vendored = readFileSync(join(WEB, 'static', 'vendor', 'chart.umd.min.js'));
  const upstream = readFileSync(join(WEB, 'node_modules', 'chart.js', 'dist', 'chart.umd.min.js'));
  assert.ok(vendored.equals(upstream), 'run `npm run vendor` in web/ and commit the result');
  const version = JSON.parse(readFileSync(join(WEB, 'node_modules', 'chart.js', 'package.json'), 'utf8')).version;
  assert.match(vendored.subarray(0, 200).toString(), new RegExp(`Chart\\.js v${version.replace(/\./g, '\\.')}`));
});

/** Guards "no CDN": no page file names an absolute URL (the SVG namespace is not a request). */
test('the page loads nothing from another origin', () => {
  const dir = join(WEB, 'static');
  const files = [];
  const walk = (d) => {
    for (const n of readdirSync(d)) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) {
        if (n !== 'vendor') walk(p);
      } else files.push(p);
    }
  };
  walk(dir);
  assert.ok(files.length >= 5, `page files found: ${files.length}`);
  for (const p of files) {
    const text = readFileSync(p, 'utf8').replaceAll('http://www.w3.org/2000/svg', '');
    assert.doesNotMatch(text, /(https?:)?\/\/[a-z0-9.-]+\.[a-z]{2,}\//i, `${relative(WEB, p)} names another origin`);
  }
});
