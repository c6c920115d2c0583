// clientio.mjs: what the end-to-end client scripts share. Each script is
// driven by e2e_test.go: it prints one JSON object per line on stdout for
// everything it observes, and ends when the test tells it to (a line "exit"
// on stdin, or stdin closing) or, failing that, at its own deadline.

import { parseArgs } from 'node:util';

// print writes one observation as one line of JSON. Writes to a pipe are
// synchronous in Node.js on Linux, so a line printed before process.exit is
// never lost.
export function print(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

// parseData parses an event's data field, which the proxy promises is one
// line of JSON. Data that is not JSON is reported raw with the parse error,
// so that the test can fail on it instead of this script.
export function parseData(type, data, extra = {}) {
  try {
    return { type, data: JSON.parse(data), ...extra };
  } catch (err) {
    return { type, raw: data, parseError: String(err), ...extra };
  }
}

// parseCommandLine reads `SCRIPT URL [--timeout SECONDS] [more options]`.
export function parseCommandLine(usage, options = {}) {
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: { timeout: { type: 'string', default: '60' }, ...options },
    });
  } catch (err) {
    fail(`${err.message}\nusage: ${usage}`);
  }
  const { values, positionals } = parsed;
  const timeout = Number(values.timeout);
  if (positionals.length !== 1 || !(timeout > 0)) {
    fail(`usage: ${usage}`);
  }
  return { url: positionals[0], timeoutSeconds: timeout, values };
}

// onStop calls stop(reason, exitCode) once: when stdin says "exit" or ends
// (the test is done with this client), or when the deadline passes (the test
// forgot it, or hangs: exit code 2). stop must end the process.
export function onStop(timeoutSeconds, stop) {
  let stopping = false;
  const once = (reason, code) => {
    if (stopping) return;
    stopping = true;
    clearTimeout(timer);
    process.stdin.destroy();
    stop(reason, code);
  };
  const timer = setTimeout(() => {
    process.stderr.write(`deadline of ${timeoutSeconds}s passed\n`);
    once('deadline', 2);
  }, timeoutSeconds * 1000);

  let pending = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (chunk) => {
    pending += chunk;
    const lines = pending.split('\n');
    pending = lines.pop();
    if (lines.some((line) => line.trim() === 'exit')) once('told', 0);
  });
  process.stdin.on('end', () => once('stdin closed', 0));
  process.stdin.on('error', () => once('stdin closed', 0));
  return once;
}

// fail reports a problem of this script itself and exits 1.
export function fail(message) {
  process.stderr.write(`${message}\n`);
  process.exit(1);
}
