// page-example.mjs PAGE_URL [--timeout SECONDS]
//
// Opens PAGE_URL, a page whose module script is an example of the docs (see
// docs_test.go), in Debian's Chromium, headless, and prints one JSON object
// per line on stdout for what the page says:
//
//   {"type":"console","level":"log","text":"..."}   every console message
//   {"type":"pageerror","message":"..."}            an uncaught error
//   {"type":"exit","reason":"..."}                  last line
//
// It exits 0 when stdin says "exit" or closes, and 2 at the deadline.

import { launchChromium } from './chromium.mjs';
import { onStop, parseCommandLine, print } from './clientio.mjs';

const { url, timeoutSeconds } = parseCommandLine('node page-example.mjs PAGE_URL [--timeout SECONDS]');

const browser = await launchChromium();
const page = await browser.newPage();
onStop(timeoutSeconds, async (reason, code) => {
  await browser.close().catch((err) => process.stderr.write(`close browser: ${err.message}\n`));
  print({ type: 'exit', reason });
  process.exit(code);
});
page.on('console', (msg) => print({ type: 'console', level: msg.type(), text: msg.text() }));
page.on('pageerror', (err) => print({ type: 'pageerror', message: err.message }));
await page.goto(url, { waitUntil: 'load' });
