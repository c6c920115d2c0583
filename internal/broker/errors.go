package broker

import (
	"errors"
	"fmt"

	"eventsproxy/internal/binding"
)

var (
	// ErrUnavailable means that the broker connection is not up: no new
	// subscription can be served until it is back.
	ErrUnavailable = errors.New("broker connection unavailable")

	// ErrConnectionLost is the cause reported by Subscription.Err when the
	// broker connection that served the subscription went away.
	ErrConnectionLost = errors.New("broker connection lost")

	// ErrClosed is returned by Subscribe after the broker has been shut down.
	ErrClosed = errors.New("broker closed")

	// errReleased answers a wait for a key that every subscription of it
	// gave back before the broker answered.
	errReleased = errors.New("broker: binding given back while pending")

	// ErrExchangeNotFound means that the broker has no exchange of the
	// requested name (AMQP reply 404 NOT_FOUND to a bind).
	ErrExchangeNotFound = errors.New("exchange not found")

	// ErrLoginRefused means that the broker refused the connection's
	// user and password (AMQP reply 403 ACCESS_REFUSED to the login).
	// Retrying will not help until someone changes either.
	ErrLoginRefused = errors.New("the broker refused the login")

	// ErrAccessRefused means that the broker refused our user access to the
	// exchange (AMQP reply 403 ACCESS_REFUSED to a bind).
	ErrAccessRefused = errors.New("access to exchange refused")

	// ErrNotTopic means that the exchange is not a topic exchange; the
	// error is an *ExchangeTypeError, which names the type.
	ErrNotTopic = errors.New("not a topic exchange")
)

// ExchangeTypeError reports a bind to an exchange of a type other than
// topic, which the process cannot route: it matches with topic rules.
type ExchangeTypeError struct {
	Exchange string
	Type     string // "fanout", "direct", "headers", ...
}

func (e *ExchangeTypeError) Error() string {
	return fmt.Sprintf("%s is a %s exchange; only topic exchanges are supported", e.Exchange, e.Type)
}

// Is makes errors.Is(err, ErrNotTopic) true.
func (e *ExchangeTypeError) Is(target error) bool { return target == ErrNotTopic }

// BindError reports a binding that the broker refused. Err is
// ErrExchangeNotFound, ErrAccessRefused, an *ExchangeTypeError or another
// error from the broker.
type BindError struct {
	Binding binding.Binding
	Err     error
}

func (e *BindError) Error() string {
	return fmt.Sprintf("bind exchange %q pattern %q: %v", e.Binding.Exchange, e.Binding.RoutingKeyPattern, e.Err)
}

func (e *BindError) Unwrap() error { return e.Err }
