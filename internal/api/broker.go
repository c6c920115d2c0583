package api

import (
	"context"

	"eventsproxy/internal/binding"
	"eventsproxy/internal/broker"
)

// Broker is what the API needs of the broker side. FromBroker makes one
// of a *broker.Broker; tests use fakes.
type Broker interface {
	// Subscribe returns once every binding is in place on the broker. A
	// subscription for a resumable stream (opts.Survive) survives a lost
	// broker connection: it reports a gap (TakeGap) once its bindings are
	// back. With opts.Properties, its messages carry their properties
	// (broker.Message.Props).
	Subscribe(ctx context.Context, bs []binding.Binding, opts broker.SubscribeOptions) (Subscription, error)
	// Connected reports whether new subscriptions can be served.
	Connected() bool
}

// Subscription is one stream's feed of messages, as *broker.Subscription
// provides it: a bounded buffer that drops its oldest message when full and
// counts what it dropped.
type Subscription interface {
	// Notify receives a value when messages are waiting to be taken.
	Notify() <-chan struct{}
	// Half receives a value when the buffer becomes half full.
	Half() <-chan struct{}
	// TakeUpTo appends buffered messages, oldest first, to dst: at least
	// one, if any, and no more than maxBytes of them (broker.Message.Size)
	// otherwise; it says how many were dropped since the previous take.
	// When messages are left, Notify receives a value again.
	TakeUpTo(dst []*broker.Message, maxBytes int) (msgs []*broker.Message, dropped int)
	// TakeGap reports, once, that messages may be missing before those
	// TakeUpTo returns next; TakeUpTo returns none past a gap before
	// TakeGap has reported it.
	TakeGap() bool
	// Uncounted reports, and forgets, whether messages may have been lost
	// since the previous call beyond those counted as dropped, in a
	// number nobody knows.
	Uncounted() bool
	// Done is closed when the subscription can deliver no more; Err then
	// says why.
	Done() <-chan struct{}
	Err() error
	// Close gives the subscription's bindings back; it is idempotent.
	Close()
}

// FromBroker returns b as the API's Broker.
func FromBroker(b *broker.Broker) Broker { return brokerSeam{b} }

type brokerSeam struct{ b *broker.Broker }

func (s brokerSeam) Subscribe(ctx context.Context, bs []binding.Binding, opts broker.SubscribeOptions) (Subscription, error) {
	sub, err := s.b.SubscribeWith(ctx, bs, opts)
	if err != nil {
		// Not a typed nil in an interface.
		return nil, err
	}
	return sub, nil
}

func (s brokerSeam) Connected() bool { return s.b.Connected() }

// tellsWait: Subscribe calls the function of broker.BeforeWait before it
// waits for the broker.
func (s brokerSeam) tellsWait() bool { return true }

// waitTeller is a Broker that may say (tellsWait) that its Subscribe calls
// the function of broker.BeforeWait before it waits. A stream on another
// Broker sends its header before it subscribes.
type waitTeller interface{ tellsWait() bool }

// tellsWait reports whether b is a waitTeller that says so.
func tellsWait(b Broker) bool {
	w, ok := b.(waitTeller)
	return ok && w.tellsWait()
}
