//go:build integration

package broker_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	amqp "github.com/rabbitmq/amqp091-go"

	"eventsproxy/internal/binding"
	"eventsproxy/internal/broker"
	"eventsproxy/internal/brokertest"
	"eventsproxy/internal/metrics"
	"eventsproxy/internal/rabbittest"
)

// rebinds returns the re-binds the broker confirmed so far.
func rebinds(m *metrics.Metrics) float64 {
	return testutil.ToFloat64(m.BindOps.WithLabelValues("rebind", "ok"))
}

// awaitRebound waits until every binding the process holds has been bound
// again since the call: a re-bind may be in flight (issued before the
// loss), then each bound key has its turn, oldest first.
func awaitRebound(t *testing.T, m *metrics.Metrics, alsoDone ...*broker.Subscription) {
	t.Helper()
	want := rebinds(m) + testutil.ToFloat64(m.BindingsHeld) + 1
	brokertest.WaitFor(t, 60*time.Second, fmt.Sprintf("%v re-binds", want), func() bool {
		for _, sub := range alsoDone {
			select {
			case <-sub.Done():
				return true
			default:
			}
		}
		return rebinds(m) >= want
	})
}

// expect waits for a message with body on each of subs.
func expect(t *testing.T, body string, subs map[string]*broker.Subscription) {
	t.Helper()
	for name, sub := range subs {
		var p []*broker.Message
		if got := next(t, sub, &p); string(got.Body) != body {
			t.Fatalf("%s: got %s, want %s", name, got.Body, body)
		}
	}
}

// TestRemovedBindingIsRestored: an operator removes bindings of the
// process's queue (rabbitmqctl eval), behind its back: they are bound
// again within the re-bind period, so the streams on them, shared,
// covered or not, get their messages again and stay open, and a new
// stream's ready is true again.
func TestRemovedBindingIsRestored(t *testing.T) {
	m := metrics.New(prometheus.NewRegistry())
	b := startAMQP(t, broker.Config{Metrics: m, RebindPeriod: 200 * time.Millisecond})
	conn := rabbittest.Dial(t, "eventsproxy test "+t.Name())
	ch := rabbittest.Channel(t, conn)
	ex := rabbittest.Exchange(t, ch, "eventsproxy-test/x/")
	subs := map[string]*broker.Subscription{}
	for _, c := range []struct{ name, pattern string }{{"a.# (1)", "a.#"}, {"a.# (2)", "a.#"}, {"a.b (covered)", "a.b"}, {"c", "c"}} {
		sub, err := subscribeAMQP(t, b, binding.Binding{Exchange: ex, RoutingKeyPattern: c.pattern})
		if err != nil {
			t.Fatal(err)
		}
		subs[c.name] = sub
	}
	ab := map[string]*broker.Subscription{"a.# (1)": subs["a.# (1)"], "a.# (2)": subs["a.# (2)"], "a.b (covered)": subs["a.b (covered)"]}
	rabbittest.Publish(t, ch, ex, "a.b", nil, []byte(`0`))
	expect(t, "0", ab)

	queue := b.QueueName()
	rabbittest.RemoveBinding(t, ex, queue, "a.#")
	rabbittest.RemoveBinding(t, ex, queue, "c")
	awaitRebound(t, m)

	rabbittest.Publish(t, ch, ex, "a.b", nil, []byte(`1`))
	rabbittest.Publish(t, ch, ex, "c", nil, []byte(`2`))
	expect(t, "1", ab)
	expect(t, "2", map[string]*broker.Subscription{"c": subs["c"]})
	fresh, err := subscribeAMQP(t, b, binding.Binding{Exchange: ex, RoutingKeyPattern: "a.#"})
	if err != nil {
		t.Fatal(err)
	}
	rabbittest.Publish(t, ch, ex, "a.c", nil, []byte(`3`))
	expect(t, "3", map[string]*broker.Subscription{"new a.#": fresh})
	for name, sub := range subs {
		select {
		case <-sub.Done():
			t.Errorf("%s ended: %v", name, sub.Err())
		default:
		}
	}
	keys := map[string]bool{}
	for _, bd := range rabbittest.QueueBindings(t, queue) {
		keys[bd.RoutingKey] = true
	}
	if !keys["a.#"] || !keys["c"] || len(keys) != 2 {
		t.Errorf("bindings on the broker: %v, want a.# and c", keys)
	}
}

// TestRecreatedExchangeIsBoundAgain: an exchange deleted and declared
// again has lost our bindings, and a check of its existence cannot tell
// (it is off here): its bindings are bound again within the re-bind
// period. Should a re-bind fall between the deletion and the declare, the
// streams are told, with an error naming the exchange; the test then
// tries again with another exchange.
func TestRecreatedExchangeIsBoundAgain(t *testing.T) {
	m := metrics.New(prometheus.NewRegistry())
	b := startAMQP(t, broker.WithExchangeCheck(broker.Config{Metrics: m, RebindPeriod: 500 * time.Millisecond}, time.Hour))
	conn := rabbittest.Dial(t, "eventsproxy test "+t.Name())
	ch := rabbittest.Channel(t, conn)
	for attempt := 1; attempt <= 5; attempt++ {
		ex := rabbittest.Exchange(t, ch, "eventsproxy-test/x/")
		all, err := subscribeAMQP(t, b, binding.Binding{Exchange: ex, RoutingKeyPattern: "a.#"})
		if err != nil {
			t.Fatal(err)
		}
		covered, err := subscribeAMQP(t, b, binding.Binding{Exchange: ex, RoutingKeyPattern: "a.b"})
		if err != nil {
			t.Fatal(err)
		}
		subs := map[string]*broker.Subscription{"a.#": all, "a.b (covered)": covered}
		rabbittest.Publish(t, ch, ex, "a.b", nil, []byte(`0`))
		expect(t, "0", subs)

		if err := ch.ExchangeDelete(ex, false, false); err != nil {
			t.Fatal(err)
		}
		if err := ch.ExchangeDeclare(ex, amqp.ExchangeTopic, false, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
		awaitRebound(t, m, all)
		select {
		case <-all.Done():
			var berr *broker.BindError
			if err := all.Err(); !errors.As(err, &berr) || !errors.Is(err, broker.ErrExchangeNotFound) || berr.Binding.Exchange != ex {
				t.Fatalf("a stream ended with %v, want a BindError for %s with ErrExchangeNotFound", err, ex)
			}
			t.Logf("attempt %d: a re-bind came while the exchange was missing, and its streams were told", attempt)
			all.Close()
			covered.Close()
			continue
		default:
		}
		rabbittest.Publish(t, ch, ex, "a.b", nil, []byte(`1`))
		expect(t, "1", subs)
		fresh, err := subscribeAMQP(t, b, binding.Binding{Exchange: ex, RoutingKeyPattern: "a.#"})
		if err != nil {
			t.Fatal(err)
		}
		rabbittest.Publish(t, ch, ex, "a.c", nil, []byte(`2`))
		expect(t, "2", map[string]*broker.Subscription{"new a.#": fresh})
		return
	}
	t.Fatal("in every attempt a re-bind came while the exchange was missing")
}
