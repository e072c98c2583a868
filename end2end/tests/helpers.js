// Steps shared by the browser tests, written as a user would do them.
import { expect, ready } from './fixtures.js';

export const ADMIN_PASSWORD = 'a new portal passphrase';

export async function signIn(page, testInfo, username, password) {
  await page.goto('/login');
  await ready(page, testInfo);
  await page.getByLabel('User name').fill(username);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

export async function changePassword(page, testInfo, current, next) {
  await expect(page).toHaveURL(/\/account\/password(\?.*)?$/);
  await ready(page, testInfo);
  await expect(page.getByRole('status')).toContainText('one-time password');
  await page.getByLabel('Current password').fill(current);
  await page.getByLabel('New password', { exact: true }).fill(next);
  await page.getByLabel('Repeat new password').fill(next);
  await page.getByRole('button', { name: 'Change password' }).click();
}

/// Signs in as the bootstrap admin and replaces the one-time password.
export async function bootstrapAdmin(page, testInfo, portal) {
  await signIn(page, testInfo, 'admin', portal.password);
  await changePassword(page, testInfo, portal.password, ADMIN_PASSWORD);
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Welcome, Administrator');
}

export async function signOut(page, testInfo) {
  await ready(page, testInfo);
  // On a phone the header's menu holds the button.
  const menu = page.locator('summary.site-menu-toggle');
  if (await menu.isVisible()) await menu.click();
  await page.getByRole('button', { name: 'Sign out' }).click();
  await expect(page).toHaveURL(/\/login$/);
}

/// Creates a user with a role over everything and no forced password change.
export async function createUser(page, testInfo, { username, displayName, password, role }) {
  await page.goto('/admin/users');
  await ready(page, testInfo);
  const form = page.locator('form', { has: page.getByRole('button', { name: 'Create user' }) });
  await form.getByLabel('User name').fill(username);
  await form.getByLabel('Display name').fill(displayName);
  await form.getByLabel('Initial password').fill(password);
  await form.getByLabel('Role', { exact: true }).selectOption(role);
  await form.getByLabel('Scope', { exact: true }).selectOption('all');
  await form.getByLabel('Must change the password at first sign-in').uncheck();
  await form.getByRole('button', { name: 'Create user' }).click();
  await expect(page.locator(`tr[data-username="${username}"]`)).toContainText(role);
}

export async function addVm(page, testInfo, { name, group, addresses, os, exposed }) {
  await page.goto('/vms/new');
  await ready(page, testInfo);
  await page.getByLabel('Name', { exact: true }).fill(name);
  await page.getByLabel('Group', { exact: true }).fill(group);
  await page.getByLabel('Addresses').fill(addresses);
  await page.getByLabel('Operating system').selectOption(os);
  await page.getByLabel('Exposed management ports').fill(exposed);
  await page.getByRole('button', { name: 'Add VM' }).click();
  await expect(page.getByRole('heading', { level: 1 })).toHaveText(name);
}

/// Ticks the named VMs on the JIT list and opens the request form for them.
export async function openRequestForm(page, testInfo, names) {
  await page.goto('/jit');
  await ready(page, testInfo);
  for (const name of names) await page.getByLabel(`Select ${name}`).check();
  await page.getByRole('button', { name: 'Request access' }).click();
}

/// Follows a trigger that asks before what cannot be undone and confirms with the button
/// named `button`: in the dialog once hydrated, on the confirmation page without
/// JavaScript. `fill` maps labels of the question's fields to values.
export async function confirmWith(page, testInfo, trigger, button, fill = {}) {
  await ready(page, testInfo);
  await trigger.click();
  const where = testInfo.project.use.javaScriptEnabled !== false ? page.getByRole('dialog') : page.locator('main');
  if (testInfo.project.use.javaScriptEnabled === false) await expect(page).toHaveURL(/\/confirm\?/);
  await expect(where.getByRole('button', { name: button, exact: true })).toBeVisible();
  for (const [label, value] of Object.entries(fill)) await where.getByLabel(label).fill(value);
  await where.getByRole('button', { name: button, exact: true }).click();
}
