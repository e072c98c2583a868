// One request form for several VMs: each VM's ports are chosen (or the VM left out), the
// duration bound and "required" follow the ports ticked, and ports that need approval are
// asked for together with ports that don't: those open at once, the others wait.
// Runs hydrated and with JavaScript disabled.
import { test, expect, ready } from './fixtures.js';
import { addVm, bootstrapAdmin, createUser, signIn, signOut, openRequestForm } from './helpers.js';

const hydrated = (testInfo) => testInfo.project.use.javaScriptEnabled !== false;

test('a request over two VMs leaves one out and opens what needs no approval at once', async ({ page, portal }, testInfo) => {
  await bootstrapAdmin(page, testInfo, portal);
  await addVm(page, testInfo, { name: 'win-1', group: 'prod', addresses: '198.51.100.11', os: 'windows', exposed: '3389' });
  await addVm(page, testInfo, { name: 'win-2', group: 'prod', addresses: '198.51.100.12', os: 'windows', exposed: '3389' });

  // One policy on both: 22 without approval (60 minutes), 3389 with approval and a
  // justification (180 minutes); the Windows defaults' WinRM rows off.
  await page.goto('/jit?tab=all');
  await ready(page, testInfo);
  await page.getByLabel('Select win-1').check();
  await page.getByLabel('Select win-2').check();
  await page.getByRole('button', { name: hydrated(testInfo) ? 'Enable JIT on 2 VMs' : 'Enable JIT on selected VMs' }).click();
  await expect(page).toHaveURL(/\/jit\/configure\?/);
  await ready(page, testInfo);
  await expect(page.getByLabel('Port of row 1')).toHaveValue('22');
  await expect(page.getByLabel('Port of row 2')).toHaveValue('3389');
  await page.getByLabel('Max request time of row 1').fill('60');
  await page.getByLabel('Max request time of row 2').fill('180');
  await page.getByLabel('Allowed source IPs of row 2').fill('127.0.0.0/8');
  await page.getByLabel('Justification required, row 2').check();
  await page.getByLabel('Approval required, row 2').check();
  for (const row of [3, 4]) await page.getByLabel(`Port row ${row} on`).uncheck();
  await page.getByRole('button', { name: 'Save JIT policy' }).click();
  await expect(page).toHaveURL(/\/jit\?tab=configured/);
  await expect(page.locator('tr[data-vm]')).toHaveCount(2);

  await createUser(page, testInfo, { username: 'rita', displayName: 'Rita', password: 'requester secret 2026', role: 'requester' });
  await signOut(page, testInfo);
  await signIn(page, testInfo, 'rita', 'requester secret 2026');
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Welcome, Rita');
  await openRequestForm(page, testInfo, ['win-1', 'win-2']);
  await expect(page).toHaveURL(/\/jit\/request\?vm=.*&vm=/);
  await ready(page, testInfo);

  const form = page.locator('form', { has: page.getByRole('button', { name: 'Open ports' }) });
  const win1 = form.getByRole('group', { name: 'win-1' });
  const win2 = form.getByRole('group', { name: 'win-2' });
  const summary = page.getByTestId('approval-summary');
  const durationLabel = page.getByTestId('duration-label');
  const justificationLabel = page.getByTestId('justification-label');
  if (hydrated(testInfo)) {
    // A box ticked before the page hydrated (or restored by the browser on coming back)
    // counts once it has.
    let release;
    const gate = new Promise((ok) => { release = ok; });
    await page.route('**/*.wasm', async (route) => { await gate; await route.continue(); });
    await page.reload({ waitUntil: 'domcontentloaded' });
    await win1.getByLabel(/^3389 \(TCP\)/).check();
    release();
    await ready(page, testInfo);
    await expect(durationLabel).toHaveText('Duration in minutes (at most 180)');
    await expect(summary).toHaveText('1 port chosen, approval needed.');
    await page.unroute('**/*.wasm');
    await win1.getByLabel(/^3389 \(TCP\)/).uncheck();
  }
  // Before any port is chosen the labels speak of all of them, and say that both kinds
  // may be asked for together.
  await expect(durationLabel).toHaveText('Duration in minutes (at most 60, or as long as each chosen port allows)');
  await expect(justificationLabel).toHaveText('Justification (required for the ports that say so)');
  await expect(summary).toContainText('Ports that need approval may be chosen with ports that don\'t');

  // Nothing chosen: one message on the ports, nothing created.
  await page.getByRole('button', { name: 'Open ports' }).click();
  await expect(page.locator('#ports-error')).toHaveText('Choose at least one port.');
  await ready(page, testInfo);

  // 3389 alone: its own bound and its justification.
  await win1.getByLabel(/^3389 \(TCP\)/).check();
  if (hydrated(testInfo)) {
    await expect(durationLabel).toHaveText('Duration in minutes (at most 180)');
    await expect(justificationLabel).toHaveText('Justification (required)');
    await expect(summary).toHaveText('1 port chosen, approval needed.');
  }
  // With 22 too: the tighter bound of the two.
  await win1.getByLabel(/^22 \(TCP\)/).check();
  if (hydrated(testInfo)) {
    await expect(durationLabel).toHaveText('Duration in minutes (at most 60)');
    await expect(summary).toHaveText('1 port without approval, 1 port waiting for approval in a request of their own.');
    await win1.getByLabel(/^3389 \(TCP\)/).uncheck();
    await expect(justificationLabel).toHaveText('Justification');
    await expect(summary).toHaveText('1 port chosen, no approval needed.');
    await win1.getByLabel(/^3389 \(TCP\)/).check();
  }
  // Over the tighter bound: the message names it, nothing is created.
  await page.getByLabel(/Duration in minutes/).fill('90');
  await page.getByLabel(/^Justification/).fill('patch the RDP gateway');
  await page.getByRole('button', { name: 'Open ports' }).click();
  await expect(page.locator('#duration-error')).toHaveText('Requests on win-1 are limited to 60 minutes.');

  // win-2 is left out: nothing ticked there.
  await ready(page, testInfo);
  await win1.getByLabel(/^22 \(TCP\)/).check();
  await win1.getByLabel(/^3389 \(TCP\)/).check();
  await expect(win2.getByRole('checkbox', { checked: true })).toHaveCount(0);
  await page.getByLabel(/Duration in minutes/).fill('30');
  await page.getByLabel(/^Justification/).fill('patch the RDP gateway');
  await page.getByRole('button', { name: 'Open ports' }).click();
  await expect(page).toHaveURL(/\/requests\?flash=\w+$/);
  await expect(page.getByTestId('flash')).toHaveText(
    'Access to win-1 (22/tcp) is open. Your request for win-1 (3389/tcp) waits for approval.');

  const mine = page.locator('[data-testid="my-requests"] tr[data-vm="win-1"]');
  await expect(mine).toHaveCount(2);
  const open = mine.filter({ hasText: '22/tcp active' });
  await expect(open.getByTestId('request-status')).toHaveText('active');
  const waiting = mine.filter({ hasText: '3389/tcp' });
  await expect(waiting.getByTestId('request-status')).toHaveText('pending approval');
  await expect(page.locator('[data-testid="my-requests"] tr[data-vm="win-2"]')).toHaveCount(0);
});
