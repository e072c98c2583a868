// A window booked ahead in the browser: the policy says how many days ahead a request may
// start; a start beyond that is refused beside the field; a window booked for tomorrow
// waits as "scheduled" with the time it opens, shows on the VM's timeline, and can be
// cancelled before it opens. Runs hydrated and with JavaScript disabled.
import { test, expect, ready } from './fixtures.js';
import { addVm, bootstrapAdmin, confirmWith, openRequestForm } from './helpers.js';

/// `days` from now at 09:00 UTC, as a datetime-local field takes it.
function utcMorning(days) {
  const d = new Date(Date.now() + days * 86_400_000);
  return `${d.toISOString().slice(0, 10)}T09:00`;
}

async function fillRequest(page, testInfo, start) {
  await ready(page, testInfo);
  await page.getByLabel(/^22 \(TCP\)/).check();
  await page.getByLabel(/Duration in minutes/).fill('30');
  await page.getByLabel(/^Start, in UTC/).fill(start);
  await page.getByRole('button', { name: 'Open ports' }).click();
}

test('a window booked for tomorrow waits, shows on the timeline and can be cancelled', async ({ page, portal }, testInfo) => {
  await bootstrapAdmin(page, testInfo, portal);
  await addVm(page, testInfo, { name: 'web-1', group: 'prod', addresses: '198.51.100.5', os: 'linux', exposed: '22' });
  await page.getByRole('link', { name: 'Enable JIT' }).click();
  await ready(page, testInfo);
  await expect(page.getByLabel('Schedule ahead at most, days, row 1')).toHaveValue('7');
  await page.getByLabel('Schedule ahead at most, days, row 1').fill('45');
  await page.getByRole('button', { name: 'Save JIT policy' }).click();
  await expect(page.getByText('Scheduling ahead is a whole number of days from 0 to 30.')).toBeVisible();
  await ready(page, testInfo);
  await page.getByLabel('Schedule ahead at most, days, row 1').fill('2');
  await page.getByRole('button', { name: 'Save JIT policy' }).click();
  await expect(page).toHaveURL(/\/jit\?tab=configured/);

  await openRequestForm(page, testInfo, ['web-1']);
  await expect(page).toHaveURL(/\/jit\/request\?vm=/);
  await expect(page.locator('#f-start-hint')).toContainText('up to 2 days ahead');

  // Five days ahead is beyond the policy's two: refused beside the start, nothing stored.
  await fillRequest(page, testInfo, utcMorning(5));
  await expect(page.locator('#start-error')).toHaveText('Requests on web-1 may start at most 2 days ahead.');

  const tomorrow = utcMorning(1);
  await fillRequest(page, testInfo, tomorrow);
  await expect(page).toHaveURL(/\/requests(\?flash=\w+)?$/);
  const row = page.locator('[data-testid="my-requests"] tr[data-vm="web-1"]');
  await expect(row).toHaveCount(1);
  await expect(row.getByTestId('request-status')).toHaveText('scheduled');
  await expect(page.getByTestId('flash')).toContainText('Access to web-1 is scheduled for');
  await expect(row.getByTestId('opens')).toContainText('Opens');
  await expect(row).toContainText('22/tcp pending');
  await expect(row.locator('.countdown')).toHaveCount(0);

  // The request's page says when it opens; the VM's timeline shows the booked window.
  await row.getByRole('link', { name: 'Details' }).click();
  await expect(page.getByTestId('opens')).toContainText('scheduled for');
  await page.goto('/jit?tab=configured');
  await page.locator('tr[data-vm="web-1"]').getByRole('link', { name: 'web-1' }).click();
  await expect(page.locator('svg.timeline title').first()).toContainText('and booked ahead');
  await expect(page.locator('svg.timeline rect.booked')).toHaveCount(1);
  // Half an hour of a two-week range, drawn wide enough to see and hover, saying when.
  const booked = page.locator('svg.timeline rect.booked');
  await expect(booked.locator('title')).toHaveText(
    new RegExp(`^admin \\(approved\\): start ${tomorrow.slice(0, 10)} 09:00:00 UTC, end ${tomorrow.slice(0, 10)} 09:30:00 UTC$`));
  expect((await booked.boundingBox()).width).toBeGreaterThanOrEqual(5);

  // Cancelled before it opens: revoked, and gone from the timeline's future.
  await page.goto('/requests');
  await ready(page, testInfo);
  await confirmWith(page, testInfo, row.getByRole('link', { name: /^Revoke access to / }), 'Revoke');
  await expect(row.getByTestId('request-status')).toHaveText('revoked');
  await expect(row.getByTestId('opens')).toHaveCount(0);
});
