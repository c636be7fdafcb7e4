//! The browser tests' harness itself: one meaning of "under CI", and a skip that is recorded outside CI and fails the test under it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { meansCi } from './harness.mjs';

const HARNESS = pathToFileURL(join(dirname(fileURLToPath(import.meta.url)), 'harness.mjs')).href;

test('under CI means CI is set, non-empty, and not 0 or false', () => {
  const cases = [
    [undefined, false], ['', false], [' ', false], ['0', false], ['false', false], ['FALSE', false],
    ['true', true], ['1', true], ['yes', true], ['woodpecker', true],
  ];
  for (const [value, ci] of cases) assert.equal(meansCi(value), ci, `CI=${JSON.stringify(value)}`);
});

test('a skip is recorded in the skip log outside CI and fails the test under CI', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vitals-skip-'));
  try {
    const file = join(dir, 'needs.test.mjs');
    writeFileSync(file, [
      "import { test } from 'node:test';",
      `import { skipTest } from ${JSON.stringify(HARNESS)};`,
      "test('needs a thing', (t) => skipTest(t, 'no thing here'));",
      '',
    ].join('\n'));
    const log = join(dir, 'skips.txt');
    // Without NODE_TEST_CONTEXT, which would make the inner runner report to this one.
    const { NODE_TEST_CONTEXT: _, ...env } = process.env;
    const run = (ci) => spawnSync(process.execPath, ['--test', '--test-reporter=tap', file], {
      env: { ...env, CI: ci, VITALS_SKIP_LOG: log },
      encoding: 'utf8',
    });

    const outside = run('false');
    assert.equal(outside.status, 0, outside.stdout + outside.stderr);
    assert.match(outside.stdout, /# skipped 1/);
    assert.match(outside.stdout + outside.stderr, /SKIPPED web\/tests\/needs\.test\.mjs needs a thing: no thing here/);
    assert.equal(readFileSync(log, 'utf8'), 'web/tests/needs.test.mjs needs a thing: no thing here\n');

    const inside = run('true');
    assert.notEqual(inside.status, 0, 'under CI the skip fails the test');
    assert.match(inside.stdout, /# fail 1/);
    assert.match(inside.stdout, /every test must run/);
    assert.equal(readFileSync(log, 'utf8').split('\n').length, 2, 'nothing more recorded under CI');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
