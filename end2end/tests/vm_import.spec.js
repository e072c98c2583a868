// Adding many VMs from a CSV file, hydrated and without JavaScript: the preview names a
// bad row by line and column and offers no Import; once fixed, Import adds every VM and
// the VMs page says so. Hydrated, the file chooser reads a file into the text box.
import AxeBuilder from '@axe-core/playwright';
import { test, expect, ready } from './fixtures.js';
import { bootstrapAdmin } from './helpers.js';

const BAD = [
  'name,group,addresses,os,exposed_ports',
  'csv-web-1,prod,198.51.100.5;2001:db8::5,linux,22',
  'csv-web-2,prod,300.1.1.1,linux,22',
  'csv-sql-1,prod,198.51.100.7,windows,3389',
].join('\n');
const GOOD = BAD.replace('300.1.1.1', '198.51.100.6');

async function noSeriousA11yViolations(page, testInfo) {
  if (testInfo.project.use.javaScriptEnabled === false) return;
  const results = await new AxeBuilder({ page }).analyze();
  const serious = results.violations.filter((v) => ['serious', 'critical'].includes(v.impact));
  expect(serious.map((v) => `${v.id}: ${v.help}`)).toEqual([]);
}

test('VMs imported from CSV: a bad row blocks the import until it is fixed', async ({ page, portal }, testInfo) => {
  await bootstrapAdmin(page, testInfo, portal);

  // Reachable from the VMs page.
  await page.goto('/jit?tab=all');
  await ready(page, testInfo);
  await page.getByRole('link', { name: 'Import from CSV' }).click();
  await expect(page).toHaveURL(/\/vms\/import$/);
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Import VMs from CSV');
  await ready(page, testInfo);
  await noSeriousA11yViolations(page, testInfo);

  const hydrated = testInfo.project.use.javaScriptEnabled !== false;
  if (hydrated) {
    // The file is read in the browser into the text box.
    await page.getByLabel('CSV file').setInputFiles({ name: 'vms.csv', mimeType: 'text/csv', buffer: Buffer.from(BAD) });
    await expect(page.getByLabel('CSV text')).toHaveValue(BAD);
  } else {
    await expect(page.getByLabel('CSV file')).toBeHidden();
    await page.getByLabel('CSV text').fill(BAD);
  }
  await page.getByRole('button', { name: 'Preview' }).click();

  const preview = page.getByTestId('import-preview');
  await expect(preview.getByTestId('import-summary')).toContainText('1 problem found');
  await expect(preview.getByTestId('import-row')).toHaveCount(3);
  await expect(preview.locator('tr[data-line="3"]')).toContainText('Line 3, addresses:');
  await expect(preview.locator('tr[data-line="3"]')).toContainText("'300.1.1.1' is not an IPv4 or IPv6 address.");
  await expect(preview.locator('tr[data-line="2"]')).toContainText('198.51.100.5, 2001:db8::5');
  await expect(page.getByTestId('import-submit')).toHaveCount(0);
  await noSeriousA11yViolations(page, testInfo);

  // Nothing was stored.
  await page.goto('/jit?tab=all');
  await expect(page.getByTestId('vm-table')).not.toContainText('csv-web-1');

  // Fixed, previewed, imported.
  await page.goto('/vms/import');
  await ready(page, testInfo);
  await page.getByLabel('CSV text').fill(GOOD);
  await page.getByRole('button', { name: 'Preview' }).click();
  await expect(page.getByTestId('import-summary')).toContainText('3 VMs ready to import');
  await expect(page.getByLabel('CSV text')).toHaveValue(GOOD);
  await page.getByTestId('import-submit').click();

  await expect(page).toHaveURL(/\/jit\?tab=all&flash=\w+$/);
  await expect(page.getByTestId('flash')).toHaveText('Imported 3 VMs.');
  const table = page.getByTestId('vm-table');
  for (const name of ['csv-web-1', 'csv-web-2', 'csv-sql-1']) {
    await expect(table).toContainText(name);
  }
  // Once: a reload does not repeat the message.
  await page.reload();
  await expect(page.getByTestId('flash')).toHaveCount(0);

  // The same file again: every name is taken now, and nothing more is stored.
  await page.goto('/vms/import');
  await ready(page, testInfo);
  await page.getByLabel('CSV text').fill(GOOD);
  await page.getByRole('button', { name: 'Preview' }).click();
  await expect(page.getByTestId('import-summary')).toContainText('3 problems found');
  await expect(page.locator('tr[data-line="4"]')).toContainText('A VM with this name already exists.');
});
