// Notifications in the browser: an administrator adds a webhook channel (its signing key
// shown once), sends a test that a real receiver gets, routes "waiting for approval" to
// it, sets their own e-mail, and approves a request from the page its message links to,
// reached signed out through the sign-in page.
import { createServer } from 'node:http';
import { test, expect, ready } from './fixtures.js';
import { ADMIN_PASSWORD, addVm, bootstrapAdmin, createUser, signIn, signOut, openRequestForm } from './helpers.js';

/// A webhook receiver on a free loopback port: records every POST and answers 200.
function startReceiver() {
  const received = [];
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      if (req.method === 'POST') {
        received.push({ path: req.url, headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      }
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok');
    });
  });
  return new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => ok({
      received,
      port: server.address().port,
      byEvent: (event) => received.filter((m) => m.headers['portcullis-event'] === event),
      close: () => new Promise((done) => { server.closeAllConnections(); server.close(done); }),
    }));
  });
}

test('an administrator sets up a webhook and approves a request from its link', async ({ page, portal }, testInfo) => {
  const hook = await startReceiver();
  try {
    await bootstrapAdmin(page, testInfo, portal);
    await page.getByRole('link', { name: 'Notifications', exact: true }).click();
    await expect(page).toHaveURL(/\/admin\/notifications$/);
    await ready(page, testInfo);
    await expect(page.getByText('No channel yet.')).toBeVisible();

    // A URL of the wrong scheme: the message is next to the field, nothing is added.
    const add = page.getByTestId('add-channel');
    await add.getByLabel('Name', { exact: true }).fill('ops hook');
    await add.getByLabel('Kind').selectOption('webhook');
    await add.getByLabel('URL, or SMTP server host:port').fill('ftp://127.0.0.1/hook');
    await add.getByRole('button', { name: 'Add channel' }).click();
    await expect(page.locator('#ch-target-error')).toContainText('starts with https:// or http://');
    await expect(page.getByText('No channel yet.')).toBeVisible();

    // The real one, without a signing key: one is made and shown once.
    await ready(page, testInfo);
    await add.getByLabel('Name', { exact: true }).fill('ops hook');
    await add.getByLabel('Kind').selectOption('webhook');
    await add.getByLabel('URL, or SMTP server host:port').fill(`http://127.0.0.1:${hook.port}/hook`);
    await add.getByRole('button', { name: 'Add channel' }).click();
    await expect(page.getByTestId('notify-done')).toContainText('Channel ops hook added.');
    await expect(page.getByTestId('signing-key')).toHaveText(/^[0-9a-f]{64}$/);
    const row = page.locator('tr[data-channel="ops hook"]');
    await expect(row).toContainText('Webhook (signed JSON)');
    // The URL's path is never shown back.
    await expect(row).toContainText(`http://127.0.0.1:${hook.port}/…`);
    await page.reload();
    await ready(page, testInfo);
    await expect(page.getByTestId('signing-key')).toHaveCount(0);
    await expect(row.getByTestId('last-delivery')).toContainText('none yet');

    // Send test: the page says at once that it was delivered, and the receiver has it.
    await row.getByRole('button', { name: 'Send test' }).click();
    await expect(row.getByTestId('test-result')).toHaveText('Delivered.', { timeout: 20_000 });
    expect(hook.byEvent('test')).toHaveLength(1);
    const [sent] = hook.byEvent('test');
    expect(sent.path).toBe('/hook');
    expect(sent.headers['content-type']).toContain('application/json');
    expect(sent.headers['portcullis-signature']).toBeTruthy();
    expect(JSON.parse(sent.body).event).toBe('test');
    // The channel's last delivery and its messages say so too (once the list is reloaded).
    await expect(row.getByTestId('last-delivery')).toContainText('delivered');
    await expect(page.locator('details[data-channel="ops hook"] summary')).toHaveText('ops hook: 1 recent message');

    // A routing rule: requests waiting for approval on VMs of group "prod" go to the hook.
    await ready(page, testInfo);
    const rule = page.getByTestId('add-route');
    await rule.getByLabel('Channel').selectOption({ label: 'ops hook' });
    await rule.getByLabel('Event').selectOption({ label: 'Request waits for approval' });
    await rule.getByLabel('VM group').fill('prod');
    await rule.getByRole('button', { name: 'Add rule' }).click();
    await expect(page.getByTestId('notify-done')).toContainText('Routing rule added.');
    const routes = page.getByTestId('routes').locator('tr[data-route]');
    await expect(routes).toHaveCount(1);
    await expect(routes).toContainText('ops hook');
    await expect(routes).toContainText('Request waits for approval');
    await expect(routes).toContainText('prod');

    // The administrator's own e-mail settings: a bad value is refused next to its field.
    await page.getByRole('link', { name: 'My notifications' }).click();
    await expect(page).toHaveURL(/\/account\/notifications$/);
    await ready(page, testInfo);
    await page.getByLabel('Minutes before my access ends to warn me').fill('5000');
    await page.getByRole('button', { name: 'Save settings' }).click();
    await expect(page.locator('#me-warn_minutes-error')).toHaveText('Between 0 (no warning) and 1440 minutes.');
    await ready(page, testInfo);
    await page.getByLabel('E-mail address').fill('admin@example.com');
    await page.getByLabel('E-mail me about my requests and approvals').check();
    await page.getByLabel('Minutes before my access ends to warn me').fill('15');
    await page.getByRole('button', { name: 'Save settings' }).click();
    await expect(page.getByTestId('settings-saved')).toHaveText('Your notification settings are saved.');
    await page.reload();
    await ready(page, testInfo);
    await expect(page.getByTestId('settings-saved')).toHaveCount(0);
    await expect(page.getByLabel('E-mail address')).toHaveValue('admin@example.com');
    await expect(page.getByLabel('E-mail me about my requests and approvals')).toBeChecked();
    await expect(page.getByLabel('Minutes before my access ends to warn me')).toHaveValue('15');

    // A VM in group "prod" whose RDP port needs approval, and a requester who asks for it.
    await addVm(page, testInfo, { name: 'win-1', group: 'prod', addresses: '198.51.100.9', os: 'windows', exposed: '3389' });
    await page.getByRole('link', { name: 'Enable JIT' }).click();
    await ready(page, testInfo);
    for (const r of [2, 3, 4]) await page.getByLabel(`Port row ${r} on`).uncheck();
    await page.getByLabel('Port of row 1').fill('3389');
    await page.getByLabel('Allowed source IPs of row 1').fill('127.0.0.0/8, 2001:db8::/32');
    await page.getByLabel('Approval required, row 1').check();
    await page.getByRole('button', { name: 'Save JIT policy' }).click();
    await expect(page).toHaveURL(/\/jit\?tab=configured/);
    await createUser(page, testInfo, { username: 'rita', displayName: 'Rita', password: 'requester secret 2026', role: 'requester' });
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
    const requestId = await mine.getAttribute('data-request');
    expect(requestId).toBeTruthy();
    // The request list links each request to its own page.
    await expect(mine.getByRole('link', { name: 'Details' })).toHaveAttribute('href', `/requests/${requestId}`);
    await signOut(page, testInfo);

    // The routed message reached the hook, linking to the request's page.
    await expect.poll(() => hook.byEvent('approval.waiting').length, { timeout: 15_000 }).toBe(1);
    const waiting = JSON.parse(hook.byEvent('approval.waiting')[0].body);
    expect(waiting.event).toBe('approval.waiting');
    expect(waiting.request_id).toBe(requestId);
    expect(waiting.url).toMatch(new RegExp(`/requests/${requestId}$`));

    // Following the link signed out leads through the sign-in page back to the request.
    await page.goto(`/requests/${requestId}`);
    await expect(page).toHaveURL(new RegExp(`/login\\?next=/requests/${requestId}$`));
    await ready(page, testInfo);
    await page.getByLabel('User name').fill('admin');
    await page.getByLabel('Password', { exact: true }).fill(ADMIN_PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect(page).toHaveURL(new RegExp(`/requests/${requestId}$`));
    await ready(page, testInfo);
    await expect(page.getByRole('heading', { level: 1 })).toHaveText('Access to win-1');
    await expect(page.getByTestId('request-status')).toHaveText('pending approval');
    await expect(page.getByTestId('requester')).toContainText('rita');
    // The header counts what waits for this user.
    await expect(page.getByTestId('waiting-badge')).toContainText('1');
    await expect(page.getByRole('link', { name: /Requests.*1 waiting for you/ })).toBeVisible();

    await page.getByLabel('Approval comment (optional)').fill('approved from the link');
    await page.getByRole('button', { name: 'Approve' }).click();
    await expect(page.getByTestId('request-status')).toHaveText('active');
    await expect(page.getByTestId('decided-by')).toHaveText('admin');
    await expect(page.getByTestId('decide')).toHaveCount(0);
    await expect(page.locator('.facts')).toContainText('approved from the link');

    // Nothing waits for the administrator any more.
    await page.goto('/requests');
    await ready(page, testInfo);
    await expect(page.getByTestId('waiting-badge')).toHaveCount(0);
  } finally {
    await hook.close();
  }
});
