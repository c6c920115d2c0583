// Package load puts eventsproxy under load and measures it: it opens many
// SSE streams with a cheap client (a raw TCP connection, a hand-written
// HTTP/1.1 request and an allocation-free parser of the chunked event
// stream), publishes through AMQP with the send time in each payload, and
// reports connects per second, time to `ready`, deliveries per second, loss,
// latency and the server's memory and CPU. The scenarios are those of
// docs/performance.md: Idle (S1, many idle streams, each with a binding of
// its own), Fanout (S2, S2b and the soak: many streams on one binding,
// messages at a rate), Cycles (S3: connect, ready, close), Throughput (one
// stream against a plain AMQP consumer), BindRate (the broker's own
// bind+unbind ceiling), Pulse (Taskcluster task pages, seven bindings of
// their own each, coming and going under task traffic) and Resume
// (resumable streams whose connections are cut and resumed).
//
// It sits under cmd/eventsload, apart from the service's packages: only
// the load tool may import it.
//
// The client is deliberately not a general SSE reader (package sse has the
// spec-conformant one): it understands what eventsproxy writes, LF or CRLF
// line ends and an `event` line before the `data` line, and nothing more.
package load
