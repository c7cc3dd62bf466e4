// The admin console end to end against a real shoji-server and a real,
// enrolled agent: log in; the agent is online; a validation error is shown
// next to its field; block a category and apply a catalog entry in the
// editor; the agent then blocks a real request through it; the block is in
// the log search (and its CSV export) and the dashboard chart; a learned
// conflict is made permanent, and a catalog workaround for a conflict that
// matches a catalog entry; the versions diff shows them; roll back; log
// pages, time range and application filters; delete and restore the agent;
// log out.
// Env: SHOJI_URL SHOJI_USER SHOJI_PASSWORD SHOJI_SHOTS SHOJI_PROXY_PORT
//      SHOJI_AGENT_HOSTNAME SHOJI_CONFLICT_HOST
import http from 'node:http';
import fs from 'node:fs';
import { run, login, shot, step, env, check, waitText } from './console_lib.mjs';

const base = env('SHOJI_URL');
const proxyPort = Number(env('SHOJI_PROXY_PORT'));
const hostname = env('SHOJI_AGENT_HOSTNAME');
const conflictHost = env('SHOJI_CONFLICT_HOST');

// One plain-HTTP request through the agent (absolute-form target); the status.
function viaProxy(url) {
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port: proxyPort, method: 'GET', path: url,
      headers: { Host: new URL(url).host, Connection: 'close' }, timeout: 5000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', () => resolve(0));
    req.on('timeout', () => { req.destroy(); resolve(0); });
    req.end();
  });
}

const flashText = (page, re) => waitText(page, '#flash', re);

run(async ({ page }) => {
  step('login page');
  await page.goto(base + '/');
  await page.waitForSelector('#login-form');
  check(/\/console\//.test(page.url()), '/ redirects to the console: ' + page.url());
  await shot(page, 'login');
  await login(page, env('SHOJI_USER'), env('SHOJI_PASSWORD'));

  step('dashboard: one agent online');
  await waitText(page, '#count-online .num', /^1$/);

  step('agents list and detail');
  await page.click('#nav a[data-page=agents]');
  const row = page.locator('#agents tbody tr', { hasText: hostname });
  await row.locator('[data-state=online]').waitFor();
  await row.locator('text=/default v1/').waitFor();   // the policy version it applied
  await shot(page, 'agents');
  await row.locator('a').click();
  await page.waitForSelector('#agent-detail h1');
  check((await page.textContent('#agent-detail')).includes(hostname), 'detail names the host');
  await shot(page, 'agent-detail');

  step('policy editor: a typo is shown next to its field');
  await page.click('#nav a[data-page=policy]');
  await page.waitForSelector('#policy-form');
  await page.fill('#cat-add-name', 'gamblng');
  await page.click('text=Add category');
  await page.selectOption('#cat-gamblng', 'block');
  await page.click('#policy-save');
  const err = page.locator('#cat-gamblng + .field-error');
  await err.waitFor();
  check(/did you mean "gambling"/.test(await err.textContent()), 'the loader message names the fix');
  await page.selectOption('#cat-gamblng', '');

  step('policy editor: block games, apply a catalog entry, save');
  await page.selectOption('#cat-games', 'block');
  await page.click('#catalog button[data-entry="trendmicro-bs9-smartscan"][data-fix="0"]');
  check((await page.inputValue('#f-decode-exclude_hosts')).includes('*icrc.trendmicro.com'),
    'the catalog workaround is in the decode exclusions');
  await page.fill('#policy-comment', 'block games');
  await page.click('#policy-save');
  await flashText(page, /version 2|第 2 版/);
  await page.waitForSelector('#policy-form h2:has-text("2")');
  check(await page.inputValue('#cat-games') === 'block', 'games is block after the reload');
  await shot(page, 'policy');

  step('the agent blocks games.test (a real request through it)');
  let status = 0;
  for (let i = 0; i < 40 && status !== 403; i++) {
    status = await viaProxy('http://games.test/console-' + i);
    if (status !== 403) await new Promise((r) => setTimeout(r, 500));
  }
  check(status === 403, 'the agent answered 403 for games.test, got ' + status);

  step('log search finds the block');
  await page.click('#nav a[data-page=logs]');
  await page.fill('#logs-category', 'games');
  await page.selectOption('#logs-action', 'block');
  let found = false;
  for (let i = 0; i < 30 && !found; i++) {
    await page.click('#logs-search');
    await page.waitForTimeout(500);
    found = await page.locator('#logs-result tr', { hasText: 'games.test' }).count() > 0;
  }
  check(found, 'the blocked request is in the log search');
  const r0 = page.locator('#logs-result tbody tr').first();
  check((await r0.textContent()).includes(hostname), 'the log row names the agent');
  await shot(page, 'logs');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#logs-csv')]);
  const csv = fs.readFileSync(await download.path(), 'utf8');
  check(csv.startsWith('time,agent_id,agent_hostname,app,method,url,host,status,categories,action'), 'CSV header');
  check(/games\.test.*,403,games,block,/.test(csv), 'the CSV has the blocked line: ' + csv.slice(0, 400));

  step('log search: pagination, time range, application');
  for (let i = 0; i < 60; i++) check(await viaProxy('http://games.test/page-' + i) === 403, 'blocked ' + i);
  await page.selectOption('#logs-limit', '50');
  // The 60 lines arrive within a few sync intervals: page until page 2 has them.
  let n2 = 0, first1 = '';
  for (let i = 0; i < 30 && n2 < 11; i++) {
    await page.click('#logs-search');
    await waitText(page, '#logs-page', /1/);
    await page.waitForTimeout(500);
    if (await page.locator('#logs-next:not([disabled])').count() === 0) continue;
    check(await page.locator('#logs-result tbody tr').count() === 50, '50 rows on page 1');
    first1 = await page.locator('#logs-result tbody tr').first().textContent();
    await page.click('#logs-next');
    await waitText(page, '#logs-page', /2/);
    n2 = await page.locator('#logs-result tbody tr').count();
  }
  check(n2 >= 11 && n2 <= 50, 'page 2 has the rest of the 61 blocked lines: ' + n2);
  check(!(await page.textContent('#logs-result')).includes(first1), 'page 2 does not repeat page 1');
  await page.click('#logs-prev');
  await waitText(page, '#logs-page', /1/);
  await page.fill('#logs-app', 'node');               // this script made the requests
  await page.click('#logs-search');
  await waitText(page, '#logs-page', /1/);
  await page.locator('#logs-result tbody tr').first().waitFor();
  await page.fill('#logs-app', 'firefox');
  await page.click('#logs-search');
  await page.locator('#logs-result p').waitFor();     // "no matching log lines"
  await page.fill('#logs-app', '');
  await page.fill('#logs-from', '2099-01-01T00:00');
  await page.click('#logs-search');
  await page.locator('#logs-result p').waitFor();

  step('dashboard chart and top hosts show the block');
  await page.click('#nav a[data-page=dashboard]');
  await page.waitForSelector('#blocked-chart rect[data-category=games]');
  await page.waitForSelector('#top-hosts td:has-text("games.test")');
  await shot(page, 'dashboard');

  step('conflicts: make the learned exclusion permanent');
  await page.click('#nav a[data-page=conflicts]');
  const crow = page.locator(`#conflicts tr[data-host="${conflictHost}"]`);
  await crow.waitFor();
  await shot(page, 'conflicts');
  await crow.locator('button.permanent').click();
  await flashText(page, /version 3|第 3 版/);
  // A conflict on a host of a catalog entry shows the entry and its workarounds.
  const trow = page.locator('#conflicts tr[data-host="x.icrc.trendmicro.com"]');
  check((await trow.locator('.catalog-match').textContent()).includes('Trend Micro Business Security'),
    'the matching catalog entry is shown');
  await trow.locator('button.catalog-permanent[data-entry="trendmicro-bs9-smartscan"][data-fix="1"]').click(); // NTRTSCAN
  await flashText(page, /version 4|第 4 版/);

  step('versions: the diff shows the new rule; roll-back buttons');
  await page.click('#nav a[data-page=policy]');
  await page.waitForSelector('#versions-table tr[data-version="4"]');
  const apps = await page.inputValue('#f-disabled_apps');
  check(apps.includes(conflictHost) && apps.includes('NTRTSCAN'), 'both rules are in the editor: ' + apps);
  await page.click('#versions-table tr[data-version="2"] .diff-btn');
  await page.waitForSelector(`#diff .add:has-text("${conflictHost}")`);
  await page.waitForSelector('#diff .add:has-text("NTRTSCAN")');
  await page.locator('#versions').scrollIntoViewIfNeeded();
  await shot(page, 'versions');

  step('roll back to version 2');
  page.on('dialog', (d) => d.accept());
  await page.click('#versions-table tr[data-version="2"] .rollback-btn');
  await flashText(page, /version 5|第 5 版/);
  check(!(await page.inputValue('#f-disabled_apps')).includes('NTRTSCAN'), 'the editor shows version 2 again');

  step('delete and restore the agent');
  await page.click('#nav a[data-page=agents]');
  await page.locator('#agents tbody tr', { hasText: hostname }).locator('a').click();
  await page.click('#agent-delete');
  await page.locator('#agent-detail [data-state=deleted]').waitFor();
  await page.click('#nav a[data-page=agents]');
  await page.locator('#agents').or(page.locator('#agents-table p')).first().waitFor();
  check(await page.locator('#agents tbody tr', { hasText: hostname }).count() === 0, 'deleted agent hidden');
  await page.check('#show-deleted');
  await page.locator('#agents tbody tr', { hasText: hostname }).locator('[data-state=deleted]').waitFor();
  await page.locator('#agents tbody tr', { hasText: hostname }).locator('a').click();
  await page.click('#agent-restore');
  await page.locator('#agent-detail #agent-delete').waitFor();

  step('log out');
  await page.click('#logout');
  await page.waitForSelector('#login:not(.hidden)');
  check(/signed out/.test(await page.textContent('#login-error')), 'says signed out');
  await page.goto(base + '/console/#/agents');
  await page.waitForSelector('#login:not(.hidden)');
  check(await page.locator('#agents').count() === 0, 'no agent list after logout');
});
