// settings.js: what fits the server the inspector runs on, from
// inspector/config.json: under `dev`, the generator's exchanges; under
// `serve`, the prefixes that --allowed-exchanges allows, or any exchange;
// and whether streams present tokens ("required", "optional" beside
// anonymous grants, or "" with access control off).

// loadSettings returns the server's settings, or, should the server not
// say, those of a server that allows every exchange.
export async function loadSettings() {
  const fallback = { dev: false, exchanges: [], allowedExchanges: [], tokens: '' };
  try {
    const res = await fetch(new URL('inspector/config.json', document.baseURI), { cache: 'no-store' });
    if (!res.ok) return fallback;
    const s = await res.json();
    return {
      dev: s.dev === true,
      exchanges: Array.isArray(s.exchanges) ? s.exchanges.map(String) : [],
      allowedExchanges: Array.isArray(s.allowedExchanges) ? s.allowedExchanges.map(String) : [],
      tokens: s.tokens === 'required' || s.tokens === 'optional' ? s.tokens : '',
    };
  } catch {
    return fallback;
  }
}

// exampleBinding is what a page opened without bindings starts with.
export function exampleBinding(s) {
  if (s.dev && s.exchanges.length > 0) {
    const completed = s.exchanges.find((e) => e.endsWith('/task-completed'));
    return { exchange: completed ?? s.exchanges[0], routingKeyPattern: '#' };
  }
  if (s.allowedExchanges.length > 0) return { exchange: s.allowedExchanges[0], routingKeyPattern: '#' };
  return { exchange: 'amq.topic', routingKeyPattern: '#' };
}

// suggestions are the exchange field's suggestions.
export function suggestions(s) {
  if (s.exchanges.length > 0) return s.exchanges;
  if (s.allowedExchanges.length > 0) return s.allowedExchanges;
  return ['amq.topic'];
}

// renderHint fills the hint under the bindings: a paragraph of text and
// monospace names, built as DOM text, never markup.
export function renderHint(p, s) {
  const mono = (text) => {
    const span = document.createElement('span');
    span.className = 'mono';
    span.textContent = text;
    return span;
  };
  const list = (names) => names.flatMap((n, i) => [i === 0 ? '' : i === names.length - 1 ? ' and ' : ', ', mono(n)]);
  const parts = [];
  if (s.dev) {
    const code = document.createElement('code');
    code.textContent = 'eventsproxy dev';
    const generated = s.exchanges.filter((e) => e !== 'amq.topic');
    parts.push('This is ', code, ', with an in-process broker. Its generator publishes on ', ...list(generated),
      '; ', mono('amq.topic'), ' takes what you publish yourself (', mono('eventsproxy publish --dev-url'), '). The exchange field suggests them.');
  } else if (s.allowedExchanges.length > 0) {
    parts.push('This server allows exchanges whose names start with ', ...list(s.allowedExchanges), '.');
  } else {
    parts.push('This server allows any exchange of its broker but RabbitMQ\'s internal ', mono('amq.rabbitmq.*'),
      '. ', mono('amq.topic'), ' is the topic exchange every RabbitMQ has.');
  }
  p.replaceChildren(...parts.filter((x) => x !== ''));
  p.hidden = false;
}
