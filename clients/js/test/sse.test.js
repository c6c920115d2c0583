// The fetch transport's event-stream parser, against the HTML standard's rules.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SSEParser } from '../index.js';

function parse(chunks) {
  const out = [];
  const p = new SSEParser((ev) => out.push(ev));
  for (const c of chunks) p.push(c);
  return { out, p };
}

test('events, ids that persist, comments and every line ending', () => {
  const { out, p } = parse(['event: ready\ndata: {}\nid: -\n\n: comment\r\n', 'data: a\r\ndata:b\rid: t1\r\r', 'event: x\ndata\n\n']);
  assert.deepEqual(out, [
    { kind: 'ready', data: '{}', lastEventId: '-' },
    { kind: 'message', data: 'a\nb', lastEventId: 't1' },
    { kind: 'x', data: '', lastEventId: 't1' },
  ]);
  assert.equal(p.retry, undefined);
});

test('a line split anywhere, also between \\r and \\n', () => {
  const text = 'retry: 3000\r\nevent: message\r\ndata: {"a":"é"}\r\nid: 7\r\n\r\n';
  for (let i = 0; i <= text.length; i++) {
    const { out, p } = parse([text.slice(0, i), text.slice(i)]);
    assert.deepEqual(out, [{ kind: 'message', data: '{"a":"é"}', lastEventId: '7' }], `split at ${i}`);
    assert.equal(p.retry, 3000);
  }
});

test('an event without data is no event; an id with NUL is ignored', () => {
  const { out } = parse(['event: ping\n\nid: a\0b\ndata: 1\n\n']);
  assert.deepEqual(out, [{ kind: 'message', data: '1', lastEventId: '' }]);
});
