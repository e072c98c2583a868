// Browser tests in Debian's Chromium (never a downloaded browser), run twice: hydrated,
// and with JavaScript disabled so that every form must work as a plain HTML post. The
// phone layout (phone.spec.js only) runs on a 390×844 touch screen, with and without
// JavaScript.
import { defineConfig, devices } from '@playwright/test';

// A phone as Playwright's device descriptors describe one (mobile viewport meta, touch,
// a high-density screen), at the size of a common 6.1" phone, in Chromium.
const PHONE = {
  ...devices['Pixel 7'],
  viewport: { width: 390, height: 844 },
  screen: { width: 390, height: 844 },
  defaultBrowserType: 'chromium',
};
const PHONE_SPEC = /phone\.spec\.js$/;

export default defineConfig({
  testDir: './tests',
  timeout: 90_000,
  expect: { timeout: 10_000 },
  fullyParallel: true,
  // A test that fails once and then passes is reported as flaky, and last-words.js prints
  // the errors of its failed attempt at the end of the run (and `make test` at its own);
  // one that fails twice fails the run. (A console error once in about 25 CI runs, which
  // no local run has repeated, refused a landing without saying what it was.)
  retries: 1,
  workers: 2,
  // CI keeps only the end of the output: last-words.js repeats each failure's error there.
  reporter: [['list'], ['./last-words.js']],
  use: {
    launchOptions: {
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
      ],
    },
    trace: 'retain-on-failure',
  },
  projects: [
    { name: 'hydrated', testIgnore: PHONE_SPEC, use: { javaScriptEnabled: true } },
    { name: 'no-js', testIgnore: PHONE_SPEC, use: { javaScriptEnabled: false } },
    { name: 'phone', testMatch: PHONE_SPEC, use: { ...PHONE, javaScriptEnabled: true } },
    { name: 'phone-no-js', testMatch: PHONE_SPEC, use: { ...PHONE, javaScriptEnabled: false } },
  ],
});
