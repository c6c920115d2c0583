//go:build integration

package broker_test

import (
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"

	"eventsproxy/internal/binding"
	"eventsproxy/internal/broker"
	"eventsproxy/internal/metrics"
	"eventsproxy/internal/rabbittest"
)

// TestRedeclaredAsFanoutEndsItsStreams: an exchange deleted and declared
// again as a fanout exchange, between two exchange checks (off here), would
// have the re-binds bind the streams' patterns to it, and the streams get
// whatever the fanout brings, filtered with topic rules. The re-bind finds
// the type changed: every stream on the exchange ends with the error that
// a new stream gets at once, naming the type, and nothing of ours stays
// bound there, while another exchange's streams go on.
func TestRedeclaredAsFanoutEndsItsStreams(t *testing.T) {
	m := metrics.New(prometheus.NewRegistry())
	b := startAMQP(t, broker.WithExchangeCheck(broker.Config{Metrics: m, RebindPeriod: 500 * time.Millisecond}, time.Hour))
	conn := rabbittest.Dial(t, "eventsproxy test "+t.Name())
	ch := rabbittest.Channel(t, conn)
	other := rabbittest.Exchange(t, ch, "eventsproxy-test/x/")
	stays, err := subscribeAMQP(t, b, binding.Binding{Exchange: other, RoutingKeyPattern: "#"})
	if err != nil {
		t.Fatal(err)
	}
	queue := b.QueueName()
	for attempt := 1; attempt <= 5; attempt++ {
		ex := rabbittest.Exchange(t, ch, "eventsproxy-test/x/")
		subs := map[string]*broker.Subscription{}
		for _, p := range []string{"a.#", "a.b", "c"} {
			sub, err := subscribeAMQP(t, b, binding.Binding{Exchange: ex, RoutingKeyPattern: p})
			if err != nil {
				t.Fatal(err)
			}
			subs[p] = sub
		}
		rabbittest.Publish(t, ch, ex, "c", nil, []byte(`0`))
		expect(t, "0", map[string]*broker.Subscription{"c": subs["c"]})

		if err := ch.ExchangeDelete(ex, false, false); err != nil {
			t.Fatal(err)
		}
		if err := ch.ExchangeDeclare(ex, amqp.ExchangeFanout, false, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
		missed := false
		for p, sub := range subs {
			select {
			case <-sub.Done():
			case <-time.After(60 * time.Second):
				t.Fatalf("%s: not ended within 60s of its exchange's new type", p)
			}
			var berr *broker.BindError
			var terr *broker.ExchangeTypeError
			err := sub.Err()
			if errors.As(err, &berr) && errors.Is(err, broker.ErrExchangeNotFound) && berr.Binding.Exchange == ex {
				missed = true // a re-bind came between the delete and the declare
				continue
			}
			if !errors.As(err, &berr) || !errors.As(err, &terr) || terr.Type != "fanout" || terr.Exchange != ex || berr.Binding.Exchange != ex {
				t.Fatalf("%s ended with %v, want a BindError for %s with an ExchangeTypeError of type fanout", p, err, ex)
			}
		}
		for _, sub := range subs {
			sub.Close()
		}
		if missed {
			t.Logf("attempt %d: a re-bind came while the exchange was missing", attempt)
			continue
		}
		if _, err := subscribeAMQP(t, b, binding.Binding{Exchange: ex, RoutingKeyPattern: "a.#"}); !errors.Is(err, broker.ErrNotTopic) {
			t.Fatalf("a new stream on %s: %v, want ErrNotTopic", ex, err)
		}
		// A round of re-binds later, nothing of ours is bound to it.
		awaitRebound(t, m)
		for _, bd := range rabbittest.QueueBindings(t, queue) {
			if bd.Source == ex {
				t.Errorf("still bound to the fanout exchange: %v", bd)
			}
		}
		rabbittest.Publish(t, ch, other, "x", nil, []byte(`1`))
		expect(t, "1", map[string]*broker.Subscription{"other exchange": stays})
		return
	}
	t.Fatal("in every attempt a re-bind came while the exchange was missing")
}
