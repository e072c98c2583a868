// Every page on a desktop screen (Playwright's 1280×720), hydrated and without
// JavaScript: each loads, none scrolls sideways, and axe finds nothing serious or
// critical on any (issue 15). The same tour as on a phone (tour.js).
// SHOTS=DIR saves a screenshot of each page, desktop-NAME.png (-no-js without JavaScript).
import AxeBuilder from '@axe-core/playwright';
import { test, expect, ready } from './fixtures.js';
import { expectRows, overflow, tour } from './tour.js';

const hydrated = (testInfo) => testInfo.project.use.javaScriptEnabled !== false;

test('every page on a desktop: loads, fits the width, nothing serious for axe', async ({ page, portal, browser, pageErrors }, testInfo) => {
  test.setTimeout(300_000);
  const seen = [];
  const check = async (p, name, { rows = 0 } = {}) => {
    await ready(p, testInfo);
    seen.push(name);
    // As on a phone: the lists the tour filled show their rows.
    await expectRows(p, name, rows);
    const o = await p.evaluate(overflow);
    expect(o.wide, `${name}: elements past the right edge`).toEqual([]);
    expect(o.scrollWidth, `${name}: the page scrolls sideways (${o.wide.slice(0, 5).join('; ')})`).toBeLessThanOrEqual(o.width);
    // axe waits on timers, which run only with JavaScript on; the markup is the same.
    if (hydrated(testInfo)) {
      const results = await new AxeBuilder({ page: p }).analyze();
      const serious = results.violations.filter((v) => ['serious', 'critical'].includes(v.impact));
      expect(serious.map((v) => `${name} ${v.id}: ${v.help} (${v.nodes.map((n) => n.target).join(', ')})`)).toEqual([]);
    }
    if (process.env.SHOTS) {
      const suffix = hydrated(testInfo) ? '' : '-no-js';
      await p.screenshot({ path: `${process.env.SHOTS}/desktop-${name}${suffix}.png`, fullPage: true });
    }
  };
  await tour({ page, portal, browser, pageErrors, testInfo }, check);
  expect(seen.length, 'pages seen').toBeGreaterThanOrEqual(29);
});
