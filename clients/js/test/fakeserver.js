// A stand-in for eventsproxy that a test drives request by request: each
// connect request waits in a queue until the test answers it.
import { createServer } from 'node:http';

export async function fakeServer(t) {
  const waiting = [];
  const queued = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    const r = {
      req,
      res,
      url,
      bindings: JSON.parse(url.searchParams.get('bindings') ?? 'null')?.bindings,
      start(status = 200, headers = {}) {
        res.writeHead(status, { 'Content-Type': 'text/event-stream', ...headers });
        res.flushHeaders();
        return r;
      },
      send(kind, data, id = '-') {
        res.write(`event: ${kind}\ndata: ${JSON.stringify(data)}\nid: ${id}\n\n`);
        return r;
      },
      end() {
        res.end();
      },
      cut() {
        req.socket.destroy();
      },
    };
    const w = waiting.shift();
    if (w) w(r);
    else queued.push(r);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    const closed = new Promise((resolve) => server.close(resolve));
    server.closeAllConnections();
    return closed;
  });
  return {
    url: `http://127.0.0.1:${server.address().port}/`,
    next() {
      return queued.length > 0 ? Promise.resolve(queued.shift()) : new Promise((resolve) => waiting.push(resolve));
    },
    pending: () => queued.length,
  };
}

// on resolves with the detail of the first `type` event of target that
// satisfies pred.
export function on(target, type, pred = () => true) {
  return new Promise((resolve) => {
    const f = (e) => {
      if (!pred(e.detail)) return;
      target.removeEventListener(type, f);
      resolve(e.detail);
    };
    target.addEventListener(type, f);
  });
}
