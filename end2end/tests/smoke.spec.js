// Every page of the portal, as `make run` serves it (the release build): it loads, hydrates
// (with JavaScript on), and throws or logs no error; a live countdown ticks, which only a
// hydrated page can do. A bundle that does not hydrate cannot pass this.
import AxeBuilder from '@axe-core/playwright';
import { test, expect, ready } from './fixtures.js';
import { bootstrapAdmin } from './helpers.js';

/// Calls a server function in the page's session, as the hydrated page would.
async function call(page, portal, name, form) {
  const res = await page.request.post(`/api/${name}`, { form, headers: { Origin: portal.base } });
  expect(res.status(), `${name}: ${await res.text()}`).toBe(200);
  return res.json();
}

test('every page loads and hydrates without an error, and a countdown ticks', async ({ page, portal }, testInfo) => {
  const hydrated = testInfo.project.use.javaScriptEnabled !== false;
  await page.goto('/login');
  await ready(page, testInfo);
  await bootstrapAdmin(page, testInfo, portal);

  const vm = await call(page, portal, 'save_vm', {
    id: '', name: 'web-1', group: 'prod', addresses: '198.51.100.5', os: 'linux', exposed_ports: '22',
  });
  await call(page, portal, 'save_vm', {
    id: '', name: 'web-2', group: 'prod', addresses: '198.51.100.6', os: 'linux', exposed_ports: '',
  });
  await call(page, portal, 'enable_jit', {
    'vm_ids[0]': vm, 'rules[0][enabled]': 'on', 'rules[0][port]': '22', 'rules[0][protocol]': 'tcp',
    'rules[0][max_minutes]': '60',
  });
  const requested = await call(page, portal, 'request_access', {
    'vm_ids[0]': vm, 'ports[0]': `${vm}:22/tcp`, source_mode: 'my_ip', duration: '30', justification: 'smoke',
  });

  const pages = [
    ['/', /Welcome/],
    ['/jit', /Just-in-time/],
    ['/jit?tab=recommended', /Just-in-time/],
    ['/jit?tab=not_configured', /Just-in-time/],
    ['/jit?tab=all', /Just-in-time/],
    [`/vms/${vm}`, /web-1/],
    ['/vms/new', /Add a VM/],
    [`/jit/configure?vm=${vm}`, /JIT VM access configuration/],
    [`/jit/request?vm=${vm}`, /Request access/],
    ['/requests', /Access requests/],
    ['/activity', /Activity log/],
    ['/tokens', /API tokens/],
    ['/admin/users', /Users & roles/],
    ['/account/password', /password/i],
    ['/admin/notifications', /Notifications/],
    ['/account/notifications', /My notifications/],
    [`/requests/${[].concat(requested)[0]}`, /Access to web-1/],
  ];
  // The notification pages, the request page and the Overview came last: axe finds
  // nothing serious on them (axe runs inside the page, so only hydrated).
  const checked = new Set(['/', '/admin/notifications', '/account/notifications']);
  for (const [path, heading] of pages) {
    const res = await page.goto(path);
    expect(res.status(), path).toBe(200);
    await ready(page, testInfo);
    await expect(page.getByRole('heading', { level: 1 }), path).toHaveText(heading);
    if (hydrated && (checked.has(path) || path.startsWith('/requests/'))) {
      const results = await new AxeBuilder({ page }).analyze();
      const serious = results.violations.filter((v) => ['serious', 'critical'].includes(v.impact));
      expect(serious.map((v) => `${path} ${v.id}: ${v.help}`)).toEqual([]);
    }
  }

  await page.goto('/requests');
  await ready(page, testInfo);
  const countdown = page.locator('[data-testid="my-requests"] .countdown').first();
  await expect(countdown).toContainText('left');
  if (hydrated) {
    const before = await countdown.textContent();
    await expect(countdown).not.toHaveText(before, { timeout: 5_000 });
  }
});
