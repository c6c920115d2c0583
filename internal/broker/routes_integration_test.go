//go:build integration

package broker_test

import (
	"context"
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

// startAMQP runs a Broker on the test RabbitMQ until t ends.
func startAMQP(t *testing.T, cfg broker.Config) *broker.Broker {
	t.Helper()
	return brokertest.Start(t, broker.AMQP(broker.AMQPConfig{
		URL:            rabbittest.URL(),
		QueuePrefix:    rabbittest.Unique("eventsproxy-test/") + "/",
		ConnectionName: rabbittest.Unique("eventsproxy test " + t.Name() + " "),
	}), cfg)
}

func subscribeAMQP(t *testing.T, b *broker.Broker, bs ...binding.Binding) (*broker.Subscription, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sub, err := b.Subscribe(ctx, bs)
	if err == nil {
		t.Cleanup(sub.Close)
	}
	return sub, err
}

// next waits for the subscription's next message.
func next(t *testing.T, sub *broker.Subscription, pending *[]*broker.Message) *broker.Message {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for len(*pending) == 0 {
		select {
		case <-sub.Notify():
			*pending, _ = sub.Take(*pending)
		case <-deadline:
			t.Fatal("no message within 20s")
		}
	}
	m := (*pending)[0]
	*pending = (*pending)[1:]
	return m
}

// TestNonTopicExchangesRefused: the process routes with topic rules, so a
// bind to a direct, fanout or headers exchange is refused, naming its type,
// and a topic exchange is bound.
func TestNonTopicExchangesRefused(t *testing.T) {
	b := startAMQP(t, broker.Config{})
	for ex, typ := range map[string]string{"amq.fanout": "fanout", "amq.direct": "direct", "amq.headers": "headers", "amq.match": "headers"} {
		_, err := subscribeAMQP(t, b, binding.Binding{Exchange: ex, RoutingKeyPattern: "#"})
		var berr *broker.BindError
		var terr *broker.ExchangeTypeError
		if !errors.As(err, &berr) || !errors.As(err, &terr) || !errors.Is(err, broker.ErrNotTopic) || terr.Type != typ || terr.Exchange != ex {
			t.Errorf("subscribe to %s: got %v, want a BindError with an ExchangeTypeError of type %s", ex, err, typ)
		}
	}
	conn := rabbittest.Dial(t, "eventsproxy test "+t.Name())
	ch := rabbittest.Channel(t, conn)
	topic := rabbittest.Exchange(t, ch, "eventsproxy-test/x/")
	for _, ex := range []string{topic, "amq.topic"} {
		if _, err := subscribeAMQP(t, b, binding.Binding{Exchange: ex, RoutingKeyPattern: "#"}); err != nil {
			t.Errorf("subscribe to topic exchange %s: %v", ex, err)
		}
	}
	// The probe creates nothing: a missing exchange is still missing.
	missing := rabbittest.Unique("eventsproxy-test/missing/")
	if _, err := subscribeAMQP(t, b, binding.Binding{Exchange: missing, RoutingKeyPattern: "#"}); !errors.Is(err, broker.ErrExchangeNotFound) {
		t.Errorf("subscribe to missing exchange: got %v, want ErrExchangeNotFound", err)
	}
	if err := rabbittest.Channel(t, conn).ExchangeDeclarePassive(missing, amqp.ExchangeTopic, false, false, false, false, nil); err == nil {
		t.Errorf("exchange %s exists after the probe", missing)
	}
}

// TestCCByteArraysAreNotRoutes: RabbitMQ routes by the long strings of the
// CC header only; a byte array there neither matches a binding nor is a
// route.
func TestCCByteArraysAreNotRoutes(t *testing.T) {
	b := startAMQP(t, broker.Config{})
	conn := rabbittest.Dial(t, "eventsproxy test "+t.Name())
	pub := rabbittest.Channel(t, conn)
	ex := rabbittest.Exchange(t, pub, "eventsproxy-test/x/")
	primary, err := subscribeAMQP(t, b, binding.Binding{Exchange: ex, RoutingKeyPattern: "a.#"})
	if err != nil {
		t.Fatal(err)
	}
	byCC, err := subscribeAMQP(t, b, binding.Binding{Exchange: ex, RoutingKeyPattern: "route.#"})
	if err != nil {
		t.Fatal(err)
	}
	rabbittest.PublishMessage(t, pub, ex, "a.1", amqp.Publishing{
		Headers: amqp.Table{"CC": []interface{}{[]byte("route.bytes"), "route.string"}},
		Body:    []byte(`1`),
	})
	rabbittest.PublishMessage(t, pub, ex, "a.2", amqp.Publishing{
		Headers: amqp.Table{"CC": []interface{}{[]byte("route.bytes")}},
		Body:    []byte(`2`),
	})
	rabbittest.Publish(t, pub, ex, "route.end", nil, []byte(`3`))

	var p, c []*broker.Message
	for _, want := range []string{"1", "2"} {
		m := next(t, primary, &p)
		if string(m.Body) != want {
			t.Fatalf("primary got %s, want %s", m.Body, want)
		}
		if want == "1" && (len(m.Routes()) != 1 || m.Routes()[0] != "string") {
			t.Errorf("message 1 routes %q, want [string]", m.Routes())
		}
		if want == "2" && len(m.Routes()) != 0 {
			t.Errorf("message 2 routes %q, want none", m.Routes())
		}
	}
	// route.# matched message 1 by its string CC, and message 2 not at
	// all, as a queue of its own would have it.
	for _, want := range []string{"1", "3"} {
		if m := next(t, byCC, &c); string(m.Body) != want {
			t.Fatalf("route.# got %s, want %s", m.Body, want)
		}
	}
}

// TestUnroutedMessagesCounted: a message that reaches our queue by a route
// the process cannot see (BCC, an exchange-to-exchange binding) reaches no
// stream, and is counted.
func TestUnroutedMessagesCounted(t *testing.T) {
	m := metrics.New(prometheus.NewRegistry())
	b := startAMQP(t, broker.Config{Metrics: m})
	conn := rabbittest.Dial(t, "eventsproxy test "+t.Name())
	pub := rabbittest.Channel(t, conn)
	ex := rabbittest.Exchange(t, pub, "eventsproxy-test/x/")
	upstream := rabbittest.Exchange(t, pub, "eventsproxy-test/x/")
	if err := pub.ExchangeBind(ex, "#", upstream, false, nil); err != nil {
		t.Fatal(err)
	}
	sub, err := subscribeAMQP(t, b, binding.Binding{Exchange: ex, RoutingKeyPattern: "a.#"})
	if err != nil {
		t.Fatal(err)
	}
	rabbittest.PublishMessage(t, pub, ex, "z", amqp.Publishing{
		Headers: amqp.Table{"BCC": []interface{}{"a.bcc"}},
		Body:    []byte(`1`),
	})
	rabbittest.Publish(t, pub, upstream, "a.upstream", nil, []byte(`2`))
	rabbittest.Publish(t, pub, ex, "a.end", nil, []byte(`3`))
	var p []*broker.Message
	if got := next(t, sub, &p); string(got.Body) != "3" {
		t.Fatalf("got %s, want only the message routed by its own key", got.Body)
	}
	if n := testutil.ToFloat64(m.MessagesUnrouted); n != 2 {
		t.Errorf("unrouted %v, want 2", n)
	}
}
