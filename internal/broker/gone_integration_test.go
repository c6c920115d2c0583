//go:build integration

package broker_test

import (
	"errors"
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

// TestDeletedExchangeEndsItsStreams: RabbitMQ deletes an exchange's
// bindings with it and tells no queue. Within the recheck period every
// subscription on it ends with a BindError naming it, the binding gauge
// drops them, a new subscription is refused while the exchange is missing
// and served again once it is declared anew; other exchanges' streams go
// on.
func TestDeletedExchangeEndsItsStreams(t *testing.T) {
	m := metrics.New(prometheus.NewRegistry())
	b := startAMQP(t, broker.Config{Metrics: m})
	conn := rabbittest.Dial(t, "eventsproxy test "+t.Name())
	ch := rabbittest.Channel(t, conn)
	ex := rabbittest.Exchange(t, ch, "eventsproxy-test/x/")
	other := rabbittest.Exchange(t, ch, "eventsproxy-test/x/")

	all, err := subscribeAMQP(t, b, binding.Binding{Exchange: ex, RoutingKeyPattern: "#"})
	if err != nil {
		t.Fatal(err)
	}
	covered, err := subscribeAMQP(t, b, binding.Binding{Exchange: ex, RoutingKeyPattern: "a.#"})
	if err != nil {
		t.Fatal(err)
	}
	own, err := subscribeAMQP(t, b, binding.Binding{Exchange: ex, RoutingKeyPattern: "b"}, binding.Binding{Exchange: other, RoutingKeyPattern: "b"})
	if err != nil {
		t.Fatal(err)
	}
	survivor, err := subscribeAMQP(t, b, binding.Binding{Exchange: other, RoutingKeyPattern: "#"})
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDelete(ex, false, false); err != nil {
		t.Fatal(err)
	}
	for name, sub := range map[string]*broker.Subscription{"#": all, "a.# (covered)": covered, "b on both": own} {
		select {
		case <-sub.Done():
		case <-time.After(30 * time.Second):
			t.Fatalf("subscription %s not done within 30s of its exchange's deletion", name)
		}
		var berr *broker.BindError
		if err := sub.Err(); !errors.As(err, &berr) || !errors.Is(err, broker.ErrExchangeNotFound) || berr.Binding.Exchange != ex {
			t.Errorf("subscription %s: Err %v, want a BindError for %s with ErrExchangeNotFound", name, err, ex)
		}
	}
	select {
	case <-survivor.Done():
		t.Fatalf("a subscription on another exchange ended: %v", survivor.Err())
	default:
	}
	// Only other's bindings are left: "b" and "#", bound in that order.
	brokertest.WaitFor(t, 10*time.Second, "binding gauge", func() bool { return testutil.ToFloat64(m.BindingsHeld) == 2 })

	if _, err := subscribeAMQP(t, b, binding.Binding{Exchange: ex, RoutingKeyPattern: "a.#"}); !errors.Is(err, broker.ErrExchangeNotFound) {
		t.Fatalf("subscribe after deletion: got %v, want ErrExchangeNotFound", err)
	}
	if err := ch.ExchangeDeclare(ex, amqp.ExchangeTopic, false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	again, err := subscribeAMQP(t, b, binding.Binding{Exchange: ex, RoutingKeyPattern: "a.#"})
	if err != nil {
		t.Fatalf("subscribe after the exchange is back: %v", err)
	}
	rabbittest.Publish(t, ch, ex, "a.1", nil, []byte(`1`))
	var p []*broker.Message
	if got := next(t, again, &p); string(got.Body) != "1" {
		t.Fatalf("got %s", got.Body)
	}
}
