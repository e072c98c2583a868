// The JIT workflow in the browser: enable JIT on two VMs with custom ports, request
// port 22 for "My IP", watch it count down, revoke it, and find every step in the log.
import { test, expect, ready, watch } from './fixtures.js';
import { ADMIN_PASSWORD, addVm, bootstrapAdmin, confirmWith, createUser, signIn, signOut, openRequestForm } from './helpers.js';

// SHOTS=DIR saves screenshots of the main pages, for looking at them.
async function shot(page, testInfo, name) {
  if (process.env.SHOTS && testInfo.project.name === 'hydrated') {
    await page.screenshot({ path: `${process.env.SHOTS}/${name}.png`, fullPage: true });
  }
}

const hydrated = (testInfo) => testInfo.project.use.javaScriptEnabled !== false;

/// Hydrated, the bulk button counts the ticked boxes; a plain page cannot.
function enableTwo(testInfo) {
  return testInfo.project.use.javaScriptEnabled === false ? 'Enable JIT on selected VMs' : 'Enable JIT on 2 VMs';
}

test('admin enables JIT on two VMs; a requester opens, sees and revokes access', async ({ page, portal }, testInfo) => {
  await bootstrapAdmin(page, testInfo, portal);
  await addVm(page, testInfo, { name: 'web-1', group: 'prod', addresses: '198.51.100.5, 2001:db8::5', os: 'linux', exposed: '22' });
  await addVm(page, testInfo, { name: 'web-2', group: 'prod', addresses: '198.51.100.6', os: 'linux', exposed: '' });

  // web-1 has port 22 exposed and no policy: Recommended. web-2: Not configured, with the reason.
  await page.goto('/jit?tab=recommended');
  await expect(page.locator('tr[data-vm="web-1"]')).toBeVisible();
  await page.goto('/jit?tab=not_configured');
  await expect(page.locator('tr[data-vm="web-2"]')).toContainText('No agent enrolled; no management port recorded');

  // The policy form with no VM chosen says so, instead of pointing at fields it lacks.
  await page.goto('/jit/configure');
  await expect(page.getByRole('alert')).toHaveText('Select at least one VM.');

  // Bulk enable: both VMs, port 22 limited to 60 minutes plus a custom port 2222/TCP.
  await page.goto('/jit?tab=all');
  await ready(page, testInfo);
  // Wide enough for the heads' sort links: no phone sort bar.
  await expect(page.getByTestId('sort-bar')).toBeHidden();
  await page.getByLabel('Select web-1').check();
  await page.getByLabel('Select web-2').check();
  await page.getByRole('button', { name: enableTwo(testInfo) }).click();
  await expect(page).toHaveURL(/\/jit\/configure\?/);
  await ready(page, testInfo);
  await expect(page.getByTestId('policy-vms')).toHaveText('web-1, web-2');
  const [web1Id] = new URL(page.url()).searchParams.getAll('vm');
  await shot(page, testInfo, 'configure');
  await expect(page.getByLabel('Port of row 1')).toHaveValue('22');
  // No blank rows: "Add port" adds one (on) and keeps what was typed; without JavaScript
  // the form comes back with it.
  await expect(page.getByLabel('Port of row 2')).toHaveCount(0);
  await page.getByLabel('Max request time of row 1').fill('60');
  await page.getByRole('button', { name: 'Add port' }).click();
  await expect(page.getByLabel('Port of row 2')).toBeVisible();
  if (hydrated(testInfo)) await expect(page.getByLabel('Port of row 2')).toBeFocused();
  else await expect(page).toHaveURL(/#rule-1-port$/);
  await expect(page.getByLabel('Max request time of row 1')).toHaveValue('60');
  await expect(page.getByTestId('policy-vms')).toHaveText('web-1, web-2');
  await expect(page.getByLabel('Port row 2 on')).toBeChecked();
  await page.getByLabel('Port of row 2').fill('70000');
  await page.getByRole('button', { name: 'Save JIT policy' }).click();
  await expect(page.getByText('A port is a whole number from 1 to 65535.')).toBeVisible();
  // The form is as it was typed, without JavaScript too.
  await expect(page.getByLabel('Port of row 2')).toHaveValue('70000');
  await expect(page.getByLabel('Max request time of row 1')).toHaveValue('60');
  // Nothing was stored: the VMs are still unconfigured.
  await page.goto('/jit?tab=configured');
  await expect(page.locator('tr[data-vm]')).toHaveCount(0);
  if (!hydrated(testInfo)) {
    // The same VM named twice in the address: a refused form still comes back as typed …
    await page.goto(`/jit/configure?vm=${web1Id}&vm=${web1Id}`);
    await page.getByLabel('Port of row 1').fill('70000');
    await page.getByRole('button', { name: 'Save JIT policy' }).click();
    await expect(page.getByText('A port is a whole number from 1 to 65535.')).toBeVisible();
    await expect(page.getByLabel('Port of row 1')).toHaveValue('70000');
    // … once: the next form starts from the VM's rules, not from that draft.
    await page.goto(`/jit/configure?vm=${web1Id}`);
    await expect(page.getByLabel('Port of row 1')).toHaveValue('22');
    // A refused save whose form never came back (the browser went elsewhere) leaves its
    // draft to the next form, which takes it even when it cannot be shown …
    await page.getByLabel('Port of row 1').fill('70000');
    const form = page.locator('form', { has: page.getByRole('button', { name: 'Save JIT policy' }) });
    const { action, body } = await form.evaluate((f) => ({
      action: f.action,
      body: new URLSearchParams(new FormData(f)).toString(),
    }));
    const refused = await page.request.post(action, {
      data: body,
      headers: {
        'Content-Type': 'application/x-www-form-urlencoded',
        Accept: 'text/html',
        Origin: new URL(page.url()).origin,
        Referer: page.url(),
      },
      maxRedirects: 0,
    });
    // Sent back to the form, which the browser does not open.
    expect(refused.status(), await refused.text()).toBe(302);
    await page.goto('/jit/configure?vm=no-such-vm');
    await expect(page.getByRole('alert')).toBeVisible();
    // … so that it never turns up in a later form of the same VM.
    await page.goto(`/jit/configure?vm=${web1Id}`);
    await expect(page.getByLabel('Port of row 1')).toHaveValue('22');
  }
  await page.goto('/jit?tab=all');
  await ready(page, testInfo);
  await page.getByLabel('Select web-1').check();
  await page.getByLabel('Select web-2').check();
  await page.getByRole('button', { name: enableTwo(testInfo) }).click();
  await ready(page, testInfo);
  await page.getByLabel('Max request time of row 1').fill('60');
  await page.getByRole('button', { name: 'Add port' }).click();
  await page.getByLabel('Port of row 2').fill('2222');
  if (hydrated(testInfo)) {
    // A row not saved yet can be removed again; the rows after it move up, as typed.
    await page.getByRole('button', { name: 'Add port' }).click();
    await page.getByLabel('Port of row 3').fill('3333');
    await page.getByRole('button', { name: 'Remove port row 2' }).click();
    await expect(page.getByLabel('Port of row 2')).toHaveValue('3333');
    await expect(page.getByLabel('Port of row 3')).toHaveCount(0);
    await expect(page.getByRole('button', { name: 'Add port' })).toBeFocused();
    await page.getByLabel('Port of row 2').fill('2222');
  }
  await page.getByRole('button', { name: 'Save JIT policy' }).click();
  await expect(page).toHaveURL(/\/jit\?tab=configured/);
  await expect(page.getByTestId('flash')).toHaveText('JIT policy saved on 2 VMs; access that no longer fits it has ended.');
  await expect(page.locator('tr[data-vm]')).toHaveCount(2);
  await page.locator('tr[data-vm="web-2"]').getByRole('link', { name: 'web-2', exact: true }).click();
  await expect(page.getByTestId('policy')).toContainText('2222');
  await expect(page.getByTestId('policy')).not.toContainText('3333');

  await createUser(page, testInfo, { username: 'rita', displayName: 'Rita Requester', password: 'requester secret 2026', role: 'requester' });
  await signOut(page, testInfo);

  // Rita asks for port 22 of web-1.
  await signIn(page, testInfo, 'rita', 'requester secret 2026');
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Welcome, Rita Requester');
  await page.goto('/jit');
  await ready(page, testInfo);
  // A requester is offered what she may do, not the policy editor.
  await expect(page.getByRole('button', { name: 'Edit JIT policy' })).toHaveCount(0);
  await page.getByLabel('Select web-1').check();
  await page.getByRole('button', { name: 'Request access' }).click();
  await expect(page).toHaveURL(/\/jit\/request\?vm=/);
  await ready(page, testInfo);
  await expect(page.getByTestId('my-ip')).toHaveText('127.0.0.1');

  const port22 = page.getByLabel(/^22 \(TCP\)/);
  // Over the policy maximum: a message on the duration, nothing created.
  await port22.check();
  await page.getByLabel(/Duration in minutes/).fill('90');
  await page.getByRole('button', { name: 'Open ports' }).click();
  await expect(page.locator('#duration-error')).toHaveText('Requests on web-1 are limited to 60 minutes.');
  // A malformed source: a message on the source.
  await ready(page, testInfo);
  await port22.check();
  await page.getByLabel('Another IP address or CIDR').check();
  await page.getByLabel('IP address or CIDR (when not My IP)').fill('198.51.100.300/24');
  await page.getByLabel(/Duration in minutes/).fill('10');
  await page.getByRole('button', { name: 'Open ports' }).click();
  await expect(page.locator('#source-error')).toContainText('Enter an IPv4 or IPv6 address');

  // The real request: My IP, 10 minutes, with a justification.
  await ready(page, testInfo);
  await port22.check();
  await page.getByLabel(/^My IP/).check();
  await page.getByLabel(/Duration in minutes/).fill('10');
  await page.getByLabel(/^Justification/).fill('rotate TLS certificates');
  await page.getByRole('button', { name: 'Open ports' }).click();
  await expect(page).toHaveURL(/\/requests\?flash=\w+$/);
  // Feedback on the next page, once: a reload does not show it again.
  await expect(page.getByTestId('flash')).toHaveText('Access to web-1 is open.');
  await page.reload();
  await expect(page.getByTestId('my-requests')).toBeVisible();
  await expect(page.getByTestId('flash')).toHaveCount(0);
  const row = page.locator('[data-testid="my-requests"] tr[data-vm="web-1"]');
  await expect(row).toHaveCount(1);
  await expect(row.getByTestId('request-status')).toHaveText('active');
  await expect(row).toContainText('22/tcp active');
  await expect(row).toContainText('127.0.0.1/32');
  await expect(row.locator('.countdown')).toContainText(/^(9m|10m) \d\ds left$/);
  if (testInfo.project.use.javaScriptEnabled !== false) {
    // The countdown is live once hydrated.
    const before = await row.locator('.countdown').textContent();
    await expect(row.locator('.countdown')).not.toHaveText(before, { timeout: 3000 });
  }

  await shot(page, testInfo, 'requests');
  await page.goto('/jit');
  await shot(page, testInfo, 'jit-configured');
  await expect(page.locator('tr[data-vm="web-1"]')).toContainText('22/tcp from 127.0.0.1/32');
  await expect(page.locator('tr[data-vm="web-1"]')).toContainText('rita');

  // Revoke early.
  await page.goto('/requests');
  await ready(page, testInfo);
  await confirmWith(page, testInfo, row.getByRole('link', { name: 'Revoke access to 22/tcp on web-1' }), 'Revoke');
  await expect(page.getByTestId('flash')).toHaveText('Access revoked; its ports close now.');
  await expect(row.getByTestId('request-status')).toHaveText('revoked');
  await expect(row).toContainText('22/tcp revoked (revoked by user)');

  // The activity log shows each step, and the chain verifies.
  await page.goto('/activity');
  await expect(page.getByTestId('chain-status')).toContainText(/Hash chain (fully )?verified/);
  await shot(page, testInfo, 'activity');
  const log = page.getByTestId('activity-table');
  for (const action of ['vm.create', 'policy.create', 'request', 'revoke', 'sign-in']) {
    await expect(log.locator(`tr[data-action="${action}"]`).first()).toBeVisible();
  }
  await expect(log.locator('tr[data-action="request"]').first()).toContainText('rotate TLS certificates');
  await page.goto('/activity?actor=rita&action=revoke');
  await expect(page.getByTestId('activity-table').locator('tbody tr')).toHaveCount(1);
  const csv = await page.request.get('/activity.csv?action=request');
  expect(csv.status()).toBe(200);
  expect(await csv.text()).toContain('rotate TLS certificates');

  // Rita is a requester: no admin controls for her.
  await page.goto('/jit?tab=configured');
  await expect(page.getByRole('link', { name: 'Add VM' })).toHaveCount(0);
  void ADMIN_PASSWORD;
});

test('a request that needs approval waits for a second user, who approves it', async ({ page, browser, portal, pageErrors }, testInfo) => {
  await bootstrapAdmin(page, testInfo, portal);
  await addVm(page, testInfo, { name: 'win-1', group: 'prod', addresses: '198.51.100.9', os: 'windows', exposed: '3389' });
  await page.getByRole('link', { name: 'Enable JIT' }).click();
  await ready(page, testInfo);
  for (const row of [2, 3, 4]) await page.getByLabel(`Port row ${row} on`).uncheck();
  await page.getByLabel('Port of row 1').fill('3389');
  await page.getByLabel('Allowed source IPs of row 1').fill('127.0.0.0/8, 2001:db8::/32');
  await page.getByLabel('Approval required, row 1').check();
  await page.getByRole('button', { name: 'Save JIT policy' }).click();
  await expect(page).toHaveURL(/\/jit\?tab=configured/);
  await createUser(page, testInfo, { username: 'rita', displayName: 'Rita', password: 'requester secret 2026', role: 'requester' });
  await createUser(page, testInfo, { username: 'alex', displayName: 'Alex Approver', password: 'approver secret 2026', role: 'approver' });
  await signOut(page, testInfo);

  await signIn(page, testInfo, 'rita', 'requester secret 2026');
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Welcome, Rita');
  await openRequestForm(page, testInfo, ['win-1']);
  await ready(page, testInfo);
  await page.getByLabel(/^3389 \(TCP\)/).check();
  await page.getByLabel(/Duration in minutes/).fill('30');
  await page.getByRole('button', { name: 'Open ports' }).click();
  await expect(page).toHaveURL(/\/requests(\?flash=\w+)?$/);
  const mine = page.locator('[data-testid="my-requests"] tr[data-vm="win-1"]');
  await expect(mine.getByTestId('request-status')).toHaveText('pending approval');

  // Alex, in a browser of his own, approves.
  const context = await browser.newContext({ baseURL: portal.base, javaScriptEnabled: testInfo.project.use.javaScriptEnabled });
  const alex = await context.newPage();
  watch(alex, pageErrors);
  await signIn(alex, testInfo, 'alex', 'approver secret 2026');
  await expect(alex.getByRole('heading', { level: 1 })).toHaveText('Welcome, Alex Approver');
  await alex.goto('/requests');
  await ready(alex, testInfo);
  const queued = alex.locator('[data-testid="approval-queue"] tr[data-vm="win-1"]');
  await expect(queued).toContainText('rita');
  await queued.getByLabel('Approval comment').fill('ok for the patch window');
  await queued.getByRole('button', { name: 'Approve' }).click();
  await expect(alex.getByTestId('approval-queue')).toHaveCount(0);
  await context.close();

  await page.reload();
  await expect(mine.getByTestId('request-status')).toHaveText('active');
  await expect(mine).toContainText('ok for the patch window');
  await expect(mine.locator('.countdown')).toContainText('left');
});
