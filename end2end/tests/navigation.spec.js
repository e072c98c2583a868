// Finding one's way as in the reference portal (issue 15, item 3): tab titles with counts,
// "select all" on a page and a bulk button that says how many VMs it acts on, each row's
// "…" menu (keyboard too) offering only what the viewer may do, the VM page's link to its
// own activity log, breadcrumbs and Cancel on the forms. Hydrated and without JavaScript.
import AxeBuilder from '@axe-core/playwright';
import { test, expect, ready } from './fixtures.js';
import { bootstrapAdmin, signIn, signOut } from './helpers.js';

async function call(page, portal, name, form) {
  const res = await page.request.post(`/api/${name}`, { form, headers: { Origin: portal.base } });
  expect(res.status(), `${name}: ${await res.text()}`).toBe(200);
  return res.json();
}

const hydrated = (testInfo) => testInfo.project.use.javaScriptEnabled !== false;

test('select all, row menus, the VM activity link, breadcrumbs and Cancel', async ({ page, portal }, testInfo) => {
  await bootstrapAdmin(page, testInfo, portal);
  const ids = {};
  for (const name of ['web-1', 'web-2', 'web-3']) {
    ids[name] = await call(page, portal, 'save_vm', {
      id: '', name, group: 'prod', addresses: '198.51.100.5', os: 'linux', exposed_ports: '22',
    });
  }

  // Select all on the page: every box ticked, and the button says how many.
  await page.goto('/jit?tab=recommended');
  await ready(page, testInfo);
  await expect(page.getByRole('link', { name: 'Recommended (3)' })).toBeVisible();
  await page.getByRole('link', { name: 'Select all VMs on this page' }).click();
  await expect(page).toHaveURL(/select=all/);
  for (const name of ['web-1', 'web-2', 'web-3']) {
    await expect(page.getByLabel(`Select ${name}`)).toBeChecked();
  }
  await expect(page.getByTestId('enable-selected')).toHaveText('Enable JIT on 3 VMs');
  if (hydrated(testInfo)) {
    await ready(page, testInfo);
    await page.getByLabel('Select web-2').uncheck();
    await expect(page.getByTestId('enable-selected')).toHaveText('Enable JIT on 2 VMs');
    await page.getByLabel('Select web-2').check();
  }
  await page.getByTestId('enable-selected').click();
  await expect(page).toHaveURL(/\/jit\/configure\?/);
  await expect(page.getByTestId('policy-vms')).toHaveText('web-1, web-2, web-3');
  const crumbs = page.getByRole('navigation', { name: 'Breadcrumb' });
  await expect(crumbs.getByRole('link', { name: 'Just-in-time' })).toHaveAttribute('href', '/jit');
  await page.getByRole('link', { name: 'Cancel' }).click();
  await expect(page).toHaveURL(/\/jit$/);
  await expect(page.getByRole('link', { name: 'Configured (0)', exact: true })).toBeVisible();
  await page.goto('/jit?tab=recommended&select=all');
  await page.getByRole('link', { name: 'Clear the selection' }).click();
  await expect(page.getByLabel('Select web-1')).not.toBeChecked();

  // The row menu, by keyboard: Enter opens it, Tab reaches its items.
  await page.goto('/jit?tab=recommended');
  await ready(page, testInfo);
  const menu = page.locator('tr[data-vm="web-1"] .row-menu');
  await menu.getByLabel('Actions for web-1').focus();
  await page.keyboard.press('Enter');
  await expect(menu).toHaveAttribute('open', '');
  await expect(menu.getByRole('link')).toHaveText(['Enable JIT', 'Activity log', 'Properties', 'Remove']);
  await page.keyboard.press('Tab');
  await expect(menu.getByRole('link', { name: 'Enable JIT' })).toBeFocused();
  if (hydrated(testInfo)) {
    await page.keyboard.press('Escape');
    await expect(menu).not.toHaveAttribute('open', '');
    await expect(menu.getByLabel('Actions for web-1')).toBeFocused();
    const results = await new AxeBuilder({ page }).analyze();
    const serious = results.violations.filter((v) => ['serious', 'critical'].includes(v.impact));
    expect(serious.map((v) => `${v.id}: ${v.help}`)).toEqual([]);
    await menu.getByLabel('Actions for web-1').click();
  }
  await menu.getByRole('link', { name: 'Properties' }).click();
  await expect(page).toHaveURL(new RegExp(`/vms/${ids['web-1']}$`));
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('web-1');
  await expect(page.getByRole('navigation', { name: 'Breadcrumb' })).toContainText('Just-in-time');

  // The VM page's activity log link shows this VM's entries only.
  await page.getByTestId('vm-activity').click();
  await expect(page).toHaveURL(/\/activity\?vm=%22web-1%22$/);
  const table = page.getByTestId('activity-table');
  await expect(table.locator('tbody tr').first()).toContainText('web-1');
  await expect(table).not.toContainText('web-2');

  // A requester's menu offers what a requester may do (the log is readable by every role),
  // and nothing of an administrator's.
  await call(page, portal, 'enable_jit', {
    'vm_ids[0]': ids['web-1'],
    'rules[0][enabled]': 'on', 'rules[0][port]': '22', 'rules[0][protocol]': 'tcp', 'rules[0][max_minutes]': '60',
  });
  await call(page, portal, 'create_user', {
    username: 'rita', display_name: 'Rita', password: 'a long test passphrase 2026', role: 'requester',
    scope_kind: 'all', scope_target: '',
  });
  await signOut(page, testInfo);
  await signIn(page, testInfo, 'rita', 'a long test passphrase 2026');
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Welcome, Rita');
  await page.goto('/jit?tab=configured');
  await ready(page, testInfo);
  const ritas = page.locator('tr[data-vm="web-1"] .row-menu');
  await ritas.getByLabel('Actions for web-1').click();
  await expect(ritas.getByRole('link')).toHaveText(['Request access', 'Activity log', 'Properties']);
});
