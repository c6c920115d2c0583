// Package e2e holds the end-to-end tests of eventsproxy: the real binary
// against the real RabbitMQ, watched by real SSE clients that we did not
// write — the npm package eventsource and headless Chromium — through the
// Node.js scripts beside this file. The tests sit behind the integration
// build tag; `make test` installs the Node.js packages (npm ci) and runs them.
package e2e
