// inspector.mjs PAGE_URL [--timeout SECONDS] [--wait SECONDS] [--screenshot FILE]
//                        [--viewport-screenshot] [--color-scheme light|dark]
//
// Drives the inspector page (internal/api/inspector/) in Debian's Chromium,
// headless, through playwright-core, the way a person would: through the
// page's buttons and labelled fields. It opens PAGE_URL, then carries out the
// commands that inspector_test.go writes on stdin, one JSON object a line,
// one at a time, in order:
//
//   {"id": 1, "op": "setBindings", "bindings": [{"exchange": "…", "routingKeyPattern": "…"}]}
//
// and answers each with one line on stdout:
//
//   {"type":"done","id":1,"result":{…}}     or {"type":"failed","id":1,"error":"…"}
//
// The ops are listed in `ops` below. Waiting ops wait up to --wait seconds
// (default 20). Unasked, it also prints what the page does that a test may
// want to count:
//
//   {"type":"request","url":"…","resourceType":"…","authorization":"…"}
//                                                 each stream request (an
//                                                 EventSource's, or a fetch of
//                                                 the connect endpoint); the
//                                                 Authorization header's
//                                                 scheme, never the token
//   {"type":"response","url":"…","status":200}    and its answer
//   {"type":"requestfailed","url":"…","resourceType":"…","failure":"…"}
//   {"type":"pageerror","message":"…"}            uncaught exceptions
//   {"type":"console","level":"error","text":"…"} console errors and warnings
//   {"type":"exit","reason":"…","screenshot":"…"} last line
//
// When told (stdin says "exit" or closes) it saves a screenshot of the whole
// page, or of the viewport with --viewport-screenshot (--screenshot, default
// artifacts/inspector.png), closes the browser and exits 0; at the --timeout
// deadline it does the same and exits 2.

import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium } from './chromium.mjs';
import { fail, onStop, parseCommandLine, print } from './clientio.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const { url, timeoutSeconds, values } = parseCommandLine(
  'node inspector.mjs PAGE_URL [--timeout SECONDS] [--wait SECONDS] [--screenshot FILE] [--viewport-screenshot] [--color-scheme light|dark]',
  {
    wait: { type: 'string', default: '20' },
    screenshot: { type: 'string', default: resolve(here, 'artifacts', 'inspector.png') },
    'color-scheme': { type: 'string', default: 'light' },
    // The last screenshot shows the viewport only, not the whole page.
    'viewport-screenshot': { type: 'boolean', default: false },
  },
);
const waitMs = Number(values.wait) * 1000;
if (!(waitMs > 0)) fail('--wait wants a number of seconds');
const colorScheme = values['color-scheme'];
if (colorScheme !== 'light' && colorScheme !== 'dark') fail('--color-scheme is light or dark');

const browser = await launchChromium();

const context = await browser.newContext({
  viewport: { width: 1280, height: 860 },
  colorScheme,
  // The page formats counts for its locale; the tests read them in this one.
  locale: 'en-US',
  acceptDownloads: true,
});
const page = await context.newPage();
page.setDefaultTimeout(waitMs);

onStop(timeoutSeconds, async (reason, code) => {
  let saved = null;
  try {
    const file = resolve(values.screenshot);
    mkdirSync(dirname(file), { recursive: true });
    await page.screenshot({ path: file, fullPage: !values['viewport-screenshot'], animations: 'disabled' });
    saved = file;
  } catch (err) {
    process.stderr.write(`screenshot: ${err.message}\n`);
  }
  await browser.close().catch((err) => process.stderr.write(`close browser: ${err.message}\n`));
  print({ type: 'exit', reason, screenshot: saved });
  process.exit(code);
});

const isStream = (req) => req.resourceType() === 'eventsource' ||
  (req.resourceType() === 'fetch' && new URL(req.url()).pathname.endsWith('/api/events/v1/connect/'));
page.on('request', (req) => {
  if (!isStream(req)) return;
  const authorization = (req.headers().authorization ?? '').split(' ')[0];
  print({ type: 'request', url: req.url(), resourceType: req.resourceType(), authorization });
});
page.on('response', (res) => {
  if (isStream(res.request())) print({ type: 'response', url: res.url(), status: res.status() });
});
page.on('requestfailed', (req) => {
  print({ type: 'requestfailed', url: req.url(), resourceType: req.resourceType(), failure: req.failure()?.errorText ?? null });
});
page.on('pageerror', (err) => print({ type: 'pageerror', message: err.message }));
page.on('console', (msg) => {
  if (msg.type() === 'error' || msg.type() === 'warning') {
    print({ type: 'console', level: msg.type(), text: msg.text() });
  }
});

// ---- The page, seen through its roles and labels ------------------------

const button = (name) => page.getByRole('button', { name, exact: true });
const rows = () => page.locator('#bindings > li');
const exchangeField = (i) => page.getByLabel(`Exchange of binding ${i + 1}`, { exact: true });
const patternField = (i) => page.getByLabel(`Routing-key pattern of binding ${i + 1}`, { exact: true });
const messageRow = (i) => page.locator('#messages > li.msg').nth(i);

async function bindings() {
  const n = await rows().count();
  const out = [];
  for (let i = 0; i < n; i++) {
    out.push({ exchange: await exchangeField(i).inputValue(), routingKeyPattern: await patternField(i).inputValue() });
  }
  return out;
}

async function state() {
  const s = page.locator('#state');
  return { state: await s.getAttribute('data-state'), text: (await page.locator('#state-text').textContent()).trim() };
}

// messages describes each row of the message list, top (newest) first.
function messages() {
  return page.$$eval('#messages > li.msg', (lis) => lis.map((li) => {
    const payload = li.querySelector('.msg-payload');
    return {
      time: li.querySelector('.msg-time')?.textContent ?? '',
      exchange: li.querySelector('.msg-exchange')?.textContent ?? '',
      routingKey: li.querySelector('.msg-key')?.textContent ?? '',
      routes: [...li.querySelectorAll('.route')].map((r) => r.textContent),
      redelivered: li.querySelector('.tag') !== null,
      preview: li.querySelector('.msg-preview')?.textContent ?? '',
      expanded: li.querySelector('.msg-toggle')?.getAttribute('aria-expanded') === 'true',
      // What a reader sees of the payload: innerText leaves out closed nodes.
      payload: payload && !payload.hidden ? payload.querySelector('.json')?.innerText ?? '' : '',
      // The row's summary of properties and headers, and the expanded
      // view of them.
      meta: li.querySelector('.msg-meta')?.textContent ?? '',
      props: payload && !payload.hidden ? payload.querySelector('.msg-props')?.innerText ?? '' : '',
    };
  }));
}

async function listState() {
  return page.evaluate(() => ({
    rows: document.querySelectorAll('#messages > li.msg').length,
    // Elements that only markup in a payload could have made.
    foreignElements: document.querySelectorAll('#messages img, #messages script, #messages iframe, #messages a').length,
    title: document.title,
    empty: document.getElementById('empty').hidden ? '' : document.getElementById('empty').textContent,
  }));
}

async function counts() {
  const text = async (sel) => ((await page.locator(sel).textContent()) ?? '').trim();
  const badge = page.locator('#new-badge');
  return {
    received: await text('#count-received'),
    dropped: await text('#count-dropped'),
    shown: await text('#count-shown'),
    badge: (await badge.isVisible()) ? await text('#new-badge') : '',
  };
}

async function banner() {
  const b = page.getByRole('alert');
  if (!(await b.isVisible())) return { visible: false, title: '', text: '' };
  return {
    visible: true,
    title: (await page.locator('#banner-title').textContent()).trim(),
    text: await page.locator('#banner-text').textContent(),
  };
}

// buttons lists the visible, enabled buttons outside the message list.
function buttons() {
  return page.$$eval('button', (bs) => bs
    .filter((b) => !b.closest('#messages') && b.checkVisibility() && !b.disabled)
    .map((b) => (b.getAttribute('aria-label') ?? b.textContent).replace(/\s+/g, ' ').trim()));
}

// ---- Ops ----------------------------------------------------------------

const ops = {
  // goto opens url in the same tab.
  async goto({ url }) {
    await load(url);
    return { url: page.url() };
  },
  // density reads what helps with many messages: each row's height and
  // exchange hue, the rate, the filter and its highlighted matches, the last
  // copied command, and where the first expanded row is.
  async density() {
    return page.evaluate(async () => {
      // The page settles rows' sizes at the next frame.
      await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
      const rows = [...document.querySelectorAll('#messages > li.msg')];
      return {
        heights: rows.map((li) => li.getBoundingClientRect().height),
        hues: rows.map((li) => ({ exchange: li.querySelector('.msg-exchange').title.replace(/^Exchange /, ''), hue: li.style.getPropertyValue('--hue') })),
        rate: document.getElementById('count-rate').textContent,
        filter: document.getElementById('filter').value,
        highlights: globalThis.CSS?.highlights?.get('filter-match')?.size ?? -1,
        copied: document.getElementById('copied').dataset.text ?? '',
        expandedTop: document.querySelector('#messages > li.msg.expanded')?.getBoundingClientRect().top ?? null,
      };
    });
  },
  // gaps reads the list's gap markers, newest first.
  async gaps() {
    return { gaps: await page.$$eval('#messages > li.gap', (lis) => lis.map((li) => li.querySelector('.gap-text').textContent)) };
  },
  // waitGaps waits until the list shows count gap markers.
  async waitGaps({ count }) {
    await page.waitForFunction((count) => document.querySelectorAll('#messages > li.gap').length === count, count);
    return { gaps: await page.$$eval('#messages > li.gap', (lis) => lis.map((li) => li.querySelector('.gap-text').textContent)) };
  },
  // hint reads what the page says about the server, and the exchange
  // field's suggestions.
  async hint() {
    return {
      text: (await page.locator('#server-hint').textContent()).replace(/\s+/g, ' ').trim(),
      suggestions: await page.$$eval('#exchanges option', (os) => os.map((o) => o.value)),
    };
  },
  async url() {
    return { url: page.url() };
  },
  // bindings reads the binding rows.
  async bindings() {
    return { bindings: await bindings() };
  },
  // setBindings makes the rows say bindings, adding and removing rows with
  // the page's buttons, and leaves the last field (so that it sees a change).
  async setBindings({ bindings: want }) {
    let n = await rows().count();
    for (; n < want.length; n++) await button('Add binding').click();
    for (; n > want.length; n--) await button(`Remove binding ${n}`).click();
    for (const [i, b] of want.entries()) {
      await exchangeField(i).fill(b.exchange);
      await patternField(i).fill(b.routingKeyPattern);
    }
    await page.locator(':focus').blur();
    return { bindings: await bindings(), url: page.url() };
  },
  // click clicks the button with this accessible name.
  async click({ name }) {
    await button(name).click();
    return {};
  },
  // fill types text into the field with this label.
  async fill({ label, text }) {
    await page.getByLabel(label, { exact: true }).fill(text);
    return {};
  },
  // press types key into the field with this label, or into the page.
  async press({ label, key }) {
    if (label) await page.getByLabel(label, { exact: true }).press(key);
    else await page.keyboard.press(key);
    return { focused: await page.evaluate(() => document.activeElement?.getAttribute('aria-label') ?? document.activeElement?.id ?? '') };
  },
  async buttons() {
    return { buttons: await buttons() };
  },
  async state() {
    return state();
  },
  async waitState({ state: want }) {
    await page.locator(`#state[data-state="${want}"]`).waitFor({ state: 'attached' });
    return state();
  },
  async messages() {
    return { messages: await messages(), ...(await listState()) };
  },
  // waitMessages waits until the list shows count messages, or with atLeast
  // count or more. With brief, it returns only their routing keys, as keys.
  async waitMessages({ count, atLeast = false, brief = false }) {
    await page.waitForFunction(({ count, atLeast }) => {
      const n = document.querySelectorAll('#messages > li.msg').length;
      return atLeast ? n >= count : n === count;
    }, { count, atLeast });
    if (brief) {
      const keys = await page.$$eval('#messages > li.msg .msg-key', (ks) => ks.map((k) => k.textContent));
      return { keys, ...(await listState()) };
    }
    return { messages: await messages(), ...(await listState()) };
  },
  // toggle clicks the Payload button of the message at index (0: newest).
  async toggle({ index }) {
    await messageRow(index).getByRole('button', { name: 'Payload', exact: true }).click();
    return { messages: await messages(), ...(await listState()) };
  },
  // payloadButton clicks a button of the expanded payload at index.
  async payloadButton({ index, name }) {
    await messageRow(index).locator('.msg-payload').getByRole('button', { name, exact: true }).click();
    return { messages: await messages(), ...(await listState()) };
  },
  // filter types text into the filter field.
  async filter({ text }) {
    await page.getByLabel('Filter messages', { exact: true }).fill(text);
    return { messages: await messages(), ...(await listState()), counts: await counts() };
  },
  async counts() {
    return counts();
  },
  // waitCounts waits until the counts show what is given (those given only).
  async waitCounts(want) {
    const keys = Object.keys(want).filter((k) => k !== 'id' && k !== 'op');
    await page.waitForFunction(({ keys, want }) => {
      const text = (id) => (document.getElementById(id)?.textContent ?? '').trim();
      const badge = document.getElementById('new-badge');
      const got = {
        received: text('count-received'),
        dropped: text('count-dropped'),
        shown: text('count-shown'),
        badge: badge.hidden ? '' : text('new-badge'),
      };
      return keys.every((k) => got[k] === want[k]);
    }, { keys, want });
    return counts();
  },
  async banner() {
    return banner();
  },
  async waitBanner() {
    await page.getByRole('alert').waitFor({ state: 'visible' });
    return banner();
  },
  // waitPing waits for the header to show a ping.
  async waitPing() {
    const ping = page.locator('#ping');
    await page.waitForFunction(() => /^last ping/.test(document.getElementById('ping').textContent));
    return { text: await ping.textContent(), title: await ping.getAttribute('title') };
  },
  // download clicks Download JSON and returns the file's content.
  async download() {
    const [download] = await Promise.all([page.waitForEvent('download'), button('Download JSON').click()]);
    const file = await download.path();
    return { filename: download.suggestedFilename(), content: JSON.parse(readFileSync(file, 'utf8')) };
  },
  // screenshot saves the page (the whole page unless fullPage is false),
  // or only the element that selector picks.
  async screenshot({ path, fullPage = true, selector }) {
    const file = resolve(path);
    mkdirSync(dirname(file), { recursive: true });
    if (selector) await page.locator(selector).first().screenshot({ path: file, animations: 'disabled' });
    else await page.screenshot({ path: file, fullPage, animations: 'disabled' });
    return { path: file };
  },
};

// load opens url and waits until the page has set itself up (it asks the
// server what fits it first).
async function load(url) {
  await page.goto(url, { waitUntil: 'load' });
  await page.locator('html[data-ready]').waitFor({ state: 'attached' });
}

// Commands run one after another, in the order they came.
let queue = load(url).catch((err) => {
  print({ type: 'pageerror', message: `goto ${url}: ${err.message}` });
});

function run(line) {
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (err) {
    print({ type: 'failed', id: null, error: `not a JSON command: ${line}` });
    return;
  }
  queue = queue.then(async () => {
    const op = ops[cmd.op];
    if (!op) {
      print({ type: 'failed', id: cmd.id, error: `unknown op ${JSON.stringify(cmd.op)}` });
      return;
    }
    try {
      print({ type: 'done', id: cmd.id, result: await op(cmd) });
    } catch (err) {
      print({ type: 'failed', id: cmd.id, error: err.message.split('\n').slice(0, 8).join('\n') });
    }
  });
}

// onStop reads stdin for "exit"; this reader takes the commands.
let pending = '';
process.stdin.on('data', (chunk) => {
  pending += chunk;
  const lines = pending.split('\n');
  pending = lines.pop();
  for (const line of lines) {
    if (line.trim().startsWith('{')) run(line);
  }
});
