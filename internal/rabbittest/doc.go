// Package rabbittest provides helpers for integration tests against the real
// RabbitMQ: the broker URL, unique names, exchanges and queues that clean up
// after themselves, publishing with confirms, and the management API's view
// of queues, bindings and connections. A missing broker fails the test; it
// is never skipped.
package rabbittest
