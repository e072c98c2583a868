// Status that tells the truth (issue 15, items 4 and 5), as an administrator meets it: tab
// titles with their counts; a configured VM without an agent is a warning, not green; a
// VM whose agent cannot enforce (no nftables) leaves Recommended for Unsupported with
// the agent's words, and comes back once the agent succeeds; "Enforced" only once the
// agent applied the VM's state; the VM page does not ask to enroll a working agent.
// The agent is driven over its real HTTP protocol (enroll, state, report). Runs hydrated
// and with JavaScript disabled; axe on the pages it shows (hydrated).
import AxeBuilder from '@axe-core/playwright';
import { test, expect, ready } from './fixtures.js';
import { bootstrapAdmin } from './helpers.js';

async function call(page, portal, name, form) {
  const res = await page.request.post(`/api/${name}`, { form, headers: { Origin: portal.base } });
  expect(res.status(), `${name}: ${await res.text()}`).toBe(200);
  return res.json();
}

async function noSeriousA11yViolations(page, testInfo) {
  if (testInfo.project.use.javaScriptEnabled === false) return;
  const results = await new AxeBuilder({ page }).analyze();
  const serious = results.violations.filter((v) => ['serious', 'critical'].includes(v.impact));
  expect(serious.map((v) => `${v.id}: ${v.help}`)).toEqual([]);
}

/// A fake host's agent speaking the documented protocol.
async function enrollAgent(request, base, token, hostname) {
  const res = await request.post(`${base}/agent/v1/enroll`, { data: { token, hostname } });
  expect(res.status(), await res.text()).toBe(200);
  const { agent_id: id, secret } = await res.json();
  const auth = { Authorization: `Bearer ${id}.${secret}` };
  return {
    async generation() {
      const s = await request.get(`${base}/agent/v1/state?after=-1&wait=0`, { headers: auth });
      expect(s.status()).toBe(200);
      return (await s.json()).generation;
    },
    async report(error, listening) {
      // One report a second per agent: wait out the limit instead of being refused.
      for (let tries = 0; tries < 20; tries++) {
        const r = await request.post(`${base}/agent/v1/report`, {
          headers: auth,
          data: { generation: await this.generation(), error, listening_ports: listening },
        });
        if (r.status() === 204) return;
        expect(r.status(), await r.text()).toBe(429);
        await new Promise((done) => setTimeout(done, 250));
      }
      throw new Error('the report was never accepted');
    },
  };
}

function badge(row) {
  return row.locator('.state');
}

test('tabs count their VMs and status badges say only what the agent reported', async ({ page, portal, request }, testInfo) => {
  await bootstrapAdmin(page, testInfo, portal);
  const web1 = await call(page, portal, 'save_vm', {
    id: '', name: 'web-1', group: 'prod', addresses: '198.51.100.5', os: 'linux', exposed_ports: '22',
  });
  const web2 = await call(page, portal, 'save_vm', {
    id: '', name: 'web-2', group: 'prod', addresses: '198.51.100.6', os: 'linux', exposed_ports: '22',
  });
  await call(page, portal, 'save_vm', {
    id: '', name: 'web-3', group: 'prod', addresses: '198.51.100.7', os: 'linux', exposed_ports: '',
  });
  await call(page, portal, 'enable_jit', {
    'vm_ids[0]': web1,
    'rules[0][enabled]': 'on', 'rules[0][port]': '22', 'rules[0][protocol]': 'tcp', 'rules[0][max_minutes]': '60',
  });

  await page.goto('/jit?tab=configured');
  await ready(page, testInfo);
  const tabs = page.getByRole('navigation', { name: 'VM lists' });
  await expect(tabs.getByRole('link')).toHaveText([
    'Configured (1)', 'Recommended (1)', 'Not configured (1)', 'Unsupported (0)',
  ]);
  // Configured without an agent: a warning, never green.
  const row1 = page.locator('tr[data-vm="web-1"]');
  await expect(badge(row1)).toHaveAttribute('data-level', 'warning');
  await expect(badge(row1)).toContainText('Not enforced: no agent');
  await noSeriousA11yViolations(page, testInfo);

  // web-2's agent runs on a host without nftables.
  const enrollment = await call(page, portal, 'create_enrollment_token', { vm_id: web2 });
  const agent = await enrollAgent(request, portal.base, enrollment.token, 'web-2');
  await agent.report('nft: No such file or directory (os error 2)', [22]);
  await page.goto('/jit?tab=recommended');
  await ready(page, testInfo);
  await expect(page.locator('tr[data-vm="web-2"]')).toHaveCount(0);
  await expect(tabs.getByRole('link', { name: 'Unsupported (1)' })).toBeVisible();
  await tabs.getByRole('link', { name: 'Unsupported (1)' }).click();
  await expect(page).toHaveURL(/tab=unsupported/);
  await expect(page.getByRole('columnheader', { name: 'Reason' })).toBeVisible();
  const row2 = page.locator('tr[data-vm="web-2"]');
  await expect(badge(row2)).toHaveAttribute('data-level', 'error');
  await expect(badge(row2)).toContainText('Cannot enforce: nft: No such file or directory (os error 2)');
  await expect(page.getByTestId('enable-selected')).toHaveCount(0);
  await noSeriousA11yViolations(page, testInfo);

  // Its page shows the agent as enrolled and offers a replacement, not an enrollment.
  await page.goto(`/vms/${web2}`);
  await ready(page, testInfo);
  await expect(page.getByTestId('vm-enforcement').locator('.state')).toHaveAttribute('data-level', 'error');
  await expect(page.getByTestId('agent-summary')).toContainText('portcullis-agent is enrolled on this VM');
  await expect(page.getByRole('button', { name: 'Create enrollment token' })).toHaveCount(0);
  await expect(page.getByRole('button', { name: 'Create a token to replace the agent' })).toBeVisible();

  // nftables installed: the next report succeeds, and the VM is back on Recommended.
  await agent.report('', [22]);
  await page.goto('/jit?tab=recommended');
  await ready(page, testInfo);
  await expect(badge(page.locator('tr[data-vm="web-2"]'))).toHaveText(/Agent connected; JIT not enabled/);
  await expect(tabs.getByRole('link', { name: 'Unsupported (0)' })).toBeVisible();
  // A working agent's page keeps the replacement out of the way.
  await page.goto(`/vms/${web2}`);
  await ready(page, testInfo);
  await expect(page.getByTestId('agent-summary')).toContainText('and reporting');
  await expect(page.getByRole('button', { name: 'Create a token to replace the agent' })).toBeHidden();

  // JIT on web-2: "Initiated" until its agent applies the new state, then "Enforced".
  await call(page, portal, 'enable_jit', {
    'vm_ids[0]': web2,
    'rules[0][enabled]': 'on', 'rules[0][port]': '22', 'rules[0][protocol]': 'tcp', 'rules[0][max_minutes]': '60',
  });
  await page.goto(`/vms/${web2}`);
  await ready(page, testInfo);
  const status = page.getByTestId('vm-enforcement').locator('.state');
  await expect(status).toHaveAttribute('data-level', 'info');
  await expect(status).toContainText('Initiated: waiting for the agent');
  await agent.report('', [22]);
  await page.reload();
  await ready(page, testInfo);
  await expect(status).toHaveAttribute('data-level', 'ok');
  await expect(status).toContainText('Enforced: ports closed');
  await noSeriousA11yViolations(page, testInfo);
});
