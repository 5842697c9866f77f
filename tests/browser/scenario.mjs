// scenario.mjs - drd's page in a real browser (Debian's headless Chromium,
// driven by playwright-core): log in, see both databases healthy, wait for
// the outage the calling test causes, approve the failover from the page,
// see the run succeed and the active side become the backup. On the way:
// the readiness panel (drd's first scheduled checks, Check now) and the
// drills panel (no drill yet; then a drill report recorded with the
// bearer token, as drctl drill does, appears with its steps). TAP output.
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
let drillFetches = 0;  // GET /api/drills by the page
page.on('request', (r) => {
  if (r.method() === 'GET' && new URL(r.url()).pathname === '/api/drills') drillFetches++;
});

// The status as the page's session sees it.
const pageStatus = () => page.evaluate(async () =>
  (await fetch('/api/status', { credentials: 'same-origin', cache: 'no-store' })).json());

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

  // ---- readiness: drd's first scheduled run (~5 s after it starts) ---------
  const rows = () => page.$$eval('#checks li.check[data-name]', (lis) => lis.map((li) => ({
    name: li.dataset.name,
    status: li.querySelector('.chk-status').textContent.trim(),
    fix: li.querySelector('.chk-fix') ? li.querySelector('.chk-fix').textContent.trim() : '',
  })));
  const rank = (st) => ({ fail: 0, warn: 1, ok: 3 }[st] ?? 2);
  ok(await waitFor(async () => (await rows()).length > 0, 15000), 'the readiness panel shows check rows',
     await text(page, '#readiness'));
  let st = await pageStatus();
  const checks = (st.readiness && st.readiness.checks) || [];
  const shown = await rows();
  ok(checks.length > 0 && shown.length === checks.length &&
     checks.every((c) => shown.some((r) => r.name === c.name)),
     `... one row per check in the status (${shown.length})`,
     `status: ${checks.map((c) => c.name).join(' ')}\npage: ${shown.map((r) => r.name).join(' ')}`);
  const byName = Object.fromEntries(checks.map((c) => [c.name, c]));
  ok(shown.every((r) => byName[r.name] && r.status.endsWith(byName[r.name].status)),
     '... each with its status as text', shown.map((r) => `${r.name}: ${r.status}`).join('\n'));
  const ranks = shown.map((r) => rank(byName[r.name] ? byName[r.name].status : ''));
  ok(ranks.every((x, i) => i === 0 || ranks[i - 1] <= x), '... failing checks first',
     shown.map((r) => r.status).join(' '));
  ok(shown.every((r) => { const c = byName[r.name]; return !c || c.status === 'ok' || !c.fix || r.fix.includes(c.fix); }),
     '... with the fix for each warning or failure');
  const bigText = await text(page, '#ready-state');
  ok(bigText === (st.readiness.ready === true ? 'ready' : st.readiness.ready === false ? 'not ready' : 'not checked yet'),
     `the readiness badge says "${bigText}" (ready = ${st.readiness.ready})`);
  ok(/checked (just now|[\d.]+ (ms|s|min) ago)/.test(await text(page, '#ready-meta')), '... and when drd last checked',
     await text(page, '#ready-meta'));

  const before = st.readiness.checked_at;
  await page.click('#btn-check');
  ok(await waitFor(async () => /^Checked /.test(await text(page, '#check-msg')), 12000),
     'Check now: the checks run again and the page says so', await text(page, '#check-msg'));
  st = await pageStatus();
  ok(st.readiness.checked_at > before, `... drd checked again (${before} -> ${st.readiness.checked_at})`);

  // ---- drills: none recorded yet ----------------------------------------
  ok(await waitFor(async () => /no successful drill/.test(await text(page, '#drill-warning')), 5000) &&
     await visible(page, '#drill-warning'), 'the drills panel shows the drill warning',
     await text(page, '#drill-warning'));
  ok((await text(page, '#drill-warning')).endsWith(st.drill.warning), '... the status\'s text', st.drill.warning);
  ok(/No drill on record/.test(await text(page, '#drill-last')), '... and "No drill on record"',
     await text(page, '#drill-last'));
  ok(/No drills recorded/.test(await text(page, '#drill-list')), '... and an empty list of drills',
     await text(page, '#drill-list'));
  ok(drillFetches === 1, `the page fetched GET /api/drills once, not on every poll (${drillFetches})`);

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
  ok(await waitFor(async () => /fence pending|fenced/.test(await text(page, '#t-primary .role')), 5000),
     'the old primary shows its fence (pending: it is down), not read-write', await text(page, '#t-primary .role'));
  ok(!(await visible(page, '#alarm')), 'no alarm banner: the run succeeded');
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
  // (a locator: the timeline is redrawn whenever the history reloads, and
  // the primary's breaker flapping open/half-open reloads it on every poll)
  const outBtn = page.locator('#run-steps button.link').first();
  if (await outBtn.count()) {
    await outBtn.click();
    ok(await waitFor(() => visible(page, '#run-steps pre.output'), 3000), 'a step\'s output shows on demand');
  } else {
    ok(true, 'a step\'s output shows on demand # SKIP no step produced output');
  }
  await page.screenshot({ path: path.join(shotDir, 'browser-3-failed-over.png'), fullPage: true });

  // ---- a drill report arrives (drctl drill posts it with the token) -------
  const t = Date.now();
  const report = {
    started_at: t - 95000, ended_at: t - 1000, result: 'failed', detection_ms: 4200, rto_ms: 12800,
    rows_written: 100, rows_found: 97, sync_ms: 1500, failover_run: 7, failback_run: 8,
    phase: 'verify', error: '3 rows <b>missing</b> on the primary',
    environment: { primary: 'postgresql://drill@db1/app', backup: 'postgresql://drill@db2/app' },
    steps: [
      { run: 'failover', name: 'stop-app', action: 'shell', state: 'done', ms: 800 },
      { run: 'failover', name: 'switch', action: 'env-file', state: 'done', ms: 65000 },
      { run: 'failback', name: 'sync-back', action: 'sync-back', state: 'done', ms: 1500 },
    ],
  };
  const posted = await fetch(new URL('/api/drill', url), {
    method: 'POST', body: JSON.stringify(report),
    headers: { Authorization: 'Bearer ' + token, 'Content-Type': 'application/json' },
  });
  ok(posted.status === 202, 'a drill report is recorded (POST /api/drill: 202)', String(posted.status));
  ok(await waitFor(async () => /Last drill #\d+\s*failed/.test(await text(page, '#drill-last')), 8000),
     'the page shows the last drill, failed', await text(page, '#drill-last'));
  const last = await text(page, '#drill-last');
  ok(/Detection\s*4\.2 s/.test(last) && /RTO\s*13 s/.test(last) && /Rows written\s*100/.test(last) &&
     /Rows found\s*97 \(3 missing\)/.test(last) && /Sync-back\s*1\.5 s/.test(last),
     '... with its figures as durations', last);
  ok(await waitFor(async () => (await page.$$('#drill-list li.drill')).length === 1, 5000),
     'the drill is listed in the history');
  ok(drillFetches === 2, `... fetched again once the newest drill changed (${drillFetches} fetches)`);
  ok(!(await visible(page, '#drill-list li.drill .drill-steps')), '... its steps folded away');
  await page.click('#drill-list li.drill summary');
  ok(await waitFor(() => visible(page, '#drill-list li.drill .drill-steps'), 3000), '... shown when opened');
  const dsteps = await page.$$eval('#drill-list li.drill .step', (lis) => lis.map((l) => l.textContent));
  ok(dsteps.length === 3 && /switch/.test(dsteps[1]) && /1 min 5 s/.test(dsteps[1]),
     '... each step with its duration', dsteps.join('\n'));
  const derr = await text(page, '#drill-list li.drill .drill-error');
  ok(derr.includes('Failed at verify: 3 rows <b>missing</b>') &&
     (await page.$$('#drill-list b, #drill-last b')).length === 0, '... and its error, as text', derr);
  ok(/Failover run #7/.test(await text(page, '#drill-list li.drill')), '... grouped by run');

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
