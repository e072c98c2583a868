// The Overview page (/) as each role sees it: a new install's first steps for the
// administrator, a requester's access (in force with a countdown, booked, waiting), the
// requests waiting for an approver (and none from another group), and the denials an
// administrator sees. Runs hydrated and with JavaScript disabled.
import { test, expect, ready } from './fixtures.js';
import { bootstrapAdmin, confirmWith, signIn, signOut } from './helpers.js';

/// Calls a server function in the page's session, as the hydrated page would (set-up only:
/// what is tested here is the Overview).
async function call(page, portal, name, form) {
  const res = await page.request.post(`/api/${name}`, { form, headers: { Origin: portal.base } });
  expect(res.status(), `${name}: ${await res.text()}`).toBe(200);
  return res.json();
}

async function overview(page, testInfo, name) {
  await page.goto('/');
  await ready(page, testInfo);
  await expect(page.getByRole('heading', { level: 1 })).toHaveText(`Welcome, ${name}`);
}

const PASSWORD = 'a long test passphrase 2026';

function user(username, displayName, role, scopeKind = 'all', scopeTarget = '') {
  return {
    username, display_name: displayName, password: PASSWORD, role,
    scope_kind: scopeKind, scope_target: scopeTarget,
  };
}

test('the overview shows each role what needs them', async ({ page, portal }, testInfo) => {
  const hydrated = testInfo.project.use.javaScriptEnabled !== false;
  await bootstrapAdmin(page, testInfo, portal);

  // A new install: every first step is left, each with where it is done.
  const checklist = page.getByTestId('setup-checklist');
  await expect(checklist.locator('li[data-done="false"]')).toHaveCount(4);
  await expect(checklist.getByRole('link', { name: 'Add a VM' })).toHaveAttribute('href', '/vms/new');
  await expect(checklist.getByRole('link', { name: 'Invite users' })).toHaveAttribute('href', '/admin/users');
  await expect(page.getByTestId('agents-calm')).toBeVisible();
  await expect(page.getByTestId('no-denials')).toBeVisible();

  const win = await call(page, portal, 'save_vm', {
    id: '', name: 'win-1', group: 'prod', addresses: '198.51.100.9', os: 'windows', exposed_ports: '3389',
  });
  await call(page, portal, 'save_vm', {
    id: '', name: 'lin-1', group: 'dev', addresses: '198.51.100.10', os: 'linux', exposed_ports: '22',
  });
  await call(page, portal, 'enable_jit', {
    'vm_ids[0]': win,
    'rules[0][enabled]': 'on', 'rules[0][port]': '22', 'rules[0][protocol]': 'tcp', 'rules[0][max_minutes]': '60',
    'rules[1][enabled]': 'on', 'rules[1][port]': '3389', 'rules[1][protocol]': 'tcp', 'rules[1][max_minutes]': '60',
    'rules[1][approval_required]': 'on',
  });
  for (const u of [
    user('rita', 'Rita', 'requester'),
    user('alex', 'Alex', 'approver'),
    user('gwen', 'Gwen', 'approver', 'group', 'dev'),
  ]) {
    await call(page, portal, 'create_user', u);
  }
  await overview(page, testInfo, 'Administrator');
  for (const step of ['add_vm', 'enable_jit', 'invite_users']) {
    await expect(checklist.locator(`li[data-step="${step}"]`)).toHaveAttribute('data-done', 'true');
  }
  await expect(checklist.locator('li[data-step="connect_sso"]')).toHaveAttribute('data-done', 'false');
  await signOut(page, testInfo);

  // Rita: access in force (counting down), a booked window, a request waiting.
  await signIn(page, testInfo, 'rita', PASSWORD);
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Welcome, Rita');
  const access = page.getByTestId('your-access');
  await expect(access).toContainText('No access in force, booked or waiting.');
  const later = new Date(Date.now() + 2 * 3600_000).toISOString().slice(0, 16);
  for (const [port, start] of [['22', ''], ['22', later], ['3389', '']]) {
    await call(page, portal, 'request_access', {
      'vm_ids[0]': win, 'ports[0]': `${win}:${port}/tcp`, source_mode: 'my_ip', duration: '30',
      justification: 'overview test', start,
    });
  }
  await overview(page, testInfo, 'Rita');
  const countdown = access.locator('[data-testid="access-active"] li[data-vm="win-1"] .countdown');
  await expect(countdown).toContainText('left');
  if (hydrated) {
    const before = await countdown.textContent();
    await expect(countdown).not.toHaveText(before, { timeout: 5_000 });
  }
  await expect(access.getByTestId('access-scheduled').getByTestId('opens')).toContainText('opens at');
  const pending = access.locator('[data-testid="access-pending"] li[data-vm="win-1"]');
  await expect(pending).toContainText('3389/tcp');
  await expect(pending).toContainText('asked');
  // Neither an approver nor an administrator.
  await expect(page.getByTestId('waiting-for-you')).toHaveCount(0);
  await expect(page.getByTestId('needs-attention')).toHaveCount(0);
  await expect(page.getByTestId('setup-checklist')).toHaveCount(0);
  await signOut(page, testInfo);

  // Gwen approves group dev only: nothing of prod waits for her.
  await signIn(page, testInfo, 'gwen', PASSWORD);
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Welcome, Gwen');
  await expect(page.getByTestId('waiting-count')).toHaveText('0');
  await expect(page.getByTestId('waiting-for-you')).toContainText('Nothing waits for your decision.');
  await signOut(page, testInfo);

  // Alex sees Rita's request, opens it from the overview and denies it.
  await signIn(page, testInfo, 'alex', PASSWORD);
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Welcome, Alex');
  await expect(page.getByTestId('waiting-count')).toHaveText('1');
  const row = page.locator('[data-testid="waiting-for-you"] tr[data-vm="win-1"]');
  await expect(row).toContainText('rita');
  await expect(row).toContainText('3389/tcp');
  await ready(page, testInfo);
  await row.getByRole('link', { name: 'win-1' }).click();
  await expect(page).toHaveURL(/\/requests\/[0-9a-f-]+$/);
  await ready(page, testInfo);
  await confirmWith(page, testInfo, page.getByRole('link', { name: 'Deny…' }), 'Deny', { 'Reason for denial': 'not today' });
  await expect(page.getByTestId('request-status')).toHaveText('denied');
  await overview(page, testInfo, 'Alex');
  await expect(page.getByTestId('waiting-count')).toHaveText('0');
  await signOut(page, testInfo);

  // The administrator sees the denial of the last day.
  await signIn(page, testInfo, 'admin', 'a new portal passphrase');
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Welcome, Administrator');
  const denial = page.locator('[data-testid="denials"] li[data-vm="win-1"]');
  await expect(denial).toContainText('rita on win-1');
  await expect(denial).toContainText('denied by alex');
  await expect(denial).toContainText('not today');
});
