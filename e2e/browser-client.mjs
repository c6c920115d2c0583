// browser-client.mjs PAGE_URL [--timeout SECONDS] [--screenshot FILE]
//                            [--cookie NAME=VALUE --cookie-url URL]
//
// A thin real browser client for the end-to-end tests: it launches Debian's
// Chromium headless through playwright-core (which never downloads a browser)
// and opens PAGE_URL, a page whose own EventSource connects to the proxy (see
// testdata/page.html). It prints one JSON object per line on stdout:
//
//   {"type":"request","url":"...","headers":{...}}     each EventSource request
//   {"type":"response","url":"...","status":200,"headers":{...}}
//   {"type":"open","readyState":1}                      reported by the page
//   {"type":"ready","data":{},"lastEventId":"-"}        likewise message, ping,
//                                                       overflow, gap and the
//                                                       server-sent error event
//   {"type":"connection-error","readyState":2}          an Event without data
//   {"type":"pageerror","message":"..."}                and console errors,
//   {"type":"console","level":"error","text":"..."}     failed requests
//   {"type":"exit","reason":"...","screenshot":"..."}   last line
//
// --cookie sets a cookie for --cookie-url (the proxy) in the browser before
// the page opens, as a login on the proxy's site would have. When told
// (stdin says "exit" or closes) it saves a screenshot (default
// artifacts/browser-client.png beside this script), closes the browser and
// exits 0; at the deadline it does the same and exits 2.

import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium } from './chromium.mjs';
import { fail, onStop, parseCommandLine, print } from './clientio.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const { url, timeoutSeconds, values } = parseCommandLine(
  'node browser-client.mjs PAGE_URL [--timeout SECONDS] [--screenshot FILE] [--cookie NAME=VALUE --cookie-url URL]',
  {
    screenshot: { type: 'string', default: resolve(here, 'artifacts', 'browser-client.png') },
    cookie: { type: 'string' },
    'cookie-url': { type: 'string' },
  },
);
const screenshot = resolve(values.screenshot);

const browser = await launchChromium();

const page = await browser.newPage();
if (values.cookie) {
  const i = values.cookie.indexOf('=');
  if (i < 1 || !values['cookie-url']) fail('--cookie NAME=VALUE needs --cookie-url URL');
  await page.context().addCookies([{
    name: values.cookie.slice(0, i),
    value: values.cookie.slice(i + 1),
    url: values['cookie-url'],
    httpOnly: true,
    sameSite: 'Lax',
  }]);
}

onStop(timeoutSeconds, async (reason, code) => {
  let saved = null;
  try {
    mkdirSync(dirname(screenshot), { recursive: true });
    await page.screenshot({ path: screenshot, fullPage: true });
    saved = screenshot;
  } catch (err) {
    process.stderr.write(`screenshot: ${err.message}\n`);
  }
  await browser.close().catch((err) => process.stderr.write(`close browser: ${err.message}\n`));
  print({ type: 'exit', reason, screenshot: saved });
  process.exit(code);
});

await page.exposeFunction('reportEvent', (obj) => print(obj));

const isEventSource = (req) => req.resourceType() === 'eventsource';
page.on('request', async (req) => {
  if (!isEventSource(req)) return;
  print({ type: 'request', url: req.url(), headers: await req.allHeaders().catch(() => req.headers()) });
});
page.on('response', async (res) => {
  if (!isEventSource(res.request())) return;
  print({
    type: 'response',
    url: res.url(),
    status: res.status(),
    headers: await res.allHeaders().catch(() => res.headers()),
  });
});
page.on('requestfailed', (req) => {
  print({ type: 'requestfailed', url: req.url(), failure: req.failure()?.errorText ?? null });
});
page.on('pageerror', (err) => print({ type: 'pageerror', message: err.message }));
page.on('console', (msg) => {
  if (msg.type() === 'error' || msg.type() === 'warning') {
    print({ type: 'console', level: msg.type(), text: msg.text() });
  }
});

try {
  await page.goto(url, { waitUntil: 'load' });
} catch (err) {
  print({ type: 'pageerror', message: `goto ${url}: ${err.message}` });
}
