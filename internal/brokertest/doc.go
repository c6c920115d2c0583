// Package brokertest provides the conformance suite that every broker
// implementation behind broker.Dialer must pass: package broker's RabbitMQ
// Dialer (in its integration tests) and package membroker (in plain unit
// tests). A Harness adapts one implementation to the suite; Run runs the
// suite's tests against it through broker.Broker's exported API.
//
// The suite checks that each subscription gets exactly what a plain queue of
// its own, bound the same way on the same broker, would get, in the same
// order; that broker bindings follow subscriptions (shared, reference-counted
// and gone with their last user); that a binding the broker refuses fails
// only the subscription that asked; that churn never loses a message
// published after a subscription is ready; and that a lost connection ends
// its subscriptions with broker.ErrConnectionLost while the Broker
// reconnects and serves new ones, but for surviving subscriptions, which
// get their bindings back on the new connection, then a gap, then every
// message published after it.
package brokertest
