// The usage console in a real browser: Debian's Chromium, driven by
// playwright-core, doing what a person does — sign in (first with a wrong
// key), read the charts, totals and recent invocations, open a failed
// invocation's logs — and checking what the page shows against what the
// caller did (and, for the figures the page only formats, against the
// usage API's own answer).
//
// Run by tests/all/console.rs against a real `nimbus serve`; by hand:
//
//   NIMBUS_URL=http://127.0.0.1:8080 NIMBUS_TENANT=shop NIMBUS_KEY=... \
//   NIMBUS_FUNCTION=hello NIMBUS_INVOCATIONS=7 NIMBUS_FAILED_FUNCTION=crash \
//   NIMBUS_FAILED_ID=<uuid> NIMBUS_FAILED_OUTCOME=trap \
//   NIMBUS_SCREENSHOT=/tmp/console.png node tests/console/console.test.mjs
//
// Exits 0 when every check passed, 1 (after printing which failed) when
// one did.

import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

function env(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`console.test.mjs: ${name} is not set`);
    process.exit(2);
  }
  return value;
}

const base = env('NIMBUS_URL').replace(/\/$/, '');
const tenant = env('NIMBUS_TENANT');
const key = env('NIMBUS_KEY');
const fn = env('NIMBUS_FUNCTION');
const invocations = Number(env('NIMBUS_INVOCATIONS'));
const failedFn = env('NIMBUS_FAILED_FUNCTION');
const failedId = env('NIMBUS_FAILED_ID');
const failedOutcome = env('NIMBUS_FAILED_OUTCOME');
const screenshot = env('NIMBUS_SCREENSHOT');
const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';

const step = (what) => console.log(`ok - ${what}`);

/** The usage API's answer, read directly: the figures the page must show. */
async function usage(query) {
  const resp = await fetch(`${base}/usage/v1/${encodeURIComponent(tenant)}?${query}`, {
    headers: { Authorization: `Bearer ${key}` },
  });
  assert.equal(resp.status, 200, `usage API: ${await resp.clone().text()}`);
  return resp.json();
}

/** What a function's card shows: the sum of its chart's bars, of its
 * failed parts, of its table's rows, and its totals as displayed. */
async function card(page, name) {
  const section = page.locator(`section.function[data-function="${name}"]`);
  await section.waitFor();
  return section.evaluate((el) => {
    const sum = (sel, attr) =>
      [...el.querySelectorAll(sel)].reduce((n, b) => n + Number(b.getAttribute(attr)), 0);
    const totals = Object.fromEntries(
      [...el.querySelectorAll('dd[data-total]')].map((d) => [d.dataset.total, d.textContent]),
    );
    return {
      bars: sum('[data-series="invocations"] .bucket', 'data-invocations'),
      failed: sum('[data-series="invocations"] .bucket', 'data-failed'),
      buckets: el.querySelectorAll('[data-series="invocations"] .bucket').length,
      costPoints: el.querySelectorAll('[data-series="cost"] circle').length,
      // The table's first data cell is the bucket's invocations.
      tableSum: [...el.querySelectorAll('details table tbody tr')]
        .reduce((n, tr) => n + Number(tr.querySelector('td').textContent.replace(/,/g, '')), 0),
      tooltips: [...el.querySelectorAll('[data-series="invocations"] .bucket > title')]
        .map((t) => t.textContent),
      totals,
    };
  });
}

/** Checks both functions' cards against what was invoked, and the good
 * function's cost and GB-s against the usage API for the same choices. */
async function checkCards(page, what, query) {
  const good = await card(page, fn);
  assert.equal(good.bars, invocations, `${what}: bars of ${fn}`);
  assert.equal(good.tableSum, invocations, `${what}: table of ${fn}`);
  assert.equal(good.totals.invocations, String(invocations), `${what}: total of ${fn}`);
  assert.equal(good.failed, 0, `${what}: failures of ${fn}`);
  assert.equal(good.costPoints, good.buckets, `${what}: a cost point per bucket`);
  assert.ok(good.tooltips.every((t) => / UTC: \d+ invocations? \(/.test(t)), good.tooltips.join('\n'));
  const bad = await card(page, failedFn);
  assert.equal(bad.bars, 1, `${what}: bars of ${failedFn}`);
  assert.equal(bad.failed, 1, `${what}: the failed part of ${failedFn}'s bar`);
  assert.equal(bad.totals.failed, '1', `${what}: failures of ${failedFn}`);
  assert.match(bad.tooltips.join('\n'), new RegExp(`\\b${failedOutcome} 1\\b`));

  const api = await usage(query);
  const f = api.functions.find((x) => x.function === fn);
  assert.ok(f, `${fn} in the usage API's answer`);
  // The server is started with a price sheet: every figure is priced.
  assert.ok(api.currency && f.totals.cost != null, `${what}: costs in ${JSON.stringify(api)}`);
  assert.equal(good.totals.cost, `${f.totals.cost} ${api.currency}`, `${what}: cost of ${fn}`);
  assert.equal(good.totals.gb_seconds, f.totals.gb_seconds, `${what}: GB-s of ${fn}`);
  assert.equal(good.buckets, f.buckets.length, `${what}: buckets of ${fn}`);
  if (api.statement) {
    const shown = await page.locator('#tenant-totals dd[data-total="due"]').textContent();
    assert.equal(shown, `${api.statement.total} ${api.statement.currency}`, `${what}: amount due`);
    good.due = shown;
  }
  return good;
}

async function choose(page, group, label) {
  const status = page.locator('#status');
  await page.getByRole('group', { name: group }).getByLabel(label).check();
  // A change reloads; the status names the time of the last answer.
  await status.filter({ hasText: /^Updated / }).waitFor();
}

async function main() {
  const browser = await chromium.launch({ executablePath, headless: true });
  const problems = [];
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    page.setDefaultTimeout(15_000);
    // A CSP violation or a script error is a console error in Chromium:
    // none may happen (the 401 of the wrong key is the only expected one).
    page.on('console', (m) => {
      if (m.type() === 'error' && !/status of 401/.test(m.text())) problems.push(m.text());
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    const origins = new Set();
    page.on('request', (r) => origins.add(new URL(r.url()).origin));

    const resp = await page.goto(`${base}/console`);
    assert.equal(resp.status(), 200);
    assert.match(resp.headers()['content-security-policy'], /default-src 'self'/);
    assert.equal(await page.title(), 'Nimbus usage console');
    step('the console loads with its Content-Security-Policy');

    await page.getByLabel('Tenant').fill(tenant);
    await page.getByLabel('API key').fill(`${key}-wrong`);
    await page.getByRole('button', { name: 'Sign in' }).click();
    const alert = page.locator('#sign-in-error');
    await alert.filter({ hasText: /401/ }).waitFor();
    assert.match(await alert.textContent(), /invalid API key/);
    assert.equal(await page.evaluate(() => sessionStorage.getItem('nimbus.console.key')), null);
    assert.ok(await page.locator('#dashboard').isHidden());
    step(`a wrong key shows the server's error: ${await alert.textContent()}`);

    await page.getByLabel('API key').fill(key);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('#dashboard').waitFor();
    assert.equal(await page.locator('#who-tenant').textContent(), tenant);
    assert.equal(await page.evaluate(() => sessionStorage.getItem('nimbus.console.key')), key);
    const month = await checkCards(page, 'this month, per hour', `granularity=hour&period=${thisMonth()}`);
    assert.ok(month.due, 'this month shows the statement');
    step(`this month per hour: ${fn}'s chart shows ${month.bars} invocations in ${month.buckets} bucket(s), cost ${month.totals.cost}; due this month ${month.due}`);

    await choose(page, 'Range', 'Last 24 h');
    const hour = 3600e3;
    const from = new Date(Math.floor((Date.now() - 24 * hour) / hour) * hour)
      .toISOString().replace(/\.\d{3}Z$/, 'Z');
    const last = await checkCards(page, 'last 24 h, per hour', `granularity=hour&from=${from}`);
    step(`last 24 h per hour: ${last.bars} invocations in ${last.buckets} bucket(s)`);

    // Last, the view of the screenshot: the month per day, with its statement.
    await choose(page, 'Range', 'This month');
    await choose(page, 'Granularity', 'Day');
    const day = await checkCards(page, 'this month, per day', `granularity=day&period=${thisMonth()}`);
    step(`this month per day: ${day.bars} invocations in ${day.buckets} bucket(s)`);

    const listed = page.locator(`#recent-table tbody tr[data-function="${fn}"]`);
    assert.equal(await listed.count(), invocations, `${fn}'s recent invocations`);
    const row = page.locator(`#recent-table tbody tr[data-invocation-id="${failedId}"]`);
    await row.waitFor();
    assert.match(await row.getAttribute('class'), /\bfailed\b/);
    const cells = await row.locator('td').allTextContents();
    assert.equal(cells[1], failedFn);
    assert.match(cells[3], new RegExp(`✗ ${failedOutcome}$`));
    assert.match(cells[4], /^\d+\.\d\d ms$/);
    assert.match(cells[5], /^\d+ ms$/);
    step(`the failed invocation is listed and marked: ${cells.slice(0, 6).join(' | ')}`);

    await row.getByRole('link', { name: /^Logs of / }).click();
    const report = page.locator('#logs-report');
    await report.filter({ hasText: /^REPORT / }).waitFor();
    const line = await report.textContent();
    assert.match(line, new RegExp(`^REPORT RequestId: ${failedId} Version: \\d+ Duration: `));
    assert.match(line, new RegExp(` Outcome: ${failedOutcome}$`));
    assert.ok(new URL(page.url()).hash.endsWith(failedId));
    step(`its log link shows: ${line}`);

    await page.screenshot({ path: screenshot, fullPage: true });
    step(`screenshot saved to ${screenshot}`);

    // A reload keeps the session (sessionStorage) and the open logs (the
    // URL's fragment).
    await page.reload();
    await report.filter({ hasText: new RegExp(`RequestId: ${failedId}`) }).waitFor();
    await card(page, fn);
    step('a reload keeps the session and the open logs');

    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.locator('#sign-in').waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem('nimbus.console.key')), null);
    assert.equal(await page.locator('#functions').evaluate((el) => el.children.length), 0);
    step('signing out forgets the key and clears the page');

    assert.deepEqual([...origins], [base], 'every request went to the server itself');
    assert.deepEqual(problems, [], 'console errors');
    step('no request left the server, no console error or CSP violation');
  } finally {
    await browser.close();
  }
}

function thisMonth() {
  return new Date().toISOString().slice(0, 7);
}

try {
  await main();
  console.log('console.test.mjs: all checks passed');
} catch (e) {
  console.error(`not ok - ${e.stack ?? e}`);
  process.exit(1);
}
