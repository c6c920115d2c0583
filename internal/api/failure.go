package api

import (
	"errors"
	"fmt"

	"eventsproxy/internal/access"
	"eventsproxy/internal/binding"
	"eventsproxy/internal/broker"
	"eventsproxy/internal/metrics"
)

// Texts of the errors that are not the client's fault. They say nothing of
// the broker, its address or the Go error behind them.
const (
	textInternal    = "Unknown Internal Error"
	textUnavailable = "The service is temporarily unavailable; please reconnect later."
	textShutdown    = "The server is shutting down; please reconnect."
)

// Why a stream ended: the values of eventsproxy_streams_ended_total's `why`
// label and of the `why` of the stream-end log line.
const (
	endClient     = metrics.EndedClient
	endBadRequest = metrics.EndedBadRequest
	endForbidden  = metrics.EndedForbidden
	endExpired    = metrics.EndedExpired
	endExchange   = metrics.EndedExchange
	endBroker     = metrics.EndedBroker
	endShutdown   = metrics.EndedShutdown
	endWrite      = metrics.EndedWrite
	endInternal   = metrics.EndedInternal
)

// The ends of a stream that are not errors of another package.
var (
	errClientGone = errors.New("client went away")
	errShutdown   = errors.New("server shutting down")
	errWrite      = errors.New("write to client")
)

// failure is what a stream does about the error that ends it.
type failure struct {
	// text is what the client gets in an `error` event; empty when it
	// gets none (it is gone, or cannot take a write).
	text string
	// why is the reason logged and counted (see the end constants).
	why string
	// internal says that err is no one's foreseen doing: it is logged in
	// full, while the client gets only textInternal.
	internal bool
}

// classify says what a stream does about err, the error that ends it. It
// is the one place where errors become client texts and reasons.
func classify(err error) failure {
	// errors.AsType, not errors.As: no target escapes, so the common
	// ends (a client gone) allocate nothing.
	bind, isBind := errors.AsType[*broker.BindError](err)
	switch {
	case errors.Is(err, errClientGone):
		return failure{why: endClient}
	case errors.Is(err, errWrite):
		return failure{why: endWrite}
	case errors.Is(err, errShutdown):
		return failure{text: textShutdown, why: endShutdown}
	}
	if berr, ok := errors.AsType[*binding.Error](err); ok {
		return failure{text: berr.Error(), why: endBadRequest}
	}
	if denied, ok := errors.AsType[*access.DeniedError](err); ok {
		return failure{text: denied.Error(), why: endForbidden}
	}
	if errors.Is(err, errExpired) {
		return failure{text: textExpired, why: endExpired}
	}
	if isBind {
		if errors.Is(err, broker.ErrExchangeNotFound) {
			return failure{text: fmt.Sprintf("Exchange %q does not exist.", bind.Binding.Exchange), why: endExchange}
		}
		if notTopic, ok := errors.AsType[*broker.ExchangeTypeError](err); ok {
			return failure{text: fmt.Sprintf("Exchange %q is a %s exchange; only topic exchanges are supported.", notTopic.Exchange, notTopic.Type), why: endExchange}
		}
		if errors.Is(err, broker.ErrAccessRefused) {
			return failure{text: fmt.Sprintf("Access to exchange %q with routingKeyPattern %q is not allowed.", bind.Binding.Exchange, bind.Binding.RoutingKeyPattern), why: endExchange}
		}
	}
	if errors.Is(err, broker.ErrUnavailable) || errors.Is(err, broker.ErrConnectionLost) || errors.Is(err, broker.ErrClosed) {
		return failure{text: textUnavailable, why: endBroker}
	}
	return failure{text: textInternal, why: endInternal, internal: true}
}
