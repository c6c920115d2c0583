package brokertest

import (
	"context"
	"slices"
	"testing"

	"eventsproxy/internal/binding"
	"eventsproxy/internal/broker"
)

// testNormalForm checks that the broker binds each pattern's normal form,
// which costs RabbitMQ far less to match than runs of # do, that patterns
// with one normal form share one binding, and that each subscription still
// gets what its own patterns match.
func testNormalForm(t *testing.T, h Harness) {
	b := startBroker(t, h, broker.Config{})
	ex := h.NewExchange(t)
	bound := func() []string { return patterns(t, h.QueueBindings(t, b.QueueName()), ex) }
	ctx := context.Background()
	subscribe := func(patterns ...string) *broker.Subscription {
		t.Helper()
		var bs []binding.Binding
		for _, p := range patterns {
			bs = append(bs, binding.Binding{Exchange: ex, RoutingKeyPattern: p})
		}
		sub, err := b.Subscribe(ctx, bs)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(sub.Close)
		return sub
	}
	a := subscribe("#.*.#.*.x", "y.#.#", "y.#")
	c := subscribe("*.*.#.x")
	if got, want := bound(), []string{"*.*.#.x", "y.#"}; !slices.Equal(got, want) {
		t.Fatalf("bindings: got %q, want %q", got, want)
	}
	h.Publish(t, ex, "x", nil, numberBody(t, 0))     // too short for either
	h.Publish(t, ex, "a.b.x", nil, numberBody(t, 1)) // both
	h.Publish(t, ex, "y", nil, numberBody(t, 2))     // a's y.#.#
	h.Publish(t, ex, "a.b.c.x", nil, numberBody(t, 3))
	h.Publish(t, ex, "end.end.x", nil, endBody)
	if got, _ := takeUntilEnd(t, a); !slices.Equal(got, []int{1, 2, 3}) {
		t.Errorf("first subscription got %v, want [1 2 3]", got)
	}
	if got, _ := takeUntilEnd(t, c); !slices.Equal(got, []int{1, 3}) {
		t.Errorf("second subscription got %v, want [1 3]", got)
	}
	a.Close()
	syncBroker(t, b)
	if got, want := bound(), []string{"*.*.#.x"}; !slices.Equal(got, want) {
		t.Fatalf("bindings after the first closed: got %q, want %q", got, want)
	}
}
