// The portal on a phone (issue 15, item 10): on a 390×844 touch screen every page fits
// the width (nothing scrolls sideways, no element reaches past the right edge), tables
// become cards in which each value shows its column's name, the policy form keeps a
// visible name on each field, and the header folds into a menu that opens by tap and by
// keyboard, without JavaScript too. axe finds nothing serious or critical on any page.
// Runs in the `phone` and `phone-no-js` projects only (playwright.config.js).
// SHOTS=DIR saves a screenshot of each page, phone-NAME.png, for looking at them.
import AxeBuilder from '@axe-core/playwright';
import { test, expect, ready, watch } from './fixtures.js';
import { bootstrapAdmin, createUser, signIn, signOut } from './helpers.js';

const hydrated = (testInfo) => testInfo.project.use.javaScriptEnabled !== false;

/// Calls a server function in the page's session, as the hydrated page would.
async function call(page, portal, name, form) {
  const res = await page.request.post(`/api/${name}`, { form, headers: { Origin: portal.base } });
  expect(res.status(), `${name}: ${await res.text()}`).toBe(200);
  return res.json();
}

/// What overflows the viewport: the document's scroll width, and every rendered element
/// whose box reaches past the right edge, named by a selector.
function overflow() {
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

/// Every visible cell of every table: its data-label, the label the card shows (the
/// ::before content), and the text of its column's head (null when the head holds a
/// control, such as "select all").
function cells() {
  const out = [];
  for (const table of document.querySelectorAll('table')) {
    const heads = [...table.querySelectorAll('thead th')].map((th) =>
      th.querySelector('a, button, input') ? null : th.textContent.trim());
    for (const tr of table.querySelectorAll('tbody tr')) {
      [...tr.children].forEach((td, i) => {
        if (!td.checkVisibility({ visibilityProperty: true, contentVisibilityAuto: true })) return;
        const before = getComputedStyle(td, '::before');
        out.push({
          table: table.getAttribute('data-testid') || table.className,
          label: td.getAttribute('data-label'),
          shown: before.display === 'none' ? 'none' : before.content,
          head: heads[i] ?? null,
          theadShown: table.tHead ? getComputedStyle(table.tHead).display !== 'none' : false,
        });
      });
    }
  }
  return out;
}

/// The checks every page gets on a phone.
async function checkPage(page, testInfo, name, { cards = 0 } = {}) {
  await ready(page, testInfo);
  const o = await page.evaluate(overflow);
  expect(o.width, 'the phone viewport').toBe(390);
  expect(o.wide, `${name}: elements past the right edge`).toEqual([]);
  expect(o.scrollWidth, `${name}: the page scrolls sideways`).toBeLessThanOrEqual(o.width);

  const shown = await page.evaluate(cells);
  expect(shown.length, `${name}: visible table cells`).toBeGreaterThanOrEqual(cards);
  for (const c of shown) {
    const where = `${name}, table ${c.table}, column ${c.head}`;
    expect(c.label, `${where}: a data-label`).toBeTruthy();
    expect(c.shown, `${where}: the label shown on the card`).toBe(JSON.stringify(c.label));
    if (c.head !== null) expect(c.label, `${where}: the label is the column's name`).toBe(c.head);
    expect(c.theadShown, `${where}: the table head is folded away`).toBe(false);
  }

  // axe waits on timers, which run only with JavaScript on; the markup is the same.
  if (hydrated(testInfo)) {
    const results = await new AxeBuilder({ page }).analyze();
    const serious = results.violations.filter((v) => ['serious', 'critical'].includes(v.impact));
    expect(serious.map((v) => `${name} ${v.id}: ${v.help} (${v.nodes.map((n) => n.target).join(', ')})`)).toEqual([]);
  }
  if (process.env.SHOTS) {
    const suffix = hydrated(testInfo) ? '' : '-no-js';
    await page.screenshot({ path: `${process.env.SHOTS}/phone-${name}${suffix}.png`, fullPage: true, scale: 'css' });
  }
}

/// The header's menu: folded, it hides the navigation; a tap or the keyboard opens it.
async function checkMenu(page, testInfo) {
  await ready(page, testInfo);
  const nav = page.getByRole('navigation', { name: 'Main' });
  const toggle = page.locator('summary.site-menu-toggle');
  await expect(toggle).toBeVisible();
  await expect(toggle).toHaveAccessibleName(/Menu/);
  await expect(nav).toBeHidden();
  await expect(page.getByRole('button', { name: 'Sign out' })).toBeHidden();
  await toggle.tap();
  await expect(nav).toBeVisible();
  await expect(nav.getByRole('link', { name: 'Just-in-time' })).toBeVisible();
  await expect(page.getByRole('button', { name: 'Sign out' })).toBeVisible();
  expect((await page.evaluate(overflow)).wide, 'the open menu fits').toEqual([]);
  if (process.env.SHOTS && hydrated(testInfo)) {
    await page.screenshot({ path: `${process.env.SHOTS}/phone-menu-open.png`, scale: 'css' });
  }
  await toggle.tap();
  await expect(nav).toBeHidden();
  // The keyboard: Tab reaches the menu (after the skip link and the brand), Enter opens it
  // and Space closes it.
  await page.locator('a.brand').focus();
  await page.keyboard.press('Tab');
  await expect(toggle).toBeFocused();
  await page.keyboard.press('Enter');
  await expect(nav).toBeVisible();
  await page.keyboard.press('Tab');
  await expect(nav.getByRole('link', { name: 'Overview' })).toBeFocused();
  await toggle.focus();
  await page.keyboard.press('Space');
  await expect(nav).toBeHidden();
  // A link in the menu leads on.
  await toggle.tap();
  await nav.getByRole('link', { name: 'Requests' }).tap();
  await expect(page).toHaveURL(/\/requests$/);
}

test('every page fits a phone: cards with labels, a header menu, nothing serious for axe', async ({ page, portal, browser, pageErrors }, testInfo) => {
  // About thirty pages, each measured and (hydrated) checked by axe.
  test.setTimeout(300_000);
  await page.goto('/login');
  await checkPage(page, testInfo, 'login');
  await bootstrapAdmin(page, testInfo, portal);
  await checkMenu(page, testInfo);

  // Something in every list: VMs in each tab, a policy, requests in each state, a token,
  // a notification channel with a rule, a second user.
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

  // Rita asks for the port that needs approval, in her own browser (a phone too).
  const context = await browser.newContext({ ...testInfo.project.use, baseURL: portal.base });
  const rita = await context.newPage();
  watch(rita, pageErrors);
  await signIn(rita, testInfo, 'rita', 'requester secret 2026');
  await expect(rita.getByRole('heading', { level: 1 })).toHaveText('Welcome, Rita Requester');
  const pending = [].concat(await call(rita, portal, 'request_access', {
    'vm_ids[0]': web1, 'ports[0]': `${web1}:3389/tcp`, source_mode: 'my_ip', duration: '45', justification: 'patch window',
  }))[0];
  for (const [path, name, cards] of [
    ['/', 'requester-overview', 0],
    ['/jit', 'requester-jit', 1],
    [`/jit/request?vm=${web1}`, 'request-form', 0],
    ['/requests', 'requester-requests', 1],
    [`/requests/${pending}`, 'request-detail', 0],
    ['/tokens', 'requester-tokens', 0],
    ['/account/notifications', 'my-notifications', 0],
    ['/account/password', 'password', 0],
  ]) {
    await rita.goto(path);
    await checkPage(rita, testInfo, name, { cards });
  }
  await context.close();

  const channel = await page.goto('/admin/notifications').then(() => page.locator('#rt-channel option').first().getAttribute('value'));
  await call(page, portal, 'add_notify_route', { channel, event: 'approval.waiting', group: 'prod' });

  const pages = [
    ['/', 'overview', 1],
    ['/jit?tab=configured', 'jit-configured', 1],
    ['/jit?tab=recommended', 'jit-recommended', 1],
    ['/jit?tab=not_configured', 'jit-not-configured', 1],
    ['/jit?tab=all&select=all', 'jit-all', 3],
    [`/vms/${web1}`, 'vm', 1],
    ['/vms/new', 'vm-new', 0],
    [`/jit/configure?vm=${web1}`, 'configure', 2],
    ['/requests', 'requests', 2],
    [`/requests/${mine}`, 'request-detail-admin', 0],
    ['/activity', 'activity', 1],
    ['/admin/users', 'users', 2],
    ['/admin/notifications', 'notifications', 2],
    ['/tokens', 'tokens', 1],
    ['/account/password', 'password-admin', 0],
  ];
  for (const [path, name, cards] of pages) {
    const res = await page.goto(path);
    expect(res.status(), path).toBe(200);
    await checkPage(page, testInfo, name, { cards });
  }

  // The heads, and their sort links, are hidden on a phone: the sort bar holds the links.
  await page.goto('/jit?tab=all');
  const bar = page.getByTestId('sort-bar');
  await expect(bar).toBeVisible();
  const rows = page.locator('tr[data-vm]');
  await expect(rows.first()).toHaveAttribute('data-vm', /^web-1-with/);
  await bar.getByRole('link', { name: 'VM (ascending)' }).click();
  await expect(bar.getByRole('link', { name: 'VM (descending)' })).toHaveAttribute('aria-current', 'true');
  await expect(rows.first()).toHaveAttribute('data-vm', 'win-3');
  await bar.getByRole('link', { name: 'Group', exact: true }).click();
  await expect(bar.getByRole('link', { name: 'Group (ascending)' })).toBeVisible();

  // The import preview: a table of the file's rows.
  await page.goto('/vms/import');
  await checkPage(page, testInfo, 'import');
  await ready(page, testInfo);
  await page.getByLabel('CSV text').fill([
    'name,group,addresses,os,exposed_ports',
    'csv-web-1,prod,198.51.100.5;2001:db8:0:1234:5678:9abc:def0:1,linux,22',
    'csv-web-2,prod,300.1.1.1,linux,22',
  ].join('\n'));
  await page.getByRole('button', { name: 'Preview' }).click();
  await expect(page.getByTestId('import-row')).toHaveCount(2);
  await checkPage(page, testInfo, 'import-preview', { cards: 7 });

  // The confirmation page (what a phone without JavaScript asks on; hydrated, a dialog).
  await page.goto(`/jit/configure?vm=${web1}`);
  const href = await page.getByRole('link', { name: 'Remove JIT policy' }).getAttribute('href');
  await page.goto(href);
  await expect(page.getByRole('heading', { level: 1 })).toContainText('Remove the JIT policy');
  await checkPage(page, testInfo, 'confirm');
  await signOut(page, testInfo);
});

test('the policy form on a phone: labelled fields and "Add port"', async ({ page, portal }, testInfo) => {
  await bootstrapAdmin(page, testInfo, portal);
  const vm = await call(page, portal, 'save_vm', {
    id: '', name: 'win-1', group: 'prod', addresses: '198.51.100.9', os: 'windows', exposed_ports: '3389',
  });
  await page.goto(`/jit/configure?vm=${vm}`);
  await ready(page, testInfo);
  // The Windows defaults, no blank rows; each field under its column's name.
  await expect(page.getByLabel(/^Port of row \d$/)).toHaveCount(4);
  await page.getByLabel('Max request time of row 1').fill('90');
  await page.getByRole('button', { name: 'Add port' }).tap();
  await expect(page.getByLabel(/^Port of row \d$/)).toHaveCount(5);
  await expect(page.getByLabel('Max request time of row 1')).toHaveValue('90');
  await page.getByLabel('Port of row 5').fill('8443');
  await checkPage(page, testInfo, 'configure-added', { cards: 55 });
  await page.getByRole('button', { name: 'Save JIT policy' }).tap();
  await expect(page).toHaveURL(/\/jit\?tab=configured/);
  await page.goto(`/vms/${vm}`);
  await expect(page.getByTestId('policy')).toContainText('8443');
});
