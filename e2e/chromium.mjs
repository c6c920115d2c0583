// chromium.mjs: the one way the e2e scripts start a browser: Debian's
// Chromium through playwright-core, which never downloads a browser of its own.
import { chromium } from 'playwright-core';
import { fail } from './clientio.mjs';

// launchChromium starts headless Chromium. The flags keep it off the network
// that this machine does not have (and off Google's hosts, which it would
// look up at every start).
export async function launchChromium() {
  return chromium
    .launch({
      executablePath: '/usr/bin/chromium',
      headless: true,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    })
    .catch((err) => fail(`launch chromium: ${err.message}`));
}
