// API tokens in the browser: create one (shown once), use it against the REST API,
// revoke it on the page, and see the API refuse it.
import AxeBuilder from '@axe-core/playwright';
import { test, expect, ready } from './fixtures.js';
import { ADMIN_PASSWORD, bootstrapAdmin, confirmWith, createUser, signIn, signOut } from './helpers.js';

test('a user creates an API token, uses it, and revokes it', async ({ page, portal, request }, testInfo) => {
  await bootstrapAdmin(page, testInfo, portal);
  await page.getByRole('link', { name: 'API tokens' }).click();
  await expect(page).toHaveURL(/\/tokens$/);
  await ready(page, testInfo);
  await expect(page.getByText('You have no API tokens.')).toBeVisible();

  // A bad lifetime: the message is next to the field, nothing is created.
  await page.getByLabel('Name').fill('deploy script');
  await page.getByLabel('Expires after (days)').fill('400');
  await page.getByRole('button', { name: 'Create token' }).click();
  await expect(page.locator('#f-expires_days-error')).toHaveText('A token lives 1 to 365 days.');
  await ready(page, testInfo);
  await page.getByLabel('Name').fill('deploy script');
  await page.getByLabel('Expires after (days)').fill('30');
  await page.getByRole('button', { name: 'Create token' }).click();

  const shown = page.getByTestId('new-token').locator('code');
  await expect(shown).toHaveText(/^pcu_[0-9a-f]{32}_\S+$/);
  const token = await shown.textContent();
  const row = page.locator('tr[data-token]');
  await expect(row).toHaveCount(1);
  await expect(row).toContainText('deploy script');
  await expect(row).toContainText('never');

  const me = await request.get('/api/v1/me', { headers: { Authorization: `Bearer ${token}` } });
  expect(me.status()).toBe(200);
  expect((await me.json()).username).toBe('admin');

  // Shown once: after a reload only the prefix remains, and the use is recorded.
  await page.reload();
  await ready(page, testInfo);
  await expect(page.getByTestId('new-token')).toHaveCount(0);
  await expect(row).not.toContainText('never');
  await expect(row).toContainText(token.slice(0, 12));

  await confirmWith(page, testInfo, row.getByRole('link', { name: 'Revoke API token deploy script' }), 'Revoke token');
  await expect(row).toContainText('revoked');
  const refused = await request.get('/api/v1/me', { headers: { Authorization: `Bearer ${token}` } });
  expect(refused.status()).toBe(401);
  expect((await refused.json()).error.message).toContain('revoked');
});

test("an administrator revokes another user's token", async ({ page, portal, request }, testInfo) => {
  await bootstrapAdmin(page, testInfo, portal);
  await createUser(page, testInfo, { username: 'rita', displayName: 'Rita', password: 'requester secret 2026', role: 'requester' });
  await expect(page.getByText('No API token is in force.')).toBeVisible();
  await signOut(page, testInfo);

  await signIn(page, testInfo, 'rita', 'requester secret 2026');
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Welcome, Rita');
  await page.goto('/tokens');
  await ready(page, testInfo);
  await page.getByLabel('Name').fill('rita laptop');
  await page.getByRole('button', { name: 'Create token' }).click();
  const token = await page.getByTestId('new-token').locator('code').textContent();
  expect((await request.get('/api/v1/me', { headers: { Authorization: `Bearer ${token}` } })).status()).toBe(200);
  await signOut(page, testInfo);

  await signIn(page, testInfo, 'admin', ADMIN_PASSWORD);
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Welcome, Administrator');
  await page.goto('/admin/users');
  await ready(page, testInfo);
  const row = page.getByTestId('all-tokens').locator('tr[data-token]');
  await expect(row).toHaveCount(1);
  await expect(row).toContainText('rita');
  await expect(row).toContainText('rita laptop');
  await expect(row).toContainText(token.slice(0, 12));
  await confirmWith(page, testInfo, row.getByRole('link', { name: 'Revoke API token rita laptop of rita' }), 'Revoke token');
  await expect(page.getByText('No API token is in force.')).toBeVisible();

  const refused = await request.get('/api/v1/me', { headers: { Authorization: `Bearer ${token}` } });
  expect(refused.status()).toBe(401);
  expect((await refused.json()).error.message).toContain('revoked');
  await page.goto('/activity');
  await expect(page.locator('body')).toContainText('of user rita');
});

test('token names are unique among those in force, and the new token has a copy button', async ({ page, portal, request, context }, testInfo) => {
  const hydrated = testInfo.project.use.javaScriptEnabled !== false;
  if (hydrated) await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: portal.base });
  await bootstrapAdmin(page, testInfo, portal);
  await page.goto('/tokens');
  await ready(page, testInfo);
  await page.getByLabel('Name').fill('ci');
  await page.getByRole('button', { name: 'Create token' }).click();
  const shown = page.getByTestId('new-token').locator('code');
  await expect(shown).toHaveText(/^pcu_/);
  const token = await shown.textContent();
  const copy = page.getByTestId('new-token').getByRole('button', { name: 'Copy token' });
  if (hydrated) {
    await copy.click();
    await expect(page.getByTestId('new-token').getByRole('button', { name: 'Copied' })).toBeVisible();
    expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(token);
    // axe on the success message with its button (it found 4.47:1 there once).
    const results = await new AxeBuilder({ page }).analyze();
    const serious = results.violations.filter((v) => ['serious', 'critical'].includes(v.impact));
    expect(serious.map((v) => `${v.id}: ${v.help}`)).toEqual([]);
  } else {
    // Without JavaScript a copy button could do nothing: it is not shown.
    await expect(copy).toBeHidden();
  }

  // The same name again: refused next to the field, nothing created.
  await ready(page, testInfo);
  await page.getByLabel('Name').fill('ci');
  await page.getByRole('button', { name: 'Create token' }).click();
  await expect(page.locator('#f-name-error'))
    .toHaveText('You already have a token named "ci"; choose another name or revoke that one first.');
  await expect(page.locator('tr[data-token]')).toHaveCount(1);

  // The REST API answers the same way: 422 with the message on the field.
  const dup = await request.post('/api/v1/tokens', {
    headers: { Authorization: `Bearer ${token}` }, data: { name: 'ci' },
  });
  expect(dup.status()).toBe(422);
  const body = await dup.json();
  expect(body.error.code).toBe('validation');
  expect(body.error.fields.name).toContain('already have a token named "ci"');

  // Revoked, the name is free again.
  await page.goto('/tokens');
  await ready(page, testInfo);
  await confirmWith(page, testInfo, page.locator('tr[data-token]').getByRole('link', { name: 'Revoke API token ci' }), 'Revoke token');
  await expect(page.locator('tr[data-token]')).toContainText('revoked');
  await ready(page, testInfo);
  await page.getByLabel('Name').fill('ci');
  await page.getByRole('button', { name: 'Create token' }).click();
  await expect(page.getByTestId('new-token').locator('code')).toHaveText(/^pcu_/);
  await expect(page.locator('tr[data-token]')).toHaveCount(2);
});
