// density.js: helpers for reading many messages at once: a colour of its
// own for each exchange, the message rate, highlighted filter matches, and
// the current bindings as commands for a terminal.

// exchangeHue returns a hue (0-359) for an exchange name. It depends on the
// name alone (FNV-1a), so an exchange keeps its colour across sessions and
// pages, whatever order its messages come in.
export function exchangeHue(name) {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % 360;
}

// RateMeter counts messages per second over the last WINDOW_MS.
const WINDOW_MS = 10_000;
export class RateMeter {
  constructor() {
    this.times = [];
  }

  add(now = performance.now()) {
    this.times.push(now);
    this.trim(now);
  }

  trim(now) {
    let i = 0;
    while (i < this.times.length && this.times[i] <= now - WINDOW_MS) i++;
    if (i) this.times.splice(0, i);
  }

  // perSecond returns the rate over the window, or over the time since the
  // first message when that is shorter.
  perSecond(now = performance.now(), since = now - WINDOW_MS) {
    this.trim(now);
    const span = Math.max(1000, Math.min(WINDOW_MS, now - since));
    return (this.times.length * 1000) / span;
  }

  clear() {
    this.times = [];
  }
}

// HIGHLIGHT is the name of the CSS highlight (::highlight(filter-match)).
const HIGHLIGHT = 'filter-match';

// highlightMatches marks every occurrence of the filter's terms in the
// visible text of the list's rows, with the CSS Custom Highlight API: no
// DOM change, so rows stay as they were made. Where the API is missing it
// does nothing.
export function highlightMatches(list, terms) {
  if (!globalThis.CSS?.highlights || typeof Highlight !== 'function') return 0;
  const ranges = [];
  if (terms.length) {
    const walker = document.createTreeWalker(list, NodeFilter.SHOW_TEXT, {
      acceptNode: (n) => (n.parentElement.closest('.msg-exchange, .msg-key, .route, .msg-preview, .msg-meta, .props, .json')
        ? NodeFilter.FILTER_ACCEPT : NodeFilter.FILTER_REJECT),
    });
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const text = n.data.toLowerCase();
      for (const t of terms) {
        for (let i = text.indexOf(t); i >= 0; i = text.indexOf(t, i + t.length)) {
          const r = new Range();
          r.setStart(n, i);
          r.setEnd(n, i + t.length);
          ranges.push(r);
        }
      }
    }
  }
  CSS.highlights.set(HIGHLIGHT, new Highlight(...ranges));
  return ranges.length;
}

// shellQuote quotes s for a POSIX shell.
function shellQuote(s) {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", "'\\''")}'`;
}

// TOKEN_VARIABLE is the shell variable that the commands take a token
// from: they never hold the token itself. `eventsproxy listen` reads it
// by default.
export const TOKEN_VARIABLE = 'EVENTSPROXY_TOKEN';

// listenCommand is `eventsproxy listen` for bindings on the service at
// root; with token, it sends the token in $EVENTSPROXY_TOKEN.
export function listenCommand(root, bindings, token = false) {
  const binds = bindings.map((b) => `--bind ${shellQuote(`${b.exchange}=${b.routingKeyPattern}`)}`);
  const auth = token ? [`--token "$${TOKEN_VARIABLE}"`] : [];
  return ['eventsproxy listen', `--url ${shellQuote(root.replace(/\/$/, ''))}`, ...auth, ...binds].join(' \\\n  ');
}

// curlCommand streams bindings from the service at root with curl; with
// token, it sends the token in $EVENTSPROXY_TOKEN.
export function curlCommand(root, bindings, token = false) {
  const url = new URL('api/events/v1/connect/', root);
  url.searchParams.set('bindings', JSON.stringify({ bindings }));
  const auth = token ? ` -H "Authorization: Bearer $${TOKEN_VARIABLE}"` : '';
  return `curl -N${auth} ${shellQuote(url.href)}`;
}
