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
	"eventsproxy/internal/brokertest"
	"eventsproxy/internal/metrics"
	"eventsproxy/internal/rabbittest"
)

// startAsUser starts a Broker on the test node as a user of its own (whose
// topic permissions the test may change), re-binding every 300 ms, and
// declares an exchange, on a channel of the test's, for it to bind.
func startAsUser(t *testing.T) (user string, m *metrics.Metrics, b *broker.Broker, ch *amqp.Channel, ex string) {
	t.Helper()
	user, userURL := rabbittest.AddUser(t)
	m = metrics.New(prometheus.NewRegistry())
	b = brokertest.Start(t, broker.AMQP(broker.AMQPConfig{
		URL:            userURL,
		QueuePrefix:    rabbittest.Unique("eventsproxy-test/") + "/",
		ConnectionName: rabbittest.Unique("eventsproxy test " + t.Name() + " "),
	}), broker.WithExchangeCheck(broker.Config{Metrics: m, RebindPeriod: 300 * time.Millisecond}, time.Hour))
	ch = rabbittest.Channel(t, rabbittest.Dial(t, "eventsproxy test "+t.Name()))
	return user, m, b, ch, rabbittest.Exchange(t, ch, "eventsproxy-test/x/")
}

// wantEnded fails the test unless sub ends, within 60 s, with a BindError
// for exchange and pattern that wraps want.
func wantEnded(t *testing.T, name string, sub *broker.Subscription, exchange, pattern string, want error) {
	t.Helper()
	select {
	case <-sub.Done():
	case <-time.After(60 * time.Second):
		t.Fatalf("%s: not ended within 60s", name)
	}
	var berr *broker.BindError
	if err := sub.Err(); !errors.As(err, &berr) || !errors.Is(err, want) || berr.Binding.Exchange != exchange || berr.Binding.RoutingKeyPattern != pattern {
		t.Fatalf("%s ended with %v, want a BindError for %s %s that wraps %v", name, err, exchange, pattern, want)
	}
}

// wantOpen fails the test if any of subs has ended.
func wantOpen(t *testing.T, subs map[string]*broker.Subscription) {
	t.Helper()
	for name, sub := range subs {
		select {
		case <-sub.Done():
			t.Errorf("%s ended: %v", name, sub.Err())
		default:
		}
	}
}

// TestRebindRefusedForOnePattern: RabbitMQ's topic permissions refuse a
// queue.bind per binding key, and the broker closes the channel that
// asked. When the service's user may no longer bind one pattern, the
// re-bind of that pattern ends the streams on it, with an error naming the
// exchange and the pattern; the streams on the exchange's other patterns
// go on, one that the refused pattern covered gets a binding of its own,
// and new streams are bound on a channel opened again.
func TestRebindRefusedForOnePattern(t *testing.T) {
	user, m, b, ch, ex := startAsUser(t)
	subs := map[string]*broker.Subscription{}
	for _, c := range []struct{ name, pattern string }{{"a.#", "a.#"}, {"a.b (covered)", "a.b"}, {"c (1)", "c"}, {"c (2)", "c"}} {
		sub, err := subscribeAMQP(t, b, binding.Binding{Exchange: ex, RoutingKeyPattern: c.pattern})
		if err != nil {
			t.Fatal(err)
		}
		subs[c.name] = sub
	}
	rabbittest.Publish(t, ch, ex, "a.b", nil, []byte(`0`))
	expect(t, "0", map[string]*broker.Subscription{"a.#": subs["a.#"], "a.b (covered)": subs["a.b (covered)"]})

	// a.# may not be bound any more; a.b, c and d may. A new stream on
	// z is refused, and only it; the refusal closes the control channel,
	// and the worker opens another, on which the re-binds see the change
	// (a channel keeps its topic permission answers).
	rabbittest.SetTopicPermissions(t, user, ex, ".*", `^(a\.b|c|d)$`)
	if _, err := subscribeAMQP(t, b, binding.Binding{Exchange: ex, RoutingKeyPattern: "z"}); !errors.Is(err, broker.ErrAccessRefused) {
		t.Fatalf("a new stream on z: %v, want ErrAccessRefused", err)
	}
	wantOpen(t, subs)
	wantEnded(t, "a.#", subs["a.#"], ex, "a.#", broker.ErrAccessRefused)
	delete(subs, "a.#")
	wantOpen(t, subs)
	queue := b.QueueName()
	brokertest.WaitFor(t, 60*time.Second, "a binding a.b of its own", func() bool {
		for _, bd := range rabbittest.QueueBindings(t, queue) {
			if bd.RoutingKey == "a.b" {
				return true
			}
		}
		return false
	})
	awaitRebound(t, m)
	wantOpen(t, subs)

	rabbittest.Publish(t, ch, ex, "a.b", nil, []byte(`1`))
	rabbittest.Publish(t, ch, ex, "c", nil, []byte(`2`))
	expect(t, "1", map[string]*broker.Subscription{"a.b (covered)": subs["a.b (covered)"]})
	expect(t, "2", map[string]*broker.Subscription{"c (1)": subs["c (1)"], "c (2)": subs["c (2)"]})

	fresh, err := subscribeAMQP(t, b, binding.Binding{Exchange: ex, RoutingKeyPattern: "d"})
	if err != nil {
		t.Fatalf("a new stream on an allowed pattern: %v", err)
	}
	rabbittest.Publish(t, ch, ex, "d", nil, []byte(`3`))
	expect(t, "3", map[string]*broker.Subscription{"d": fresh})
	if _, err := subscribeAMQP(t, b, binding.Binding{Exchange: ex, RoutingKeyPattern: "a.#"}); !errors.Is(err, broker.ErrAccessRefused) {
		t.Fatalf("a new stream on a.#: %v, want ErrAccessRefused", err)
	}
	wantOpen(t, subs)
}
