// The activity log's filters and time zone (issue 15, item 9): VM and user filters match
// the start of a name in any case, with suggestions from the log; a bad filter is flagged
// beside its field while the log stays visible; every time says its zone, and the choice
// of UTC or the browser's zone applies to the times shown and to the dates filtered.
// Hydrated and without JavaScript; the browser lives in Asia/Kolkata (UTC+05:30), so that
// local time and UTC differ visibly. Chromium names that zone by its older name,
// Asia/Calcutta; the page says the zone the browser reports.
import AxeBuilder from '@axe-core/playwright';
import { test, expect, ready } from './fixtures.js';
import { bootstrapAdmin, signIn, signOut } from './helpers.js';

test.use({ timezoneId: 'Asia/Kolkata' });

async function call(page, portal, name, form) {
  const res = await page.request.post(`/api/${name}`, { form, headers: { Origin: portal.base } });
  expect(res.status(), `${name}: ${await res.text()}`).toBe(200);
  return res.json();
}

const hydrated = (testInfo) => testInfo.project.use.javaScriptEnabled !== false;

/// `YYYY-MM-DDTHH:MM` of a time in UTC, as a `from`/`to` filter reads it in its zone.
const minute = (ms) => new Date(ms).toISOString().slice(0, 16);

async function options(page, id) {
  return page.locator(`datalist#${id} option`).evaluateAll((os) => os.map((o) => o.value));
}

test('filters by prefix with suggestions, flags bad filters beside the field, and shows and filters times in the chosen zone', async ({ page, portal }, testInfo) => {
  await bootstrapAdmin(page, testInfo, portal);
  for (const [name, group] of [['Web-01', 'prod'], ['web-02', 'prod'], ['db_1', 'dev'], ['db-1', 'dev'], ['xweb', 'dev']]) {
    await call(page, portal, 'save_vm', {
      id: '', name, group, addresses: '198.51.100.5', os: 'linux', exposed_ports: '22',
    });
  }
  await call(page, portal, 'create_user', {
    username: 'dora', display_name: 'Dora', password: 'a long test passphrase 2026', role: 'requester',
    scope_kind: 'group', scope_target: 'dev',
  });
  const rows = page.getByTestId('activity-table').locator('tbody tr');
  const vmCells = page.getByTestId('activity-table').locator('tbody tr td:nth-child(4)');

  // A prefix in any case, typed in the form: the two web VMs, not xweb (no substring).
  await page.goto('/activity');
  await ready(page, testInfo);
  const vmField = page.getByLabel('VM', { exact: true });
  await expect(page.locator('#fl-vm-hint')).toHaveText(/starting with this, any case/);
  await vmField.fill('WEB');
  await page.getByRole('button', { name: 'Filter' }).click();
  await expect(page).toHaveURL(/vm=WEB/);
  await expect(rows).toHaveCount(2);
  await expect(vmCells).toHaveText(['web-02', 'Web-01']);
  // The suggestions are the log's names starting with what is typed.
  expect(await options(page, 'fl-vm-list')).toEqual(['Web-01', 'web-02']);

  if (hydrated(testInfo)) {
    // Hydrated, the suggestions follow the typing, before the form is sent.
    await vmField.fill('db');
    await expect.poll(() => options(page, 'fl-vm-list')).toEqual(['db-1', 'db_1']);
    await vmField.fill('"X');
    await expect.poll(() => options(page, 'fl-vm-list')).toEqual(['xweb']);
    await page.getByLabel('User', { exact: true }).fill('zz');
    await expect.poll(() => options(page, 'fl-actor-list')).toEqual([]);
    // Typed at speed, a name is one question once the typing pauses, about that field alone.
    const asked = [];
    page.on('request', (r) => {
      if (r.url().includes('/api/activity_suggestions')) asked.push(r.postData() ?? '');
    });
    await vmField.fill('');
    await vmField.pressSequentially('web-0');
    await expect.poll(() => options(page, 'fl-vm-list')).toEqual(['Web-01', 'web-02']);
    expect(asked.length, asked.join(' | ')).toBeGreaterThan(0);
    expect(asked.length, asked.join(' | ')).toBeLessThan(3);
    for (const body of asked) expect(new URLSearchParams(body).get('field')).toBe('vm');
  }

  // `_` is the character, not a wildcard.
  await page.goto('/activity?vm=db_');
  await ready(page, testInfo);
  await expect(vmCells).toHaveText(['db_1']);
  // Quoted: the whole name only.
  await page.goto('/activity?vm=%22db-1%22');
  await expect(vmCells).toHaveText(['db-1']);
  // … not a prefix of it: nothing (unquoted, these find Web-01 and web-02).
  for (const quoted of ['%22web-0%22', '%22WEB%22']) {
    await page.goto(`/activity?vm=${quoted}`);
    await expect(page.getByTestId('activity-table')).toBeVisible();
    await expect(rows).toHaveCount(0);
  }

  // Without a filter every name of the log is suggested, and the actions.
  await page.goto('/activity');
  await ready(page, testInfo);
  expect(await options(page, 'fl-vm-list')).toEqual(['db-1', 'db_1', 'Web-01', 'web-02', 'xweb']);
  expect(await options(page, 'fl-actor-list')).toEqual(expect.arrayContaining(['admin']));
  expect(await options(page, 'fl-action-list')).toEqual(expect.arrayContaining(['sign-in', 'user.create', 'vm.create']));
  await expect(vmField).toHaveAttribute('list', 'fl-vm-list');

  // Bad filters: each message beside its field, tied to it; the log stays, read without them.
  await page.getByLabel('Action', { exact: true }).fill('frobnicate');
  await page.getByLabel(/^From \(date/).fill('2020-01-02');
  await page.getByLabel(/^To \(date/).fill('2020-01-01');
  await page.getByLabel('User', { exact: true }).fill('a'.repeat(101));
  await page.getByRole('button', { name: 'Filter' }).click();
  await expect(page).toHaveURL(/action=frobnicate/);
  await ready(page, testInfo);
  const action = page.getByLabel('Action', { exact: true });
  await expect(action).toHaveAttribute('aria-invalid', 'true');
  await expect(action).toHaveAttribute('aria-describedby', /fl-action-error/);
  await expect(page.locator('#fl-action-error')).toHaveText('No entry has this action: choose one from the list.');
  await expect(page.getByLabel(/^To \(date/)).toHaveAttribute('aria-invalid', 'true');
  await expect(page.locator('#fl-to-error')).toHaveText('The end must be after the start.');
  await expect(page.locator('#fl-actor-error')).toHaveText('At most 100 characters.');
  await expect(page.getByLabel(/^From \(date/)).not.toHaveAttribute('aria-invalid', 'true');
  await expect(rows.filter({ hasText: 'vm.create' })).toHaveCount(5);
  // The download asks for what the page shows: the bad filters left out.
  const csvHref = await page.getByRole('link', { name: 'Download CSV' }).getAttribute('href');
  expect(csvHref).not.toContain('frobnicate');
  const csv = await page.request.get(csvHref);
  expect(csv.status()).toBe(200);
  expect((await csv.text()).split('\n').filter((l) => l.includes('"vm.create"'))).toHaveLength(5);
  if (hydrated(testInfo)) {
    const results = await new AxeBuilder({ page }).analyze();
    const serious = results.violations.filter((v) => ['serious', 'critical'].includes(v.impact));
    expect(serious.map((v) => `${v.id}: ${v.help}`)).toEqual([]);
  }

  // Times say their zone. Hydrated, the default is the browser's zone; without
  // JavaScript the server cannot know it, and says UTC.
  const label = page.getByTestId('zone-label');
  const firstTime = rows.first().locator('td').first();
  await page.goto('/activity');
  await ready(page, testInfo);
  if (hydrated(testInfo)) {
    // The server already renders the browser's zone, remembered from an earlier page, so
    // the times do not jump from UTC once the page hydrates.
    const html = await (await page.request.get('/activity')).text();
    expect(html).toMatch(/Times in Asia\/(Kolkata|Calcutta) \(UTC\+05:30\)\./);
    await expect(label).toHaveText(/^Times in Asia\/(Kolkata|Calcutta) \(UTC\+05:30\)\.$/);
    await expect(firstTime).toHaveText(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+05:30$/);
    await expect(page.getByRole('columnheader', { name: /^Time \(Asia\/(Kolkata|Calcutta)\)$/ })).toBeVisible();
    await expect(page.getByLabel('Times in')).toHaveValue('local');
    await expect(page.getByLabel(/^From \(date, Asia\/(Kolkata|Calcutta)\)/)).toBeVisible();
  } else {
    await expect(label).toHaveText('Times in UTC.');
    await expect(page.getByLabel('Times in')).toHaveValue('utc');
  }
  // Choosing UTC in the form: times in UTC.
  await page.getByLabel('Times in').selectOption('utc');
  await page.getByRole('button', { name: 'Filter' }).click();
  await expect(page).toHaveURL(/tz=utc/);
  await expect(label).toHaveText('Times in UTC.');
  await expect(firstTime).toHaveText(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/);
  await expect(page.getByRole('columnheader', { name: 'Time (UTC)' })).toBeVisible();
  const utcShown = await firstTime.textContent();

  // "To" two hours from now, read in UTC, keeps everything; read in Kolkata, it is three
  // and a half hours ago, and keeps nothing.
  const to = minute(Date.now() + 2 * 3600_000);
  await page.goto(`/activity?to=${to}&tz=utc`);
  await ready(page, testInfo);
  await expect(rows.filter({ hasText: 'vm.create' })).toHaveCount(5);
  if (hydrated(testInfo)) {
    await page.goto(`/activity?to=${to}&tz=local`);
    await ready(page, testInfo);
    await expect(label).toHaveText(/^Times in Asia\/(Kolkata|Calcutta) \(UTC\+05:30\)\.$/);
    await expect(rows).toHaveCount(0);
    await page.goto('/activity?tz=local');
    await ready(page, testInfo);
    // The same moment, shown 5:30 later on the clock.
    const [d, t] = utcShown.split(' ');
    const local = new Date(Date.parse(`${d}T${t}Z`) + 5.5 * 3600_000).toISOString().slice(0, 19).replace('T', ' ');
    await expect(firstTime).toHaveText(`${local} +05:30`);
  } else {
    // Local chosen without JavaScript: the zone is unknown, and the page says so.
    await page.goto(`/activity?to=${to}&tz=local`);
    await expect(page.locator('#fl-tz-hint')).toHaveText(/not known without JavaScript: times and dates are in UTC/);
    await expect(label).toHaveText('Times in UTC.');
    await expect(rows.filter({ hasText: 'vm.create' })).toHaveCount(5);
    // A zone the hydrated form sent along is honoured by the server alone.
    await page.goto(`/activity?to=${to}&tz=local&zone=Asia%2FKolkata`);
    await expect(label).toHaveText(/^Times in Asia\/(Kolkata|Calcutta) \(UTC\+05:30\)\.$/);
    await expect(rows).toHaveCount(0);
  }
  // The download reads the dates in the page's zone too.
  const csvLocal = await page.request.get(`/activity.csv?to=${to}&zone=Asia%2FKolkata`);
  expect((await csvLocal.text()).trim().split('\n')).toHaveLength(1);
  const csvUtc = await page.request.get(`/activity.csv?to=${to}`);
  expect((await csvUtc.text()).split('\n').filter((l) => l.includes('"vm.create"'))).toHaveLength(5);

  // A remembered zone the server does not know (the cookie is the browser's to write) is
  // only a guess: the log is read in UTC, and no filter the user never touched is flagged.
  await page.context().addCookies([{ name: 'portcullis_tz', value: 'Mars/Olympus_Mons', url: portal.base }]);
  const guessed = await (await page.request.get('/activity')).text();
  expect(guessed).toContain('Times in UTC.');
  expect(guessed).not.toContain('Unknown time zone');
  await page.goto('/activity');
  await ready(page, testInfo);
  await expect(page.locator('#fl-tz-error')).toHaveText('');
  if (hydrated(testInfo)) {
    // Once the page runs, the browser's own zone wins over the one remembered (after
    // travel) …
    await expect(label).toHaveText(/^Times in Asia\/(Kolkata|Calcutta) \(UTC\+05:30\)\.$/);
    // … and over none at all: a first visit straight to the log.
    await page.context().clearCookies({ name: 'portcullis_tz' });
    await page.goto('/activity');
    await ready(page, testInfo);
    await expect(label).toHaveText(/^Times in Asia\/(Kolkata|Calcutta) \(UTC\+05:30\)\.$/);
    await expect(firstTime).toHaveText(/ \+05:30$/);
  } else {
    await expect(label).toHaveText('Times in UTC.');
  }

  // Someone scoped to a group does not read the log, and is told none of its names.
  await signOut(page, testInfo);
  await signIn(page, testInfo, 'dora', 'a long test passphrase 2026');
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Welcome, Dora');
  await page.goto('/activity?vm=web');
  await ready(page, testInfo);
  await expect(page.getByRole('alert')).toContainText('You do not have permission');
  await expect(page.locator('datalist option')).toHaveCount(0);
  await expect(page.locator('main')).not.toContainText('web-02');
});
