// The agent's one-line install as an administrator meets it: on a VM's page and on Add VM,
// "Create enrollment token" shows the curl | sh line with the token (also without
// JavaScript, where the form post redirects back), once; the script and the agent it
// downloads are served, and the agent matches its published SHA-256.
import { createHash } from 'node:crypto';
import { test, expect, ready } from './fixtures.js';
import { addVm, bootstrapAdmin } from './helpers.js';

const LINE = /^export PORTCULLIS_ENROLL_TOKEN=[0-9a-f]{64}; curl -fsSL http:\/\/127\.0\.0\.1:\d+\/install-agent\.sh \| sudo --preserve-env=PORTCULLIS_ENROLL_TOKEN sh -s -- --server http:\/\/127\.0\.0\.1:\d+$/;

test('the VM and Add VM pages show the one-line agent install, once', async ({ page, portal, request }, testInfo) => {
  await bootstrapAdmin(page, testInfo, portal);
  await addVm(page, testInfo, { name: 'db-1', group: 'prod', addresses: '198.51.100.7', os: 'linux', exposed: '22' });
  await ready(page, testInfo);
  await page.getByRole('button', { name: 'Create enrollment token' }).click();
  const line = page.getByTestId('enroll-command');
  await expect(line).toHaveText(LINE);
  await expect(page.getByTestId('enroll-expiry')).toContainText('The token works once and expires at');
  // The build ships the agent download: no warning that the first step would fail.
  await expect(page.getByTestId('download-missing')).toHaveCount(0);
  const first = await line.textContent();
  // Shown once: loading the page again does not show it (nor any token).
  await page.reload();
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('db-1');
  await expect(page.getByTestId('enroll-command')).toHaveCount(0);

  // A registration token for a group, on Add VM.
  await page.goto('/vms/new');
  await ready(page, testInfo);
  await page.getByLabel('Group for the new VM').fill('lab');
  await page.getByRole('button', { name: 'Create registration token' }).click();
  const register = page.getByTestId('register-command');
  await expect(register).toHaveText(LINE);
  expect(await register.textContent()).not.toEqual(first);

  // What the line fetches is there: the script, the agent and its checksum.
  const base = new URL(page.url()).origin;
  const script = await request.get(`${base}/install-agent.sh`);
  expect(script.status()).toBe(200);
  expect(await script.text()).toMatch(/^#!\/bin\/sh\n/);
  const agent = await request.get(`${base}/downloads/portcullis-agent-linux-x86_64`);
  expect(agent.status()).toBe(200);
  const sum = await request.get(`${base}/downloads/portcullis-agent-linux-x86_64.sha256`);
  expect(sum.status()).toBe(200);
  const published = (await sum.text()).split(/\s+/)[0];
  expect(createHash('sha256').update(await agent.body()).digest('hex')).toBe(published);
});
