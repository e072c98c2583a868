// A fresh Portcullis server per test: its own SQLite file, a free loopback port, and the
// bootstrap administrator's one-time password read from its (JSON) log.
import { test as base, expect } from '@playwright/test';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';

const root = resolve(import.meta.dirname, '..', '..');
const binary = process.env.PORTCULLIS_BIN || join(root, 'target', 'debug', 'portcullis-server');
const siteRoot = process.env.PORTCULLIS_SITE_ROOT_TEST || join(root, 'target', 'site');

function freePort() {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.once('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
  });
}

async function startPortal() {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-e2e-'));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const child = spawn(binary, [], {
    env: {
      ...process.env,
      PORTCULLIS_LISTEN: `127.0.0.1:${port}`,
      PORTCULLIS_DATABASE_URL: `sqlite://${join(dir, 'portal.db')}`,
      PORTCULLIS_PUBLIC_URL: base,
      PORTCULLIS_SITE_ROOT: siteRoot,
      PORTCULLIS_LOG_FORMAT: 'json',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log = [];
  let password;
  const ready = new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`server did not start:\n${log.join('\n')}`)), 20_000);
    child.once('exit', (code) => fail(new Error(`server exited with ${code}:\n${log.join('\n')}`)));
    const onLine = (line) => {
      log.push(line);
      let entry;
      try { entry = JSON.parse(line); } catch { return; }
      if (entry.fields?.one_time_password) password = entry.fields.one_time_password;
      if (entry.fields?.message === 'listening') { clearTimeout(timer); ok(); }
    };
    createInterface({ input: child.stdout }).on('line', onLine);
    createInterface({ input: child.stderr }).on('line', (l) => log.push(l));
  });
  await ready;
  if (!password) throw new Error(`no bootstrap password in the log:\n${log.join('\n')}`);
  return {
    base,
    password,
    log,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((ok) => (child.exitCode !== null ? ok() : child.once('exit', ok)));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const test = base.extend({
  portal: async ({}, use) => {
    const portal = await startPortal();
    await use(portal);
    await portal.stop();
  },
  baseURL: async ({ portal }, use) => {
    await use(portal.base);
  },
});

/// With JavaScript on, wait until the page is hydrated so clicks go through the Wasm app
/// rather than the plain-HTML fallback; without JavaScript there is nothing to wait for.
export async function ready(page, testInfo) {
  if (testInfo.project.use.javaScriptEnabled !== false) {
    await expect(page.locator('body[data-hydrated="true"]')).toHaveCount(1);
  }
}

export { expect };
