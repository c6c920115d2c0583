package broker_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"eventsproxy/internal/binding"
	"eventsproxy/internal/broker"
	"eventsproxy/internal/brokertest"
	"eventsproxy/internal/membroker"
)

// TestCoverAmongManyWildcardKeys checks that a new key is served by a bound
// key that covers it, without a binding of its own, however many other
// wildcard keys are bound on the exchange: here 5,000 task keys
// primary.<i>.# and one primary.# that covers the new keys.
func TestCoverAmongManyWildcardKeys(t *testing.T) {
	t.Parallel()
	const ex = "exchange/test"
	mb := membroker.New()
	mb.DeclareExchange(ex)
	b := brokertest.Start(t, mb, broker.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	subscribe := func(pattern string) *broker.Subscription {
		t.Helper()
		sub, err := b.Subscribe(ctx, []binding.Binding{{Exchange: ex, RoutingKeyPattern: pattern}})
		if err != nil {
			t.Fatalf("subscribe %q: %v", pattern, err)
		}
		t.Cleanup(sub.Close)
		return sub
	}

	const held = 5000
	for i := range held {
		subscribe(fmt.Sprintf("primary.%d.#", i))
	}
	subscribe("primary.#")
	news := []string{"primary.x.y", "primary.abc.def", "primary.x", "primary.*.y", "primary.x.#", "primary.*.*.#"}
	subs := make([]*broker.Subscription, len(news))
	for i, p := range news {
		subs[i] = subscribe(p)
	}
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}

	bound := mb.QueueBindings(b.QueueName())
	if len(bound) != held+1 {
		t.Errorf("%d bindings on the broker, want %d", len(bound), held+1)
	}
	for _, p := range news {
		if slices.Contains(bound, binding.Binding{Exchange: ex, RoutingKeyPattern: p}) {
			t.Errorf("%q has a binding of its own, though primary.# covers it", p)
		}
	}

	// The cover brings their messages.
	if err := mb.Publish(ex, "primary.x.y", nil, []byte("m")); err != nil {
		t.Fatal(err)
	}
	for i, sub := range subs {
		if news[i] == "primary.x" || news[i] == "primary.abc.def" {
			continue // not matched
		}
		select {
		case <-sub.Notify():
		case <-time.After(10 * time.Second):
			t.Fatalf("%q: no message within 10s", news[i])
		}
		if msgs, _ := sub.Take(nil); len(msgs) != 1 || string(msgs[0].Body) != "m" {
			t.Fatalf("%q got %v, want the one message", news[i], msgs)
		}
	}
}
