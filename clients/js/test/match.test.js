// The client's topic matcher against the cases the server's matcher is
// tested on (internal/topic/testdata/match-cases.json).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { messageMatches, topicMatch } from '../index.js';

const file = new URL('../../../internal/topic/testdata/match-cases.json', import.meta.url);
const { cases } = JSON.parse(readFileSync(file, 'utf8'));

test('the shared cases are there', () => {
  assert.ok(cases.length > 400, `only ${cases.length} cases`);
  assert.ok(cases.some((c) => c.want) && cases.some((c) => !c.want));
});

test('topicMatch agrees with the server on every shared case', () => {
  const wrong = cases.filter((c) => topicMatch(c.pattern, c.key) !== c.want);
  assert.deepEqual(
    wrong.map((c) => `${c.name}: topicMatch(${JSON.stringify(c.pattern)}, ${JSON.stringify(c.key)}) should be ${c.want}`),
    [],
  );
});

test('messageMatches takes the exchange, the routing key and the CC routes', () => {
  const msg = { exchange: 'x', routingKey: 'primary.a', routes: ['index.foo', 'b'] };
  assert.equal(messageMatches({ exchange: 'x', routingKeyPattern: 'primary.*' }, msg), true);
  assert.equal(messageMatches({ exchange: 'y', routingKeyPattern: 'primary.*' }, msg), false);
  assert.equal(messageMatches({ exchange: 'x', routingKeyPattern: 'route.index.#' }, msg), true);
  assert.equal(messageMatches({ exchange: 'x', routingKeyPattern: 'route.b' }, msg), true);
  assert.equal(messageMatches({ exchange: 'x', routingKeyPattern: 'index.#' }, msg), false);
  assert.equal(messageMatches({ exchange: 'x', routingKeyPattern: 'route.c' }, { ...msg, routes: undefined }), false);
});
