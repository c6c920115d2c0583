// clientlib.mjs PAGE_URL [--timeout SECONDS] [--screenshot DIR]
//
// Opens tabs of PAGE_URL (testdata/clientlib.html, which uses the client
// library) in one context of Debian's Chromium, headless, as the commands on
// stdin say, one JSON object a line:
//
//   {"op": "open", "tab": "a", "query": "bindings=…&share=1"}   a new tab
//   {"op": "close", "tab": "a"}                                  close it
//
// and prints one JSON object per line on stdout: what each tab's page
// reports ({"tab":"a","type":"state","state":"ready"}, "ready", "message",
// "gap", "error", "loaded"), {"type":"opened"|"closed","tab":…} once a
// command is done, the browser's EventSource requests ({"type":"request",
// "tab":…,"url":…}), page errors and console errors, and
// {"type":"exit",…} last. On "exit" (or stdin closing) it saves a
// screenshot of each open tab in --screenshot DIR and exits 0; at the
// deadline it does the same and exits 2.

import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium } from './chromium.mjs';
import { onStop, parseCommandLine, print } from './clientio.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const { url, timeoutSeconds, values } = parseCommandLine(
  'node clientlib.mjs PAGE_URL [--timeout SECONDS] [--screenshot DIR]',
  { screenshot: { type: 'string', default: resolve(here, 'artifacts', 'clientlib') } },
);

const browser = await launchChromium();
const context = await browser.newContext({ viewport: { width: 900, height: 600 } });
await context.exposeFunction('reportEvent', (obj) => print(obj));
const tabs = new Map();

onStop(timeoutSeconds, async (reason, code) => {
  const dir = resolve(values.screenshot);
  mkdirSync(dir, { recursive: true });
  for (const [name, page] of tabs) {
    await page.screenshot({ path: join(dir, `${name}.png`) }).catch((err) => process.stderr.write(`screenshot: ${err.message}\n`));
  }
  await browser.close().catch((err) => process.stderr.write(`close browser: ${err.message}\n`));
  print({ type: 'exit', reason });
  process.exit(code);
});

async function open(tab, query) {
  const page = await context.newPage();
  tabs.set(tab, page);
  page.on('request', (req) => {
    if (req.resourceType() === 'eventsource') print({ type: 'request', tab, url: req.url() });
  });
  page.on('pageerror', (err) => print({ type: 'pageerror', tab, message: err.message }));
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') print({ type: 'console', tab, level: msg.type(), text: msg.text() });
  });
  await page.goto(`${url}?tab=${encodeURIComponent(tab)}&${query}`, { waitUntil: 'load' });
  print({ type: 'opened', tab });
}

async function close(tab) {
  const page = tabs.get(tab);
  tabs.delete(tab);
  // As a person closes a tab: the page never calls the library's close().
  await page.close();
  print({ type: 'closed', tab });
}

// Commands run one at a time, in order.
let queue = Promise.resolve();
let pending = '';
process.stdin.on('data', (chunk) => {
  pending += chunk;
  const lines = pending.split('\n');
  pending = lines.pop();
  for (const line of lines) {
    if (!line.trim().startsWith('{')) continue;
    const cmd = JSON.parse(line);
    queue = queue.then(() => (cmd.op === 'open' ? open(cmd.tab, cmd.query) : close(cmd.tab)))
      .catch((err) => print({ type: 'failed', tab: cmd.tab, error: String(err?.message ?? err) }));
  }
});
