// Package server provides the running service: it wires a broker Dialer,
// the Broker and the HTTP API into an http.Server, serves until its context
// is done, and then drains (streams get an `error` event and end, the broker
// connection closes, taking our queue and bindings with it). `serve` and
// `dev` both run it; they differ only in the Dialer.
package server
