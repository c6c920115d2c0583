package broker

import (
	"bytes"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"eventsproxy/internal/metrics"
)

func limitedSubscription(lim Limits) (*Subscription, *metrics.Metrics) {
	m := metrics.Discard()
	return newSubscription(&session{limits: lim.withDefaults(), metrics: m}), m
}

// pushGauged pushes msg to sub and adds what it buffered to the gauge, as
// the router does once per message.
func pushGauged(sub *Subscription, msg *Message) {
	sub.s.metrics.BufferedBytes.Add(float64(sub.push(msg)))
}

func sized(n int, body int) *Message {
	return &Message{Exchange: "e", RoutingKey: string(rune('a' + n)), Body: bytes.Repeat([]byte("x"), body)}
}

// TestBufferBoundByBytes checks that a subscription drops its oldest
// messages to stay within its byte budget, however few they are, keeps the
// newest even when it alone is over the budget, and says what it dropped.
func TestBufferBoundByBytes(t *testing.T) {
	t.Parallel()
	one := sized(0, 1000).Size()
	sub, m := limitedSubscription(Limits{ClientBuffer: 100, ClientBufferBytes: 3 * one})
	for i := range 5 {
		pushGauged(sub, sized(i, 1000))
	}
	if got := testutil.ToFloat64(m.BufferedBytes); got != float64(3*one) {
		t.Fatalf("buffered bytes %v, want %d", got, 3*one)
	}
	msgs, dropped := sub.Take(nil)
	if len(msgs) != 3 || dropped != 2 || msgs[0].RoutingKey != "c" {
		t.Fatalf("took %d from %q, dropped %d; want 3 from \"c\", 2", len(msgs), msgs[0].RoutingKey, dropped)
	}
	// A message over the whole budget (but within MaxMessageBytes) is
	// kept, alone.
	pushGauged(sub, sized(0, 100))
	pushGauged(sub, sized(1, 4000))
	if msgs, dropped := sub.Take(nil); len(msgs) != 1 || dropped != 1 || msgs[0].RoutingKey != "b" {
		t.Fatalf("took %d, dropped %d; want the big one alone, 1 dropped", len(msgs), dropped)
	}
	if got := testutil.ToFloat64(m.BufferedBytes); got != 0 {
		t.Fatalf("buffered bytes after the takes: %v, want 0", got)
	}
}

// TestBufferDropsTooLarge checks that a message over MaxMessageBytes is
// not buffered but counted as dropped, before the messages after it.
func TestBufferDropsTooLarge(t *testing.T) {
	t.Parallel()
	sub, _ := limitedSubscription(Limits{MaxMessageBytes: 1000})
	sub.push(sized(0, 1001))
	sub.push(sized(1, 1000))
	select {
	case <-sub.Notify():
	default:
		t.Fatal("no wake-up")
	}
	if msgs, dropped := sub.Take(nil); len(msgs) != 1 || dropped != 1 || msgs[0].RoutingKey != "b" {
		t.Fatalf("took %d, dropped %d; want the small one, 1 dropped", len(msgs), dropped)
	}
}

// TestBufferGrowsAndShrinks checks that an idle subscription holds no ring,
// a burst grows it up to ClientBuffer, and draining gives a big one back.
func TestBufferGrowsAndShrinks(t *testing.T) {
	t.Parallel()
	sub, _ := limitedSubscription(Limits{ClientBuffer: 500})
	if sub.buf != nil {
		t.Fatalf("a new subscription holds a ring of %d", len(sub.buf))
	}
	for i := range 600 {
		sub.push(sized(i%26, 10))
	}
	if len(sub.buf) != 500 || sub.n != 500 {
		t.Fatalf("ring %d holding %d, want 500 holding 500", len(sub.buf), sub.n)
	}
	msgs, dropped := sub.Take(nil)
	if len(msgs) != 500 || dropped != 100 || sub.buf != nil {
		t.Fatalf("took %d, dropped %d, ring left %d; want 500, 100, none", len(msgs), dropped, len(sub.buf))
	}
}

// TestTakeUpTo checks that a capped take takes at least one message, stays
// within the cap otherwise, and leaves a wake-up for the rest.
func TestTakeUpTo(t *testing.T) {
	t.Parallel()
	sub, _ := limitedSubscription(Limits{})
	for i := range 10 {
		sub.push(sized(i, 1000))
	}
	<-sub.Notify()
	one := sized(0, 1000).Size()
	msgs, _ := sub.TakeUpTo(nil, 3*one+1)
	if len(msgs) != 3 {
		t.Fatalf("took %d, want 3", len(msgs))
	}
	select {
	case <-sub.Notify():
	default:
		t.Fatal("no wake-up for the messages left")
	}
	if msgs, _ := sub.TakeUpTo(nil, 1); len(msgs) != 1 || msgs[0].RoutingKey != "d" {
		t.Fatalf("a take under one message's size took %d", len(msgs))
	}
	<-sub.Notify()
	if msgs, _ := sub.TakeUpTo(nil, 1<<30); len(msgs) != 6 {
		t.Fatalf("took %d, want the 6 left", len(msgs))
	}
	select {
	case <-sub.Notify():
		t.Fatal("a wake-up with nothing left")
	default:
	}
}
