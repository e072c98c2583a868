// The first and the second load of the portal, as the network sees them: the bundle comes
// compressed under a content-hashed name, marked immutable, and the second load takes it
// from the browser's cache instead of the network. The bytes of both loads are reported.
import { test, expect, ready } from './fixtures.js';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

const siteRoot = process.env.PORTCULLIS_SITE_ROOT_TEST
  || join(resolve(import.meta.dirname, '..', '..'), 'target', 'site');

/// Loads `path` and records, through the DevTools protocol, every response and the bytes
/// it took on the wire (headers and body as sent, so compressed).
async function load(page, cdp, path, testInfo) {
  // By request id; the events of one request may come in any order.
  const responses = new Map();
  const fromCache = new Set();
  const bytes = new Map();
  const onResponse = (e) => responses.set(e.requestId, { url: e.response.url, response: e.response });
  const onCached = (e) => fromCache.add(e.requestId);
  const onFinished = (e) => bytes.set(e.requestId, e.encodedDataLength);
  cdp.on('Network.responseReceived', onResponse);
  cdp.on('Network.requestServedFromCache', onCached);
  cdp.on('Network.loadingFinished', onFinished);
  await page.goto(path);
  await ready(page, testInfo);
  await page.waitForLoadState('networkidle');
  cdp.off('Network.responseReceived', onResponse);
  cdp.off('Network.requestServedFromCache', onCached);
  cdp.off('Network.loadingFinished', onFinished);
  const all = [...responses].map(([id, r]) => ({
    ...r,
    bytes: bytes.get(id) ?? 0,
    cached: fromCache.has(id)
      || Boolean(r.response.fromDiskCache || r.response.fromMemoryCache || r.response.fromPrefetchCache),
  }));
  return { all, bytes: all.reduce((sum, r) => sum + r.bytes, 0) };
}

const header = (response, name) => Object.entries(response.headers)
  .find(([k]) => k.toLowerCase() === name)?.[1] ?? '';

test('the bundle comes compressed, hashed and immutable, and the second load takes it from the cache', async ({ page }, testInfo) => {
  test.skip(testInfo.project.use.javaScriptEnabled === false, 'without JavaScript the page runs no wasm');
  expect(existsSync(join(siteRoot, 'hash.txt')),
    `${siteRoot} has no hash.txt: run scripts/hash-site.sh ${siteRoot} (scripts/build-site.sh does)`).toBe(true);
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');

  const first = await load(page, cdp, '/login', testInfo);
  const wasm = first.all.filter((r) => new URL(r.url).pathname.endsWith('.wasm'));
  expect(wasm.length, 'the first load fetches the wasm').toBeGreaterThan(0);
  for (const { url, response } of wasm) {
    expect(new URL(url).pathname).toMatch(/^\/pkg\/portcullis\.[A-Za-z0-9_-]{22}\.wasm$/);
    expect(header(response, 'content-encoding')).toMatch(/^(br|gzip)$/);
    expect(header(response, 'cache-control')).toContain('immutable');
  }
  for (const ext of ['js', 'css']) {
    const r = first.all.find((x) => new URL(x.url).pathname.endsWith(`.${ext}`));
    expect(r, `the first load fetches the ${ext}`).toBeTruthy();
    expect(new URL(r.url).pathname).toMatch(new RegExp(`^/pkg/portcullis\\.[A-Za-z0-9_-]{22}\\.${ext}$`));
    expect(header(r.response, 'cache-control')).toContain('immutable');
  }
  const wasmBytes = wasm.reduce((sum, r) => sum + r.bytes, 0);

  const second = await load(page, cdp, '/login', testInfo);
  const wasmAgain = second.all.filter((r) => new URL(r.url).pathname.endsWith('.wasm'));
  for (const r of wasmAgain) {
    expect(r.cached, `${r.url} comes from the cache on the second load`).toBe(true);
    expect(r.bytes, `${r.url} takes no bytes on the wire the second time`).toBe(0);
  }
  const bundle = second.all.filter((r) => new URL(r.url).pathname.startsWith('/pkg/'));
  expect(bundle.filter((r) => !r.cached).map((r) => r.url), 'the second load fetches nothing of the bundle').toEqual([]);

  const figures = `first load: ${first.bytes} bytes over the network (wasm ${wasmBytes}, ${header(wasm[0].response, 'content-encoding')}; `
    + `${first.all.length} responses); second load: ${second.bytes} bytes (${second.all.length} responses, `
    + `${second.all.filter((r) => r.cached).length} from the cache)`;
  console.log(figures);
  testInfo.annotations.push({ type: 'bytes transferred', description: figures });
  // The compressed wasm is most of the first load, and the second is a small page.
  expect(second.bytes).toBeLessThan(first.bytes / 10);
});
