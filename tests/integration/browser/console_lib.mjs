// Shared helpers of the console browser tests: launch Debian's chromium
// through playwright-core, log in, take screenshots, fail on page errors.
import { createRequire } from 'node:module';
import path from 'node:path';
import fs from 'node:fs';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');

export const env = (name, dflt) => {
  const v = process.env[name];
  if (v === undefined || v === '') {
    if (dflt !== undefined) return dflt;
    throw new Error(`environment variable ${name} is required`);
  }
  return v;
};

export async function launch() {
  const browser = await chromium.launch({
    executablePath: env('CHROMIUM', '/usr/bin/chromium'), headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--disable-dev-shm-usage'],
  });
  const context = await browser.newContext({
    ignoreHTTPSErrors: true, locale: env('SHOJI_LOCALE', 'en-US'), acceptDownloads: true,
    viewport: { width: 1200, height: 900 },
  });
  context.setDefaultTimeout(15000);
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('console', (m) => {
    // 400/401/403/429 answers the test provokes on purpose are logged by chromium as errors
    if (m.type() === 'error' && !/status of (400|401|403|409|429)/.test(m.text())) problems.push('console: ' + m.text() + ' ' + (m.location().url || ''));
  });
  return { browser, context, page, problems };
}

export function step(name) { console.log('STEP ' + name); }

export async function shot(page, name) {
  const dir = env('SHOJI_SHOTS');
  fs.mkdirSync(dir, { recursive: true });
  await page.waitForTimeout(150);
  await page.screenshot({ path: path.join(dir, name + '.png') });
}

export async function login(page, user, password) {
  await page.fill('#login-user', user);
  await page.fill('#login-password', password);
  await page.click('#login-submit');
}

export function check(cond, what) {
  if (!cond) throw new Error('check failed: ' + what);
}

export async function run(main) {
  const ctx = await launch();
  let code = 0;
  try {
    await main(ctx);
    if (ctx.problems.length) throw new Error('the page reported errors:\n' + ctx.problems.join('\n'));
    console.log('OK');
  } catch (e) {
    code = 1;
    console.log('FAIL ' + (e && e.stack ? e.stack : e));
    try { await shot(ctx.page, 'failure'); } catch (_) { /* best effort */ }
  } finally {
    await ctx.browser.close();
  }
  process.exit(code);
}

// Polls the text of `selector` until it matches `re` (page.waitForFunction
// would evaluate a string in the page, which the console's CSP forbids).
export async function waitText(page, selector, re, timeoutMs = 15000) {
  const end = Date.now() + timeoutMs;
  let last = null;
  while (Date.now() < end) {
    last = await page.locator(selector).first().textContent({ timeout: 1000 }).catch(() => null);
    if (last !== null && re.test(last)) return last;
    await page.waitForTimeout(150);
  }
  throw new Error(`timed out waiting for ${selector} to match ${re}; last text: ${JSON.stringify(last)}`);
}
