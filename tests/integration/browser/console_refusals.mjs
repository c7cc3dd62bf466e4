// Browser-level refusals, in Japanese (the browser's language): a wrong
// password and a lock-out are shown on the login page; a change without the
// CSRF token is refused with a message; an expired session sends the user
// back to the login page. Then the language switch to English.
// Env: SHOJI_URL SHOJI_USER SHOJI_PASSWORD SHOJI_LOCKED_USER SHOJI_SHOTS SHOJI_SESSION_SECS
import { run, login, shot, step, env, check, waitText } from './console_lib.mjs';

const base = env('SHOJI_URL');

run(async ({ page }) => {
  await page.goto(base + '/console/');
  await page.waitForSelector('#login-form');
  check(await page.textContent('#login-submit') === 'ログイン', 'Japanese by default for a ja browser');

  step('wrong password');
  await login(page, env('SHOJI_USER'), 'not the password');
  await waitText(page, '#login-error', /パスワードが違います/);

  step('lock-out');
  const locked = env('SHOJI_LOCKED_USER');
  for (let i = 0; i < 3; i++) {
    await login(page, locked, 'wrong ' + i);
    await waitText(page, '#login-error', /./);
    await page.evaluate(() => { document.getElementById('login-error').textContent = ''; });
  }
  await login(page, locked, env('SHOJI_PASSWORD'));   // the right password, still locked
  await waitText(page, '#login-error', /ロック/);
  check(await page.locator('#top:not(.hidden)').count() === 0, 'not logged in while locked');
  await shot(page, 'login-locked');

  step('missing CSRF token');
  await login(page, env('SHOJI_USER'), env('SHOJI_PASSWORD'));
  await page.waitForSelector('#top:not(.hidden)');
  await page.waitForSelector('#blocked-chart');
  check(await page.textContent('#nav a[data-page=agents]') === 'エージェント', 'navigation in Japanese');
  await shot(page, 'dashboard-ja');
  await page.click('#nav a[data-page=policy]');
  await page.waitForSelector('#policy-create');
  await page.evaluate(() => sessionStorage.removeItem('shoji_csrf'));
  await page.click('#policy-create button[type=submit]');
  await page.waitForSelector('#flash.error-flash');
  check((await page.textContent('#flash')).includes('CSRF'), 'CSRF refusal shown');
  await shot(page, 'csrf-refused');

  step('expired session');
  await page.waitForTimeout(Number(env('SHOJI_SESSION_SECS')) * 1000 + 1500);
  await page.click('#nav a[data-page=agents]');
  await page.waitForSelector('#login:not(.hidden)');
  check((await page.textContent('#login-error')).includes('有効期限'), 'expired-session message');

  step('language switch');
  await page.selectOption('#lang', 'en');
  check(await page.textContent('#login-submit') === 'Sign in', 'English after the switch');
});
