// eventsource-client.mjs URL [--timeout SECONDS] [--header 'NAME: VALUE']
//
// A thin real SSE client for the end-to-end tests: it connects to URL with the
// npm package `eventsource` (a WHATWG EventSource for Node.js, which we did
// not write) and prints one JSON object per line on stdout:
//
//   {"type":"request","attempt":1,"lastEventId":null}  each (re)connection attempt
//   {"type":"response","attempt":1,"status":200,"headers":{...}}
//   {"type":"open","readyState":1}
//   {"type":"ready","data":{},"lastEventId":"-"}       likewise message, ping,
//                                                      overflow, gap and the
//                                                      server-sent error event
//   {"type":"connection-error","readyState":0,"code":null,"message":null}
//   {"type":"exit","reason":"...","readyState":2}      last line
//
// A connection-level error is an Event without data; a server-sent `error`
// event is a MessageEvent with data: both reach the same "error" listener.
// --header adds a header to every request (Authorization: Bearer, the way a
// Node.js client presents a token). The script exits 0 when told (stdin says "exit" or closes) and when the
// EventSource is CLOSED (it will not reconnect again), 2 at the deadline.

import { EventSource } from 'eventsource';
import { fail, onStop, parseCommandLine, parseData, print } from './clientio.mjs';

const { url, timeoutSeconds, values } = parseCommandLine(
  "node eventsource-client.mjs URL [--timeout SECONDS] [--header 'NAME: VALUE']",
  { header: { type: 'string', multiple: true, default: [] } },
);
const extraHeaders = Object.fromEntries(
  values.header.map((h) => {
    const i = h.indexOf(':');
    if (i < 1) fail(`--header ${JSON.stringify(h)} is not NAME: VALUE`);
    return [h.slice(0, i).trim(), h.slice(i + 1).trim()];
  }),
);

// countingFetch reports every connection attempt and its answer, so that a
// test sees reconnections and the Last-Event-ID that each one carried.
let attempt = 0;
async function countingFetch(input, init) {
  attempt += 1;
  const n = attempt;
  print({ type: 'request', attempt: n, lastEventId: init?.headers?.['Last-Event-ID'] ?? null });
  const res = await fetch(input, { ...init, headers: { ...init?.headers, ...extraHeaders } });
  print({
    type: 'response',
    attempt: n,
    status: res.status,
    headers: Object.fromEntries(res.headers),
  });
  return res;
}

let es;
try {
  es = new EventSource(url, { fetch: countingFetch });
} catch (err) {
  fail(`new EventSource(${JSON.stringify(url)}): ${err}`);
}

const stop = onStop(timeoutSeconds, (reason, code) => {
  es.close();
  print({ type: 'exit', reason, readyState: es.readyState });
  process.exit(code);
});

es.addEventListener('open', () => print({ type: 'open', readyState: es.readyState }));

for (const kind of ['ready', 'message', 'ping', 'overflow', 'gap']) {
  es.addEventListener(kind, (e) => print(parseData(kind, e.data, { lastEventId: e.lastEventId })));
}

es.addEventListener('error', (e) => {
  if (e instanceof MessageEvent) {
    print(parseData('error', e.data, { lastEventId: e.lastEventId }));
    return;
  }
  print({
    type: 'connection-error',
    readyState: es.readyState,
    code: e.code ?? null,
    message: e.message ?? null,
  });
  if (es.readyState === EventSource.CLOSED) {
    // Nothing more can happen: the library will not reconnect.
    setImmediate(() => stop('closed', 0));
  }
});
