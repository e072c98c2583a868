// What cannot be undone is asked about first, naming the object: a modal dialog once
// hydrated (focus inside, Escape cancels, focus back on the trigger), a confirmation page
// without JavaScript. Cancel leaves the object in place; confirming acts and the message
// of the action still shows. An extension's error shows in the row of that request.
import AxeBuilder from '@axe-core/playwright';
import { test, expect, ready } from './fixtures.js';
import { ADMIN_PASSWORD, bootstrapAdmin, signIn, signOut } from './helpers.js';

/// Calls a server function in the page's session, as the hydrated page would.
async function call(page, portal, name, form) {
  const res = await page.request.post(`/api/${name}`, { form, headers: { Origin: portal.base } });
  expect(res.status(), `${name}: ${await res.text()}`).toBe(200);
  return res.json();
}

const hydrated = (testInfo) => testInfo.project.use.javaScriptEnabled !== false;

async function axe(page, what) {
  const results = await new AxeBuilder({ page }).analyze();
  const serious = results.violations.filter((v) => ['serious', 'critical'].includes(v.impact));
  expect(serious.map((v) => `${what} ${v.id}: ${v.help}`)).toEqual([]);
}

/// Follows `trigger` to its question: the dialog once hydrated, the confirmation page
/// without JavaScript. Returns where the question's controls are.
async function ask(page, testInfo, trigger, question, detail) {
  await ready(page, testInfo);
  await trigger.click();
  let where;
  if (hydrated(testInfo)) {
    where = page.getByRole('dialog');
    await expect(where).toBeVisible();
    await expect(where.getByRole('heading')).toHaveText(question);
    // The browser puts focus inside, on Cancel.
    await expect(where.getByRole('button', { name: 'Cancel' })).toBeFocused();
  } else {
    await expect(page).toHaveURL(/\/confirm\?/);
    await expect(page.getByRole('heading', { level: 1 })).toHaveText(question);
    where = page.locator('main');
  }
  if (detail) await expect(where).toContainText(detail);
  return where;
}

/// Asks and cancels: with Escape and with Cancel once hydrated, focus going back to the
/// trigger each time; with the Cancel link of the confirmation page without JavaScript.
async function askAndCancel(page, testInfo, trigger, question, detail) {
  const where = await ask(page, testInfo, trigger, question, detail);
  if (hydrated(testInfo)) {
    await axe(page, `dialog "${question}"`);
    await page.keyboard.press('Escape');
    await expect(where).toBeHidden();
    await expect(trigger).toBeFocused();
    await trigger.click();
    await expect(where).toBeVisible();
    await where.getByRole('button', { name: 'Cancel' }).click();
    await expect(where).toBeHidden();
    await expect(trigger).toBeFocused();
  } else {
    const asked = page.url();
    await where.getByRole('link', { name: 'Cancel' }).click();
    await expect(page).not.toHaveURL(asked);
  }
}

/// Asks and confirms with the destructive button named `button`.
async function askAndConfirm(page, testInfo, trigger, question, button, fill = {}) {
  const where = await ask(page, testInfo, trigger, question);
  for (const [label, value] of Object.entries(fill)) await where.getByLabel(label).fill(value);
  await where.getByRole('button', { name: button, exact: true }).click();
}

test('removing a JIT policy and a VM asks first, naming them', async ({ page, portal }, testInfo) => {
  await bootstrapAdmin(page, testInfo, portal);
  const web1 = await call(page, portal, 'save_vm', {
    id: '', name: 'web-1', group: 'prod', addresses: '198.51.100.5', os: 'linux', exposed_ports: '22',
  });
  const web2 = await call(page, portal, 'save_vm', {
    id: '', name: 'web-2', group: 'prod', addresses: '198.51.100.6', os: 'linux', exposed_ports: '',
  });
  await call(page, portal, 'enable_jit', {
    'vm_ids[0]': web1,
    'rules[0][enabled]': 'on', 'rules[0][port]': '22', 'rules[0][protocol]': 'tcp', 'rules[0][max_minutes]': '60',
    'rules[1][enabled]': 'on', 'rules[1][port]': '3389', 'rules[1][protocol]': 'tcp', 'rules[1][max_minutes]': '60',
  });

  // The policy: its ports become open to everyone, and the question says so.
  const question = 'Remove the JIT policy of web-1?';
  const detail = 'Its ports 22/tcp, 3389/tcp become open to every source within seconds';
  await page.goto(`/jit/configure?vm=${web1}`);
  const removePolicy = page.getByRole('link', { name: 'Remove JIT policy' });
  await askAndCancel(page, testInfo, removePolicy, question, detail);
  await page.goto(`/vms/${web1}`);
  await expect(page.getByTestId('policy')).toContainText('3389');

  // The confirmation page itself: reachable by its address, it acts only on the POST.
  const res = await page.goto(`/confirm?what=policy&id=${web1}&from=policy`);
  expect(res.status()).toBe(200);
  await ready(page, testInfo);
  await expect(page.getByRole('heading', { level: 1 })).toHaveText(question);
  await expect(page.getByTestId('confirm-detail')).toContainText(detail);
  if (hydrated(testInfo)) await axe(page, 'the confirmation page');
  await page.goto(`/vms/${web1}`);
  await expect(page.getByTestId('policy')).toContainText('22');

  await page.goto(`/jit/configure?vm=${web1}`);
  await askAndConfirm(page, testInfo, removePolicy, question, 'Remove JIT policy');
  await expect(page).toHaveURL(new RegExp(`/vms/${web1}\\?flash=`));
  await expect(page.getByTestId('flash')).toContainText('JIT policy removed');
  await expect(page.getByTestId('policy')).toHaveCount(0);

  // The VM.
  await page.goto(`/vms/${web2}`);
  const removeVm = page.getByRole('link', { name: 'Remove this VM' });
  await askAndCancel(page, testInfo, removeVm, 'Remove VM web-2?');
  await page.goto('/jit?tab=all');
  await expect(page.locator('tr[data-vm="web-2"]')).toHaveCount(1);
  await page.goto(`/vms/${web2}`);
  await askAndConfirm(page, testInfo, removeVm, 'Remove VM web-2?', 'Remove VM');
  await expect(page.getByTestId('flash')).toHaveText('VM removed; its access ended and its requests were closed.');
  await expect(page.locator('tr[data-vm="web-2"]')).toHaveCount(0);
  await expect(page.locator('tr[data-vm="web-1"]')).toHaveCount(1);

  // Asked again about what is gone: a not-found answer, no button.
  const gone = await page.goto(`/confirm?what=vm&id=${web2}&from=vm`);
  expect(gone.status()).toBe(404);
  await ready(page, testInfo);
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Not found');
  await expect(page.getByTestId('confirm-error')).toContainText('removed already');
  await expect(page.getByRole('button', { name: 'Remove VM' })).toHaveCount(0);
});

test('revoking and denying a request ask first; an extension error shows in its row', async ({ page, portal }, testInfo) => {
  await bootstrapAdmin(page, testInfo, portal);
  const web1 = await call(page, portal, 'save_vm', {
    id: '', name: 'web-1', group: 'prod', addresses: '198.51.100.5', os: 'linux', exposed_ports: '22',
  });
  const web2 = await call(page, portal, 'save_vm', {
    id: '', name: 'web-2', group: 'prod', addresses: '198.51.100.6', os: 'linux', exposed_ports: '22',
  });
  for (const vm of [web1, web2]) {
    await call(page, portal, 'enable_jit', {
      'vm_ids[0]': vm,
      'rules[0][enabled]': 'on', 'rules[0][port]': '22', 'rules[0][protocol]': 'tcp', 'rules[0][max_minutes]': '60',
      'rules[1][enabled]': 'on', 'rules[1][port]': '3389', 'rules[1][protocol]': 'tcp', 'rules[1][max_minutes]': '60',
      'rules[1][approval_required]': 'on',
    });
  }
  await call(page, portal, 'create_user', {
    username: 'rita', display_name: 'Rita', password: 'requester secret 2026', role: 'requester',
    scope_kind: 'all', scope_target: '',
  });
  for (const vm of [web1, web2]) {
    await call(page, portal, 'request_access', {
      'vm_ids[0]': vm, 'ports[0]': `${vm}:22/tcp`, source_mode: 'my_ip', duration: '30', justification: 'work',
    });
  }

  // An extension over the policy's maximum: the error sits in that request's row.
  await page.goto('/requests');
  await ready(page, testInfo);
  const row1 = page.locator('[data-testid="my-requests"] tr[data-vm="web-1"]');
  const row2 = page.locator('[data-testid="my-requests"] tr[data-vm="web-2"]');
  await row2.getByLabel('Extend to minutes from now').fill('500');
  await row2.getByRole('button', { name: 'Extend' }).click();
  await expect(row2.getByTestId('extend-error')).toContainText('60 minutes');
  await expect(row2.getByLabel('Extend to minutes from now')).toHaveAttribute('aria-invalid', 'true');
  await expect(row1.getByTestId('extend-error')).toHaveText('');
  // Not above the table, where it named no request.
  await expect(page.locator('.alert.error')).toHaveCount(0);

  // Revoke: Cancel keeps the access; confirming ends it and says so.
  const revoke = row1.getByRole('link', { name: 'Revoke access to 22/tcp on web-1' });
  const question = "Revoke admin's access to 22/tcp on web-1?";
  await askAndCancel(page, testInfo, revoke, question, 'Its ports close now');
  await page.goto('/requests');
  await expect(row1.getByTestId('request-status')).toHaveText('active');
  await askAndConfirm(page, testInfo, revoke, question, 'Revoke');
  await expect(page.getByTestId('flash')).toHaveText('Access revoked; its ports close now.');
  await expect(row1.getByTestId('request-status')).toHaveText('revoked');
  await expect(row2.getByTestId('request-status')).toHaveText('active');
  // Asked again about what has ended: said so, and no button.
  const ended = await row1.getAttribute('data-request');
  await page.goto(`/confirm?what=revoke&id=${ended}&from=list`);
  await ready(page, testInfo);
  await expect(page.getByTestId('confirm-refused')).toHaveText('This request is revoked already.');
  await expect(page.getByRole('button', { name: 'Revoke' })).toHaveCount(0);
  await signOut(page, testInfo);

  // Rita asks for 3389 on web-2, which needs approval; the administrator denies it.
  await signIn(page, testInfo, 'rita', 'requester secret 2026');
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Welcome, Rita');
  await call(page, portal, 'request_access', {
    'vm_ids[0]': web2, 'ports[0]': `${web2}:3389/tcp`, source_mode: 'my_ip', duration: '30', justification: 'patch',
  });
  await signOut(page, testInfo);
  await signIn(page, testInfo, 'admin', ADMIN_PASSWORD);
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Welcome, Administrator');
  await page.goto('/requests');
  const queued = page.locator('[data-testid="approval-queue"] tr[data-vm="web-2"]');
  const deny = queued.getByRole('link', { name: "Deny rita's request for 3389/tcp on web-2" });
  const denyQuestion = "Deny rita's request for 3389/tcp on web-2?";
  await askAndCancel(page, testInfo, deny, denyQuestion, 'cannot be approved later');
  await page.goto('/requests');
  await expect(queued).toHaveCount(1);
  await askAndConfirm(page, testInfo, deny, denyQuestion, 'Deny', { 'Reason for denial': 'not now' });
  await expect(page.getByTestId('flash')).toHaveText('Request denied; the requester is told.');
  await expect(queued).toHaveCount(0);
});

test('removing a role and revoking an API token ask first', async ({ page, portal }, testInfo) => {
  await bootstrapAdmin(page, testInfo, portal);
  await call(page, portal, 'create_user', {
    username: 'rita', display_name: 'Rita', password: 'requester secret 2026', role: 'requester',
    scope_kind: 'all', scope_target: '',
  });
  await call(page, portal, 'create_api_token', { name: 'deploy', expires_days: '' });

  await page.goto('/admin/users');
  const rita = page.locator('tr[data-username="rita"]');
  const remove = rita.getByRole('link', { name: /^Remove role requester on / });
  const question = /^Remove the role requester on .+ from rita\?$/;
  await askAndCancel(page, testInfo, remove, question, 'Access that only this role allowed ends now.');
  await page.goto('/admin/users');
  await expect(rita.locator('.roles')).toContainText('requester');
  await askAndConfirm(page, testInfo, remove, question, 'Remove role');
  await expect(page.getByTestId('flash')).toHaveText('Role removed; access it alone allowed has ended.');
  await expect(rita.locator('.roles')).not.toContainText('requester');

  await page.goto('/tokens');
  const row = page.locator('tr[data-token]');
  const revoke = row.getByRole('link', { name: 'Revoke API token deploy' });
  const tokenQuestion = /^Revoke the API token deploy \(.+…\)\?$/;
  await askAndCancel(page, testInfo, revoke, tokenQuestion, 'Whatever uses it is refused from now on.');
  await page.goto('/tokens');
  await expect(row).toContainText('active');
  await askAndConfirm(page, testInfo, revoke, tokenQuestion, 'Revoke token');
  await expect(page.getByTestId('flash')).toContainText('API token revoked');
  await expect(row).toContainText('revoked');
});

test('removing a notification channel asks first', async ({ page, portal }, testInfo) => {
  await bootstrapAdmin(page, testInfo, portal);
  await call(page, portal, 'create_notify_channel', { name: 'ops', kind: 'webhook', target: 'http://127.0.0.1:9/hook' });
  await page.goto('/admin/notifications');
  const row = page.locator('tr[data-channel="ops"]');
  const remove = row.getByRole('link', { name: 'Remove channel ops' });
  const question = 'Remove the notification channel ops?';
  await askAndCancel(page, testInfo, remove, question, 'Its routing rules and its messages go with it.');
  await page.goto('/admin/notifications');
  await expect(row).toHaveCount(1);
  await askAndConfirm(page, testInfo, remove, question, 'Remove channel');
  await expect(page).toHaveURL(/\/admin\/notifications/);
  await expect(page.getByTestId('notify-done')).toContainText('Channel ops removed.');
  await expect(row).toHaveCount(0);
});
