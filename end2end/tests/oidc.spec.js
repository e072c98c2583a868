// Single sign-on through a real OpenID provider (npm oidc-provider on 127.0.0.1): an
// administrator maps the provider's group to a role; a user signs in with the provider,
// lands in the portal with the role the group grants, and signs out of both.
import AxeBuilder from '@axe-core/playwright';
import { test, expect, ready } from './fixtures.js';
import { bootstrapAdmin, signOut } from './helpers.js';

async function noSeriousA11yViolations(page, testInfo) {
  // axe runs inside the page, so it needs JavaScript; the markup is the same either way.
  if (testInfo.project.use.javaScriptEnabled === false) return;
  const results = await new AxeBuilder({ page }).analyze();
  const serious = results.violations.filter((v) => ['serious', 'critical'].includes(v.impact));
  expect(serious.map((v) => `${v.id}: ${v.help}`)).toEqual([]);
}

test.use({ oidc: true });

async function signInWithProvider(page, testInfo, username, password) {
  await page.goto('/login');
  await ready(page, testInfo);
  await page.getByRole('link', { name: 'Sign in with Test IdP' }).click();
  // The provider's own sign-in form.
  await expect(page.getByRole('heading', { name: 'Test identity provider' })).toBeVisible();
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Continue' }).click();
}

test('a group member signs in with the provider, gets the group role, and signs out', async ({ page, portal }, testInfo) => {
  await bootstrapAdmin(page, testInfo, portal);

  // Members of the IdP group "portcullis-approvers" are approvers everywhere.
  await page.goto('/admin/users');
  await ready(page, testInfo);
  const form = page.locator('form', { has: page.getByRole('button', { name: 'Add group rule' }) });
  await form.getByLabel('Identity provider').selectOption('test');
  await form.getByLabel('Group (as the provider sends it)').fill('portcullis-approvers');
  await form.getByLabel('Role', { exact: true }).selectOption('approver');
  await form.getByLabel('Scope', { exact: true }).selectOption('all');
  await form.getByRole('button', { name: 'Add group rule' }).click();
  await expect(page.locator('tr[data-group="portcullis-approvers"]')).toContainText('approver on all');
  await signOut(page, testInfo);

  // Both ways in are offered; alice takes the provider's.
  await expect(page.getByLabel('User name')).toBeVisible();
  await noSeriousA11yViolations(page, testInfo);
  await signInWithProvider(page, testInfo, 'alice', 'correct horse battery staple');

  await expect(page).toHaveURL(`${portal.base}/`);
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Welcome, Alice Approver');
  await expect(page.getByTestId('signed-in-user')).toContainText('alice');
  await expect(page.getByTestId('my-roles')).toContainText('approver on all');
  await expect(page.getByTestId('my-roles')).toContainText('via group portcullis-approvers');
  // No local password to change for a federated user.
  await expect(page.getByRole('link', { name: 'Change password' })).toHaveCount(0);
  // The role is real: approvers read the activity log, which shows the sign-in.
  await page.goto('/activity');
  await ready(page, testInfo);
  await expect(page.getByRole('heading', { level: 1 })).toContainText('Activity');
  await expect(page.locator('main')).toContainText('oidc test');

  // Sign-out ends the portal session and continues at the provider's end-session page.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await expect(page.getByRole('heading', { name: 'Sign out of the test identity provider' })).toBeVisible();
  await page.getByRole('button', { name: 'Yes, sign me out' }).click();
  await expect(page).toHaveURL(`${portal.base}/login`);
  await page.goto('/');
  await expect(page).toHaveURL(`${portal.base}/login`);

  // The provider's session ended too: signing in again asks for the password again.
  await page.getByRole('link', { name: 'Sign in with Test IdP' }).click();
  await expect(page.getByLabel('Username')).toBeVisible();
});

test('a user who cancels at the provider is told so and stays signed out', async ({ page, portal }, testInfo) => {
  await page.goto('/login');
  await ready(page, testInfo);
  await page.getByRole('link', { name: 'Sign in with Test IdP' }).click();
  await page.getByRole('button', { name: 'Cancel' }).click();
  await expect(page.getByRole('heading', { name: 'Sign-in failed' })).toBeVisible();
  await expect(page.getByRole('alert')).toContainText('Test IdP did not grant access');
  await noSeriousA11yViolations(page, testInfo);
  await page.getByRole('link', { name: 'Back to sign-in' }).click();
  await expect(page).toHaveURL(`${portal.base}/login`);
  await page.goto('/');
  await expect(page).toHaveURL(`${portal.base}/login`);
});
