//! Shared by the browser tests: starts the real `vitals` host and Debian's chromium, and collects what the page logs.
import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

/** The repository root. */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** Where cargo put the host and the plugins. */
export const TARGET = process.env.VITALS_TARGET_DIR || join(ROOT, 'target', 'debug');
/** Where the screenshots go (git-ignored). */
export const SCREENSHOTS = join(ROOT, 'build', 'screenshots');
/** Debian's chromium, which the tests drive (playwright's own browser download cannot run here). */
export const CHROMIUM = process.env.VITALS_CHROMIUM || '/usr/bin/chromium';
/**
 * Whether a value of the `CI` variable means "under continuous integration", where every
 * test must run. One meaning across the workspace, the same as Rust's
 * `vitals_plugin_api::testing::in_ci`: set, non-empty, and not `0` or `false` (any case).
 */
export function meansCi(value) {
  if (value === undefined || value === null) return false;
  const v = String(value).trim();
  return !(v === '' || v === '0' || v.toLowerCase() === 'false');
}

/** True under CI (see `meansCi`). */
export const CI = meansCi(process.env.CI);

/**
 * The skip log `make test` counts and prints: `VITALS_SKIP_LOG`, or `test-skips.txt` in the
 * cargo target folder (the Rust tests write to the same file).
 */
export const SKIP_LOG = process.env.VITALS_SKIP_LOG || join(dirname(TARGET), 'test-skips.txt');

/** Why a test cannot run here (the paths that are missing), or null. */
export function missing(...paths) {
  const gone = paths.filter((p) => !existsSync(p));
  if (!gone.length) return null;
  return `missing ${gone.join(', ')} (run \`make test-deps\` and \`cargo build --workspace\`)`;
}

/** Records a skip: a failure under CI; otherwise a line in the skip log and a loud message. */
function recordSkip(test, why) {
  if (CI) throw new Error(`${test} cannot run: ${why}; under CI (CI=${JSON.stringify(process.env.CI)}) every test must run`);
  const line = `${test}: ${why}`.replace(/\n/g, ' ');
  let recorded = `recorded in ${SKIP_LOG}`;
  try {
    mkdirSync(dirname(SKIP_LOG), { recursive: true });
    appendFileSync(SKIP_LOG, `${line}\n`);
  } catch (e) {
    recorded = `NOT recorded in ${SKIP_LOG}: ${e.message}`;
  }
  console.error(`\n!!!!!!!! SKIPPED ${line}\n!!!!!!!! ${recorded}; \`make test\` fails on a skip unless ALLOW_SKIPS=1\n`);
}

/** The test file's name, for the skip log. */
function testFile(t) {
  return `web/tests/${basename(t?.filePath || process.argv[1] || '?')}`;
}

/** Skips test `t` because `why`, loudly and recorded (under CI: fails it). Use as `return skipTest(t, why)`. */
export function skipTest(t, why) {
  recordSkip(`${testFile(t)} ${t.name}`, why);
  return t.skip(why);
}

/** Records that `what` (a part of the tests) is left out because `why` (under CI: throws). */
export function skipPart(what, why) {
  recordSkip(`${testFile()} (${what})`, why);
}

/** The built plugin library of a built-in collector. */
export function plugin(name) {
  return join(TARGET, `libvitals_plugin_${name}.so`);
}

/** A running host; `stop()` ends it. */
export async function startHost(config, { args = [] } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'vitals-web-'));
  const path = join(dir, 'vitals.toml');
  writeFileSync(path, config);
  const bin = join(TARGET, 'vitals');
  const child = spawn(bin, ['--config', path, '--bind', '127.0.0.1:0', '--log', 'info', ...args], {
    env: { VITALS_HISTORY_PATH: join(dir, 'history.db'), ...process.env, NO_COLOR: '1' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const lines = [];
  const base = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`vitals did not listen within 30 s:\n${lines.join('\n')}`)), 30000);
    let buf = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => {
      buf += chunk;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        lines.push(line);
        const m = line.match(/listening on (http:\/\/\S+)/);
        if (m) {
          clearTimeout(timer);
          ok(m[1].replace(/\/$/, ''));
        }
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`vitals exited with ${code} before listening:\n${lines.join('\n')}`));
    });
  });
  return {
    base,
    dir,
    log: () => lines.join('\n'),
    /** GETs a path and returns the parsed JSON; fails on a non-2xx status. */
    async json(p, init) {
      const r = await fetch(`${base}${p}`, init);
      const text = await r.text();
      if (!r.ok) throw new Error(`GET ${p}: ${r.status} ${text}`);
      return JSON.parse(text);
    },
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await new Promise((ok) => child.once('exit', ok));
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Debian's chromium through playwright-core, headless, with a fresh profile. */
export async function launchBrowser() {
  const require = createRequire(import.meta.url);
  const { chromium } = require('playwright-core');
  const profile = mkdtempSync(join(tmpdir(), 'vitals-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1440, height: 900 },
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  return {
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Opens a page that records console errors, page errors and failed requests. */
export async function openPage(context) {
  const page = await context.newPage();
  const problems = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') problems.push(`console.${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  return { page, problems };
}

/**
 * Navigates, retrying when chromium drops the load because the machine's network changed
 * (a container starting elsewhere): that says nothing about the page.
 */
export async function gotoPage(page, url, options) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await page.goto(url, options);
    } catch (e) {
      if (attempt >= 3 || !/ERR_NETWORK_CHANGED/.test(e.message)) throw e;
    }
  }
}

/** Polls `fn` until it returns a truthy value, or fails after `seconds` with `what`. */
export async function until(what, seconds, fn) {
  const end = Date.now() + seconds * 1000;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out after ${seconds} s waiting for ${what}; last: ${last instanceof Error ? last.stack : JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Saves a full-page screenshot under build/screenshots. */
export async function screenshot(page, name) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  const path = join(SCREENSHOTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}
