package brokertest

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"eventsproxy/internal/binding"
	"eventsproxy/internal/broker"
)

// Harness adapts one broker implementation to the suite. Every function is
// called with the test that uses its result, and may be called from
// parallel tests at once; each fails that test when something goes wrong.
type Harness struct {
	// Dialer returns the Dialer under test. A Broker of the suite dials
	// through it, for the length of t.
	Dialer func(t *testing.T) broker.Dialer
	// NewExchange declares a fresh topic exchange and removes it when t
	// ends.
	NewExchange func(t *testing.T) string
	// MissingExchange returns the name of an exchange that does not exist.
	MissingExchange func(t *testing.T) string
	// Publish publishes body to exchange with routing key key and the CC
	// keys cc, and returns once the broker has it: a queue bound before
	// the call will hold it.
	Publish func(t *testing.T, exchange, key string, cc []string, body []byte)
	// PublishWith is Publish with properties and headers p, which it
	// publishes as AMQP properties and a headers table (the CC header of
	// cc added to p's headers).
	PublishWith func(t *testing.T, exchange, key string, cc []string, body []byte, p *broker.Properties)
	// Reference declares a plain queue on the same broker bound with bs,
	// and returns once the bindings are in place. read consumes that queue
	// until a message whose body is {"end":true} and returns the bodies
	// before it, in order; it fails t when the end does not come within
	// a few seconds. The suite checks subscriptions against it.
	Reference func(t *testing.T, bs []binding.Binding) (read func() [][]byte)
	// QueueBindings returns the bindings of queue as the broker itself
	// sees them (the management API for RabbitMQ), in any order.
	QueueBindings func(t *testing.T, queue string) []binding.Binding
	// Disconnect makes the broker lose the connection of b, as an outage
	// would. It may end other connections of the broker too: the suite
	// runs it alone.
	Disconnect func(t *testing.T, b *broker.Broker)
}

// timeout bounds each wait of the suite for the broker.
const timeout = 10 * time.Second

// startBroker runs a Broker on h's Dialer until t ends, and waits until it
// is connected.
func startBroker(t *testing.T, h Harness, cfg broker.Config) *broker.Broker {
	t.Helper()
	return Start(t, h.Dialer(t), cfg)
}

// Start runs a Broker with cfg on d until t ends, and waits until it is
// connected. Its log goes nowhere, or to stderr when TEST_LOG is set.
func Start(t testing.TB, d broker.Dialer, cfg broker.Config) *broker.Broker {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	b := broker.New(d, cfg, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = b.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	select {
	case <-b.Attempted():
	case <-time.After(timeout):
		t.Fatalf("broker did not attempt to connect within %v", timeout)
	}
	if !b.Connected() {
		t.Fatalf("broker did not connect to %s", d)
	}
	return b
}

// subscribe subscribes with a deadline and closes the subscription when t
// ends.
func subscribe(t *testing.T, b *broker.Broker, bs ...binding.Binding) *broker.Subscription {
	t.Helper()
	return Subscribe(t, b, bs...)
}

// Subscribe subscribes b to bs within the suite's deadline, fails tb if
// that fails, and closes the subscription when tb ends.
func Subscribe(tb testing.TB, b *broker.Broker, bs ...binding.Binding) *broker.Subscription {
	tb.Helper()
	return subscribeBy(tb, b.Subscribe, bs)
}

// subscribeSurviving is subscribe for a surviving subscription.
func subscribeSurviving(t *testing.T, b *broker.Broker, bs ...binding.Binding) *broker.Subscription {
	t.Helper()
	return subscribeBy(t, b.SubscribeSurviving, bs)
}

func subscribeBy(tb testing.TB, subscribe func(context.Context, []binding.Binding) (*broker.Subscription, error), bs []binding.Binding) *broker.Subscription {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	sub, err := subscribe(ctx, bs)
	if err != nil {
		tb.Fatalf("subscribe %v: %v", bs, err)
	}
	tb.Cleanup(sub.Close)
	return sub
}

// syncBroker waits until the broker has done every binding change asked
// for.
func syncBroker(t *testing.T, b *broker.Broker) {
	t.Helper()
	Sync(t, b)
}

// Sync waits until b has done every binding change asked for, within the
// suite's deadline, and fails tb if it has not.
func Sync(tb testing.TB, b *broker.Broker) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := b.Sync(ctx); err != nil {
		tb.Fatalf("sync: %v", err)
	}
}

// WaitFor calls cond until it returns true, and fails tb if it has not
// within the given time. It is for states that come with no event to wait
// on, such as broker.Broker.Connected after a reconnection; it looks every
// 10ms.
func WaitFor(tb testing.TB, within time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			tb.Fatalf("%s: not within %v", what, within)
		case <-tick.C:
		}
	}
}

// testBody is the JSON body of the messages the suite publishes.
type testBody struct {
	N   int  `json:"n"`
	End bool `json:"end,omitempty"`
}

// endBody is the body of the message that ends a reference queue's read
// and the suite's reads of subscriptions.
var endBody = []byte(`{"end":true}`)

// IsEnd reports whether body is the body {"end":true} that ends a
// Harness.Reference read; harnesses use it.
func IsEnd(body []byte) bool {
	var tb testBody
	return json.Unmarshal(body, &tb) == nil && tb.End
}

func numberBody(t *testing.T, n int) []byte {
	t.Helper()
	b, err := json.Marshal(testBody{N: n})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// numbers decodes the bodies the suite published into their numbers.
func numbers(t *testing.T, bodies [][]byte) []int {
	t.Helper()
	ns := make([]int, 0, len(bodies))
	for _, body := range bodies {
		var tb testBody
		if err := json.Unmarshal(body, &tb); err != nil {
			t.Fatalf("body %q: %v", body, err)
		}
		ns = append(ns, tb.N)
	}
	return ns
}

// takeMessagesUntilEnd reads sub's messages until one whose body is the
// end message, or the deadline, and returns the messages before it.
func takeMessagesUntilEnd(t *testing.T, sub *broker.Subscription) []*broker.Message {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var got []*broker.Message
	for {
		select {
		case <-sub.Notify():
		case <-sub.Done():
			t.Fatalf("subscription done: %v", sub.Err())
		case <-timer.C:
			t.Fatalf("no end message within %v; got %d messages", timeout, len(got))
		}
		msgs, _ := sub.Take(nil)
		for _, m := range msgs {
			if IsEnd(m.Body) {
				return got
			}
			got = append(got, m)
		}
	}
}

// takeUntilEnd reads sub's messages until one whose body is the end
// message, or the deadline, and returns their bodies' numbers in order and
// the drops seen.
func takeUntilEnd(t *testing.T, sub *broker.Subscription) (ns []int, dropped int) {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var msgs []*broker.Message
	for {
		select {
		case <-sub.Notify():
		case <-sub.Done():
			t.Fatalf("subscription done: %v", sub.Err())
		case <-timer.C:
			t.Fatalf("no end message within %v; got %d messages: %v", timeout, len(ns), ns)
		}
		var d int
		msgs, d = sub.Take(msgs[:0])
		dropped += d
		for _, m := range msgs {
			if IsEnd(m.Body) {
				return ns, dropped
			}
			ns = append(ns, numbers(t, [][]byte{m.Body})...)
		}
	}
}
