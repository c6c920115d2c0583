package broker

import (
	"context"
	"sync/atomic"
)

// Dialer opens connections to a broker. AMQP dials RabbitMQ; package
// membroker provides an in-process one for dev mode and unit tests. Both
// pass the same conformance tests.
type Dialer interface {
	// Dial opens a connection with a queue of its own, bound to nothing.
	Dial(ctx context.Context) (Conn, error)
	// String describes the broker for logs, without credentials.
	String() string
}

// Conn is one connection to a broker as the Broker uses it: one queue of
// its own, that queue's bindings, and the queue's messages in order.
//
// Bind and Unbind are called by one goroutine at a time; Consume by
// another, once; Close by any goroutine, any number of times.
type Conn interface {
	// Queue returns the name of the connection's queue.
	Queue() string
	// Bind binds the queue to exchange with pattern and returns once the
	// broker has confirmed it. A refused bind returns an error that
	// wraps ErrExchangeNotFound or ErrAccessRefused and leaves the
	// connection usable.
	Bind(exchange, pattern string) error
	// Unbind removes a binding made by Bind.
	Unbind(exchange, pattern string) error
	// Consume calls handle for each message of the queue, in queue order,
	// until the connection ends, and then returns why. handle must not
	// block.
	Consume(handle func(*Message)) error
	// Close ends the connection; the broker drops the queue and its
	// bindings with it.
	Close() error
}

// PropertyTaker is a Conn whose messages carry their properties
// (Message.Props) only while wanted is above 0, the number of
// subscriptions that ask for them: taking them costs an allocation per
// message. The Broker hands its count to such a connection before its
// session starts; a Conn that is no PropertyTaker, or one never told (as
// behind a wrapper that hides TakeProperties), must always give them.
type PropertyTaker interface {
	// TakeProperties is called before Consume.
	TakeProperties(wanted *atomic.Int32)
}
