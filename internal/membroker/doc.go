// Package membroker provides an in-process broker with RabbitMQ's
// topic-exchange semantics, for `eventsproxy dev` and for unit tests that
// need no RabbitMQ. It implements broker.Dialer: each connection has one
// queue of its own, bound to exchanges with topic patterns, and receives
// every message routed to that queue once, in one global publish order,
// matched against the routing key and each CC key as RabbitMQ would.
//
// Like a RabbitMQ queue declared with x-max-length, a queue holds at most
// DefaultMaxLength messages and drops its oldest when full, so a stalled
// consumer never grows memory without bound. Disconnect ends every open
// connection as a lost broker connection would, for fault tests.
//
// The broker and package broker's RabbitMQ Dialer pass the same
// conformance suite, package brokertest.
package membroker
