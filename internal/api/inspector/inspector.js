// inspector.js: the inspector page. A person lists bindings (exchange and
// routing-key pattern), connects to this server's connect endpoint through
// the client library that the server serves, and watches the messages
// arrive. The library reconnects after a broken stream, with backoff and
// resume; the list marks where messages may be missing.
//
// On a server with access control the page takes a token, which it sends
// in an Authorization header (the library's fetch transport): never in a
// URL, so it stays out of the page's address, shared links, and the logs of
// the server and of proxies on the way.
//
// What arrives is untrusted: it reaches the DOM as text only. Messages are
// queued as they come and put on the page once per animation frame, newest
// first; the page keeps the newest MAX_KEPT of them, so that it stays
// responsive however fast they come.

import { EventsClient } from '../api/events/v1/client.js';
import { curlCommand, exchangeHue, highlightMatches, listenCommand, RateMeter, TOKEN_VARIABLE } from './density.js';
import { jsonTree, preview, setAllOpen } from './jsonview.js';
import { exampleBinding, loadSettings, renderHint, suggestions } from './settings.js';
import { bindingsFromQuery, queryWithBindings } from './shareurl.js';

// MAX_KEPT is how many messages the page keeps (and shows, unfiltered).
const MAX_KEPT = 1000;

// STATES are the connection's states: what the page says, and a hint.
const STATES = {
  idle: ['Not connected', 'Enter bindings and connect.'],
  connecting: ['Connecting…', 'Waiting for the server to put every binding in place.'],
  ready: ['Ready', 'Every binding is in place: nothing published from now on is missed.'],
  reconnecting: ['Reconnecting…', 'The stream broke or was refused; the page tries again by itself, waiting longer each time.'],
  closed: ['Closed', 'The stream is closed; connect to open a new one.'],
};

const $ = (id) => document.getElementById(id);
const ui = {
  state: $('state'),
  stateText: $('state-text'),
  ping: $('ping'),
  banner: $('banner'),
  bannerTitle: $('banner-title'),
  bannerText: $('banner-text'),
  bannerClose: $('banner-close'),
  form: $('bindings-form'),
  rows: $('bindings'),
  rowTemplate: $('binding-row'),
  add: $('add-binding'),
  fold: $('fold'),
  summary: $('bindings-summary'),
  connect: $('connect'),
  disconnect: $('disconnect'),
  stale: $('stale'),
  pause: $('pause'),
  pauseLabel: $('pause-label'),
  badge: $('new-badge'),
  filter: $('filter'),
  received: $('count-received'),
  receivedUnit: $('count-received-unit'),
  pausedNote: $('paused-note'),
  dropped: $('count-dropped'),
  droppedWrap: $('dropped-wrap'),
  shown: $('count-shown'),
  clear: $('clear'),
  download: $('download'),
  list: $('messages'),
  empty: $('empty'),
  rate: $('count-rate'),
  compact: $('compact'),
  copyListen: $('copy-listen'),
  copyCurl: $('copy-curl'),
  copied: $('copied'),
  tokenRow: $('token-row'),
  token: $('token'),
  tokenHint: $('token-hint'),
};

// conn is the connection: at most one client at a time.
const conn = {
  client: null,
  wasReady: false, // whether this connection was ever ready
  lastError: '', // the server's last text before a reconnection
  status: 'idle',
  key: '', // the bindings it was opened with, as JSON
  since: null, // when status last changed
  lastPing: 0, // Date.now() at the last ping, 0 before the first
  pingTime: '', // the server's time in that ping
};

// view is what the page holds of the messages.
const view = {
  seq: 0,
  kept: [], // oldest first, at most MAX_KEPT; those matching the filter are in the list
  gaps: [], // markers of where messages may be missing, oldest first; always in the list
  incoming: [], // received, not yet on the page (waiting for a frame, or paused)
  unseen: 0, // received while paused
  received: 0,
  dropped: 0,
  paused: false,
  terms: [], // the filter's words, lower case
  frame: 0,
};

// rowMessage maps a row of the list to its message.
const rowMessage = new WeakMap();

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

const number = new Intl.NumberFormat();

// ---- Bindings ----------------------------------------------------------

function addRow(b = { exchange: '', routingKeyPattern: '' }) {
  const li = ui.rowTemplate.content.firstElementChild.cloneNode(true);
  li.querySelector('.exchange').value = b.exchange;
  li.querySelector('.pattern').value = b.routingKeyPattern;
  ui.rows.append(li);
  renumberRows();
  return li;
}

function renumberRows() {
  const rows = [...ui.rows.children];
  rows.forEach((li, i) => {
    const n = i + 1;
    li.querySelector('.exchange').setAttribute('aria-label', `Exchange of binding ${n}`);
    li.querySelector('.pattern').setAttribute('aria-label', `Routing-key pattern of binding ${n}`);
    const remove = li.querySelector('.remove');
    remove.setAttribute('aria-label', `Remove binding ${n}`);
    remove.title = `Remove binding ${n}`;
    remove.disabled = rows.length === 1;
  });
}

// formBindings returns the bindings of the form, trimmed, leaving out the
// rows that are entirely empty.
function formBindings() {
  const bindings = [];
  for (const li of ui.rows.children) {
    const exchange = li.querySelector('.exchange').value.trim();
    const routingKeyPattern = li.querySelector('.pattern').value.trim();
    if (exchange || routingKeyPattern) bindings.push({ exchange, routingKeyPattern });
  }
  return bindings;
}

ui.add.addEventListener('click', () => {
  addRow().querySelector('.exchange').focus();
  bindingsEdited();
});

ui.rows.addEventListener('click', (e) => {
  const remove = e.target.closest('.remove');
  if (!remove || ui.rows.children.length === 1) return;
  const li = remove.closest('li');
  const next = li.nextElementSibling ?? li.previousElementSibling;
  li.remove();
  renumberRows();
  (next?.querySelector('.remove:not(:disabled)') ?? next?.querySelector('.exchange') ?? ui.add).focus();
  bindingsEdited(true);
});

// The fold button hides the rows behind a one-line summary, to leave the
// room to the messages.
ui.fold.addEventListener('click', () => {
  const folded = ui.fold.getAttribute('aria-expanded') === 'true';
  ui.fold.setAttribute('aria-expanded', String(!folded));
  ui.form.classList.toggle('folded', folded);
  renderSummary();
});

function renderSummary() {
  const bs = formBindings();
  const list = bs.map((b) => `${b.exchange.slice(b.exchange.lastIndexOf('/') + 1)} ${b.routingKeyPattern}`).join(' · ');
  ui.summary.textContent = `${bs.length} ${bs.length === 1 ? 'binding' : 'bindings'}${list ? ': ' + list : ''}`;
  ui.summary.title = bs.map((b) => `${b.exchange} ${b.routingKeyPattern}`).join('\n');
}

let urlTimer = 0;

// bindingsEdited brings the address and the controls up to date after an
// edit; the address follows at once or, while someone types, a moment later.
function bindingsEdited(now = false) {
  clearTimeout(urlTimer);
  if (now) syncURL();
  else urlTimer = setTimeout(syncURL, 300);
  renderControls();
}

ui.rows.addEventListener('input', () => bindingsEdited());
ui.rows.addEventListener('change', () => bindingsEdited(true));

// syncURL puts the bindings, and whether the page is connected, in the
// page's address, for sharing and reloading.
function syncURL() {
  clearTimeout(urlTimer);
  const connected = conn.status === 'connecting' || conn.status === 'ready' || conn.status === 'reconnecting';
  const rest = new URLSearchParams(location.search);
  rest.delete('filter');
  // A token never stays in the address.
  rest.delete('access_token');
  let query = queryWithBindings(rest.toString() ? `?${rest}` : '', formBindings(), connected);
  const filter = ui.filter.value.trim();
  if (filter) query += `${query ? '&' : '?'}filter=${encodeURIComponent(filter)}`;
  if (query !== location.search) {
    history.replaceState(history.state, '', location.pathname + query + location.hash);
  }
}

// ---- Connection --------------------------------------------------------

ui.form.addEventListener('submit', (e) => {
  e.preventDefault();
  connect();
});

ui.disconnect.addEventListener('click', () => {
  closeStream('closed');
  hideBanner();
  ui.connect.focus();
});

function connect() {
  const bindings = formBindings();
  if (bindings.length === 0) {
    showBanner('Nothing to connect to', 'Enter an exchange and a routing-key pattern first.');
    ui.rows.querySelector('.exchange').focus();
    return;
  }
  closeStream(null);
  hideBanner();
  // resume: a server that resumes continues a broken stream or says `gap`;
  // with one that does not, the library marks every reconnection as a gap.
  // The token is read at each (re)connection, so that one pasted while the
  // page retries is used at the next attempt.
  const tokens = ui.tokenRow.hidden ? {} : { token: () => ui.token.value.trim() };
  // properties: each message carries its AMQP properties and headers,
  // shown in its row and its expanded view.
  const client = new EventsClient({ rootUrl: document.baseURI, resume: true, properties: true, ...tokens });
  conn.client = client;
  conn.key = JSON.stringify(bindings);
  conn.wasReady = false;
  conn.lastError = '';
  // Events of a client that the page has since replaced are ignored.
  const on = (kind, handle) => client.addEventListener(kind, (e) => {
    if (conn.client === client) handle(e.detail);
  });
  on('state', stateChanged);
  on('message', receive);
  on('ping', ping);
  on('overflow', overflow);
  on('gap', gap);
  on('error', (d) => {
    conn.lastError = d.message;
  });
  for (const b of bindings) client.subscribe(b);
  setStatus('connecting');
  syncURL();
}

// closeStream closes the client, if any, and sets status unless it is null.
function closeStream(status) {
  if (conn.client) {
    conn.client.close();
    conn.client = null;
  }
  conn.lastPing = 0;
  if (status) {
    setStatus(status);
    syncURL();
  }
}

function setStatus(status) {
  conn.status = status;
  conn.since = new Date();
  const [text, hint] = STATES[status];
  ui.state.dataset.state = status;
  ui.stateText.textContent = text;
  ui.state.title = `${hint} (since ${conn.since.toLocaleTimeString()})`;
  renderPing();
  renderControls();
  renderEmpty();
}

// stateChanged follows the client. The server's `error` before `ready`
// says what is wrong with the bindings, and is final (failed); after it,
// and after network failures, the client tries again by itself.
function stateChanged(d) {
  switch (d.state) {
    case 'connecting':
    case 'open':
      if (conn.status !== 'reconnecting') setStatus('connecting');
      break;
    case 'ready':
      if (!conn.wasReady) conn.readyAt = performance.now();
      conn.wasReady = true;
      conn.lastError = '';
      if (ui.banner.dataset.kind === 'retry') hideBanner();
      setStatus('ready');
      break;
    case 'retrying': {
      const secs = Math.max(1, Math.round((d.retryIn ?? 0) / 1000));
      const why = conn.lastError ? `The server said: ${conn.lastError} ` : '';
      if (conn.wasReady) {
        showBanner('Connection lost', `${why}Reconnecting in ${secs} s; the list marks where messages may be missing.`, 'retry');
      } else {
        const refused = d.status ? ` (HTTP ${d.status})` : '';
        showBanner('Could not connect', `${why}The server did not open the stream${refused}: it may be restarting, busy or unable to reach its broker. Trying again in ${secs} s.`, 'retry');
      }
      setStatus('reconnecting');
      break;
    }
    case 'failed':
      closeStream('closed');
      if (d.status === 401) {
        refusedToken();
        break;
      }
      showBanner('The server closed the stream', d.message ?? conn.lastError ?? '');
      break;
    case 'closed':
      if (conn.client) closeStream('closed');
      break;
  }
}

function ping(data) {
  conn.lastPing = Date.now();
  conn.pingTime = String(data?.time ?? '');
  renderPing();
}

function renderPing() {
  const connected = conn.status === 'connecting' || conn.status === 'ready' || conn.status === 'reconnecting';
  ui.ping.hidden = !connected;
  if (!connected) return;
  let text = 'no ping yet';
  if (conn.lastPing) {
    const s = Math.max(0, Math.round((Date.now() - conn.lastPing) / 1000));
    text = `last ping ${s < 60 ? `${s} s` : `${Math.floor(s / 60)} min`} ago`;
    ui.ping.title = `The server's time at the last ping: ${conn.pingTime}`;
  } else {
    ui.ping.title = 'The server sends a ping at a regular interval while the stream is open.';
  }
  if (ui.ping.textContent !== text) ui.ping.textContent = text;
}
setInterval(() => {
  renderPing();
  renderRate();
}, 1000);

// rate measures the messages per second.
const rate = new RateMeter();

function renderRate() {
  const r = rate.perSecond(performance.now(), conn.readyAt || performance.now());
  const text = r === 0 ? '0' : r < 10 ? r.toFixed(1) : number.format(Math.round(r));
  if (ui.rate.textContent !== text) ui.rate.textContent = text;
}

function overflow(data) {
  view.dropped += Number(data?.dropped) || 0;
  schedule();
}

// gap queues a marker for the list: messages may be missing here.
function gap(data) {
  const reason = String(data?.reason ?? '');
  const text = {
    reconnect: 'The stream broke and was opened again: messages published meanwhile are missing.',
    broker: 'The server lost its broker connection: messages published meanwhile may be missing.',
  }[reason] ?? `Messages may be missing here (the server says: ${reason || 'gap'}).`;
  view.incoming.push({ gap: true, seq: ++view.seq, time: new Date(), reason, text, row: null });
  schedule();
}

// refusedToken says that the server wants a (valid) token, with its text,
// and puts the focus in the token field.
function refusedToken() {
  ui.tokenRow.hidden = false;
  const given = ui.token.value.trim() !== '';
  showBanner(given ? 'The token was refused' : 'This server needs a token',
    `${conn.lastError ? conn.lastError + ' ' : ''}${given ? 'Paste a valid token' : 'Paste a token'} in the Token field, then connect.`);
  ui.token.focus();
}

function showBanner(title, text, kind = '') {
  ui.bannerTitle.textContent = title;
  ui.bannerText.textContent = text;
  ui.banner.dataset.kind = kind;
  ui.banner.hidden = false;
}

function hideBanner() {
  ui.banner.hidden = true;
}

ui.bannerClose.addEventListener('click', hideBanner);

// ---- Messages ----------------------------------------------------------

function isObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

// metaText sums up a message's properties and headers for its row: the
// content type and the number of headers.
function metaText(m) {
  const parts = [];
  if (typeof m.properties.contentType === 'string') parts.push(m.properties.contentType);
  const n = Object.keys(m.headers).length;
  if (n) parts.push(`${n} ${n === 1 ? 'header' : 'headers'}`);
  return parts.join(' · ');
}

function receive(data) {
  if (data === null || typeof data !== 'object') return;
  const msg = {
    seq: ++view.seq,
    time: new Date(),
    exchange: String(data.exchange ?? ''),
    routingKey: String(data.routingKey ?? ''),
    redelivered: data.redelivered === true,
    routes: Array.isArray(data.routes) ? data.routes.map(String) : [],
    payload: data.payload,
    properties: isObject(data.properties) ? data.properties : {},
    headers: isObject(data.headers) ? data.headers : {},
    headersTruncated: data.headersTruncated === true,
    row: null,
    expanded: false,
    search: null,
    evicted: false,
  };
  view.received++;
  rate.add();
  if (view.paused) view.unseen++;
  view.incoming.push(msg);
  // More than MAX_KEPT waiting would push each other out anyway.
  if (view.incoming.length > MAX_KEPT) view.incoming.splice(0, view.incoming.length - MAX_KEPT);
  schedule();
}

// schedule asks for the page to be brought up to date at the next frame.
function schedule() {
  if (!view.frame) view.frame = requestAnimationFrame(flush);
}

function flush() {
  view.frame = 0;
  if (!view.paused && view.incoming.length) {
    const batch = view.incoming;
    view.incoming = [];
    view.unseen = 0;
    for (const m of batch) (m.gap ? view.gaps : view.kept).push(m);
    evict();
    const fragment = document.createDocumentFragment();
    for (let i = batch.length - 1; i >= 0; i--) {
      const m = batch[i];
      if (m.gap) fragment.append(gapRow(m));
      else if (!m.evicted && matches(m)) fragment.append(rowOf(m));
    }
    // An expanded payload in view stays where it is while rows come in
    // above it.
    const anchor = [...ui.list.querySelectorAll(':scope > li.msg.expanded')]
      .find((li) => { const r = li.getBoundingClientRect(); return r.bottom > 0 && r.top < innerHeight; });
    const before = anchor?.getBoundingClientRect().top;
    ui.list.prepend(fragment);
    if (anchor) {
      const fix = () => {
        const moved = anchor.getBoundingClientRect().top - before;
        if (Math.abs(moved) >= 1) scrollBy(0, moved);
      };
      fix();
      // New rows off screen are laid out at their estimated size until the
      // next frame (content-visibility); correct for their real one then.
      requestAnimationFrame(fix);
    }
    if (view.terms.length) highlightMatches(ui.list, view.terms);
  }
  renderCounts();
  renderEmpty();
  renderControls();
}

function evict() {
  const excess = view.kept.length - MAX_KEPT;
  if (excess <= 0) return;
  for (const m of view.kept.splice(0, excess)) {
    m.evicted = true;
    m.row?.remove();
    m.row = null;
  }
  // A marker older than every kept message marks nothing any more.
  while (view.gaps.length && view.gaps[0].seq < view.kept[0].seq) view.gaps.shift().row?.remove();
}

function gapRow(g) {
  if (g.row) return g.row;
  const li = el('li', 'gap');
  li.setAttribute('role', 'separator');
  const time = el('time', 'msg-time', clock(g.time));
  time.dateTime = g.time.toISOString();
  li.append(time, el('span', 'gap-text', g.text));
  li.title = g.reason ? `gap: ${g.reason}` : 'gap';
  g.row = li;
  return li;
}

// shownCount is how many messages the list shows, markers aside.
function shownCount() {
  return ui.list.childElementCount - view.gaps.filter((g) => g.row?.isConnected).length;
}

function searchText(m) {
  if (m.search === null) {
    m.search = [m.exchange, m.routingKey, ...m.routes, JSON.stringify(m.payload) ?? '',
      JSON.stringify(m.properties), JSON.stringify(m.headers)].join('\n').toLowerCase();
  }
  return m.search;
}

function matches(m) {
  return view.terms.length === 0 || view.terms.every((t) => searchText(m).includes(t));
}

// applyFilter shows the kept messages that match the filter, at once: rows
// are made once per message and reused.
function applyFilter() {
  view.terms = ui.filter.value.toLowerCase().split(/\s+/).filter(Boolean);
  const fragment = document.createDocumentFragment();
  let g = view.gaps.length - 1;
  for (let i = view.kept.length - 1; i >= 0; i--) {
    const m = view.kept[i];
    for (; g >= 0 && view.gaps[g].seq > m.seq; g--) fragment.append(gapRow(view.gaps[g]));
    if (matches(m)) fragment.append(rowOf(m));
  }
  for (; g >= 0; g--) fragment.append(gapRow(view.gaps[g]));
  ui.list.replaceChildren(fragment);
  highlightMatches(ui.list, view.terms);
  bindingsEdited();
  renderCounts();
  renderEmpty();
  renderControls();
}

ui.filter.addEventListener('input', applyFilter);
ui.filter.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && ui.filter.value) {
    e.preventDefault();
    ui.filter.value = '';
    applyFilter();
  }
});

function clock(d) {
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

// hue gives each exchange a colour of its own, to tell them apart at a
// glance; it depends on the name only, so it is the same in every session.
const hue = exchangeHue;

// keyNodes shows a routing key with its dots set back, so its words stand out.
function keyNodes(key) {
  const nodes = [];
  key.split('.').forEach((word, i) => {
    if (i) nodes.push(el('span', 'dot-sep', '.'));
    nodes.push(document.createTextNode(word));
  });
  return nodes;
}

const SVG = 'http://www.w3.org/2000/svg';

function chevron() {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', '0 0 16 16');
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS(SVG, 'path');
  path.setAttribute('d', 'M6 3.5L10.5 8 6 12.5');
  svg.append(path);
  return svg;
}

function rowOf(m) {
  if (m.row) return m.row;
  const li = el('li', 'msg');
  li.dataset.seq = String(m.seq);

  const time = el('time', 'msg-time', clock(m.time));
  time.dateTime = m.time.toISOString();
  time.title = `Received ${m.time.toLocaleString()}`;

  const main = el('div', 'msg-main');
  const head = el('div', 'msg-head');
  const exchange = el('span', 'msg-exchange');
  const cut = m.exchange.lastIndexOf('/') + 1;
  const dot = el('span', 'ex-dot');
  li.style.setProperty('--hue', String(hue(m.exchange)));
  exchange.append(dot, el('span', 'ex-dir', m.exchange.slice(0, cut)), el('span', 'ex-name', m.exchange.slice(cut)));
  exchange.title = `Exchange ${m.exchange}`;
  head.append(exchange);
  if (m.redelivered) head.append(el('span', 'tag', 'redelivered'));
  const meta = metaText(m);
  if (meta) {
    const chip = el('span', 'msg-meta', meta);
    chip.title = 'Content type and headers: open the message to see them all';
    head.append(chip);
  }
  const key = el('div', 'msg-key');
  key.title = 'Routing key';
  key.append(...keyNodes(m.routingKey));
  main.append(head, key);
  if (m.routes.length) {
    const routes = el('ul', 'msg-routes');
    routes.setAttribute('aria-label', 'Routes');
    for (const r of m.routes) routes.append(el('li', 'route', r));
    main.append(routes);
  }
  const snippet = el('div', 'msg-preview', preview(m.payload));
  snippet.title = 'Show the payload';
  main.append(snippet);

  const toggle = el('button', 'msg-toggle');
  toggle.type = 'button';
  toggle.setAttribute('aria-expanded', 'false');
  toggle.setAttribute('aria-controls', `payload-${m.seq}`);
  toggle.append(chevron(), el('span', '', 'Payload'));

  const payload = el('div', 'msg-payload');
  payload.id = `payload-${m.seq}`;
  payload.hidden = true;

  li.append(time, main, toggle, payload);
  rowMessage.set(li, m);
  m.row = li;
  if (m.expanded) setExpanded(m, true);
  return li;
}

function setExpanded(m, expanded) {
  m.expanded = expanded;
  const li = m.row;
  const payload = li.querySelector('.msg-payload');
  li.querySelector('.msg-toggle').setAttribute('aria-expanded', String(expanded));
  li.classList.toggle('expanded', expanded);
  if (expanded && !payload.firstChild) {
    const tools = el('div', 'payload-tools');
    for (const [action, label] of [['expand-all', 'Expand all'], ['collapse-all', 'Collapse all'], ['copy', 'Copy JSON']]) {
      const b = el('button', 'button small ghost', label);
      b.type = 'button';
      b.dataset.action = action;
      tools.append(b);
    }
    payload.append(tools, jsonTree(m.payload), propsView(m));
  }
  payload.hidden = !expanded;
}

// propsView shows a message's AMQP properties (those set) and its headers
// table, under its payload.
function propsView(m) {
  const box = el('div', 'msg-props');
  box.append(el('h3', 'props-title', 'Properties'));
  const names = Object.keys(m.properties);
  if (names.length) {
    const dl = el('dl', 'props');
    for (const name of names) {
      const v = m.properties[name];
      dl.append(el('dt', '', name), el('dd', '', typeof v === 'string' ? v : JSON.stringify(v)));
    }
    box.append(dl);
  } else {
    box.append(el('p', 'props-none', 'None set.'));
  }
  box.append(el('h3', 'props-title', m.headersTruncated ? 'Headers (cut to the server\'s bounds)' : 'Headers'));
  if (Object.keys(m.headers).length) {
    const tree = jsonTree(m.headers);
    tree.classList.add('headers');
    box.append(tree);
  } else {
    box.append(el('p', 'props-none', 'None.'));
  }
  return box;
}

ui.list.addEventListener('click', async (e) => {
  const li = e.target.closest('li.msg');
  const m = li && rowMessage.get(li);
  if (!m) return;
  if (e.target.closest('.msg-toggle')) {
    setExpanded(m, !m.expanded);
    return;
  }
  if (e.target.closest('.msg-preview') && !m.expanded) {
    setExpanded(m, true);
    return;
  }
  const action = e.target.closest('[data-action]');
  if (!action) return;
  const tree = li.querySelector('.json');
  switch (action.dataset.action) {
    case 'expand-all':
      setAllOpen(tree, true);
      break;
    case 'collapse-all':
      setAllOpen(tree, false);
      break;
    case 'copy':
      try {
        await navigator.clipboard.writeText(JSON.stringify(m.payload, null, 2));
        action.textContent = 'Copied';
      } catch {
        action.textContent = 'Copy failed';
      }
      setTimeout(() => { action.textContent = 'Copy JSON'; }, 1500);
      break;
  }
});

// ---- Toolbar -----------------------------------------------------------

function togglePause() {
  view.paused = !view.paused;
  if (!view.paused) view.unseen = 0;
  ui.pause.setAttribute('aria-pressed', String(view.paused));
  ui.pauseLabel.textContent = view.paused ? 'Resume' : 'Pause';
  schedule();
  renderCounts();
}

ui.pause.addEventListener('click', togglePause);

ui.clear.addEventListener('click', () => {
  rate.clear();
  renderRate();
  view.kept = [];
  view.gaps = [];
  view.incoming = [];
  view.unseen = 0;
  view.received = 0;
  view.dropped = 0;
  ui.list.replaceChildren();
  renderCounts();
  renderEmpty();
  renderControls();
});

// shownMessages returns what the list shows, oldest first.
function shownMessages() {
  return view.kept.filter(matches);
}

ui.download.addEventListener('click', () => {
  const shown = shownMessages().map((m) => ({
    receivedAt: m.time.toISOString(),
    exchange: m.exchange,
    routingKey: m.routingKey,
    redelivered: m.redelivered,
    routes: m.routes,
    payload: m.payload,
    properties: m.properties,
    headers: m.headers,
  }));
  const blob = new Blob([JSON.stringify(shown, null, 2) + '\n'], { type: 'application/json' });
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = `eventsproxy-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 60_000);
});

function renderCounts() {
  renderRate();
  ui.received.textContent = number.format(view.received);
  ui.receivedUnit.textContent = view.received === 1 ? 'message' : 'messages';
  ui.dropped.textContent = number.format(view.dropped);
  ui.droppedWrap.classList.toggle('warn', view.dropped > 0);
  const shown = shownCount();
  let text = '';
  if (view.terms.length) text = `${number.format(shown)} ${shown === 1 ? 'match' : 'matches'}`;
  else if (view.received - view.incoming.length > view.kept.length) text = `newest ${number.format(view.kept.length)} kept`;
  ui.shown.textContent = text;
  ui.shown.hidden = !text;
  ui.badge.hidden = !(view.paused && view.unseen);
  ui.badge.textContent = ui.badge.hidden ? '' : `${number.format(view.unseen)} new`;
  ui.pausedNote.hidden = !view.paused;
  if (view.paused) {
    const n = view.unseen;
    ui.pausedNote.textContent = n
      ? `Paused: ${number.format(n)} new ${n === 1 ? 'message waits' : 'messages wait'} to be shown. Resume to see ${n === 1 ? 'it' : 'them'}.`
      : 'Paused: new messages are counted, and shown when you resume.';
  }
}

function renderEmpty() {
  let text = '';
  if (shownCount() === 0) {
    if (view.paused && view.incoming.length) text = 'Nothing shown yet.';
    else if (view.kept.length && view.terms.length) text = 'No message matches the filter.';
    else if (conn.status === 'ready') text = 'Waiting for messages…';
    else if (conn.status === 'connecting' || conn.status === 'reconnecting') text = 'Connecting…';
    else text = 'No messages yet. Choose bindings above and connect.';
  }
  ui.empty.textContent = text;
  ui.empty.hidden = !text;
}

function renderControls() {
  const connected = conn.status === 'connecting' || conn.status === 'ready' || conn.status === 'reconnecting';
  const stale = connected && JSON.stringify(formBindings()) !== conn.key;
  ui.connect.hidden = connected && !stale;
  ui.connect.textContent = connected ? 'Reconnect' : 'Connect';
  ui.disconnect.hidden = !connected;
  ui.stale.hidden = !stale;
  // Keyboard users keep their place when the button they were on goes.
  if (document.activeElement === ui.disconnect && ui.disconnect.hidden) ui.connect.focus();
  else if (document.activeElement === ui.connect && ui.connect.hidden) ui.disconnect.focus();
  ui.download.disabled = shownCount() === 0;
  ui.clear.disabled = view.received === 0 && view.kept.length === 0 && view.dropped === 0;
}

// ---- Keyboard ----------------------------------------------------------

document.addEventListener('keydown', (e) => {
  if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.target.closest?.('input, textarea, select, [contenteditable]')) return;
  if (e.key === '/') {
    e.preventDefault();
    ui.filter.focus();
    ui.filter.select();
  } else if (e.key === 'p' || e.key === 'P') {
    e.preventDefault();
    togglePause();
  }
});

// The toolbar sticks below the header, whose height changes with the banner.
new ResizeObserver(([entry]) => {
  document.documentElement.style.setProperty('--top-height', `${entry.target.offsetHeight}px`);
}).observe($('top'));

// ---- Density and commands ----------------------------------------------

const COMPACT_KEY = 'eventsproxy-inspector-compact';

function setCompact(on) {
  ui.list.classList.toggle('compact', on);
  ui.compact.setAttribute('aria-pressed', String(on));
}

ui.compact.addEventListener('click', () => {
  const on = ui.compact.getAttribute('aria-pressed') !== 'true';
  setCompact(on);
  localStorage.setItem(COMPACT_KEY, on ? '1' : '0');
});

// copy puts text on the clipboard and says so; where the clipboard is not
// available, it says the command instead, to be copied by hand.
async function copy(what, text, note = '') {
  try {
    await navigator.clipboard.writeText(text);
    ui.copied.textContent = `Copied the ${what}.${note}`;
  } catch {
    ui.copied.textContent = text;
  }
  ui.copied.dataset.text = text;
}

const serviceRoot = () => new URL('.', document.baseURI).href;
// With a token, the commands take it from a shell variable: the clipboard
// never gets the token itself.
const withToken = () => ui.token.value.trim() !== '';
const tokenNote = () => (withToken() ? ` It reads the token from $${TOKEN_VARIABLE}.` : '');
ui.copyListen.addEventListener('click', () => copy('listen command', listenCommand(serviceRoot(), formBindings(), withToken()), tokenNote()));
ui.copyCurl.addEventListener('click', () => copy('curl command', curlCommand(serviceRoot(), formBindings(), withToken()), tokenNote()));

// ---- Start -------------------------------------------------------------

const settings = await loadSettings();
renderHint($('server-hint'), settings);
if (settings.tokens) {
  ui.tokenRow.hidden = false;
  ui.tokenHint.textContent = (settings.tokens === 'required'
    ? 'This server needs a token for every stream. '
    : 'This server needs a token for all but its public exchanges. ') +
    'It goes in an Authorization header: never in the address, a shared link or a log.';
}
// A token that came in the address moves to the field, and out of the
// address (syncURL drops it).
const addressToken = new URLSearchParams(location.search).get('access_token');
if (addressToken) ui.token.value = addressToken;
$('exchanges').replaceChildren(...suggestions(settings).map((value) => Object.assign(document.createElement('option'), { value })));
const start = bindingsFromQuery(location.search);
ui.filter.value = new URLSearchParams(location.search).get('filter') ?? '';
if (ui.filter.value) applyFilter();
setCompact(localStorage.getItem(COMPACT_KEY) === '1');
for (const b of start.bindings.length ? start.bindings : [exampleBinding(settings)]) addRow(b);
setStatus('idle');
renderCounts();
if (addressToken) syncURL();
if (start.error) showBanner('Bindings not understood', start.error);
else if (start.connect && start.bindings.length) connect();
// The page is set up: the tests wait for this.
document.documentElement.dataset.ready = '1';
