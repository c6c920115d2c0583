// shareurl.js: the bindings in the page's address, so that a view can be
// shared or bookmarked.
//
//   ?bind=<exchange>=<routing-key pattern>&bind=...&connect=1
//
// splits each bind value at its first "=", so a pattern may contain "="
// and an exchange may not; when some exchange does, the bindings are
// written as one JSON parameter instead, in the connect endpoint's form:
//
//   ?bindings={"bindings":[{"exchange":"...","routingKeyPattern":"..."}]}
//
// connect=1 asks the page to connect as soon as it opens.

// bindingsFromQuery reads the bindings and the connect flag from a query
// string. error says why a bindings parameter was not understood.
export function bindingsFromQuery(search) {
  const params = new URLSearchParams(search);
  const bindings = [];
  let error = '';
  const json = params.get('bindings');
  if (json !== null) {
    try {
      const parsed = JSON.parse(json);
      const list = Array.isArray(parsed) ? parsed : parsed?.bindings;
      if (!Array.isArray(list)) throw new Error('want {"bindings": [{"exchange": …, "routingKeyPattern": …}]}');
      for (const b of list) {
        if (b === null || typeof b !== 'object') throw new Error('each binding must be an object');
        bindings.push({ exchange: String(b.exchange ?? ''), routingKeyPattern: String(b.routingKeyPattern ?? '') });
      }
    } catch (err) {
      error = `The address's bindings parameter is not understood: ${err.message}`;
    }
  }
  for (const value of params.getAll('bind')) {
    const i = value.indexOf('=');
    bindings.push(i < 0
      ? { exchange: value, routingKeyPattern: '' }
      : { exchange: value.slice(0, i), routingKeyPattern: value.slice(i + 1) });
  }
  const connect = ['1', 'true', 'yes'].includes(params.get('connect') ?? '');
  return { bindings, connect, error };
}

// queryWithBindings returns search (a query string) with its bindings and
// connect flag replaced; other parameters stay as they were.
export function queryWithBindings(search, bindings, connect) {
  const params = new URLSearchParams(search);
  for (const name of ['bind', 'bindings', 'connect']) params.delete(name);
  const parts = [];
  const rest = params.toString();
  if (rest) parts.push(rest);
  if (bindings.some((b) => b.exchange.includes('='))) {
    parts.push('bindings=' + encodeURIComponent(JSON.stringify({ bindings })));
  } else {
    for (const b of bindings) {
      parts.push(`bind=${readable(b.exchange)}=${readable(b.routingKeyPattern).replaceAll('%3D', '=')}`);
    }
  }
  if (connect) parts.push('connect=1');
  return parts.length ? '?' + parts.join('&') : '';
}

// readable percent-encodes s for a query value but leaves the characters
// that exchange names are full of and that mean nothing in a query value
// ("/", ":", "@", ",") as they are, so that the address stays legible.
function readable(s) {
  return encodeURIComponent(s).replace(/%(2F|3A|40|2C)/g, (m) => decodeURIComponent(m));
}
