// The foundation journey: the bootstrap admin signs in with the one-time password, must
// change it, creates a requester, signs out; the requester signs in and sees their role.
import AxeBuilder from '@axe-core/playwright';
import { test, expect, ready } from './fixtures.js';

async function signIn(page, testInfo, username, password) {
  await page.goto('/login');
  await ready(page, testInfo);
  await page.getByLabel('User name').fill(username);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

async function changePassword(page, testInfo, current, next) {
  await expect(page).toHaveURL(/\/account\/password(\?.*)?$/);
  await ready(page, testInfo);
  await expect(page.getByRole('status')).toContainText('one-time password');
  await page.getByLabel('Current password').fill(current);
  await page.getByLabel('New password', { exact: true }).fill(next);
  await page.getByLabel('Repeat new password').fill(next);
  await page.getByRole('button', { name: 'Change password' }).click();
}

async function noSeriousA11yViolations(page, testInfo) {
  // axe runs inside the page, so it needs JavaScript; the markup is the same either way.
  if (testInfo.project.use.javaScriptEnabled === false) return;
  const results = await new AxeBuilder({ page }).analyze();
  const serious = results.violations.filter((v) => ['serious', 'critical'].includes(v.impact));
  expect(serious.map((v) => `${v.id}: ${v.help}`)).toEqual([]);
}

test('admin bootstraps, creates a requester, who then signs in', async ({ page, portal }, testInfo) => {
  const base = portal.base;

  // Signed-out visitors land on the sign-in page.
  await page.goto(`${base}/`);
  await expect(page).toHaveURL(`${base}/login`);
  await noSeriousA11yViolations(page, testInfo);

  // A wrong password shows the message next to the field and changes nothing.
  await signIn(page, testInfo, 'admin', 'definitely wrong');
  await expect(page.locator('#f-password-error')).toHaveText('The user name or password is not correct.');
  await expect(page).toHaveURL(/\/login/);

  await signIn(page, testInfo, 'admin', portal.password);
  // Mismatched confirmation: field error, still on the password page.
  await expect(page).toHaveURL(/\/account\/password(\?.*)?$/);
  await ready(page, testInfo);
  await page.getByLabel('Current password').fill(portal.password);
  await page.getByLabel('New password', { exact: true }).fill('a new portal passphrase');
  await page.getByLabel('Repeat new password').fill('a new portal passphrasE');
  await page.getByRole('button', { name: 'Change password' }).click();
  await expect(page.locator('#f-new_password-error')).toHaveText('The two passwords do not match.');

  await changePassword(page, testInfo, portal.password, 'a new portal passphrase');
  await expect(page).toHaveURL(new RegExp(`^${base}/\\?flash=\\w+$`));
  await expect(page.getByTestId('flash')).toHaveText('Password changed; your other sessions have ended.');
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Welcome, Administrator');
  await expect(page.getByTestId('signed-in-user')).toContainText('admin');

  // Create a requester.
  await page.getByRole('link', { name: 'Users & roles' }).click();
  await expect(page).toHaveURL(`${base}/admin/users`);
  await ready(page, testInfo);
  await noSeriousA11yViolations(page, testInfo);
  const form = page.locator('form', { has: page.getByRole('button', { name: 'Create user' }) });
  await form.getByLabel('User name').fill('rita');
  await form.getByLabel('Display name').fill('Rita Requester');
  await form.getByLabel('Initial password').fill('first sign-in secret 42');
  await form.getByLabel('Role', { exact: true }).selectOption('requester');
  await form.getByLabel('Scope', { exact: true }).selectOption('all');
  await form.getByRole('button', { name: 'Create user' }).click();
  const ritaRow = page.locator('tr[data-username="rita"]');
  await expect(ritaRow).toContainText('Rita Requester');
  await expect(ritaRow).toContainText('requester');
  await expect(ritaRow).toContainText('Must change password');

  // Sign out.
  await ready(page, testInfo);
  await page.getByRole('button', { name: 'Sign out' }).click();
  await expect(page).toHaveURL(`${base}/login`);
  // A signed-out visit to a page goes to sign-in, which will lead back there.
  await page.goto(`${base}/admin/users`);
  await expect(page).toHaveURL(`${base}/login?next=/admin/users`);

  // Rita signs in, replaces her initial password and sees her role, but no admin pages.
  await signIn(page, testInfo, 'rita', 'first sign-in secret 42');
  await changePassword(page, testInfo, 'first sign-in secret 42', 'my own passphrase 2026');
  await expect(page).toHaveURL(new RegExp(`^${base}/(\\?flash=\\w+)?$`));
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Welcome, Rita Requester');
  await expect(page.getByTestId('my-roles')).toContainText('requester on all');
  await expect(page.getByRole('link', { name: 'Users & roles' })).toHaveCount(0);
  await page.goto(`${base}/admin/users`);
  await expect(page.getByRole('alert')).toContainText('You do not have permission to do that.');
  await expect(page.getByTestId('all-tokens')).toHaveCount(0);
});

test('a new user with a bad name gets a message on that field and is not created', async ({ page, portal }, testInfo) => {
  const base = portal.base;
  await signIn(page, testInfo, 'admin', portal.password);
  await changePassword(page, testInfo, portal.password, 'a new portal passphrase');
  await expect(page).toHaveURL(new RegExp(`^${base}/(\\?flash=\\w+)?$`));
  await page.goto(`${base}/admin/users`);
  await ready(page, testInfo);
  const form = page.locator('form', { has: page.getByRole('button', { name: 'Create user' }) });
  await form.getByLabel('User name').fill('bad name!');
  await form.getByLabel('Display name').fill('Bad');
  await form.getByLabel('Initial password').fill('short');
  await form.getByRole('button', { name: 'Create user' }).click();
  await expect(page.locator('#f-username-error')).toHaveText('Use only letters, digits and . _ - @ in a user name.');
  await expect(page.locator('#f-password-error')).toHaveText('A password has at least 12 characters.');
  await expect(page.locator('tr[data-username]')).toHaveCount(1);
});
