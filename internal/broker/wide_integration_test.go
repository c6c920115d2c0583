//go:build integration

package broker_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"eventsproxy/internal/binding"
	"eventsproxy/internal/broker"
	"eventsproxy/internal/brokertest"
	"eventsproxy/internal/metrics"
	"eventsproxy/internal/rabbittest"
)

// TestWideBindingServesManyPatterns subscribes many distinct task-page
// patterns on one exchange, with the policy on: RabbitMQ ends up holding
// one wide binding for them (and the one pattern it does not cover), and
// every stream still gets exactly its messages, in order, while messages
// for no stream reach the process and are counted as unwanted.
func TestWideBindingServesManyPatterns(t *testing.T) {
	conn := rabbittest.Dial(t, "eventsproxy test "+t.Name())
	pub := rabbittest.Channel(t, conn)
	ex := rabbittest.Exchange(t, pub, "eventsproxy-test/x/")
	m := metrics.New(prometheus.NewRegistry())
	b := brokertest.Start(t, broker.AMQP(broker.AMQPConfig{
		URL:            rabbittest.URL(),
		QueuePrefix:    rabbittest.Unique("eventsproxy-test/") + "/",
		ConnectionName: rabbittest.Unique("eventsproxy test " + t.Name() + " "),
	}), broker.Config{Wide: broker.WidePolicy{Keys: 16}, Metrics: m})

	const pages = 100
	subs := make([]*broker.Subscription, pages)
	for i := range subs {
		subs[i] = brokertest.Subscribe(t, b, binding.Binding{Exchange: ex, RoutingKeyPattern: fmt.Sprintf("primary.task%d.#", i)})
	}
	// A pattern outside the wide one keeps a binding of its own.
	routes := brokertest.Subscribe(t, b, binding.Binding{Exchange: ex, RoutingKeyPattern: "route.index.#"})
	brokertest.Sync(t, b)
	var bound []string
	for _, bd := range rabbittest.QueueBindings(t, b.QueueName()) {
		if bd.Source == ex {
			bound = append(bound, bd.RoutingKey)
		}
	}
	slices.Sort(bound)
	if want := []string{"primary.#", "route.index.#"}; !slices.Equal(bound, want) {
		t.Fatalf("bindings on the broker: got %d %q, want %q", len(bound), bound, want)
	}
	if got := testutil.ToFloat64(m.WideBindings); got != 1 {
		t.Fatalf("eventsproxy_broker_wide_bindings %v, want 1", got)
	}

	// Two messages per page, one for a task nobody watches between them,
	// one by its CC route; then an end message to every stream.
	for round := range 2 {
		for i := range pages {
			rabbittest.Publish(t, pub, ex, fmt.Sprintf("primary.task%d.%d", i, round), nil, []byte(fmt.Sprintf("%d/%d", i, round)))
			rabbittest.Publish(t, pub, ex, "primary.nobody.0", nil, []byte("unwanted"))
		}
	}
	rabbittest.Publish(t, pub, ex, "primary.nobody.1", []string{"route.index.a"}, []byte("route"))
	ends := []string{"route.index.end"}
	for i := range pages {
		ends = append(ends, fmt.Sprintf("primary.task%d.end", i))
	}
	rabbittest.Publish(t, pub, ex, "end", ends, []byte("end"))

	for i, sub := range subs {
		want := []string{fmt.Sprintf("%d/0", i), fmt.Sprintf("%d/1", i)}
		if got := bodiesUntilEnd(t, sub); !slices.Equal(got, want) {
			t.Fatalf("page %d got %q, want %q", i, got, want)
		}
	}
	if got := bodiesUntilEnd(t, routes); !slices.Equal(got, []string{"route"}) {
		t.Fatalf("route.index.# got %q", got)
	}
	received, wanted := testutil.ToFloat64(m.MessagesReceived), testutil.ToFloat64(m.MessagesWanted)
	if received-wanted < 2*pages {
		t.Fatalf("received %v, wanted %v: the %d unwanted messages are not counted", received, wanted, 2*pages)
	}

	// The pages go: so do their keys, and the wide binding stays until
	// the policy's review.
	for _, sub := range subs {
		sub.Close()
	}
	routes.Close()
	brokertest.Sync(t, b)
	var left []string
	for _, bd := range rabbittest.QueueBindings(t, b.QueueName()) {
		if bd.Source == ex {
			left = append(left, bd.RoutingKey)
		}
	}
	if !slices.Equal(left, []string{"primary.#"}) {
		t.Fatalf("bindings left: %q", left)
	}
}

// bodiesUntilEnd reads sub's messages until the one with body "end", and
// returns the bodies before it.
func bodiesUntilEnd(t *testing.T, sub *broker.Subscription) []string {
	t.Helper()
	timer := time.NewTimer(time.Minute)
	defer timer.Stop()
	var got []string
	var msgs []*broker.Message
	for {
		select {
		case <-sub.Notify():
		case <-sub.Done():
			t.Fatalf("subscription done: %v", sub.Err())
		case <-timer.C:
			t.Fatalf("no end message within a minute; got %q", got)
		}
		msgs, _ = sub.Take(msgs[:0])
		for _, m := range msgs {
			if string(m.Body) == "end" {
				return got
			}
			got = append(got, strings.Clone(string(m.Body)))
		}
	}
}
