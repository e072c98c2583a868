// Two approvers in the browser: a port needs 2 distinct approvals; the request waits
// after the first ("1 of 2 approvals"), leaves that approver's queue, and opens at the
// second. Runs hydrated and with JavaScript disabled.
import { test, expect, ready, watch } from './fixtures.js';
import { addVm, bootstrapAdmin, createUser, signIn, signOut, openRequestForm } from './helpers.js';

/// Signs `username` in, in a browser of their own (same JavaScript setting as the test).
async function ownBrowser(browser, portal, pageErrors, testInfo, username, password) {
  const context = await browser.newContext({ baseURL: portal.base, javaScriptEnabled: testInfo.project.use.javaScriptEnabled });
  const page = await context.newPage();
  watch(page, pageErrors);
  await signIn(page, testInfo, username, password);
  await expect(page.getByRole('heading', { level: 1 })).toContainText('Welcome');
  return { context, page };
}

/// Port 3389 alone (the Windows defaults' other rows off), from 127.0.0.0/8.
async function fillPolicy(page, testInfo, { approval, approvers }) {
  await ready(page, testInfo);
  for (const row of [2, 3, 4]) await page.getByLabel(`Port row ${row} on`).uncheck();
  await page.getByLabel('Port of row 1').fill('3389');
  await page.getByLabel('Allowed source IPs of row 1').fill('127.0.0.0/8');
  await page.getByLabel('Approval required, row 1').setChecked(approval);
  await page.getByLabel('Approvers needed, row 1').fill(approvers);
}

test('a port that needs two approvers opens at the second approval', async ({ page, browser, portal, pageErrors }, testInfo) => {
  await bootstrapAdmin(page, testInfo, portal);
  await addVm(page, testInfo, { name: 'win-1', group: 'prod', addresses: '198.51.100.9', os: 'windows', exposed: '3389' });
  await page.getByRole('link', { name: 'Enable JIT' }).click();
  await ready(page, testInfo);
  await expect(page.getByLabel('Approvers needed, row 1')).toHaveValue('1');
  // Two approvers without "Approval required": refused, with the message on the field.
  await fillPolicy(page, testInfo, { approval: false, approvers: '2' });
  await page.getByRole('button', { name: 'Save JIT policy' }).click();
  await expect(page.getByText('More than one approver needs “Approval required” on.')).toBeVisible();
  // Without JavaScript the form comes back as stored (nothing was): fill it again.
  await fillPolicy(page, testInfo, { approval: true, approvers: '2' });
  await page.getByRole('button', { name: 'Save JIT policy' }).click();
  await expect(page).toHaveURL(/\/jit\?tab=configured/);
  await page.locator('tr[data-vm="win-1"]').getByRole('link', { name: 'win-1' }).click();
  await expect(page.getByTestId('policy')).toContainText('required, 2 approvers');

  await createUser(page, testInfo, { username: 'rita', displayName: 'Rita', password: 'requester secret 2026', role: 'requester' });
  await createUser(page, testInfo, { username: 'alex', displayName: 'Alex Approver', password: 'approver secret 2026', role: 'approver' });
  await createUser(page, testInfo, { username: 'blair', displayName: 'Blair Approver', password: 'approver secret 2027', role: 'approver' });
  await signOut(page, testInfo);

  // Rita asks for port 3389.
  await signIn(page, testInfo, 'rita', 'requester secret 2026');
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Welcome, Rita');
  await openRequestForm(page, testInfo, ['win-1']);
  await ready(page, testInfo);
  await expect(page.getByLabel(/^3389 \(TCP\)/)).toHaveAccessibleName(/needs 2 approvals/);
  await page.getByLabel(/^3389 \(TCP\)/).check();
  await page.getByLabel(/Duration in minutes/).fill('30');
  await page.getByRole('button', { name: 'Open ports' }).click();
  await expect(page).toHaveURL(/\/requests(\?flash=\w+)?$/);
  const mine = page.locator('[data-testid="my-requests"] tr[data-vm="win-1"]');
  await expect(mine.getByTestId('request-status')).toHaveText('pending approval');
  await expect(mine.getByTestId('approvals')).toHaveText('0 of 2 approvals');

  // Alex approves first: the request waits, and leaves his queue.
  const alex = await ownBrowser(browser, portal, pageErrors, testInfo, 'alex', 'approver secret 2026');
  await alex.page.goto('/requests');
  await ready(alex.page, testInfo);
  const queuedForAlex = alex.page.locator('[data-testid="approval-queue"] tr[data-vm="win-1"]');
  await expect(queuedForAlex).toContainText('rita');
  await expect(queuedForAlex.getByTestId('approvals')).toHaveText('0 of 2 approvals');
  await queuedForAlex.getByLabel('Approval comment').fill('first look is fine');
  await queuedForAlex.getByRole('button', { name: 'Approve' }).click();
  await expect(alex.page.getByTestId('approval-queue')).toHaveCount(0);
  // The request's own page no longer offers him a decision.
  const requestId = await mine.getAttribute('data-request');
  await alex.page.goto(`/requests/${requestId}`);
  await expect(alex.page.getByTestId('approvals')).toHaveText('1 of 2 approvals');
  await expect(alex.page.getByTestId('decide')).toHaveCount(0);
  await alex.context.close();

  await page.reload();
  await expect(mine.getByTestId('request-status')).toHaveText('pending approval');
  await expect(mine.getByTestId('approvals')).toHaveText('1 of 2 approvals');
  await expect(mine.locator('.countdown')).toHaveCount(0);

  // Blair sees one approval given and completes it.
  const blair = await ownBrowser(browser, portal, pageErrors, testInfo, 'blair', 'approver secret 2027');
  await blair.page.goto('/requests');
  await ready(blair.page, testInfo);
  const queuedForBlair = blair.page.locator('[data-testid="approval-queue"] tr[data-vm="win-1"]');
  await expect(queuedForBlair.getByTestId('approvals')).toHaveText('1 of 2 approvals');
  await queuedForBlair.getByLabel('Approval comment').fill('second approval');
  await queuedForBlair.getByRole('button', { name: 'Approve' }).click();
  await expect(blair.page.getByTestId('approval-queue')).toHaveCount(0);
  await blair.context.close();

  await page.reload();
  await expect(mine.getByTestId('request-status')).toHaveText('active');
  await expect(mine.getByTestId('approvals')).toHaveCount(0);
  await expect(mine).toContainText('second approval');
  await expect(mine.locator('.countdown')).toContainText('left');
});
