// A fresh Portcullis server per test: its own SQLite file, a free loopback port, and the
// bootstrap administrator's one-time password read from its (JSON) log. Tests that set
// `oidc: true` also get a real OpenID provider (end2end/oidc/provider.mjs) configured as
// the portal's identity provider "Test IdP".
import { test as base, expect } from '@playwright/test';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { CLIENT_ID, CLIENT_SECRET, startProvider } from '../oidc/provider.mjs';

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

async function startPortal({ oidc = false } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-e2e-'));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const extraEnv = {};
  let provider;
  if (oidc) {
    // The provider must know the portal's redirect URI, so the portal's port comes first.
    provider = await startProvider({
      redirectUri: `${base}/auth/oidc/test/callback`,
      postLogoutRedirectUri: `${base}/login`,
    });
    const config = join(dir, 'portcullis.toml');
    writeFileSync(config, [
      '[[oidc]]',
      'id = "test"',
      'name = "Test IdP"',
      `issuer = "${provider.issuer}"`,
      `client_id = "${CLIENT_ID}"`,
      'scopes = ["openid", "email", "profile", "groups"]',
      '',
    ].join('\n'));
    extraEnv.PORTCULLIS_CONFIG = config;
    // The secret comes from the environment, as an operator would keep it.
    extraEnv.PORTCULLIS_OIDC_TEST_CLIENT_SECRET = CLIENT_SECRET;
  }
  const child = spawn(binary, [], {
    env: {
      ...process.env,
      ...extraEnv,
      PORTCULLIS_LISTEN: `127.0.0.1:${port}`,
      PORTCULLIS_DATABASE_URL: `sqlite://${join(dir, 'portal.db')}`,
      PORTCULLIS_PUBLIC_URL: base,
      PORTCULLIS_SITE_ROOT: siteRoot,
      PORTCULLIS_LOG_FORMAT: 'json',
      // The product's default, and each connection that ended with an error (a reset, a
      // header time-out): the cause of a failed load that a page only logs.
      PORTCULLIS_LOG: process.env.PORTCULLIS_LOG
        || 'info,sqlx=warn,tower_http=warn,portcullis_server::serve=debug',
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
  try {
    await ready;
  } catch (e) {
    await provider?.stop();
    throw e;
  }
  if (!password) throw new Error(`no bootstrap password in the log:\n${log.join('\n')}`);
  return {
    base,
    password,
    log,
    provider,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((ok) => (child.exitCode !== null ? ok() : child.once('exit', ok)));
      await provider?.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/// Chromium logs every 4xx answer as "Failed to load resource": a refused form (422), the
/// refusal page a user is sent to (403). Those are answers the page handles and shows, not
/// errors. Every other console error (5xx answers, failed loads, anything the app logs)
/// counts.
const HANDLED_ANSWER = /^Failed to load resource: the server responded with a status of 4\d\d /;

/// What every test server warns of as it starts (a generated session key, the bootstrap
/// administrator's password).
const EVERY_START = /no session_key configured|bootstrap administrator created/;

/// Collects every uncaught exception and console error of `page` into `errors`: a bundle
/// that fails to load (or hydrate) throws or logs there, whatever the test looks at.
export function watch(page, errors) {
  page.on('pageerror', (e) => errors.push(`uncaught on ${page.url()}: ${e.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !HANDLED_ANSWER.test(msg.text())) {
      // A failed load's message does not name what failed; its location does.
      const from = msg.location()?.url;
      errors.push(`console error on ${page.url()}: ${msg.text()}${from ? ` (${from})` : ''}`);
    }
  });
}

export const test = base.extend({
  oidc: [false, { option: true }],
  // Any page error or console error fails the test, in both projects. Pages a test opens
  // itself are added with `watch(page, pageErrors)`.
  pageErrors: async ({}, use) => {
    const errors = [];
    await use(errors);
    expect(errors, 'uncaught page errors or console errors').toEqual([]);
  },
  page: async ({ page, pageErrors }, use) => {
    watch(page, pageErrors);
    await use(page);
  },
  portal: async ({ oidc }, use, testInfo) => {
    const portal = await startPortal({ oidc });
    await use(portal);
    try {
      await portal.stop();
    } finally {
      // What the server warned of or failed at, connections that ended with an error, and
      // anything not logged as JSON (a panic): the cause of a 5xx or a failed load that a
      // page only logged (end2end/last-words.js prints it for a failed test).
      const noted = portal.log.filter((line) => !EVERY_START.test(line)
        && (!line.startsWith('{') || /"level":"(WARN|ERROR)"|"target":"portcullis_server::serve"/.test(line)));
      if (noted.length) {
        await testInfo.attach('server warnings', { body: noted.join('\n'), contentType: 'text/plain' });
      }
    }
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
