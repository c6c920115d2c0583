// Package binding provides the client's bindings request: Parse and FromQuery
// read the `bindings` query parameter of a stream request into the
// (exchange, routing-key pattern) pairs the client asked for, and refuse bad
// input with an *Error whose text may be sent to the client as it is.
//
// Three of those texts are kept word for word from the Node.js service that
// eventsproxy replaces, because existing clients match them; every other
// problem has a text of its own.
//
// The package imports nothing from eventsproxy but internal/topic, which
// decides what a valid routing-key pattern is.
package binding
