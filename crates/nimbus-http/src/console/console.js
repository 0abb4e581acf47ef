// The Nimbus usage console. Everything it shows comes from the usage API
// (/usage/v1/...) with the tenant's key; the server checks the key on every
// call, so this script holds no secret of its own beyond the key the person
// typed, kept in sessionStorage (gone when the tab closes).
//
// Nothing is ever parsed as HTML: function names and log output come from
// guests, so every node is built with createElement and text. The page's
// Content-Security-Policy enforces that (Trusted Types with no policy).
//
// Decimals (GB-s, cost) arrive as strings and are shown exactly as sent;
// they pass through a float only to place a point on a chart. A server with
// no price sheet answers `cost: null` and `currency: null`: the page then
// shows usage without costs, and says why.

'use strict';

const STORE_TENANT = 'nimbus.console.tenant';
const STORE_KEY = 'nimbus.console.key';
const SVG_NS = 'http://www.w3.org/2000/svg';
const HOUR = 3600e3;
const DAY = 24 * HOUR;
const STEP = { hour: HOUR, day: DAY };
const RECENT_LIMIT = 50;

// The chart's drawing box (viewBox units; CSS scales it to the width).
const W = 760;
const H = 230;
const M = { left: 48, right: 72, top: 14, bottom: 30 };

/** @type {{tenant: string, key: string} | null} */
let session = null;
/** Logs paths of the listed invocations, by invocation id. */
let logsPaths = new Map();
/** Bumped by every load, so an older answer arriving late is dropped. */
let generation = 0;

const $ = (id) => document.getElementById(id);

// ---- DOM building, text only -------------------------------------------

function setAttrs(el, attrs) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value == null) continue;
    el.setAttribute(name, value === true ? '' : String(value));
  }
}

function fill(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  return fill(el, children);
}

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  return fill(el, children);
}

// ---- formatting ----------------------------------------------------------

const int = (n) => Number(n ?? 0).toLocaleString('en-US');

/** `2026-12-02 17:00` from an RFC 3339 time, in UTC like the buckets. */
function utc(iso, { seconds = false } = {}) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const t = d.toISOString();
  return `${t.slice(0, 10)} ${t.slice(11, seconds ? 19 : 16)}`;
}

/** An amount with its currency; `unpriced` where the server prices
 * nothing (no price sheet configured). */
const money = (amount, currency) => (amount == null ? 'unpriced' : `${amount} ${currency}`);

function ms(us) {
  return `${(Number(us ?? 0) / 1000).toFixed(2)} ms`;
}

/** What did not succeed: every outcome but `success` (throttled included). */
function failures(q) {
  const outcomes = q.outcomes ?? {};
  return Object.entries(outcomes)
    .filter(([o]) => o !== 'success')
    .reduce((sum, [, n]) => sum + Number(n), 0);
}

function outcomeList(q) {
  const entries = Object.entries(q.outcomes ?? {});
  return entries.length ? entries.map(([o, n]) => `${o} ${n}`).join(', ') : 'none';
}

// ---- the usage API ------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** GET an API path with the session's key; its JSON, or an ApiError
 * carrying the server's own `error` message. */
async function api(path) {
  let resp;
  try {
    resp = await fetch(path, {
      headers: { Authorization: `Bearer ${session.key}`, Accept: 'application/json' },
      cache: 'no-store',
    });
  } catch (e) {
    // A key with characters no header may carry fails here, as does a
    // server that went away.
    throw new ApiError(0, `the request failed: ${e.message}`);
  }
  let body = null;
  try {
    body = await resp.json();
  } catch {
    // Not JSON: reported below with the status.
  }
  if (!resp.ok) {
    const why = body && typeof body.error === 'string' ? body.error : resp.statusText;
    throw new ApiError(resp.status, `${resp.status}: ${why}`);
  }
  if (body === null) throw new ApiError(resp.status, 'the server did not answer with JSON');
  return body;
}

const tenantPath = () => `/usage/v1/${encodeURIComponent(session.tenant)}`;

/** The query of a range: this UTC month as a billing period (so the
 * answer carries the month's statement, free tier applied), or from the
 * hour 24 hours ago, so hourly buckets are whole. */
function rangeQuery(range, now = new Date()) {
  if (range === '24h') {
    const t = Math.floor((now.getTime() - DAY) / HOUR) * HOUR;
    return { from: new Date(t).toISOString().replace(/\.\d{3}Z$/, 'Z') };
  }
  return { period: now.toISOString().slice(0, 7) };
}

function choices() {
  const form = $('controls');
  return {
    range: form.elements.range.value || 'month',
    granularity: form.elements.granularity.value || 'hour',
  };
}

async function fetchAll() {
  const { range, granularity } = choices();
  const query = new URLSearchParams({ granularity, ...rangeQuery(range) });
  const [usage, recent] = await Promise.all([
    api(`${tenantPath()}?${query}`),
    api(`${tenantPath()}/invocations?limit=${RECENT_LIMIT}`),
  ]);
  return { usage, recent };
}

// ---- sign in and out ----------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  const tenant = $('tenant').value.trim();
  const key = $('key').value;
  const error = $('sign-in-error');
  error.textContent = '';
  if (!tenant || !key) {
    error.textContent = 'Both the tenant and its API key are needed.';
    return;
  }
  session = { tenant, key };
  const button = event.submitter ?? $('sign-in-form').querySelector('button');
  button.disabled = true;
  try {
    const data = await fetchAll();
    sessionStorage.setItem(STORE_TENANT, tenant);
    sessionStorage.setItem(STORE_KEY, key);
    $('key').value = '';
    showDashboard();
    render(data);
  } catch (e) {
    session = null;
    error.textContent = e.message;
  } finally {
    button.disabled = false;
  }
}

function signOut(message = '') {
  session = null;
  generation += 1;
  sessionStorage.removeItem(STORE_KEY);
  for (const id of ['functions', 'tenant-totals', 'logs-meta', 'logs-entries']) $(id).replaceChildren();
  $('recent-table').tBodies[0].replaceChildren();
  $('dashboard').hidden = true;
  $('who').hidden = true;
  $('logs').hidden = true;
  $('sign-in').hidden = false;
  $('sign-in-error').textContent = message;
  $('tenant').value = sessionStorage.getItem(STORE_TENANT) ?? '';
  $('key').focus();
}

function showDashboard() {
  $('sign-in').hidden = true;
  $('dashboard').hidden = false;
  $('who').hidden = false;
  $('who-tenant').textContent = session.tenant;
}

async function refresh() {
  const mine = ++generation;
  $('error').textContent = '';
  $('status').textContent = 'Loading…';
  try {
    const data = await fetchAll();
    if (mine === generation) render(data);
  } catch (e) {
    if (mine !== generation) return;
    $('status').textContent = '';
    if (e.status === 401 || e.status === 403) signOut(e.message);
    else $('error').textContent = e.message;
  }
}

// ---- rendering ----------------------------------------------------------

function render({ usage, recent }) {
  const currency = usage.currency ?? '';
  $('unpriced').hidden = usage.currency != null;
  const step = STEP[usage.granularity] ?? DAY;
  $('range').textContent =
    `From ${utc(usage.from)} to ${utc(usage.to)} UTC, per ${usage.granularity}.`;
  $('tenant-totals').replaceChildren(...totals(usage.totals ?? {}, currency, usage.statement));
  const functions = usage.functions ?? [];
  $('functions').replaceChildren(
    ...(functions.length
      ? functions.map((f) => functionCard(f, usage, step, currency))
      : [h('p', { class: 'card empty' }, 'No invocations in this range.')]),
  );
  renderRecent(recent.invocations ?? []);
  $('status').textContent = `Updated ${utc(new Date().toISOString(), { seconds: true })} UTC`;
  openFromHash();
}

/** A `<dl>`'s terms and values for a set of totals, each value tagged
 * with `data-total` so what is shown can be checked by name. */
function totals(t, currency, statement) {
  const rows = [
    ['Invocations', 'invocations', int(t.invocations)],
    ['Not successful', 'failed', int(failures(t))],
    ['Billed duration', 'billed_duration_ms', `${int(t.billed_duration_ms)} ms`],
    ['GB-seconds', 'gb_seconds', t.gb_seconds ?? '0'],
    ['Fuel', 'fuel', int(t.fuel)],
    ['Cost', 'cost', money(t.cost, currency)],
  ];
  if (statement && typeof statement === 'object') {
    const cur = statement.currency ?? currency;
    rows.push(
      ['Month subtotal', 'subtotal', money(statement.subtotal, cur)],
      ['Free tier', 'free_tier', money(statement.free_tier_total, cur)],
      ['Due this month', 'due', money(statement.total, cur)],
    );
  }
  // Each pair in a <div>, as HTML allows in a <dl>, so the grid wraps pairs.
  return rows.map(([term, name, value]) =>
    h('div', {}, h('dt', {}, term), h('dd', { 'data-total': name }, value)));
}

function functionCard(f, usage, step, currency) {
  const name = f.function;
  const id = `fn-${slug(name)}`;
  const buckets = f.buckets ?? [];
  return h(
    'section',
    { class: 'card function', 'data-function': name, 'aria-labelledby': `${id}-title` },
    h('h2', { id: `${id}-title` }, h('span', { class: 'muted' }, 'Function '), name),
    h('dl', { class: 'totals' }, totals(f.totals ?? {}, currency)),
    h(
      'figure',
      { class: 'chart' },
      chart(buckets, usage, step, currency, id, name),
      h(
        'figcaption',
        {},
        h('span', { class: 'swatch ok' }), ' successful ',
        h('span', { class: 'swatch failed' }), ' not successful ',
        usage.currency != null && [
          h('span', { class: 'swatch cost' }), ` cost (${currency}, right axis) `],
        h('span', { class: 'muted' }, `per ${usage.granularity}, UTC`),
      ),
    ),
    bucketTable(buckets, usage, currency, id, name),
  );
}

function slug(name) {
  return Array.from(name, (c) => (/[A-Za-z0-9_-]/.test(c) ? c : `_${c.codePointAt(0)}`)).join('');
}

/** Ticks for 0..max: at most about five, at 1, 2 or 5 times a power of ten
 * (integers when the values are). */
function ticks(max, integers) {
  if (!(max > 0)) return { top: 1, values: [0, 1] };
  const raw = max / 5;
  const pow = 10 ** Math.floor(Math.log10(raw));
  let step = [1, 2, 5, 10].map((m) => m * pow).find((v) => v >= raw);
  if (integers) step = Math.max(1, Math.round(step));
  const top = Math.ceil(max / step) * step;
  const values = [];
  for (let v = 0; v <= top + step / 2; v += step) values.push(v);
  return { top, values };
}

/** A cost axis label, with as many decimals as the axis's step needs
 * (costs of single invocations are millionths). */
function costLabel(v, step) {
  if (v === 0) return '0';
  return v.toFixed(Math.min(12, Math.max(0, -Math.floor(Math.log10(step)))));
}

/** Time ticks across [t0, t1]: the first step of these giving at most
 * eight. Hours fall on multiples of the step (00:00, 06:00, ...); days
 * count from the range's start, so a month's ticks begin on its first. */
function timeTicks(t0, t1) {
  const steps = [HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY, 14 * DAY];
  const step = steps.find((st) => (t1 - t0) / st <= 8) ?? 28 * DAY;
  const first = step >= DAY ? Math.ceil(t0 / DAY) * DAY : Math.ceil(t0 / step) * step;
  const out = [];
  for (let t = first; t <= t1; t += step) out.push(t);
  return { step, values: out };
}

function timeLabel(t, step) {
  const iso = new Date(t).toISOString();
  if (step >= DAY || iso.slice(11, 16) === '00:00') return iso.slice(5, 10);
  return iso.slice(11, 16);
}

/** The chart of one function: a stacked bar per bucket (successful and
 * not), placed on the time axis of the whole range, and its cost as a
 * point on a second axis. Every bucket carries its figures as `data-`
 * attributes and a `<title>` (the tooltip a person sees on hover). */
function chart(buckets, usage, step, currency, id, name) {
  const from = Date.parse(usage.from);
  const to = Date.parse(usage.to);
  const starts = buckets.map((b) => Date.parse(b.start));
  // The range is widened to whole buckets: a day bucket begins before a
  // `from` of 17:00, and the current bucket ends after `to`.
  const t0 = Math.floor(Math.min(from, ...starts) / step) * step;
  const t1 = Math.max(Math.ceil(to / step) * step, Math.max(...starts, t0) + step);
  const x = (t) => M.left + ((t - t0) / (t1 - t0)) * (W - M.left - M.right);
  const plotBottom = H - M.bottom;
  const plotHeight = plotBottom - M.top;

  const y = ticks(Math.max(0, ...buckets.map((b) => Number(b.invocations))), true);
  const priced = usage.currency != null;
  const costs = buckets.map((b) => Number.parseFloat(b.cost ?? '0') || 0);
  const c = ticks(Math.max(0, ...costs), false);
  const yOf = (v) => plotBottom - (v / y.top) * plotHeight;
  const cOf = (v) => plotBottom - (v / c.top) * plotHeight;

  const grid = y.values.map((v) =>
    s('g', { class: 'tick' },
      s('line', { x1: M.left, x2: W - M.right, y1: yOf(v), y2: yOf(v) }),
      s('text', { x: M.left - 6, y: yOf(v), 'text-anchor': 'end', 'dominant-baseline': 'middle' }, int(v))));
  const costAxis = !priced ? [] : c.values.map((v) =>
    s('text', { class: 'cost-tick', x: W - M.right + 6, y: cOf(v), 'dominant-baseline': 'middle' },
      costLabel(v, c.values[1] - c.values[0])));
  const time = timeTicks(t0, t1);
  const xAxis = time.values.map((t) =>
    s('g', { class: 'tick' },
      s('line', { x1: x(t), x2: x(t), y1: plotBottom, y2: plotBottom + 4 }),
      s('text', { x: x(t), y: plotBottom + 16, 'text-anchor': 'middle' }, timeLabel(t, time.step))));

  const bars = buckets.map((b, i) => {
    const n = Number(b.invocations);
    const bad = Math.min(n, failures(b));
    const slot = x(starts[i] + step) - x(starts[i]);
    const width = Math.max(slot * 0.8, 1.5);
    const left = x(starts[i]) + (slot - width) / 2;
    const tip = `${utc(b.start)} UTC: ${int(n)} invocation${n === 1 ? '' : 's'} ` +
      `(${outcomeList(b)}), ${b.gb_seconds ?? '0'} GB-s` +
      (priced ? `, cost ${money(b.cost, currency)}` : '');
    return s('g', {
      class: 'bucket',
      'data-start': b.start,
      'data-invocations': n,
      'data-failed': bad,
      'data-cost': b.cost,
    },
    s('title', {}, tip),
    s('rect', { class: 'ok', x: left, width, y: yOf(n), height: yOf(bad) - yOf(n) }),
    bad > 0 && s('rect', { class: 'failed', x: left, width, y: yOf(bad), height: plotBottom - yOf(bad) }));
  });
  const points = !priced ? [] : buckets.map((b, i) =>
    s('circle', {
      'data-start': b.start,
      'data-cost': b.cost,
      cx: x(starts[i]) + (x(starts[i] + step) - x(starts[i])) / 2,
      cy: cOf(costs[i]),
      r: 3,
    }, s('title', {}, `${utc(b.start)} UTC: ${money(b.cost, currency)}`)));

  const total = buckets.reduce((sum, b) => sum + Number(b.invocations), 0);
  return s('svg', {
    viewBox: `0 0 ${W} ${H}`,
    role: 'img',
    'aria-labelledby': `${id}-chart-title`,
    'aria-describedby': `${id}-table`,
    preserveAspectRatio: 'xMidYMid meet',
  },
  s('title', { id: `${id}-chart-title` },
    `Invocations of ${name} per ${usage.granularity}: ${int(total)} in ${buckets.length} ` +
    `bucket${buckets.length === 1 ? '' : 's'}`),
  s('g', { class: 'grid' }, grid),
  s('g', { class: 'axis x' }, xAxis,
    s('line', { x1: M.left, x2: W - M.right, y1: plotBottom, y2: plotBottom })),
  s('g', { class: 'axis cost' }, costAxis),
  s('g', { class: 'series invocations', 'data-series': 'invocations', 'data-total': total }, bars),
  s('g', { class: 'series cost', 'data-series': 'cost' }, points));
}

/** The chart's figures as a table: the same buckets, readable without the
 * picture (and by a screen reader, which the chart points to). */
function bucketTable(buckets, usage, currency, id, name) {
  const head = ['Start (UTC)', 'Invocations', 'Outcomes', 'Billed duration', 'GB-s', 'Fuel',
    usage.currency == null ? 'Cost' : `Cost (${currency})`];
  const rows = buckets.map((b) =>
    h('tr', { 'data-start': b.start },
      h('th', { scope: 'row' }, utc(b.start)),
      h('td', { class: 'num' }, int(b.invocations)),
      h('td', {}, outcomeList(b)),
      h('td', { class: 'num' }, `${int(b.billed_duration_ms)} ms`),
      h('td', { class: 'num' }, b.gb_seconds ?? '0'),
      h('td', { class: 'num' }, int(b.fuel)),
      h('td', { class: 'num' }, b.cost ?? 'unpriced')));
  return h('details', { class: 'buckets' },
    h('summary', {}, `The figures per ${usage.granularity} (${buckets.length})`),
    h('table', { id: `${id}-table` },
      h('caption', {}, `Usage of ${name} per ${usage.granularity}; only buckets with invocations.`),
      h('thead', {}, h('tr', {}, head.map((c, i) =>
        h('th', { scope: 'col', class: i === 0 || i === 2 ? null : 'num' }, c)))),
      h('tbody', {}, rows)));
}

function outcomeBadge(outcome) {
  const ok = outcome === 'success';
  return h('span', { class: `outcome ${ok ? 'ok' : 'failed'}` },
    h('span', { 'aria-hidden': 'true' }, ok ? '✓ ' : '✗ '), outcome);
}

function logsHash(f, id) {
  return `#logs/${encodeURIComponent(f)}/${encodeURIComponent(id)}`;
}

function renderRecent(invocations) {
  logsPaths = new Map(invocations.map((i) => [i.invocation_id, i.logs]));
  const rows = invocations.map((i) =>
    h('tr', {
      'data-invocation-id': i.invocation_id,
      'data-function': i.function,
      'data-outcome': i.outcome,
      class: i.outcome === 'success' ? null : 'failed',
    },
    h('td', {}, h('time', { datetime: i.started_at }, utc(i.started_at, { seconds: true }))),
    h('td', {}, i.function),
    h('td', { class: 'num' }, i.function_version),
    h('td', {}, outcomeBadge(i.outcome)),
    h('td', { class: 'num' }, ms(i.wall_duration_us)),
    h('td', { class: 'num' }, `${int(i.billed_duration_ms)} ms`),
    h('td', {}, h('a', {
      href: logsHash(i.function, i.invocation_id),
      'aria-label': `Logs of ${i.function} at ${utc(i.started_at, { seconds: true })}`,
    }, 'Logs'))));
  $('recent-table').tBodies[0].replaceChildren(...rows);
  $('recent-empty').hidden = invocations.length > 0;
}

// ---- an invocation's logs -----------------------------------------------

/** Opens the logs the URL's fragment names (`#logs/<function>/<id>`), so
 * a log link works with the back button and after a reload. */
function openFromHash() {
  const m = /^#logs\/([^/]+)\/([^/]+)$/.exec(location.hash);
  if (!session || !m) return;
  const [f, id] = [decodeURIComponent(m[1]), decodeURIComponent(m[2])];
  const panel = $('logs');
  if (!panel.hidden && panel.dataset.invocationId === id) return;
  openLogs(f, id);
}

async function openLogs(f, id) {
  const panel = $('logs');
  panel.dataset.invocationId = id;
  panel.hidden = false;
  $('logs-title').textContent = `Logs of ${f}, invocation ${id}`;
  for (const el of ['logs-report', 'logs-stdout', 'logs-stderr', 'logs-error']) $(el).textContent = '';
  $('logs-meta').replaceChildren();
  $('logs-entries').replaceChildren();
  $('logs-report').textContent = 'Loading…';
  panel.focus();
  panel.scrollIntoView({ block: 'start' });
  const path = logsPaths.get(id) ??
    `${tenantPath()}/functions/${encodeURIComponent(f)}/logs/${encodeURIComponent(id)}`;
  try {
    const entry = await api(path);
    if (panel.dataset.invocationId !== id) return;
    showLogs(entry);
  } catch (e) {
    if (panel.dataset.invocationId !== id) return;
    $('logs-report').textContent = '';
    $('logs-error').textContent = e.message;
  }
}

function showLogs(entry) {
  const logs = entry.logs ?? {};
  $('logs-meta').replaceChildren(
    ...[
      ['Invocation', entry.invocation_id],
      ['Function', entry.function],
      ['Version', entry.version],
      ['Outcome', outcomeBadge(entry.outcome)],
      ['Started (UTC)', utc(entry.started_at, { seconds: true })],
    ].flatMap(([term, value]) => [h('dt', {}, term), h('dd', {}, value)]),
  );
  $('logs-report').textContent = entry.report || '(no report line)';
  stream('logs-stdout', logs.stdout);
  stream('logs-stderr', logs.stderr);
  const entries = logs.entries ?? [];
  const parts = [];
  if (entries.length) {
    parts.push(h('h3', {}, 'Log entries'), h('table', {},
      h('caption', {}, 'wasi:logging entries, in order'),
      h('thead', {}, h('tr', {}, ['Time', 'Level', 'Context', 'Message'].map((c) =>
        h('th', { scope: 'col' }, c)))),
      h('tbody', {}, entries.map((e) => h('tr', { class: `level-${e.level}` },
        h('td', {}, utc(e.time, { seconds: true })), h('td', {}, e.level),
        h('td', {}, e.context), h('td', { class: 'message' }, e.message))))));
  }
  if (logs.dropped_bytes > 0) {
    parts.push(h('p', { class: 'error' },
      `${int(logs.dropped_bytes)} bytes written past the log cap were dropped.`));
  }
  $('logs-entries').replaceChildren(...parts);
}

function stream(id, text) {
  const el = $(id);
  el.classList.toggle('empty', !text);
  el.textContent = text || '(nothing)';
}

function closeLogs() {
  $('logs').hidden = true;
  delete $('logs').dataset.invocationId;
  history.replaceState(null, '', location.pathname + location.search);
}

// ---- start --------------------------------------------------------------

function start() {
  $('sign-in-form').addEventListener('submit', signIn);
  $('sign-out').addEventListener('click', () => signOut());
  $('refresh').addEventListener('click', refresh);
  $('controls').addEventListener('change', refresh);
  $('controls').addEventListener('submit', (e) => e.preventDefault());
  $('logs-close').addEventListener('click', closeLogs);
  window.addEventListener('hashchange', openFromHash);

  const tenant = sessionStorage.getItem(STORE_TENANT);
  const key = sessionStorage.getItem(STORE_KEY);
  if (tenant && key) {
    session = { tenant, key };
    showDashboard();
    refresh();
  } else {
    $('tenant').value = tenant ?? '';
    $(tenant ? 'key' : 'tenant').focus();
  }
}

start();
