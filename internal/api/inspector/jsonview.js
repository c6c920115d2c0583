// jsonview.js: a JSON value as a collapsible, highlighted tree of DOM nodes,
// and a short one-line preview of it.
//
// Payloads are untrusted: every part of a value reaches the DOM as text
// (textContent), never as markup. Containers are <details> elements, so
// they open and close with the mouse and the keyboard alike; the children
// of a closed container are built only when it is first opened, so that a
// payload of a megabyte costs little until someone looks inside.

// Containers up to this depth start open (the value itself is depth 0).
const OPEN_DEPTH = 2;
// Containers with more entries than this start closed (but the value itself).
const OPEN_MAX_ENTRIES = 60;
// Strings longer than this show their start and a button for the rest.
const LONG_STRING = 2000;

// builders maps a <details> whose children are not built yet to the
// function that builds them.
const builders = new WeakMap();

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

function isContainer(v) {
  return v !== null && typeof v === 'object';
}

function sizeOf(v) {
  return Array.isArray(v) ? v.length : Object.keys(v).length;
}

function primitive(v) {
  if (typeof v === 'string') {
    const text = JSON.stringify(v);
    if (text.length <= LONG_STRING) return el('span', 'j-str', text);
    const span = el('span', 'j-str', text.slice(0, LONG_STRING));
    const more = el('button', 'j-rest', `… ${(text.length - LONG_STRING).toLocaleString()} more characters`);
    more.type = 'button';
    more.addEventListener('click', () => {
      span.textContent = text;
      more.remove();
    });
    const wrap = el('span');
    wrap.append(span, more);
    return wrap;
  }
  if (typeof v === 'number') return el('span', 'j-num', String(v));
  if (typeof v === 'boolean') return el('span', 'j-bool', String(v));
  return el('span', 'j-null', 'null');
}

function keyNodes(key) {
  if (key === undefined) return [];
  return [el('span', 'j-key', JSON.stringify(key)), el('span', 'j-p', ': ')];
}

// entry renders one value of a container (or the root), with its key when
// it has one and a comma unless it is the last.
function entry(key, value, last, depth) {
  const comma = last ? '' : ',';
  if (!isContainer(value) || sizeOf(value) === 0) {
    const line = el('div', 'j-line');
    line.append(...keyNodes(key));
    if (isContainer(value)) {
      line.append(el('span', 'j-p', Array.isArray(value) ? '[]' : '{}'));
    } else {
      line.append(primitive(value));
    }
    if (comma) line.append(el('span', 'j-p', comma));
    return line;
  }

  const isArray = Array.isArray(value);
  const [open, close] = isArray ? ['[', ']'] : ['{', '}'];
  const n = sizeOf(value);
  const details = el('details', 'j-node');
  const summary = el('summary', 'j-line');
  const more = el('span', 'j-more');
  more.append(
    el('span', 'j-count', ` ${n.toLocaleString()} ${isArray ? (n === 1 ? 'item' : 'items') : n === 1 ? 'key' : 'keys'} `),
    el('span', 'j-p', close + comma),
  );
  summary.append(...keyNodes(key), el('span', 'j-p', open), more);
  const body = el('div', 'j-body');
  const end = el('div', 'j-close');
  end.append(el('span', 'j-p', close + comma));
  details.append(summary, body, end);

  const build = () => {
    builders.delete(details);
    const entries = isArray ? value.map((v) => [undefined, v]) : Object.entries(value);
    entries.forEach(([k, v], i) => body.append(entry(k, v, i === entries.length - 1, depth + 1)));
  };
  if (depth === 0 || (depth <= OPEN_DEPTH && n <= OPEN_MAX_ENTRIES)) {
    build();
    details.open = true;
  } else {
    builders.set(details, build);
    details.addEventListener('toggle', () => {
      if (details.open) builders.get(details)?.();
    });
  }
  return details;
}

// jsonTree returns an element showing value as a tree.
export function jsonTree(value) {
  const root = el('div', 'json');
  root.append(entry(undefined, value, true, 0));
  return root;
}

// setAllOpen opens (building what is not built yet) or closes every
// container inside tree, but the outermost, which stays open.
export function setAllOpen(tree, open) {
  const all = [...tree.querySelectorAll('details.j-node')];
  if (!open) {
    all.forEach((d, i) => { d.open = i === 0; });
    return;
  }
  while (all.length) {
    const d = all.pop();
    const build = builders.get(d);
    if (build) {
      build();
      all.push(...d.querySelectorAll(':scope > .j-body > details.j-node'));
    }
    d.open = true;
  }
}

// preview returns value as compact JSON, cut after about max characters,
// without serialising more of a large value than it shows.
export function preview(value, max = 400) {
  const parts = [];
  let length = 0;
  const push = (s) => {
    parts.push(s);
    length += s.length;
  };
  const walk = (v) => {
    if (length > max) return;
    if (!isContainer(v)) {
      push(typeof v === 'string' ? JSON.stringify(v.length > max ? v.slice(0, max) : v) : String(v));
      return;
    }
    if (Array.isArray(v)) {
      push('[');
      for (let i = 0; i < v.length && length <= max; i++) {
        if (i) push(',');
        walk(v[i]);
      }
      push(']');
      return;
    }
    push('{');
    let first = true;
    for (const k of Object.keys(v)) {
      if (length > max) break;
      if (!first) push(',');
      first = false;
      push(JSON.stringify(k) + ':');
      walk(v[k]);
    }
    push('}');
  };
  walk(value);
  const text = parts.join('');
  return text.length > max ? text.slice(0, max) + '…' : text;
}
