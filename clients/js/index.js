// eventsproxy-client: watch RabbitMQ topic exchanges through eventsproxy from
// a page (or Node.js 20+), with one stream for all of a page's bindings.
//
// Served by eventsproxy itself at /api/events/v1/client.js, so a page can
//   import { EventsClient } from 'https://events.example/api/events/v1/client.js';
// without a build step. One file, no dependencies: keep it that way, since the
// service embeds this very file.

const CONNECT_PATH = 'api/events/v1/connect/';
const SERVED_PATH = 'api/events/v1/client.js';

// The server's texts for failures that are not the request's fault; after
// them a new connection may well succeed. Every other `error` before `ready`
// says what is wrong with the bindings, and retrying would only repeat it.
const RETRYABLE_TEXTS = new Set([
  'Unknown Internal Error',
  'The service is temporarily unavailable; please reconnect later.',
  'The server is shutting down; please reconnect.',
]);

/**
 * topicMatch reports whether a RabbitMQ topic binding pattern matches a
 * routing key: words split on ".", "*" exactly one word, "#" zero or more.
 * A word such as "a*" is literal, as RabbitMQ takes it. It agrees with the
 * server's matcher (internal/topic) on a shared table of cases.
 */
export function topicMatch(pattern, routingKey) {
  const p = pattern === '' ? [] : collapse(pattern.split('.'));
  const k = routingKey === '' ? [] : routingKey.split('.');
  // The glob algorithm with # as the star: on a mismatch, go back to the
  // latest # and let it take one more word. Retrying only the latest # is
  // enough, and keeps patterns like "#.#.#.a" polynomial.
  let pi = 0;
  let ki = 0;
  let back = -1;
  let mark = 0;
  while (ki < k.length) {
    if (pi < p.length) {
      const w = p[pi];
      if (w === '#') {
        if (pi === p.length - 1) return true;
        back = pi;
        mark = ki;
        pi++;
        continue;
      }
      if (w === '*' || w === k[ki]) {
        pi++;
        ki++;
        continue;
      }
    }
    if (back < 0) return false;
    mark++;
    pi = back + 1;
    ki = mark;
  }
  while (pi < p.length && p[pi] === '#') pi++;
  return pi === p.length;
}

// collapse folds runs of "#" into one, which matches the same keys.
function collapse(words) {
  return words.filter((w, i) => !(w === '#' && words[i - 1] === '#'));
}

// bindingKey names a binding for sets and messages between tabs.
const bindingKey = (b) => JSON.stringify([b.exchange, b.routingKeyPattern]);
const fromKey = (key) => {
  const [exchange, routingKeyPattern] = JSON.parse(key);
  return { exchange, routingKeyPattern };
};

/**
 * messageMatches reports whether a `message` event's data belongs to a
 * binding: same exchange, and the pattern matches the routing key or one of
 * the message's CC routes (which the server lists without their "route."
 * prefix).
 */
export function messageMatches(binding, msg) {
  if (binding.exchange !== msg.exchange) return false;
  const p = binding.routingKeyPattern;
  if (topicMatch(p, msg.routingKey)) return true;
  return Array.isArray(msg.routes) && msg.routes.some((r) => topicMatch(p, `route.${r}`));
}

/**
 * SSEParser turns the text of an event stream into events, as the HTML
 * standard's EventSource does: `event`, `data` (joined by newlines), `id`
 * (kept until changed) and `retry` fields; events without data are dropped.
 */
export class SSEParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buf = '';
    this.kind = '';
    this.data = [];
    this.lastEventId = '';
    this.retry = undefined;
  }

  push(text) {
    this.buf += text;
    let start = 0;
    for (;;) {
      const m = /\r\n|\r|\n/g;
      m.lastIndex = start;
      const hit = m.exec(this.buf);
      // A lone \r at the end may be the first half of \r\n.
      if (!hit || (hit[0] === '\r' && hit.index === this.buf.length - 1)) break;
      this.line(this.buf.slice(start, hit.index));
      start = hit.index + hit[0].length;
    }
    this.buf = this.buf.slice(start);
  }

  line(line) {
    if (line === '') {
      if (this.data.length > 0) {
        this.onEvent({ kind: this.kind || 'message', data: this.data.join('\n'), lastEventId: this.lastEventId });
      }
      this.kind = '';
      this.data = [];
      return;
    }
    if (line[0] === ':') return;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value[0] === ' ') value = value.slice(1);
    if (field === 'event') this.kind = value;
    else if (field === 'data') this.data.push(value);
    else if (field === 'id' && !value.includes('\0')) this.lastEventId = value;
    else if (field === 'retry' && /^\d+$/.test(value)) this.retry = Number(value);
  }
}

// A transport opens one connect request and reports on it through sink:
//   open()                          status 200: the stream is open
//   event(kind, data, lastEventId)  each event
//   fail({status, retryAfter, error, closed})
//                                   the stream ended or never opened; closed
//                                   means the server said not to reconnect (204)
// It returns a function that closes the request; nothing is reported after.

function eventSourceTransport(url, opts, sink) {
  const ES = opts.EventSource ?? globalThis.EventSource;
  const es = new ES(url, { withCredentials: !!opts.withCredentials });
  let done = false;
  const close = () => {
    done = true;
    es.close();
  };
  es.onopen = () => !done && sink.open();
  for (const kind of ['ready', 'message', 'ping', 'overflow', 'gap']) {
    es.addEventListener(kind, (e) => !done && sink.event(kind, e.data, e.lastEventId));
  }
  es.addEventListener('error', (e) => {
    if (done) return;
    // An `error` with data is the server's; without, the connection failed
    // (EventSource cannot tell a refusal's status from a network error).
    if (typeof e.data === 'string') {
      sink.event('error', e.data, e.lastEventId);
      if (done) return;
    }
    close();
    sink.fail({ error: 'connection failed' });
  });
  return close;
}

function fetchTransport(url, opts, sink) {
  const ctl = new AbortController();
  let done = false;
  const fail = (f) => {
    if (done) return;
    done = true;
    ctl.abort();
    sink.fail(f);
  };
  (async () => {
    const headers = { Accept: 'text/event-stream' };
    const token = typeof opts.token === 'function' ? await opts.token() : opts.token;
    if (token) headers.Authorization = `Bearer ${token}`;
    if (done) return;
    const res = await (opts.fetch ?? globalThis.fetch)(url, {
      headers,
      signal: ctl.signal,
      cache: 'no-store',
      credentials: opts.withCredentials ? 'include' : 'same-origin',
    });
    if (res.status === 204) return fail({ status: 204, closed: true });
    if (res.status !== 200) {
      const body = await res.text().catch(() => '');
      const retryAfter = Number(res.headers.get('Retry-After'));
      return fail({ status: res.status, retryAfter: retryAfter > 0 ? retryAfter : undefined, body });
    }
    sink.open();
    const parser = new SSEParser((ev) => !done && sink.event(ev.kind, ev.data, ev.lastEventId));
    const decoder = new TextDecoder();
    const reader = res.body.getReader();
    for (;;) {
      const { value, done: end } = await reader.read();
      if (end) break;
      parser.push(decoder.decode(value, { stream: true }));
      if (done) return;
    }
    fail({ error: 'stream ended' });
  })().catch((err) => fail({ error: String(err?.message ?? err) }));
  return () => {
    done = true;
    ctl.abort();
  };
}

// Stream keeps one connect request open for a set of bindings: it reconnects
// with backoff after network failures and after the server's `error` for a
// stream that was ready, resumes with the last token when resume is on, and
// reports everything to sink (the same calls as a transport's, plus
// state(s, info) and gap(reason)).
class Stream {
  constructor(opts, sink) {
    this.opts = opts;
    this.sink = sink;
    this.keys = []; // the bindings of the current request, sorted
    this.close = null; // closes the current request
    this.timer = null;
    this.attempt = 0;
    this.wasReady = false; // whether any request for these bindings got `ready`
    this.ready = false; // whether the current one did
    this.lastEventId = opts.lastEventId ?? '';
    this.state = 'idle';
  }

  setState(state, info = {}) {
    this.state = state;
    this.sink.state(state, info);
  }

  // start (re)connects for keys at once.
  start(keys) {
    keys = [...keys];
    // Bindings that go on lose what is published until the new `ready`.
    this.rebind = this.wasReady && keys.some((k) => this.keys.includes(k));
    this.keys = keys.sort();
    this.attempt = 0;
    this.wasReady = false;
    this.open();
  }

  stop(state = 'idle') {
    clearTimeout(this.timer);
    this.timer = null;
    this.close?.();
    this.close = null;
    this.ready = false;
    this.keys = state === 'idle' ? [] : this.keys;
    this.setState(state);
  }

  url() {
    const u = new URL(CONNECT_PATH, this.opts.rootUrl);
    u.searchParams.set('bindings', JSON.stringify({ bindings: this.keys.map(fromKey) }));
    if (this.opts.properties) u.searchParams.set('properties', '1');
    if (this.opts.resume) {
      u.searchParams.set('resume', '1');
      if (this.lastEventId && this.lastEventId !== '-') u.searchParams.set('lastEventId', this.lastEventId);
    }
    return u.href;
  }

  open() {
    clearTimeout(this.timer);
    this.close?.();
    this.ready = false;
    this.setState('connecting');
    const transport = this.opts.transport === 'fetch' || this.opts.token ? fetchTransport : eventSourceTransport;
    let mine = true;
    const close = transport(this.url(), this.opts, {
      open: () => mine && this.setState('open'),
      event: (kind, data, id) => mine && this.event(kind, data, id),
      fail: (f) => {
        if (!mine) return;
        mine = false;
        this.close = null;
        this.failed(f);
      },
    });
    this.close = () => {
      mine = false;
      close();
    };
  }

  event(kind, data, id) {
    if (this.opts.resume && id && id !== '-') this.lastEventId = id;
    let value;
    try {
      value = JSON.parse(data);
    } catch {
      value = data;
    }
    if (kind === 'ready') {
      // A server that resumes gives `ready` a token, and says `gap` itself
      // when it cannot continue; one that does not ("-") cannot say.
      const resumed = this.opts.resume && id && id !== '-';
      if ((this.wasReady || this.rebind) && !resumed) this.sink.gap(this.wasReady ? 'reconnect' : 'rebind');
      this.rebind = false;
      this.ready = true;
      this.wasReady = true;
      this.attempt = 0;
      this.setState('ready');
    }
    if (kind === 'error') {
      const text = typeof value === 'string' ? value : JSON.stringify(value);
      const retry = this.ready || RETRYABLE_TEXTS.has(text);
      this.close?.();
      this.close = null;
      this.sink.event('error', { message: text, terminal: !retry }, this.lastEventId);
      if (retry) this.retry({ error: text });
      else this.setState('failed', { message: text });
      return;
    }
    this.sink.event(kind, value, this.lastEventId);
  }

  failed(f) {
    if (f.closed) {
      this.setState('closed', { status: f.status });
      return;
    }
    if (f.status === 401 || f.status === 403 || f.status === 400 || f.status === 404) {
      this.sink.event('error', { message: bodyText(f.body) || `HTTP ${f.status}`, status: f.status, terminal: true }, '');
      this.setState('failed', { status: f.status });
      return;
    }
    this.retry(f);
  }

  retry(f) {
    this.ready = false;
    const { initial = 1000, max = 30000 } = this.opts.backoff ?? {};
    const base = Math.min(max, initial * 2 ** this.attempt++);
    // Jitter spreads the reconnections of many pages after a restart.
    let delay = base / 2 + Math.random() * (base / 2);
    if (f.retryAfter) delay = Math.max(delay, f.retryAfter * 1000);
    this.setState('retrying', { ...f, retryIn: delay });
    this.timer = setTimeout(() => this.open(), delay);
  }
}

function bodyText(body) {
  if (!body) return '';
  try {
    const v = JSON.parse(body);
    return typeof v === 'string' ? v : String(v.message ?? body);
  } catch {
    return body;
  }
}

// defaultRootUrl is where this module was served from when the service
// served it, else the page's own location.
function defaultRootUrl() {
  const here = import.meta.url;
  if (here.endsWith(`/${SERVED_PATH}`)) return here.slice(0, -SERVED_PATH.length);
  return globalThis.location?.href;
}

/**
 * EventsClient holds one stream (or, with `share`, one stream per browser
 * for every tab of the origin) for all of a page's bindings, and hands each
 * message to the subscriptions whose binding matches it. See index.d.ts.
 */
export class EventsClient extends EventTarget {
  constructor(options = {}) {
    super();
    let root = options.rootUrl ?? defaultRootUrl();
    if (!root) throw new TypeError('EventsClient: rootUrl is required outside a page');
    root = new URL(root, globalThis.location?.href);
    if (!root.pathname.endsWith('/')) root.pathname += '/';
    this.options = { ...options, rootUrl: root.href };
    this.subs = new Set();
    this.state = 'idle';
    this.streamKeys = new Set(); // the bindings of the stream that serves this page
    this.readyKeys = new Set(); // those of them that are in place
    this.pending = false;
    this.closed = false;
    const shared = options.share && globalThis.navigator?.locks && globalThis.BroadcastChannel;
    this.source = shared ? new SharedSource(this, options.share === true ? 'default' : String(options.share)) : new LocalSource(this);
  }

  /** subscribe adds a binding; see index.d.ts. */
  subscribe(binding, handlers) {
    if (this.closed) throw new Error('EventsClient: closed');
    if (typeof binding?.exchange !== 'string' || typeof binding?.routingKeyPattern !== 'string') {
      throw new TypeError('subscribe: binding must be {exchange, routingKeyPattern} of strings');
    }
    const h = typeof handlers === 'function' ? { message: handlers } : { ...handlers };
    const sub = {
      binding: { exchange: binding.exchange, routingKeyPattern: binding.routingKeyPattern },
      key: bindingKey(binding),
      h,
      isReady: false,
      unsubscribe: () => {
        if (this.subs.delete(sub)) this.changed();
      },
    };
    sub.ready = new Promise((resolve) => {
      sub.resolveReady = resolve;
    });
    this.subs.add(sub);
    this.changed();
    return sub;
  }

  /** bindings returns the distinct bindings of this page's subscriptions. */
  bindings() {
    return [...new Set([...this.subs].map((s) => s.key))].sort().map(fromKey);
  }

  keys() {
    return new Set([...this.subs].map((s) => s.key));
  }

  // changed batches the subscriptions made in one task into one reconnection.
  changed() {
    if (this.pending) return;
    this.pending = true;
    queueMicrotask(() => {
      this.pending = false;
      if (!this.closed) this.source.update(this.keys());
    });
  }

  /** close ends the stream (or leaves the shared one) for good. */
  close() {
    if (this.closed) return;
    this.closed = true;
    this.subs.clear();
    this.source.close();
    this.setState('closed', {});
  }

  // ---- What a source reports; the same for a local and a shared stream.

  setState(state, info) {
    if (state !== 'ready') {
      // Each `ready` of a new connection is news to the subscriptions.
      this.readyKeys.clear();
      for (const sub of this.subs) sub.isReady = false;
    }
    this.state = state;
    this.emit('state', { state, ...info });
  }

  // serving says which bindings the stream has, and which are in place.
  serving(streamKeys, readyKeys) {
    this.streamKeys = new Set(streamKeys);
    this.readyKeys = new Set(readyKeys);
    for (const sub of this.subs) {
      if (!sub.isReady && this.readyKeys.has(sub.key)) {
        sub.isReady = true;
        sub.resolveReady();
        call(sub.h.ready, sub);
      }
    }
  }

  event(kind, data) {
    if (kind === 'message') {
      let to = [...this.subs].filter((s) => messageMatches(s.binding, data));
      // A message that no binding of the stream matches came through a CC
      // entry that is not a route (the server does not show those): it is
      // for this exchange's subscriptions. One that a binding matches whose
      // subscriptions have all gone is for nobody.
      if (to.length === 0 && ![...this.streamKeys].some((k) => messageMatches(fromKey(k), data))) {
        to = [...this.subs].filter((s) => s.binding.exchange === data.exchange);
      }
      for (const sub of to) call(sub.h.message, data, sub);
      this.emit('message', data);
      return;
    }
    if (kind === 'ready') {
      this.emit('ready', {});
      return;
    }
    if (kind === 'gap' || kind === 'overflow' || kind === 'error') {
      const detail = kind === 'gap' ? { reason: String(data?.reason ?? 'unknown'), ...data } : data;
      for (const sub of this.subs) call(sub.h[kind], detail, sub);
      this.emit(kind, detail);
      return;
    }
    this.emit(kind, data);
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

function call(fn, ...args) {
  if (typeof fn !== 'function') return;
  try {
    fn(...args);
  } catch (err) {
    // One page's handler must not stop delivery to the others.
    queueMicrotask(() => {
      throw err;
    });
  }
}

// LocalSource is a stream of this page's own.
class LocalSource {
  constructor(client) {
    this.client = client;
    this.stream = new Stream(client.options, {
      state: (s, info) => {
        client.setState(s, info);
        if (s === 'ready') client.serving(this.stream.keys, this.stream.keys);
      },
      event: (kind, data) => client.event(kind, data),
      gap: (reason) => client.event('gap', { reason, local: true }),
    });
  }

  update(keys) {
    const have = new Set(this.stream.keys);
    if (keys.size === 0) {
      if (have.size > 0) this.stream.stop('idle');
      return;
    }
    // A binding that left costs no reconnection: its messages are filtered
    // here until the stream reconnects for another reason.
    const grows = [...keys].some((k) => !have.has(k));
    if (grows || this.stream.state === 'failed' || this.stream.state === 'closed') {
      this.stream.start(keys);
    } else {
      this.client.serving(this.stream.keys, this.stream.ready ? this.stream.keys : []);
    }
  }

  close() {
    this.stream.stop('closed');
  }
}

// SharedSource shares one stream among the tabs of an origin that use the
// same share name. The tab holding the Web Lock "<name>:leader" runs the
// stream for the union of every tab's bindings and posts its events on a
// BroadcastChannel; every tab dispatches them to its own subscriptions.
// Each tab holds a lock of its own while it lives, so the leader learns of a
// tab that went away without a word when that lock is granted to it. When
// the leader goes, the next tab in line takes the lock and continues the
// stream with the same bindings and the last token it saw, so with resume
// on nothing is lost.
class SharedSource {
  constructor(client, name) {
    this.client = client;
    this.name = `eventsproxy-client:${name}`;
    this.tab = Math.random().toString(36).slice(2) + Date.now().toString(36);
    this.tabs = new Map(); // tab → Set of keys; the leader's view
    this.leader = false;
    this.streamKeys = []; // the stream's bindings, as last announced
    this.readyKeys = [];
    this.lastEventId = '';
    this.state = 'idle';
    this.bc = new BroadcastChannel(this.name);
    this.bc.onmessage = (e) => this.receive(e.data);
    this.release = null;
    this.closing = new Promise((resolve) => {
      this.release = resolve;
    });
    this.keys = new Set();
    const locks = globalThis.navigator.locks;
    // Hold this tab's own lock before saying hello, so that a leader never
    // takes a live tab for gone.
    this.started = new Promise((resolve) => {
      locks.request(`${this.name}:tab:${this.tab}`, () => {
        resolve();
        return this.closing;
      });
    });
    this.started.then(() => {
      if (this.closed) return;
      this.hello();
      locks.request(`${this.name}:leader`, () => this.lead());
    });
  }

  post(msg) {
    this.bc.postMessage({ ...msg, from: this.tab });
  }

  hello() {
    this.post({ t: 'hello', keys: [...this.keys] });
  }

  update(keys) {
    this.keys = keys;
    if (this.leader) {
      this.tabs.set(this.tab, keys);
      this.reconcile();
    } else {
      this.started.then(() => !this.closed && this.hello());
      this.client.serving(this.streamKeys, this.readyKeys);
    }
  }

  receive(msg) {
    if (this.closed || !msg || msg.from === this.tab) return;
    switch (msg.t) {
      case 'hello':
        if (this.leader) {
          if (!this.tabs.has(msg.from)) this.watch(msg.from);
          this.tabs.set(msg.from, new Set(msg.keys));
          this.reconcile();
          this.announce();
        }
        break;
      case 'bye':
        if (this.leader && this.tabs.delete(msg.from)) this.reconcile();
        break;
      case 'leader':
        this.hello();
        break;
      case 'status':
        this.streamKeys = msg.keys;
        this.readyKeys = msg.ready;
        this.lastEventId = msg.lastEventId;
        if (msg.state !== this.state) {
          this.state = msg.state;
          this.client.setState(msg.state, msg.info ?? {});
        }
        this.client.serving(this.streamKeys, this.readyKeys);
        break;
      case 'event':
        if (msg.lastEventId) this.lastEventId = msg.lastEventId;
        this.client.event(msg.kind, msg.data);
        break;
    }
  }

  // watch learns when tab is gone: its lock is granted to us then.
  watch(tab) {
    globalThis.navigator.locks.request(`${this.name}:tab:${tab}`, () => {
      if (this.tabs.delete(tab)) this.reconcile();
    });
  }

  // lead runs while this tab holds the leader lock, that is until it closes.
  lead() {
    if (this.closed) return undefined;
    this.leader = true;
    this.tabs.set(this.tab, this.keys);
    const opts = { ...this.client.options, lastEventId: this.lastEventId };
    this.stream = new Stream(opts, {
      state: (s, info) => {
        this.state = s;
        this.readyKeys = s === 'ready' ? this.stream.keys : [];
        this.streamKeys = this.stream.keys;
        this.client.setState(s, info);
        this.client.serving(this.streamKeys, this.readyKeys);
        this.announce(info);
      },
      event: (kind, data, lastEventId) => {
        this.lastEventId = lastEventId;
        this.post({ t: 'event', kind, data, lastEventId });
        this.client.event(kind, data);
      },
      gap: (reason) => {
        const data = { reason, local: true };
        this.post({ t: 'event', kind: 'gap', data });
        this.client.event('gap', data);
      },
    });
    // Go on with the stream the previous leader had, so that a resume token
    // names the same bindings; the other tabs' hellos then add what is new.
    this.previous = this.streamKeys;
    this.post({ t: 'leader' });
    this.reconcile();
    return this.closing;
  }

  reconcile() {
    if (!this.leader || this.closed) return;
    const want = new Set([...this.tabs.values()].flatMap((s) => [...s]));
    const have = new Set(this.stream.keys);
    if (want.size === 0) {
      if (have.size > 0) this.stream.stop('idle');
      return;
    }
    const base = have.size > 0 ? have : new Set(this.previous);
    const grows = [...want].some((k) => !base.has(k));
    const keys = grows ? want : base;
    if (have.size === 0 || grows || this.stream.state === 'failed' || this.stream.state === 'closed') {
      this.stream.start([...keys]);
    }
  }

  announce(info) {
    this.post({
      t: 'status',
      state: this.state,
      info,
      keys: this.streamKeys,
      ready: this.readyKeys,
      lastEventId: this.lastEventId,
    });
  }

  close() {
    this.closed = true;
    if (this.leader) this.stream.stop('closed');
    else this.post({ t: 'bye' });
    this.bc.close();
    this.release();
  }
}
