/* drd's status page: plain JavaScript, no build step, no dependency.
 *
 * It logs in with the token (POST /api/login -> a session cookie the page
 * cannot read, and a CSRF token it keeps in memory), then polls
 * /api/status every 1.5 s and the history every few seconds. The status
 * carries the readiness checks and the newest drill; the list of drills
 * (GET /api/drills) is fetched at the start and whenever the newest drill
 * changes. Every POST carries the CSRF token in X-CSRF-Token. Text from
 * the server is only ever put in the page with textContent, never as
 * HTML. */
'use strict';

(function () {
  const STATUS_EVERY_MS = 1500;
  const HIDDEN_EVERY_MS = 5000;     // when the tab is not visible
  const HISTORY_EVERY_MS = 6000;
  const CHART_WINDOW_MS = 10 * 60 * 1000;
  const DRILLS_LIMIT = 10;
  const DRILLS_RETRY_MS = 30000;    // after GET /api/drills failed
  const CHECK_WAIT_MS = 60000;      // Check now: how long to wait for the results

  const state = {
    csrf: null,
    actor: null,
    status: null,
    statusKey: '',          // what, when it changes, makes the history reload
    runs: [],
    viewRun: null,          // a run picked in the history (id), or null: the current one
    runDetail: null,        // GET /api/runs/{id} with outputs, for the run shown
    openOutputs: new Set(), // "runId:stepIndex" whose output is shown
    samples: { primary: [], backup: [] },
    lastProbe: { primary: 0, backup: 0 },
    timer: null,
    historyAt: 0,
    failures: 0,
    inflight: false,
    checkPending: null,     // Check now: { before: checked_at, accepted, until }
    drills: [],             // GET /api/drills
    drillsKey: null,        // the newest drill's id the list was loaded for ('none': no drill)
    drillsLoading: false,
    drillsRetryAt: 0,
    openDrills: new Set(),  // drill ids whose details are open
  };

  const $ = (sel, root) => (root || document).querySelector(sel);

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function show(node, on) {
    node.hidden = !on;
  }

  // ---------------------------------------------------------- formatting

  function fmtDuration(ms) {
    if (ms === null || ms === undefined || ms < 0) return '—';
    if (ms < 1000) return Math.round(ms) + ' ms';
    const s = ms / 1000;
    if (s < 60) return (s < 10 ? s.toFixed(1) : Math.round(s)) + ' s';
    const m = Math.floor(s / 60), rs = Math.round(s % 60);
    if (m < 60) return m + ' min' + (rs ? ' ' + rs + ' s' : '');
    const h = Math.floor(m / 60), rm = m % 60;
    if (h < 48) return h + ' h' + (rm ? ' ' + rm + ' min' : '');
    return Math.floor(h / 24) + ' d ' + (h % 24) + ' h';
  }

  function fmtAgo(at) {
    if (!at) return 'never';
    const d = Date.now() - at;
    if (d < 1500) return 'just now';
    return fmtDuration(d) + ' ago';
  }

  function fmtTime(at) {
    if (!at) return '—';
    const d = new Date(at);
    const today = new Date();
    const sameDay = d.toDateString() === today.toDateString();
    const t = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
    return sameDay ? t : d.toLocaleDateString() + ' ' + t;
  }

  function cap(s) {
    return s ? s.charAt(0).toUpperCase() + s.slice(1) : s;
  }

  function breakerText(b) {
    return { closed: 'closed', open: 'open', half_open: 'half-open' }[b] || String(b || '?');
  }

  // ---------------------------------------------------------- the API

  class HttpError extends Error {
    constructor(status, message, body) {
      super(message);
      this.status = status;
      this.body = body;
    }
  }

  async function api(method, path, body) {
    const opts = { method, credentials: 'same-origin', cache: 'no-store', headers: {} };
    if (method === 'POST') {
      opts.headers['Content-Type'] = 'application/json';
      if (state.csrf) opts.headers['X-CSRF-Token'] = state.csrf;
      opts.body = JSON.stringify(body || {});
    }
    let resp;
    try {
      resp = await fetch(path, opts);
    } catch (e) {
      throw new HttpError(0, 'drd is unreachable', null);
    }
    let doc = null;
    try {
      doc = await resp.json();
    } catch (e) {
      doc = null;
    }
    if (!resp.ok) {
      const msg = doc && doc.error ? doc.error : 'HTTP ' + resp.status;
      const err = new HttpError(resp.status, msg, doc);
      err.retryAfter = Number(resp.headers.get('Retry-After')) || 0;
      if (resp.status === 401 && path !== '/api/login') sessionLost();
      throw err;
    }
    return doc;
  }

  // ---------------------------------------------------------- login

  function showLogin(message) {
    stopPolling();
    state.csrf = null;
    show($('#dash'), false);
    show($('#logout'), false);
    $('#who').textContent = '';
    $('#conn').textContent = '';
    show($('#login-view'), true);
    $('#login-error').textContent = message || '';
    $('#token').focus();
  }

  function sessionLost() {
    if (state.csrf !== null || !$('#dash').hidden) showLogin('Your session has ended: sign in again.');
  }

  async function onLogin(ev) {
    ev.preventDefault();
    const input = $('#token');
    const btn = $('#login-submit');
    btn.disabled = true;
    $('#login-error').textContent = '';
    try {
      const doc = await api('POST', '/api/login', { token: input.value });
      input.value = '';
      startDashboard(doc);
    } catch (e) {
      let msg = e.message;
      if (e.status === 401) msg = 'Wrong token.';
      else if (e.status === 429) msg = 'Wrong token, and too many wrong ones: wait ' + (e.retryAfter || 60) + ' s before the next try.';
      else if (e.status === 0) msg = 'drd does not answer.';
      $('#login-error').textContent = msg;
    } finally {
      btn.disabled = false;
    }
  }

  async function onLogout() {
    try {
      await api('POST', '/api/logout', {});
    } catch (e) {
      /* the session may already be gone */
    }
    showLogin('Signed out.');
  }

  function startDashboard(session) {
    state.csrf = session.csrf || null;
    state.actor = session.actor || null;
    show($('#login-view'), false);
    show($('#dash'), true);
    show($('#logout'), state.csrf !== null);
    $('#who').textContent = state.actor ? 'signed in as ' + state.actor : '';
    state.historyAt = 0;
    state.drillsKey = null;
    state.drillsRetryAt = 0;
    loadProbeHistory();
    poll();
  }

  // ---------------------------------------------------------- polling

  function stopPolling() {
    if (state.timer) clearTimeout(state.timer);
    state.timer = null;
  }

  function schedule() {
    stopPolling();
    let every = document.hidden ? HIDDEN_EVERY_MS : STATUS_EVERY_MS;
    if (state.failures > 0) every = Math.min(10000, every * (1 + state.failures));
    state.timer = setTimeout(poll, every);
  }

  async function poll() {
    if (state.csrf === null && $('#dash').hidden) return;
    if (state.inflight) return;            // the poll under way reschedules
    state.inflight = true;
    try {
      const st = await api('GET', '/api/status');
      state.failures = 0;
      state.status = st;
      setConn(true, st);
      renderStatus(st);
      maybeLoadDrills(st);
      const key = statusKey(st);
      if (key !== state.statusKey || Date.now() - state.historyAt > HISTORY_EVERY_MS) {
        state.statusKey = key;
        await loadHistory();
      }
    } catch (e) {
      if (e.status === 401) return;      // the login form is shown
      state.failures++;
      setConn(false, null, e);
    } finally {
      state.inflight = false;
    }
    if (!$('#dash').hidden) schedule();
  }

  // What changes the history: the run, its steps, the approvals, the side.
  function statusKey(st) {
    const run = st.run;
    const steps = run && run.steps ? run.steps.map((s) => s.state).join(',') : '';
    const appr = (st.approvals || []).map((a) => a.id).join(',');
    return [st.active, run ? run.id + ':' + run.state + ':' + steps : '-', appr,
            st.targets && st.targets.primary ? st.targets.primary.breaker : '',
            st.targets && st.targets.backup ? st.targets.backup.breaker : ''].join('|');
  }

  function setConn(ok, st, err) {
    const c = $('#conn');
    if (ok) {
      c.className = 'conn ok';
      c.textContent = st && st.daemon === 'running' ? 'live' : 'daemon not running';
    } else {
      c.className = 'conn bad';
      c.textContent = err && err.status === 0 ? 'connection lost — retrying' : 'error: ' + (err ? err.message : '?');
    }
  }

  async function loadHistory() {
    state.historyAt = Date.now();
    const [runs, incidents, events] = await Promise.all([
      api('GET', '/api/runs?limit=15').catch(() => null),
      api('GET', '/api/incidents?limit=15').catch(() => null),
      api('GET', '/api/events?limit=25').catch(() => null),
    ]);
    if (runs) {
      state.runs = runs.runs || [];
      renderRuns();
    }
    if (incidents) renderIncidents(incidents.incidents || []);
    if (events) renderEvents(events.events || []);
    await renderRun();
  }

  // Per-minute history for the charts (live samples are added by polling).
  async function loadProbeHistory() {
    for (const t of ['primary', 'backup']) {
      try {
        const doc = await api('GET', '/api/probes?target=' + t + '&minutes=10');
        const pts = (doc.minutes || []).map((m) => ({
          t: m.at + 30000,
          ms: m.latency_avg_ms,
          ok: m.failures < m.probes,
          agg: true,
        }));
        state.samples[t] = pts.concat(state.samples[t].filter((s) => !s.agg));
      } catch (e) {
        /* the chart fills from live samples */
      }
    }
  }

  // ---------------------------------------------------------- rendering

  function renderStatus(st) {
    const side = st.active === 'backup' ? 'backup' : 'primary';
    const banner = $('#active');
    banner.className = 'active-banner on-' + side + (st.run ? ' busy' : '');
    $('#active-side').textContent = side.toUpperCase();
    const t = st.targets && st.targets[side];
    let detail = t ? (t.healthy ? 'healthy' : 'NOT healthy') : '';
    if (st.run) detail += (detail ? ' · ' : '') + st.run.kind + ' in progress';
    if (st.daemon !== 'running') detail += (detail ? ' · ' : '') + 'drd is not running';
    $('#active-detail').textContent = detail;
    $('#active-detail').classList.toggle('bad', !!t && !t.healthy);
    document.title = 'drd · ' + side + (t && !t.healthy ? ' (down)' : '');

    renderAlarm(st.attention || null);
    renderBlock(st.block_until || null);
    for (const name of ['primary', 'backup']) renderTarget(name, st.targets ? st.targets[name] : null, st);
    renderApprovals(st.approvals || [], st);
    renderActions(st);
    renderReadiness(st.readiness);
    renderDrill(st.drill);
  }

  // A run failed or waits for a decision while the app is stopped (or a
  // step needs attention): a banner above everything, with the decision.
  function renderAlarm(att) {
    const sec = $('#alarm');
    show(sec, !!att);
    if (!att) { sec.dataset.key = ''; return; }
    const key = att.run_id + ':' + att.state + ':' + att.approval_id + ':' + att.app_stopped;
    sec.classList.toggle('needs-human', !att.app_stopped);
    $('#alarm-title').textContent = att.app_stopped ? 'The app is stopped' : 'A run needs your decision';
    const waiting = att.state === 'waiting';
    $('#alarm-text').textContent = att.kind + ' run #' + att.run_id + ' ' +
      (waiting ? 'waits for a decision' : att.state) + (att.step ? ' at step "' + att.step + '"' : '') +
      ': ' + (att.reason || '') + (att.app_stopped && att.stopped_at ? ' (stopped ' + fmtAgo(att.stopped_at) + ')' : '') +
      (att.app_stopped && !waiting ? ' — the run has ended: fix the cause, then start the app by hand or run the ' +
       att.kind + ' again.' : '');
    if (sec.dataset.key === key) return;   // keep the buttons (and a pressed one's state)
    sec.dataset.key = key;
    const box = $('#alarm-buttons');
    clear(box);
    if (!waiting || !att.approval_id) return;
    const id = att.approval_id;
    const btn = (label, cls, verb, choice) => {
      const b = el('button', cls, label);
      b.type = 'button';
      b.dataset.choice = choice;
      b.addEventListener('click', async () => {
        let reason = '';
        if (verb === 'reject') {
          const r = await confirmDialog({ title: 'Abort run #' + att.run_id + '?', text: att.reason || '',
            ok: 'Abort the run', reason: true, reasonLabel: 'Why? (recorded with your decision)' });
          if (r === null) return;
          reason = r;
        }
        box.querySelectorAll('button').forEach((x) => { x.disabled = true; });
        const body = { reason };
        if (verb === 'approve') body.choice = choice;
        await submit('/api/approvals/' + id + '/' + verb, body, $('#alarm-msg'),
                     verb === 'approve' ? (choice === 'skip' ? 'Skipped' : 'Retrying') : 'Aborted');
        box.querySelectorAll('button').forEach((x) => { x.disabled = false; });
      });
      return b;
    };
    box.appendChild(btn('Retry the step', 'approve primary', 'approve', 'retry'));
    box.appendChild(btn('Skip it (it completed)', 'approve', 'approve', 'skip'));
    box.appendChild(btn('Abort the run…', 'reject danger', 'reject', 'abort'));
  }

  // After an automatic failover no other starts until block_until.
  function renderBlock(until) {
    const box = $('#block');
    show(box, !!until);
    if (until) $('#block-text').textContent = 'No automatic failover until ' + fmtTime(until) + '.';
  }

  function lagOf(st, name, t) {
    if (t && typeof t.lag_seconds === 'number') return t.lag_seconds;
    if (name === 'backup' && st && typeof st.backup_lag_seconds === 'number') return st.backup_lag_seconds;
    return null;
  }

  function renderTarget(name, t, st) {
    const card = $('#t-' + name);
    const health = $('.health', card);
    if (!t) {
      health.textContent = 'unknown';
      health.className = 'health badge unknown';
      return;
    }
    const probed = !!t.last_probe_at;
    const misconf = !!(t.probe && t.probe.state === 'misconfigured');
    health.textContent = !probed ? 'not probed yet' : misconf ? 'MISCONFIGURED' : t.healthy ? 'healthy' : t.reachable ? 'recovering' : 'DOWN';
    health.className = 'health badge ' + (!probed ? 'unknown' : t.healthy ? 'good' : t.reachable ? 'warn' : 'bad');
    card.classList.toggle('down', probed && !t.healthy);
    card.classList.toggle('is-active', st.active === name);

    const br = $('.breaker', card);
    br.textContent = breakerText(t.breaker) + (t.breaker_since ? ' for ' + fmtDuration(Date.now() - t.breaker_since) : '');
    br.className = 'breaker br-' + (t.breaker || 'unknown');
    $('.latency', card).textContent = typeof t.latency_ms === 'number' && t.reachable ? t.latency_ms + ' ms' : '—';
    $('.role', card).textContent = t.fenced === true ? 'fenced (refuses the app\'s writes)'
      : t.fenced === 'pending' ? 'fence pending (applied when it answers)'
      : !probed || !t.reachable ? '—' : t.in_recovery ? 'standby (read-only)' : 'read-write';
    $('.probe-age', card).textContent = fmtAgo(t.last_probe_at);

    const lag = lagOf(st, name, t);
    card.querySelectorAll('.lag-row').forEach((n) => show(n, lag !== null));
    if (lag !== null) {
      let txt = fmtDuration(lag * 1000) + ' behind the primary';
      const copied = t.last_copy_at || t.last_refresh_at || st.last_refresh_at;
      if (copied) txt += ' (last copy ' + fmtAgo(copied) + ')';
      $('.lag', card).textContent = txt + (name === 'backup' ? egressText(st.refresh) : '');
    }

    const errp = $('.last-error', card);
    const unseen = name === 'primary' && probed && t.seen_healthy === false;
    show(errp, (!!t.last_error && !t.healthy) || unseen);
    errp.textContent = misconf
      ? 'Misconfigured (' + t.error_class + '): ' + (t.probe.cause || t.last_error) + ' \u2014 drd is refused; not an outage, no failover until it is fixed.'
      : (t.last_error ? 'Last error: ' + t.last_error : '') +
        (unseen ? (t.last_error ? ' \u2014 ' : '') + 'never seen healthy since drd started: no automatic failover (drctl failover still works).' : '');

    if (t.last_probe_at && t.last_probe_at !== state.lastProbe[name]) {
      state.lastProbe[name] = t.last_probe_at;
      state.samples[name].push({ t: t.last_probe_at, ms: t.reachable ? t.latency_ms : null, ok: !!t.reachable });
      const cut = Date.now() - CHART_WINDOW_MS;
      state.samples[name] = state.samples[name].filter((s) => s.t >= cut);
    }
    drawChart($('.chart', card), state.samples[name]);
  }

  // "; read from the primary this month: 1.2 GB, projected 4.1 GB of 5 GB"
  function fmtBytes(b) {
    if (b < 1e3) return b + ' B';
    if (b < 1e6) return (b / 1e3).toFixed(1) + ' kB';
    if (b < 1e9) return (b / 1e6).toFixed(1) + ' MB';
    return (b / 1e9).toFixed(2) + ' GB';
  }
  function egressText(r) {
    const e = r && r.egress;
    if (!e || typeof e.month_bytes !== 'number' || (e.month_bytes === 0 && !e.budget_bytes)) return '';
    let txt = '; read from the primary this month: ' + fmtBytes(e.month_bytes) +
      ', projected ' + fmtBytes(e.projected_bytes);
    if (e.budget_bytes) txt += ' of ' + fmtBytes(e.budget_bytes) + (e.over_budget ? ' \u2014 OVER THE EGRESS BUDGET' : '');
    return txt;
  }

  const SVG = 'http://www.w3.org/2000/svg';

  function svg(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const k of Object.keys(attrs)) e.setAttribute(k, String(attrs[k]));
    return e;
  }

  // A small latency chart: the line of good probes, red ticks for failures.
  // The time axis covers what is known, from 1 to 10 minutes.
  function drawChart(box, samples) {
    const W = Math.max(120, Math.round(box.clientWidth || 300)), H = 64, PAD = 4;
    const now = Date.now();
    const oldest = samples.length ? samples[0].t : now;
    const span = Math.min(CHART_WINDOW_MS, Math.max(60000, now - oldest));
    const from = now - span;
    const good = samples.filter((s) => s.ok && typeof s.ms === 'number' && s.t >= from);
    const maxMs = Math.max(5, ...good.map((s) => s.ms));
    const x = (t) => PAD + ((t - from) / span) * (W - 2 * PAD);
    const y = (ms) => H - PAD - (ms / maxMs) * (H - 2 * PAD - 10);
    const root = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, class: 'spark', role: 'img' });
    root.appendChild(svg('rect', { x: 0, y: 0, width: W, height: H, class: 'spark-bg' }));
    if (good.length > 1) {
      const pts = good.map((s) => x(s.t).toFixed(1) + ',' + y(s.ms).toFixed(1)).join(' ');
      root.appendChild(svg('polyline', { points: pts, class: 'spark-line' }));
    } else if (good.length === 1) {
      root.appendChild(svg('circle', { cx: x(good[0].t), cy: y(good[0].ms), r: 2, class: 'spark-dot' }));
    }
    for (const s of samples) {
      if (!s.ok && s.t >= from) root.appendChild(svg('rect', { x: x(s.t) - 1, y: H - PAD - 8, width: 2, height: 8, class: 'spark-fail' }));
    }
    const label = svg('text', { x: W - PAD, y: 12, class: 'spark-label', 'text-anchor': 'end' });
    label.textContent = (good.length ? 'max ' + Math.round(maxMs) + ' ms' : 'no answer') +
      ' · last ' + (span >= 90000 ? Math.round(span / 60000) + ' min' : Math.round(span / 1000) + ' s');
    root.appendChild(label);
    const title = svg('title', {});
    title.textContent = 'probe latency; red: failed probes';
    root.appendChild(title);
    clear(box);
    box.appendChild(root);
  }

  function renderApprovals(list, st) {
    const sec = $('#approvals');
    const ul = $('#approval-list');
    show(sec, list.length > 0);
    // keep the DOM (and a pressed button's state) while the list is the same
    const key = list.map((a) => a.id + ':' + a.state).join(',');
    if (ul.dataset.key === key) {
      ul.querySelectorAll('.expires').forEach((n) => {
        const a = list.find((x) => String(x.id) === n.dataset.id);
        if (a) n.textContent = expiresText(a);
      });
      return;
    }
    ul.dataset.key = key;
    clear(ul);
    for (const a of list) {
      const li = el('li', 'approval kind-' + a.kind);
      li.dataset.id = a.id;
      li.appendChild(el('p', 'prompt', a.prompt || 'Approve?'));
      const meta = el('p', 'muted');
      let what = a.kind === 'policy' ? 'Starts a failover to the backup'
        : a.kind === 'attention' ? 'Step "' + (a.step || '?') + '" of run #' + a.run_id + ' needs attention'
        : 'Step "' + (a.step || '?') + '" of run #' + a.run_id;
      meta.textContent = what + ' · asked ' + fmtTime(a.created_at) + ' · approval #' + a.id;
      li.appendChild(meta);
      const ex = el('p', 'muted expires', expiresText(a));
      ex.dataset.id = a.id;
      li.appendChild(ex);
      const lag = lagOf(st, 'backup', st.targets ? st.targets.backup : null);
      if (lag !== null && a.kind === 'policy') {
        li.appendChild(el('p', 'warn-text', 'Data-loss window: the backup is ' + fmtDuration(lag * 1000) + ' behind the primary.'));
      }
      const btns = el('div', 'buttons');
      if (a.kind === 'attention') {
        // sync-back conflicts: drd's own prompt offers the two resolutions
        if (/backup-wins or primary-wins/.test(a.prompt || '')) {
          btns.appendChild(decisionButton(a, "Backup wins (the outage's rows)", 'approve', 'approve', 'backup-wins'));
          btns.appendChild(decisionButton(a, "Primary wins (keep the primary's rows)", 'approve', 'approve', 'primary-wins'));
        }
        btns.appendChild(decisionButton(a, 'Retry the step', 'approve', 'approve primary', 'retry'));
        btns.appendChild(decisionButton(a, 'Skip it (it completed)', 'approve', 'approve', 'skip'));
        btns.appendChild(decisionButton(a, 'Abort the run…', 'reject', 'reject danger', null));
      } else {
        btns.appendChild(decisionButton(a, 'Approve', 'approve', 'approve primary', null));
        btns.appendChild(decisionButton(a, 'Reject…', 'reject', 'reject danger', null));
      }
      li.appendChild(btns);
      const msg = el('p', 'decision-msg');
      msg.setAttribute('role', 'status');
      li.appendChild(msg);
      ul.appendChild(li);
    }
  }

  function expiresText(a) {
    if (!a.expires_at) return '';
    const left = a.expires_at - Date.now();
    return left > 0 ? 'expires in ' + fmtDuration(left) : 'expired';
  }

  function decisionButton(a, label, verb, cls, choice) {
    const b = el('button', cls, label);
    b.type = 'button';
    b.addEventListener('click', async () => {
      const li = b.closest('li');
      let reason = '';
      if (verb === 'reject') {
        const r = await confirmDialog({
          title: 'Reject approval #' + a.id + '?',
          text: a.prompt || '',
          ok: a.kind === 'attention' ? 'Abort the run' : 'Reject',
          reason: true,
          reasonLabel: 'Why? (recorded with your decision)',
        });
        if (r === null) return;
        reason = r;
      }
      li.querySelectorAll('button').forEach((x) => { x.disabled = true; });
      const body = { reason };
      if (choice) body.choice = choice;
      await submit('/api/approvals/' + a.id + '/' + verb, body, $('.decision-msg', li),
                   verb === 'approve' ? 'Approved' : 'Rejected');
      li.querySelectorAll('button').forEach((x) => { x.disabled = false; });
    });
    return b;
  }

  // POST, then follow the request until the loop has taken it. opts:
  // accepted - the message once taken (default "accepted (run #N)."),
  // keepView - do not switch the run panel back to the current run.
  async function submit(path, body, msgEl, what, opts) {
    const o = opts || {};
    msgEl.className = msgEl.className.replace(/ ?(error|okmsg)/g, '');
    msgEl.textContent = 'Sending…';
    let doc;
    try {
      doc = await api('POST', path, body);
    } catch (e) {
      msgEl.textContent = what + ': refused — ' + e.message;
      msgEl.classList.add('error');
      return false;
    }
    msgEl.textContent = what + ': request #' + doc.request_id + ' queued…';
    const deadline = Date.now() + 15000;
    while (Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 400));
      try {
        const rq = await api('GET', '/api/requests/' + doc.request_id);
        if (rq.state === 'accepted') {
          msgEl.textContent = what + ': ' +
            (o.accepted || 'accepted' + (rq.run_id ? ' (run #' + rq.run_id + ')' : '') + '.');
          msgEl.classList.add('okmsg');
          if (!o.keepView) state.viewRun = null;
          state.historyAt = 0;
          poll();
          return true;
        }
        msgEl.textContent = what + ': refused — ' + (rq.error || rq.state);
        msgEl.classList.add('error');
        return false;
      } catch (e) {
        if (e.status !== 404) {
          msgEl.textContent = what + ': ' + e.message;
          msgEl.classList.add('error');
          return false;
        }
      }
    }
    msgEl.textContent = what + ': ' + (o.stillQueued || 'still queued; see the run below.');
    return false;
  }

  function renderActions(st) {
    const busy = !!st.run;
    const onPrimary = st.active !== 'backup';
    const backup = st.targets ? st.targets.backup : null;
    const fo = $('#btn-failover'), fb = $('#btn-failback');
    fo.disabled = busy || !onPrimary;
    fb.disabled = busy || onPrimary;
    let hint = '';
    if (busy) hint = 'A ' + st.run.kind + ' is in progress.';
    else if (onPrimary && backup && !backup.healthy) hint = 'The backup is not healthy: drd will refuse a failover to it.';
    else if (onPrimary) hint = 'The app is on the primary: a failover moves it to the backup.';
    else hint = 'The app is on the backup: a failback copies its changes back and returns to the primary.';
    $('#action-hint').textContent = hint;
  }

  async function startRun(kind) {
    const fo = kind === 'failover';
    const r = await confirmDialog({
      title: fo ? 'Fail over to the backup?' : 'Fail back to the primary?',
      text: fo
        ? 'drd stops the app, points it at the backup, starts it and fences the primary. The app is down meanwhile.'
        : 'drd stops the app, copies the changes made on the backup back to the primary, verifies them and points the app at the primary again.',
      ok: fo ? 'Fail over now' : 'Fail back now',
      reason: true,
      reasonLabel: 'Reason (recorded with the run)',
    });
    if (r === null) return;
    await submit('/api/' + kind, { reason: r }, $('#action-msg'), cap(kind));
  }

  // ---------------------------------------------------------- the run

  function shownRunSummary() {
    if (state.viewRun !== null) return state.runs.find((r) => r.id === state.viewRun) || null;
    const st = state.status;
    if (st && st.run) return st.run;
    return state.runs.length ? state.runs[0] : null;
  }

  async function renderRun() {
    const run = shownRunSummary();
    const current = state.status && state.status.run && run && state.status.run.id === run.id;
    show($('#run-back'), state.viewRun !== null);
    if (!run) {
      $('#run-title').textContent = 'No run yet';
      $('#run-state').textContent = '';
      $('#run-state').className = 'badge';
      $('#run-meta').textContent = 'Failovers and failbacks appear here, step by step.';
      show($('#run-error'), false);
      clear($('#run-steps'));
      clear($('#run-approvals'));
      return;
    }
    // the detailed document (outputs, approvals) of this run
    try {
      state.runDetail = await api('GET', '/api/runs/' + run.id);
    } catch (e) {
      state.runDetail = run;
    }
    const r = state.runDetail;
    $('#run-title').textContent = (current ? 'Current ' : state.viewRun !== null ? '' : 'Last ') +
      r.kind + ' #' + r.id;
    const rs = $('#run-state');
    rs.textContent = r.state;
    rs.className = 'badge run-' + r.state;
    let meta = 'started ' + fmtTime(r.created_at) + ' by ' + (r.started_by || '?');
    if (r.reason) meta += ' — “' + r.reason + '”';
    if (r.finished_at) meta += ' · finished ' + fmtTime(r.finished_at) + ' after ' + fmtDuration(r.finished_at - r.created_at);
    $('#run-meta').textContent = meta;
    const er = $('#run-error');
    show(er, !!r.error);
    er.textContent = r.error ? 'Error: ' + r.error : '';

    const ol = $('#run-steps');
    clear(ol);
    for (const s of r.steps || []) {
      const li = el('li', 'step st-' + s.state);
      const head = el('div', 'step-head');
      head.appendChild(el('span', 'step-dot'));
      head.appendChild(el('span', 'step-name', s.name));
      head.appendChild(el('span', 'step-action muted', s.action));
      head.appendChild(el('span', 'step-state badge st-' + s.state, s.state.replace('_', ' ')));
      head.appendChild(el('span', 'step-dur muted', s.duration_ms !== null && s.duration_ms !== undefined ? fmtDuration(s.duration_ms) : ''));
      li.appendChild(head);
      const extra = [];
      if (s.attempts > 1) extra.push(s.attempts + ' attempts');
      if (s.exit_code !== null && s.exit_code !== undefined) extra.push('exit ' + s.exit_code);
      if (s.detail) extra.push(s.detail);
      if (extra.length) li.appendChild(el('p', 'step-detail', extra.join(' · ')));
      const key = r.id + ':' + s.index;
      if (typeof s.output === 'string' && s.output.length) {
        const b = el('button', 'small link', state.openOutputs.has(key) ? 'Hide output' : 'Show output');
        b.type = 'button';
        const pre = el('pre', 'output', s.output);
        show(pre, state.openOutputs.has(key));
        b.addEventListener('click', () => {
          const open = !state.openOutputs.has(key);
          if (open) state.openOutputs.add(key); else state.openOutputs.delete(key);
          show(pre, open);
          b.textContent = open ? 'Hide output' : 'Show output';
        });
        li.appendChild(b);
        li.appendChild(pre);
      }
      ol.appendChild(li);
    }
    const ul = $('#run-approvals');
    clear(ul);
    for (const a of r.approvals || []) {
      let txt = 'Approval #' + a.id + (a.step ? ' (step ' + a.step + ')' : '') + ': ' + a.state;
      if (a.decided_by) txt += ' by ' + a.decided_by;
      if (a.decided_at) txt += ' at ' + fmtTime(a.decided_at);
      if (a.choice) txt += ' — ' + a.choice;
      if (a.reason) txt += ' — “' + a.reason + '”';
      ul.appendChild(el('li', 'decision ap-' + a.state, txt));
    }
  }


  // ---------------------------------------------------------- readiness

  const CHECK_RANK = { fail: 0, warn: 1, ok: 3 };   // anything else: 2
  const CHECK_BADGE = { fail: 'bad', warn: 'warn', ok: 'good' };
  const CHECK_TEXT = { fail: '✗ fail', warn: '! warn', ok: '✓ ok' };

  function checkRank(c) {
    const r = CHECK_RANK[c.status];
    return r === undefined ? 2 : r;
  }

  // Failing checks first, then warnings, then the rest; otherwise as sent.
  function sortedChecks(list) {
    return list.map((c, i) => ({ c, i }))
      .sort((a, b) => checkRank(a.c) - checkRank(b.c) || a.i - b.i)
      .map((x) => x.c);
  }

  function sinceText(c) {
    return c.since ? c.status + ' for ' + fmtDuration(Date.now() - c.since) : '';
  }

  function renderReadiness(rd) {
    const big = $('#ready-state');
    const meta = $('#ready-meta');
    const ul = $('#checks');
    const btn = $('#btn-check');
    if (!rd || typeof rd !== 'object') {
      if (big.textContent !== 'not available') big.textContent = 'not available';
      big.className = 'ready-state unknown';
      meta.textContent = 'This drd publishes no readiness checks.';
      btn.disabled = true;
      clear(ul);
      ul.dataset.key = '';
      return;
    }
    const checks = sortedChecks(Array.isArray(rd.checks) ? rd.checks.filter((c) => c && typeof c === 'object') : []);
    const nFail = checks.filter((c) => c.status === 'fail').length;
    const nWarn = checks.filter((c) => c.status === 'warn').length;
    const [word, cls] = rd.ready === true ? ['ready', 'good']
      : rd.ready === false ? ['not ready', 'bad'] : ['not checked yet', 'unknown'];
    if (big.textContent !== word) big.textContent = word;   // a live region: only on change
    big.className = 'ready-state ' + cls;

    const parts = [];
    if (rd.running) parts.push('checking now…');
    if (rd.checked_at) parts.push('checked ' + fmtAgo(rd.checked_at));
    else if (!rd.running) parts.push('the first check runs soon after drd starts');
    if (nFail) parts.push(nFail + ' failing');
    if (nWarn) parts.push(nWarn + (nWarn === 1 ? ' warning' : ' warnings'));
    parts.push(rd.every_ms > 0 ? 'checks every ' + fmtDuration(rd.every_ms) : 'no scheduled checks');
    meta.textContent = parts.join(' · ');
    meta.title = rd.checked_at ? 'last checked ' + fmtTime(rd.checked_at) : '';

    // keep the list while the results are the same; refresh the ages
    const key = JSON.stringify(checks.map((c) => [c.name, c.status, c.reason, c.fix, c.since]));
    if (ul.dataset.key === key) {
      ul.querySelectorAll('.chk-since').forEach((n) => {
        n.textContent = sinceText({ status: n.dataset.status, since: Number(n.dataset.since) });
      });
    } else {
      ul.dataset.key = key;
      clear(ul);
      if (!checks.length) {
        ul.appendChild(el('li', 'check muted', rd.checked_at ? 'No checks.' : 'No results yet.'));
      }
      for (const c of checks) {
        const st = CHECK_TEXT[c.status] ? c.status : 'unknown';
        const li = el('li', 'check chk-' + st);
        li.dataset.name = c.name || '';
        const head = el('div', 'check-head');
        head.appendChild(el('span', 'badge chk-status ' + (CHECK_BADGE[st] || 'unknown'),
                            CHECK_TEXT[st] || String(c.status || '?')));
        head.appendChild(el('span', 'chk-name', c.name || '?'));
        if (st !== 'ok' && c.since) {
          const s = el('span', 'chk-since muted', sinceText(c));
          s.dataset.since = c.since;
          s.dataset.status = c.status;
          s.title = 'since ' + fmtTime(c.since);
          head.appendChild(s);
        }
        li.appendChild(head);
        if (c.reason) li.appendChild(el('p', 'chk-reason', c.reason));
        if (st !== 'ok' && c.fix) {
          const p = el('p', 'chk-fix');
          p.appendChild(el('strong', null, 'Fix: '));
          p.appendChild(document.createTextNode(c.fix));
          li.appendChild(p);
        }
        ul.appendChild(li);
      }
    }

    // Check now: done once a run newer than the click has finished
    const pend = state.checkPending;
    if (pend && pend.accepted && !rd.running && rd.checked_at && rd.checked_at !== pend.before) {
      state.checkPending = null;
      const msg = $('#check-msg');
      msg.className = 'okmsg';
      msg.textContent = 'Checked ' + fmtTime(rd.checked_at) + ': ' +
        (nFail || nWarn ? [nFail ? nFail + ' failing' : '', nWarn ? nWarn + ' warning' + (nWarn === 1 ? '' : 's') : '']
          .filter(Boolean).join(', ') : 'all checks pass') + '.';
    } else if (pend && Date.now() > pend.until) {
      state.checkPending = null;
      const msg = $('#check-msg');
      msg.className = 'error';
      msg.textContent = 'Check now: no results after ' + fmtDuration(CHECK_WAIT_MS) + '; see drd\'s log.';
    }
    btn.disabled = !!state.checkPending || !!rd.running;
  }

  async function checkNow() {
    const rd = state.status ? state.status.readiness : null;
    state.checkPending = { before: rd ? rd.checked_at || 0 : 0, accepted: false, until: Date.now() + CHECK_WAIT_MS };
    $('#btn-check').disabled = true;
    const ok = await submit('/api/checks', {}, $('#check-msg'), 'Check now', {
      accepted: 'running the checks…',
      stillQueued: 'still queued.',
      keepView: true,
    });
    if (ok && state.checkPending) state.checkPending.accepted = true;
    else state.checkPending = null;
    if (state.status) renderReadiness(state.status.readiness);
  }

  // ---------------------------------------------------------- drills

  function isNum(v) {
    return typeof v === 'number' && isFinite(v);
  }

  // The figures of a drill (the status' summary or a stored report).
  function drillFacts(d) {
    const dl = el('dl', 'facts drill-facts');
    const add = (label, value, cls, title) => {
      const dt = el('dt', null, label);
      if (title) dt.title = title;
      dl.appendChild(dt);
      dl.appendChild(el('dd', cls || null, value));
    };
    add('Detection', fmtDuration(isNum(d.detection_ms) ? d.detection_ms : null), 'fig-detection',
        'from the fault until drd saw the primary down');
    add('RTO', fmtDuration(isNum(d.rto_ms) ? d.rto_ms : null), 'fig-rto',
        'from the fault until the app answered again on the backup');
    add('Rows written', isNum(d.rows_written) ? String(d.rows_written) : '—', 'fig-written',
        'written on the backup during the outage');
    let found = '—', cls = 'fig-found';
    if (isNum(d.rows_found)) {
      found = String(d.rows_found);
      if (isNum(d.rows_written)) {
        const missing = d.rows_written - d.rows_found;
        found += missing > 0 ? ' (' + missing + ' missing)' : ' (all)';
        cls += missing > 0 ? ' bad-text' : ' good-text';
      }
    }
    add('Rows found', found, cls, 'found on the primary after the failback');
    add('Sync-back', fmtDuration(isNum(d.sync_ms) ? d.sync_ms : null), 'fig-sync',
        'how long copying the backup\'s changes back to the primary took');
    return dl;
  }

  function renderDrill(dr) {
    const warn = $('#drill-warning');
    const w = dr && typeof dr.warning === 'string' ? dr.warning : '';
    show(warn, !!w);
    if (warn.textContent !== (w ? '⚠ ' + w : '')) warn.textContent = w ? '⚠ ' + w : '';

    const box = $('#drill-last');
    const last = dr && dr.last && typeof dr.last === 'object' ? dr.last : null;
    const okAt = dr ? dr.last_ok_at || 0 : 0;
    const key = JSON.stringify([last, okAt, !!dr]);
    if (box.dataset.key === key) {
      box.querySelectorAll('.ago').forEach((n) => { n.textContent = fmtAgo(Number(n.dataset.at)); });
      return;
    }
    box.dataset.key = key;
    clear(box);
    const agoSpan = (at) => {
      const s = el('span', 'ago', fmtAgo(at));
      s.dataset.at = at;
      s.title = fmtTime(at);
      return s;
    };
    if (!dr) {
      box.appendChild(el('p', 'muted', 'This drd publishes no drill results.'));
      return;
    }
    if (!last) {
      const p = el('p', 'drill-none');
      p.appendChild(el('strong', null, 'No drill on record. '));
      p.appendChild(document.createTextNode('drctl drill rehearses a failover and a failback in the [drill] environment; its figures show here.'));
      box.appendChild(p);
      return;
    }
    const head = el('p', 'drill-head');
    head.appendChild(el('span', null, 'Last drill #' + last.id + ' '));
    head.appendChild(el('span', 'badge run-' + last.result, last.result));
    box.appendChild(head);
    const when = el('p', 'muted');
    when.appendChild(document.createTextNode('ended ' + fmtTime(last.ended_at) + ' ('));
    when.appendChild(agoSpan(last.ended_at));
    when.appendChild(document.createTextNode(') after ' + fmtDuration(last.ended_at - last.started_at)));
    box.appendChild(when);
    box.appendChild(drillFacts(last));
    if (last.error) box.appendChild(el('p', 'error drill-error', 'Error: ' + last.error));
    if (last.result !== 'succeeded') {
      const p = el('p', 'muted');
      if (okAt) {
        p.appendChild(document.createTextNode('Last successful drill: '));
        p.appendChild(agoSpan(okAt));
      } else {
        p.textContent = 'No drill has succeeded yet.';
      }
      box.appendChild(p);
    }
  }

  function drillKey(st) {
    const last = st.drill && st.drill.last;
    return last && last.id !== undefined ? String(last.id) : 'none';
  }

  // The list of drills: at the start and when the newest drill changes.
  function maybeLoadDrills(st) {
    const key = drillKey(st);
    if (key === state.drillsKey || state.drillsLoading || Date.now() < state.drillsRetryAt) return;
    loadDrills(key);
  }

  async function loadDrills(key) {
    state.drillsLoading = true;
    try {
      const doc = await api('GET', '/api/drills?limit=' + DRILLS_LIMIT);
      state.drills = Array.isArray(doc && doc.drills) ? doc.drills : [];
      state.drillsKey = key;
      state.drillsRetryAt = 0;
      renderDrillList();
    } catch (e) {
      if (e.status === 401) return;
      state.drillsRetryAt = Date.now() + DRILLS_RETRY_MS;
      const ul = $('#drill-list');
      if (!state.drills.length) {
        clear(ul);
        ul.appendChild(el('li', 'error', 'Cannot load the drills: ' + e.message));
      }
    } finally {
      state.drillsLoading = false;
    }
  }

  function renderDrillList() {
    const ul = $('#drill-list');
    clear(ul);
    if (!state.drills.length) {
      ul.appendChild(el('li', 'muted drill-empty', 'No drills recorded yet.'));
      return;
    }
    for (const d of state.drills) {
      const rep = d.report && typeof d.report === 'object' ? d.report : {};
      const li = el('li', 'drill');
      li.dataset.id = d.id;
      const det = el('details');
      det.open = state.openDrills.has(d.id);
      det.addEventListener('toggle', () => {
        if (det.open) state.openDrills.add(d.id); else state.openDrills.delete(d.id);
      });
      const sum = el('summary');
      sum.appendChild(el('span', 'drill-id', '#' + d.id));
      sum.appendChild(el('span', 'badge run-' + d.result, d.result));
      sum.appendChild(el('span', 'drill-when', fmtTime(d.started_at)));
      sum.appendChild(el('span', 'muted drill-sum',
        'RTO ' + fmtDuration(isNum(rep.rto_ms) ? rep.rto_ms : null) +
        ' · took ' + fmtDuration(d.ended_at - d.started_at)));
      det.appendChild(sum);

      const body = el('div', 'drill-body');
      body.appendChild(drillFacts(rep));
      if (rep.error) {
        body.appendChild(el('p', 'error drill-error',
          'Failed' + (rep.phase ? ' at ' + rep.phase : '') + ': ' + rep.error));
      }
      const steps = Array.isArray(rep.steps) ? rep.steps : [];
      let ol = null, run = null;
      for (const s of steps) {
        if (!s || typeof s !== 'object') continue;
        if (ol === null || s.run !== run) {
          run = s.run;
          const runId = s.run === 'failover' ? rep.failover_run : s.run === 'failback' ? rep.failback_run : null;
          body.appendChild(el('h4', 'drill-run', cap(String(s.run || 'run')) + (runId ? ' run #' + runId : '')));
          ol = el('ol', 'timeline drill-steps');
          body.appendChild(ol);
        }
        const sst = String(s.state || '?');
        const sli = el('li', 'step st-' + sst);
        const head = el('div', 'step-head');
        head.appendChild(el('span', 'step-dot'));
        head.appendChild(el('span', 'step-name', s.name || '?'));
        head.appendChild(el('span', 'step-action muted', s.action || ''));
        head.appendChild(el('span', 'step-state badge st-' + sst, sst.replace('_', ' ')));
        head.appendChild(el('span', 'step-dur muted', isNum(s.ms) ? fmtDuration(s.ms) : ''));
        sli.appendChild(head);
        ol.appendChild(sli);
      }
      if (!steps.length) body.appendChild(el('p', 'muted', 'No steps recorded.'));
      const env = rep.environment;
      if (env && typeof env === 'object' && (env.primary || env.backup)) {
        body.appendChild(el('p', 'muted drill-env',
          'Drill environment: primary ' + (env.primary || '?') + ' · backup ' + (env.backup || '?')));
      }
      det.appendChild(body);
      li.appendChild(det);
      ul.appendChild(li);
    }
  }

  // ---------------------------------------------------------- history

  function renderRuns() {
    const tb = $('#runs tbody');
    clear(tb);
    if (!state.runs.length) {
      const tr = el('tr');
      const td = el('td', 'muted', 'No runs yet.');
      td.colSpan = 7;
      tr.appendChild(td);
      tb.appendChild(tr);
      return;
    }
    for (const r of state.runs) {
      const tr = el('tr', 'run-row');
      tr.appendChild(el('td', null, r.id));
      tr.appendChild(el('td', null, r.kind));
      const td = el('td');
      td.appendChild(el('span', 'badge run-' + r.state, r.state));
      tr.appendChild(td);
      tr.appendChild(el('td', null, fmtTime(r.created_at)));
      tr.appendChild(el('td', null, r.finished_at ? fmtDuration(r.finished_at - r.created_at) : '…'));
      tr.appendChild(el('td', null, r.started_by));
      const bt = el('td');
      const b = el('button', 'small link', 'Steps');
      b.type = 'button';
      b.addEventListener('click', () => {
        state.viewRun = r.id;
        renderRun();
        $('#run').scrollIntoView({ behavior: 'smooth', block: 'start' });
      });
      bt.appendChild(b);
      tr.appendChild(bt);
      tb.appendChild(tr);
    }
  }

  function renderIncidents(list) {
    const tb = $('#incidents tbody');
    clear(tb);
    if (!list.length) {
      const tr = el('tr');
      const td = el('td', 'muted', 'No incidents.');
      td.colSpan = 6;
      tr.appendChild(td);
      tb.appendChild(tr);
      return;
    }
    for (const i of list) {
      const tr = el('tr', i.ended_at ? '' : 'ongoing');
      tr.appendChild(el('td', null, i.id));
      tr.appendChild(el('td', null, i.target));
      tr.appendChild(el('td', null, fmtTime(i.started_at)));
      tr.appendChild(el('td', null, i.ended_at ? fmtTime(i.ended_at) : 'ongoing'));
      tr.appendChild(el('td', null, fmtDuration((i.ended_at || Date.now()) - i.started_at)));
      tr.appendChild(el('td', 'reason', i.reason));
      tb.appendChild(tr);
    }
  }

  function renderEvents(list) {
    const ul = $('#events');
    clear(ul);
    for (const e of list.slice().reverse()) {
      const li = el('li', 'ev ev-' + e.kind);
      li.appendChild(el('span', 'ev-time muted', fmtTime(e.at)));
      li.appendChild(el('span', 'ev-kind', e.kind + (e.target ? ' · ' + e.target : '')));
      li.appendChild(el('span', 'ev-msg', e.message));
      ul.appendChild(li);
    }
  }

  // ---------------------------------------------------------- dialog

  // Resolves with the reason ('' if none asked) or null when cancelled.
  function confirmDialog(o) {
    const d = $('#confirm');
    $('#confirm-title').textContent = o.title;
    $('#confirm-text').textContent = o.text || '';
    $('#confirm-ok').textContent = o.ok || 'Confirm';
    const input = $('#confirm-reason');
    input.value = '';
    show(input, !!o.reason);
    show($('#confirm-reason-label'), !!o.reason);
    $('#confirm-reason-label').textContent = o.reasonLabel || 'Reason';
    return new Promise((resolve) => {
      let done = false;
      const finish = (v) => {
        if (done) return;
        done = true;
        $('#confirm-ok').removeEventListener('click', onOk);
        $('#confirm-cancel').removeEventListener('click', onCancel);
        d.removeEventListener('cancel', onCancel);
        input.removeEventListener('keydown', onKey);
        if (d.open) d.close();
        resolve(v);
      };
      const onOk = () => finish(input.value.trim());
      const onCancel = (ev) => { if (ev) ev.preventDefault(); finish(null); };
      const onKey = (ev) => { if (ev.key === 'Enter') { ev.preventDefault(); onOk(); } };
      $('#confirm-ok').addEventListener('click', onOk);
      $('#confirm-cancel').addEventListener('click', onCancel);
      d.addEventListener('cancel', onCancel);
      input.addEventListener('keydown', onKey);
      d.showModal();
      (o.reason ? input : $('#confirm-cancel')).focus();
    });
  }

  // ---------------------------------------------------------- start

  async function init() {
    $('#login-form').addEventListener('submit', onLogin);
    $('#logout').addEventListener('click', onLogout);
    $('#btn-failover').addEventListener('click', () => startRun('failover'));
    $('#btn-failback').addEventListener('click', () => startRun('failback'));
    $('#run-back').addEventListener('click', () => { state.viewRun = null; renderRun(); });
    $('#btn-check').addEventListener('click', checkNow);
    $('#btn-unblock').addEventListener('click', async () => {
      const ok = await confirmDialog({ title: 'Lift the policy block?',
        text: 'An outage of the primary may then start a failover again, as [failover] policy says.',
        ok: 'Lift the block' });
      if (ok === null) return;
      await submit('/api/unblock', {}, $('#block-msg'), 'Unblock', { accepted: 'the block is lifted.', keepView: true });
    });
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden && !$('#dash').hidden) poll();
    });
    try {
      const s = await api('GET', '/api/session');
      startDashboard(s);
    } catch (e) {
      showLogin(e.status === 0 ? 'drd does not answer.' : '');
    }
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
