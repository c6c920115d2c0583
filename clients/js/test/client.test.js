// EventsClient over its fetch transport (and a stand-in EventSource),
// against a server the tests drive: one stream for every subscription,
// local dispatch, the server's `error` against network failures, 204,
// overflow, gap, resume and tokens.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EventsClient } from '../index.js';
import { fakeServer, on } from './fakeserver.js';

const fast = { backoff: { initial: 5, max: 20 } };
const b = (exchange, routingKeyPattern) => ({ exchange, routingKeyPattern });
const msg = (exchange, routingKey, routes = []) => ({ exchange, routingKey, redelivered: false, routes, payload: { k: routingKey } });

function client(t, srv, opts = {}) {
  const c = new EventsClient({ rootUrl: srv.url, transport: 'fetch', ...fast, ...opts });
  t.after(() => c.close());
  return c;
}

test('one request for every subscription, each message to its own', async (t) => {
  const srv = await fakeServer(t);
  const c = client(t, srv);
  const got = { a: [], b: [], cc: [] };
  const sa = c.subscribe(b('ex/a', 'primary.#'), (m) => got.a.push(m.routingKey));
  c.subscribe(b('ex/b', '*.x'), { message: (m) => got.b.push(m.routingKey) });
  c.subscribe(b('ex/a', 'route.index.#'), (m) => got.cc.push(m.routingKey));
  c.subscribe(b('ex/a', 'primary.#'), () => {}); // the same binding twice: sent once

  const r = await srv.next();
  assert.equal(r.url.pathname, '/api/events/v1/connect/');
  assert.deepEqual(r.bindings, [b('ex/a', 'primary.#'), b('ex/a', 'route.index.#'), b('ex/b', '*.x')]);
  assert.equal(r.url.searchParams.get('resume'), null);
  r.start().send('ready', {});
  await sa.ready;
  r.send('message', msg('ex/a', 'primary.1'));
  r.send('message', msg('ex/b', 'y.x'));
  r.send('message', msg('ex/a', 'other', ['index.z']));
  // Matched through a CC entry the server does not show: the exchange's.
  r.send('message', msg('ex/b', 'hidden'));
  const last = on(c, 'message', (m) => m.routingKey === 'primary.last');
  r.send('message', msg('ex/a', 'primary.last'));
  await last;
  assert.deepEqual(got, { a: ['primary.1', 'primary.last'], b: ['y.x', 'hidden'], cc: ['other'] });
  assert.equal(c.state, 'ready');
  assert.equal(srv.pending(), 0);
});

test("the server's error before ready is final; a network failure is retried", async (t) => {
  const srv = await fakeServer(t);
  const c = client(t, srv);
  const errors = [];
  c.subscribe(b('nope', '#'), { error: (e) => errors.push(e) });
  const failed = on(c, 'state', (s) => s.state === 'failed');
  (await srv.next()).start().send('error', 'Exchange "nope" does not exist.').end();
  await failed;
  assert.deepEqual(errors, [{ message: 'Exchange "nope" does not exist.', terminal: true }]);

  // A new binding tries again; a cut connection is retried with backoff.
  c.subscribe(b('ex', '#'));
  const r = await srv.next();
  const retrying = on(c, 'state', (s) => s.state === 'retrying');
  r.start().cut();
  const s = await retrying;
  assert.ok(s.retryIn > 0, `retryIn ${s.retryIn}`);
  (await srv.next()).start().send('ready', {});
  await on(c, 'state', (s) => s.state === 'ready');
  assert.equal(errors.length, 1);
});

test("the server's error after ready is retried, and the page hears of the gap", async (t) => {
  const srv = await fakeServer(t);
  const c = client(t, srv);
  const gaps = [];
  c.subscribe(b('ex', '#'), { gap: (g) => gaps.push(g) });
  (await srv.next()).start().send('ready', {}).send('error', 'The service is temporarily unavailable; please reconnect later.').end();
  const e = await on(c, 'error');
  assert.equal(e.terminal, false);
  const r = await srv.next();
  const gap = on(c, 'gap');
  r.start().send('ready', {});
  assert.deepEqual(await gap, { reason: 'reconnect', local: true });
  assert.deepEqual(gaps, [{ reason: 'reconnect', local: true }]);
});

test('a shutdown text before ready is retried too', async (t) => {
  const srv = await fakeServer(t);
  const c = client(t, srv);
  c.subscribe(b('ex', '#'));
  (await srv.next()).start().send('error', 'The server is shutting down; please reconnect.').end();
  assert.equal((await on(c, 'error')).terminal, false);
  (await srv.next()).start().send('ready', {});
  await on(c, 'state', (s) => s.state === 'ready');
});

test('204 closes for good; 503 waits for Retry-After', async (t) => {
  const srv = await fakeServer(t);
  const c = client(t, srv);
  c.subscribe(b('ex', '#'));
  const retrying = on(c, 'state', (s) => s.state === 'retrying');
  (await srv.next()).start(503, { 'Retry-After': '1', 'Content-Type': 'application/json' }).end();
  const s = await retrying;
  assert.equal(s.status, 503);
  assert.ok(s.retryIn >= 1000, `retryIn ${s.retryIn}`);
  const closed = on(c, 'state', (s) => s.state === 'closed');
  (await srv.next()).start(204).end();
  assert.equal((await closed).status, 204);
});

test('overflow and gap reach the page and every subscription', async (t) => {
  const srv = await fakeServer(t);
  const c = client(t, srv);
  const seen = [];
  c.subscribe(b('ex', 'a'), { overflow: (o) => seen.push(['overflow', o]), gap: (g) => seen.push(['gap', g]) });
  const r = (await srv.next()).start().send('ready', {});
  const gap = on(c, 'gap');
  r.send('overflow', { dropped: 3 }).send('gap', { reason: 'broker' });
  assert.deepEqual(await gap, { reason: 'broker' });
  assert.deepEqual(seen, [['overflow', { dropped: 3 }], ['gap', { reason: 'broker' }]]);
});

test('properties: asked for with properties=1, and handed on as they come', async (t) => {
  const srv = await fakeServer(t);
  const c = client(t, srv, { properties: true });
  const got = [];
  const sub = c.subscribe(b('ex', '#'), (m) => got.push(m));
  const r = await srv.next();
  assert.equal(r.url.searchParams.get('properties'), '1');
  r.start().send('ready', {});
  await sub.ready;
  const one = on(c, 'message');
  const m = { ...msg('ex', 'one'), properties: { contentType: 'application/json' }, headers: { 'x-trace': 'abc' } };
  r.send('message', m);
  await one;
  assert.deepEqual(got, [m]);
});

test('resume: tokens carry over to the next request, no local gap', async (t) => {
  const srv = await fakeServer(t);
  const c = client(t, srv, { resume: true });
  let gaps = 0;
  c.addEventListener('gap', () => gaps++);
  const got = [];
  c.subscribe(b('ex', '#'), (m) => got.push(m.routingKey));
  const r1 = await srv.next();
  assert.equal(r1.url.searchParams.get('resume'), '1');
  assert.equal(r1.url.searchParams.get('lastEventId'), null);
  const one = on(c, 'message');
  r1.start().send('ready', {}, 't0').send('message', msg('ex', 'one'), 't1');
  await one;
  r1.cut();
  const r2 = await srv.next();
  assert.equal(r2.url.searchParams.get('lastEventId'), 't1');
  const two = on(c, 'message');
  r2.start().send('ready', {}, 't1').send('message', msg('ex', 'two'), 't2');
  await two;
  assert.deepEqual(got, ['one', 'two']);
  assert.equal(gaps, 0);
});

test('resume asked of a server that does not resume: the client says gap', async (t) => {
  const srv = await fakeServer(t);
  const c = client(t, srv, { resume: true });
  c.subscribe(b('ex', '#'));
  const r1 = await srv.next();
  r1.start().send('ready', {});
  await on(c, 'state', (s) => s.state === 'ready');
  r1.cut();
  const r2 = await srv.next();
  assert.equal(r2.url.searchParams.get('lastEventId'), null);
  const gap = on(c, 'gap');
  r2.start().send('ready', {});
  assert.deepEqual(await gap, { reason: 'reconnect', local: true });
});

test('a token goes in the Authorization header; 401 is final', async (t) => {
  const srv = await fakeServer(t);
  let calls = 0;
  const c = client(t, srv, { transport: undefined, token: async () => `tok${++calls}` });
  c.subscribe(b('ex', '#'));
  const r1 = await srv.next();
  assert.equal(r1.req.headers.authorization, 'Bearer tok1');
  r1.start().cut();
  const r2 = await srv.next();
  assert.equal(r2.req.headers.authorization, 'Bearer tok2');
  const failed = on(c, 'state', (s) => s.state === 'failed');
  const err = on(c, 'error');
  r2.res.writeHead(401, { 'Content-Type': 'application/json' });
  r2.res.end(JSON.stringify({ code: 'Unauthorized', message: 'The token has expired.' }));
  assert.deepEqual(await err, { message: 'The token has expired.', status: 401, terminal: true });
  await failed;
});

test('a new binding reconnects with all of them; one that leaves does not', async (t) => {
  const srv = await fakeServer(t);
  const c = client(t, srv);
  const s1 = c.subscribe(b('ex', 'a'));
  (await srv.next()).start().send('ready', {});
  await s1.ready;
  const s2 = c.subscribe(b('ex', 'b'));
  const r = await srv.next();
  assert.deepEqual(r.bindings, [b('ex', 'a'), b('ex', 'b')]);
  const gap = on(c, 'gap');
  r.start().send('ready', {});
  // The binding that was there before may have missed messages meanwhile.
  assert.equal((await gap).reason, 'rebind');
  await s2.ready;
  const got = [];
  s2.unsubscribe();
  c.subscribe(b('ex', 'a'), (m) => got.push(m.routingKey));
  s1.unsubscribe();
  await Promise.resolve();
  const done = on(c, 'message', (m) => m.routingKey === 'a');
  r.send('message', msg('ex', 'b')).send('message', msg('ex', 'a'));
  await done;
  assert.deepEqual(got, ['a']);
  assert.equal(srv.pending(), 0);
});

// FakeEventSource stands in for a browser's, to check how the EventSource
// transport tells the server's `error` from a network failure.
class FakeEventSource extends EventTarget {
  static last = null;
  constructor(url, init) {
    super();
    this.url = url;
    this.init = init;
    this.closed = false;
    FakeEventSource.last = this;
    queueMicrotask(() => this.onopen?.());
  }
  emit(type, data, lastEventId = '-') {
    const e = data === undefined ? new Event(type) : new MessageEvent(type, { data: JSON.stringify(data), lastEventId });
    this.dispatchEvent(e);
  }
  close() {
    this.closed = true;
  }
}

test("EventSource transport: the server's error and a network error", async (t) => {
  const c = new EventsClient({ rootUrl: 'http://events.test/', EventSource: FakeEventSource, withCredentials: true, ...fast });
  t.after(() => c.close());
  c.subscribe(b('ex', '#'));
  await on(c, 'state', (s) => s.state === 'open');
  const es = FakeEventSource.last;
  assert.ok(es.url.startsWith('http://events.test/api/events/v1/connect/?bindings='));
  assert.deepEqual(es.init, { withCredentials: true });
  const retrying = on(c, 'state', (s) => s.state === 'retrying');
  es.emit('ready', {});
  es.emit('error', 'Binding must include `exchange` and `routingKeyPattern` fields');
  const e = await retrying;
  assert.equal(es.closed, true);
  assert.equal(e.error, 'Binding must include `exchange` and `routingKeyPattern` fields');
  await on(c, 'state', (s) => s.state === 'open');
  const es2 = FakeEventSource.last;
  assert.notEqual(es2, es);
  const again = on(c, 'state', (s) => s.state === 'retrying');
  es2.emit('error'); // no data: the connection failed
  const s = await again;
  assert.equal(s.error, 'connection failed');
  assert.equal(es2.closed, true);
});
