// A tour of every page of the portal, with something in every list: VMs in each tab, a
// policy, requests in each state, a token, a notification channel with a rule, a second
// user (a requester, whose own pages are seen in her own browser), the CSV import with
// its preview, and a confirmation page. The phone tour (phone.spec.js) and the desktop
// tour (pages.spec.js) walk the same pages and check each with their own `check`.
import { expect, watch } from './fixtures.js';
import { bootstrapAdmin, createUser, signIn, signOut } from './helpers.js';

/// Calls a server function in the page's session, as the hydrated page would.
export async function call(page, portal, name, form) {
  const res = await page.request.post(`/api/${name}`, { form, headers: { Origin: portal.base } });
  expect(res.status(), `${name}: ${await res.text()}`).toBe(200);
  return res.json();
}

/// What overflows the viewport: the document's scroll width, and every rendered element
/// whose box reaches past the right edge, named by a selector.
export function overflow() {
  const width = window.innerWidth;
  const name = (el) => {
    const parts = [];
    for (let e = el; e && e !== document.body && parts.length < 4; e = e.parentElement) {
      let s = e.tagName.toLowerCase();
      if (e.id) s += `#${e.id}`;
      else if (e.classList.length) s += `.${[...e.classList].join('.')}`;
      for (const a of ['data-testid', 'data-label']) if (e.getAttribute(a)) s += `[${a}="${e.getAttribute(a)}"]`;
      parts.unshift(s);
    }
    return parts.join(' > ');
  };
  const wide = [];
  for (const el of document.body.querySelectorAll('*')) {
    if (!el.checkVisibility({ visibilityProperty: true, contentVisibilityAuto: true })) continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    if (r.right > width + 1) wide.push(`${name(el)} (right ${Math.round(r.right)})`);
  }
  return { scrollWidth: document.documentElement.scrollWidth, width, wide };
}

/// The visible body rows of each table in the page, named by its test id or class.
export function tableRows() {
  return [...document.querySelectorAll('table')].map((table) => ({
    table: table.getAttribute('data-testid') || table.className || 'table',
    rows: [...table.querySelectorAll('tbody tr')].filter((tr) =>
      tr.checkVisibility({ visibilityProperty: true, contentVisibilityAuto: true })).length,
  }));
}

/// Fails unless one table of the page shows at least `rows` rows: the list the tour filled
/// (a row of many cells does not stand in for several rows).
export async function expectRows(page, name, rows) {
  const tables = await page.evaluate(tableRows);
  const most = Math.max(0, ...tables.map((t) => t.rows));
  expect(most, `${name}: rows of its fullest table (${JSON.stringify(tables)})`).toBeGreaterThanOrEqual(rows);
}

/// Walks every page. `check(page, name, { rows })` is called on each once it has loaded
/// (`rows`: how many rows at least its fullest table shows); `signedIn(page)` right after the
/// administrator's first sign-in; `listed(page)` after the administrator's pages, before
/// the import and the confirmation page.
export async function tour({ page, portal, browser, pageErrors, testInfo }, check, { signedIn, listed } = {}) {
  await page.goto('/login');
  await check(page, 'login');
  await bootstrapAdmin(page, testInfo, portal);
  if (signedIn) await signedIn(page);

  const vm = async (name, os, exposed) => call(page, portal, 'save_vm', {
    id: '', name, group: 'prod', addresses: '198.51.100.5, 2001:db8:0:1234:5678:9abc:def0:1', os, exposed_ports: exposed,
  });
  const web1 = await vm('web-1-with-a-rather-long-name-for-a-phone', 'linux', '22');
  await vm('web-2', 'linux', '');
  await vm('win-3', 'windows', '3389');
  await call(page, portal, 'enable_jit', {
    'vm_ids[0]': web1,
    'rules[0][enabled]': 'on', 'rules[0][port]': '22', 'rules[0][protocol]': 'tcp', 'rules[0][max_minutes]': '60',
    'rules[1][enabled]': 'on', 'rules[1][port]': '3389', 'rules[1][protocol]': 'tcp', 'rules[1][max_minutes]': '60',
    'rules[1][approval_required]': 'on', 'rules[1][allowed_sources]': '127.0.0.0/8, 2001:db8::/32',
  });
  const mine = [].concat(await call(page, portal, 'request_access', {
    'vm_ids[0]': web1, 'ports[0]': `${web1}:22/tcp`, source_mode: 'my_ip', duration: '30',
    justification: 'rotate the TLS certificates of the web front end before the weekend',
  }))[0];
  await call(page, portal, 'create_api_token', { name: 'deploy pipeline', expires_days: '' });
  await call(page, portal, 'create_notify_channel', { name: 'ops', kind: 'webhook', target: 'https://hooks.example.org/services/T0000/B0000/a-long-webhook-path' });
  await createUser(page, testInfo, { username: 'rita', displayName: 'Rita Requester', password: 'requester secret 2026', role: 'requester' });

  // Rita asks for the port that needs approval, in her own browser (the same kind).
  const context = await browser.newContext({ ...testInfo.project.use, baseURL: portal.base });
  const rita = await context.newPage();
  watch(rita, pageErrors);
  await signIn(rita, testInfo, 'rita', 'requester secret 2026');
  await expect(rita.getByRole('heading', { level: 1 })).toHaveText('Welcome, Rita Requester');
  const pending = [].concat(await call(rita, portal, 'request_access', {
    'vm_ids[0]': web1, 'ports[0]': `${web1}:3389/tcp`, source_mode: 'my_ip', duration: '45', justification: 'patch window',
  }))[0];
  for (const [path, name, rows] of [
    ['/', 'requester-overview', 0],
    ['/jit', 'requester-jit', 1],
    [`/jit/request?vm=${web1}`, 'request-form', 0],
    ['/requests', 'requester-requests', 1],
    [`/requests/${pending}`, 'request-detail', 0],
    ['/tokens', 'requester-tokens', 0],
    ['/account/notifications', 'my-notifications', 0],
    ['/account/password', 'password', 0],
  ]) {
    const res = await rita.goto(path);
    expect(res.status(), path).toBe(200);
    await check(rita, name, { rows });
  }
  await context.close();

  const channel = await page.goto('/admin/notifications').then(() => page.locator('#rt-channel option').first().getAttribute('value'));
  await call(page, portal, 'add_notify_route', { channel, event: 'approval.waiting', group: 'prod' });

  const pages = [
    ['/', 'overview', 1],
    ['/jit?tab=configured', 'jit-configured', 1],
    ['/jit?tab=recommended', 'jit-recommended', 1],
    ['/jit?tab=not_configured', 'jit-not-configured', 1],
    ['/jit?tab=unsupported', 'jit-unsupported', 0],
    ['/jit?tab=all&select=all', 'jit-all', 3],
    [`/vms/${web1}`, 'vm', 1],
    ['/vms/new', 'vm-new', 0],
    [`/jit/configure?vm=${web1}`, 'configure', 2],
    ['/requests', 'requests', 1],
    [`/requests/${mine}`, 'request-detail-admin', 0],
    ['/activity', 'activity', 5],
    ['/admin/users', 'users', 2],
    ['/admin/notifications', 'notifications', 1],
    ['/tokens', 'tokens', 1],
    ['/account/notifications', 'my-notifications-admin', 0],
    ['/account/password', 'password-admin', 0],
  ];
  for (const [path, name, rows] of pages) {
    const res = await page.goto(path);
    expect(res.status(), path).toBe(200);
    await check(page, name, { rows });
  }
  if (listed) await listed(page);

  // The import preview: a table of the file's rows.
  await page.goto('/vms/import');
  await check(page, 'import');
  await page.getByLabel('CSV text').fill([
    'name,group,addresses,os,exposed_ports',
    'csv-web-1,prod,198.51.100.5;2001:db8:0:1234:5678:9abc:def0:1,linux,22',
    'csv-web-2,prod,300.1.1.1,linux,22',
  ].join('\n'));
  await page.getByRole('button', { name: 'Preview' }).click();
  await expect(page.getByTestId('import-row')).toHaveCount(2);
  await check(page, 'import-preview', { rows: 2 });

  // The confirmation page (what a browser without JavaScript asks on; hydrated, a dialog).
  await page.goto(`/jit/configure?vm=${web1}`);
  const href = await page.getByRole('link', { name: 'Remove JIT policy' }).getAttribute('href');
  await page.goto(href);
  await expect(page.getByRole('heading', { level: 1 })).toContainText('Remove the JIT policy');
  await check(page, 'confirm');
  await signOut(page, testInfo);
}
