// scenario.mjs - drd's page in a real browser (Debian's headless Chromium,
// driven by playwright-core): log in, see both databases healthy, wait for
// the outage the calling test causes, approve the failover from the page,
// see the run succeed and the active side become the backup. TAP output.
//
//   node scenario.mjs URL TOKEN SCREENSHOT_DIR
//
// Environment: DRD_READY_FILE - created once the page shows both databases
// healthy (the caller then stops the primary); CHROMIUM (default
// /usr/bin/chromium); SCENARIO_TIMEOUT_MS (default 80000).
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const [url, token, shotDir] = process.argv.slice(2);
if (!url || !token || !shotDir) {
  console.error('usage: node scenario.mjs URL TOKEN SCREENSHOT_DIR');
  process.exit(2);
}
const readyFile = process.env.DRD_READY_FILE || '';
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const totalMs = Number(process.env.SCENARIO_TIMEOUT_MS || 80000);

let n = 0;
let failed = 0;
function diag(msg) {
  for (const line of String(msg).split('\n')) console.log('# ' + line);
}
function ok(cond, desc, info) {
  n++;
  if (cond) {
    console.log(`ok ${n} - ${desc}`);
  } else {
    failed++;
    console.log(`not ok ${n} - ${desc}`);
    if (info !== undefined) diag(info);
  }
  return !!cond;
}
function finish(code) {
  console.log(`1..${n}`);
  process.exit(code !== undefined ? code : failed ? 1 : 0);
}

// The whole scenario has a hard deadline.
const guard = setTimeout(() => {
  ok(false, `the scenario finished within ${totalMs} ms`);
  finish(1);
}, totalMs);

// waitFor(fn, ms): poll fn (async, truthy = done) every 200 ms until it
// returns something truthy or ms pass; returns its last value.
async function waitFor(fn, ms) {
  const end = Date.now() + ms;
  let v;
  for (;;) {
    try {
      v = await fn();
    } catch (e) {
      v = undefined;
    }
    if (v || Date.now() >= end) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
}

const text = async (page, sel) => {
  const h = await page.$(sel);
  return h ? (await h.textContent()).trim() : '';
};
const visible = async (page, sel) => {
  const h = await page.$(sel);
  return h ? h.isVisible() : false;
};

fs.mkdirSync(shotDir, { recursive: true });
const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'drd-chromium-'));
let context;
try {
  context = await chromium.launchPersistentContext(userDir, {
    executablePath,
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
} catch (e) {
  ok(false, 'Chromium starts', e.message);
  fs.rmSync(userDir, { recursive: true, force: true });
  finish(1);
}

const problems = [];   // CSP violations, script errors, failed requests
const page = context.pages()[0] || (await context.newPage());
page.on('console', (m) => {
  if (m.type() === 'error' && !/401 \(Unauthorized\)/.test(m.text())) problems.push('console: ' + m.text());
});
page.on('pageerror', (e) => problems.push('page error: ' + e.message));

try {
  // ---- login ------------------------------------------------------------
  const resp = await page.goto(url, { waitUntil: 'load' });
  ok(resp && resp.status() === 200, 'the page loads (200)');
  const csp = resp ? resp.headers()['content-security-policy'] || '' : '';
  ok(/default-src 'self'/.test(csp) && !/unsafe-inline/.test(csp), 'the page comes with a strict CSP', csp);
  ok(await waitFor(() => visible(page, '#login-form'), 5000), 'a login form is shown');

  await page.fill('#token', 'certainly-not-the-token');
  await page.click('#login-submit');
  ok(await waitFor(async () => /Wrong token/.test(await text(page, '#login-error')), 5000),
     'a wrong token: "Wrong token."', await text(page, '#login-error'));

  await page.fill('#token', token);
  await page.click('#login-submit');
  ok(await waitFor(() => visible(page, '#dash'), 5000), 'the right token: the dashboard is shown');
  ok(!(await visible(page, '#login-form')), '... and the login form is gone');
  ok((await page.$eval('#token', (e) => e.value)) === '', '... the token is not left in the form');

  const cookies = await context.cookies();
  const sess = cookies.find((c) => c.name === 'drd_session');
  ok(sess && sess.httpOnly && sess.sameSite === 'Strict', 'the session cookie is HttpOnly, SameSite=Strict',
     JSON.stringify(sess));
  ok((await page.evaluate(() => document.cookie)) === '', '... and invisible to the page\'s script');
  const actor = 'session:' + (sess ? sess.value.slice(0, 8) : '?');
  ok(/signed in as session:[0-9a-f]{8}/.test(await text(page, '#who')), 'the page says who is signed in',
     await text(page, '#who'));

  // ---- both healthy -----------------------------------------------------
  const healthy = await waitFor(async () =>
    (await text(page, '#t-primary .health')) === 'healthy' &&
    (await text(page, '#t-backup .health')) === 'healthy', 15000);
  ok(healthy, 'both databases are shown healthy',
     `primary: ${await text(page, '#t-primary .health')}, backup: ${await text(page, '#t-backup .health')}`);
  ok((await text(page, '#active-side')) === 'PRIMARY', 'the active side is PRIMARY', await text(page, '#active-side'));
  ok(/^\d+ ms$/.test(await text(page, '#t-primary .latency')), 'the primary\'s latency is shown',
     await text(page, '#t-primary .latency'));
  ok(/closed/.test(await text(page, '#t-backup .breaker')), 'the backup\'s breaker is closed');
  ok(await waitFor(async () => (await page.$$('#t-primary .chart svg polyline, #t-primary .chart svg circle')).length > 0, 8000),
     'a latency chart is drawn');
  await page.screenshot({ path: path.join(shotDir, 'browser-1-healthy.png'), fullPage: true });

  // ---- the outage -------------------------------------------------------
  if (readyFile) fs.writeFileSync(readyFile, 'ready\n');
  diag('waiting for the caller to stop the primary');
  const down = await waitFor(async () => (await text(page, '#t-primary .health')) === 'DOWN', 20000);
  ok(down, 'the primary is shown DOWN', await text(page, '#t-primary .health'));
  const asked = await waitFor(() => visible(page, '#approvals li.approval button.approve'), 25000);
  ok(asked, 'an approval appears with an Approve button (no reload)');
  const prompt = await text(page, '#approvals li.approval .prompt');
  ok(/fail over/i.test(prompt), 'its prompt asks to fail over', prompt);
  ok(await visible(page, '#approvals li.approval button.reject'), '... next to a Reject button');
  ok(/^\s*\S/.test(await text(page, '#t-primary .last-error')), 'the primary\'s last error is shown',
     await text(page, '#t-primary .last-error'));
  await page.screenshot({ path: path.join(shotDir, 'browser-2-approval.png'), fullPage: true });

  await page.click('#approvals li.approval button.approve');
  ok(await waitFor(async () => /accepted/.test(await text(page, '#approvals .decision-msg, #action-msg')), 10000) ||
     await waitFor(async () => /succeeded|running/.test(await text(page, '#run-state')), 5000),
     'Approve: the request is accepted');

  const switched = await waitFor(async () =>
    (await text(page, '#active-side')) === 'BACKUP' && (await text(page, '#run-state')) === 'succeeded', 45000);
  ok(switched, 'the run succeeds and the active side becomes BACKUP',
     `active: ${await text(page, '#active-side')}, run: ${await text(page, '#run-state')}`);
  ok(/failover #\d+/.test(await text(page, '#run-title')), 'the run panel shows the failover', await text(page, '#run-title'));
  ok(new RegExp('by ' + actor).test(await text(page, '#run-meta')),
     `... started by ${actor}`, await text(page, '#run-meta'));
  const steps = await page.$$eval('#run-steps li', (lis) => lis.map((l) => l.className));
  ok(steps.length >= 3 && steps.every((c) => /st-(done|skipped)/.test(c)), 'every step of the timeline is done',
     steps.join(' '));
  ok(!(await visible(page, '#approvals')), 'no approval is pending any more');
  ok(await waitFor(async () => (await page.$$('#runs tbody tr.run-row')).length >= 1, 8000),
     'the run is listed in the history');
  ok(await waitFor(async () => (await page.$$('#incidents tbody tr')).length >= 1 &&
       /primary/.test(await text(page, '#incidents tbody')), 8000), 'the primary\'s incident is listed');
  ok(await page.$eval('#btn-failover', (b) => b.disabled), 'failover is disabled now (the app is on the backup)');

  // a failback asks for confirmation first; Cancel does nothing
  await page.click('#btn-failback');
  ok(await waitFor(() => page.$eval('#confirm', (d) => d.open), 3000) &&
     /Fail back/.test(await text(page, '#confirm-title')), 'Fail back…: a confirmation dialog opens',
     await text(page, '#confirm-title'));
  await page.click('#confirm-cancel');
  ok(await waitFor(async () => !(await page.$eval('#confirm', (d) => d.open)), 3000), '... Cancel closes it');
  await page.waitForTimeout(500);
  ok((await page.$$('#runs tbody tr.run-row')).length === 1 && !/queued|accepted/.test(await text(page, '#action-msg')),
     '... and starts nothing');

  // output on demand
  const outBtn = await page.$('#run-steps button.link');
  if (outBtn) {
    await outBtn.click();
    ok(await waitFor(() => visible(page, '#run-steps pre.output'), 3000), 'a step\'s output shows on demand');
  } else {
    ok(true, 'a step\'s output shows on demand # SKIP no step produced output');
  }
  await page.screenshot({ path: path.join(shotDir, 'browser-3-failed-over.png'), fullPage: true });

  // ---- on a phone -------------------------------------------------------
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  ok(overflow <= 1, 'on a phone-sized screen nothing overflows sideways', `overflow ${overflow}px`);
  const big = await page.$eval('#active-side', (e) => parseFloat(getComputedStyle(e).fontSize));
  ok(big >= 36, 'the active side is big on a phone', `${big}px`);
  await page.screenshot({ path: path.join(shotDir, 'browser-4-phone.png'), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 900 });

  // ---- logout -----------------------------------------------------------
  await page.click('#logout');
  ok(await waitFor(() => visible(page, '#login-form'), 5000), 'Log out: back to the login form');
  const after = await page.evaluate(async () => (await fetch('/api/status', { credentials: 'same-origin' })).status);
  ok(after === 401, 'the API refuses the old session', String(after));

  ok(problems.length === 0, 'no CSP violation or script error', problems.join('\n'));
} catch (e) {
  ok(false, 'the scenario ran without an exception', e.stack || String(e));
  try {
    await page.screenshot({ path: path.join(shotDir, 'browser-error.png'), fullPage: true });
  } catch (e2) {
    /* nothing more to show */
  }
} finally {
  clearTimeout(guard);
  await context.close().catch(() => {});
  fs.rmSync(userDir, { recursive: true, force: true });
}
finish();
