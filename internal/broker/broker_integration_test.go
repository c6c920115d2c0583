//go:build integration

package broker_test

import (
	"context"
	"maps"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"eventsproxy/internal/binding"
	"eventsproxy/internal/broker"
	"eventsproxy/internal/brokertest"
	"eventsproxy/internal/rabbittest"
)

// TestConformance runs the suite that the in-process broker passes too
// against the real RabbitMQ: every subscription is checked against a plain
// queue that RabbitMQ routes itself.
func TestConformance(t *testing.T) {
	conn := rabbittest.Dial(t, "eventsproxy test "+t.Name())
	// Publishing is safe from parallel tests on one channel; declarations
	// and consumers get channels of their own.
	pub := rabbittest.Channel(t, conn)
	// connNames maps each test to the name of its Broker's connection,
	// which Disconnect closes through the management API.
	var connNames sync.Map

	brokertest.Run(t, brokertest.Harness{
		Dialer: func(t *testing.T) broker.Dialer {
			name := rabbittest.Unique("eventsproxy test " + t.Name() + " ")
			connNames.Store(t, name)
			return broker.AMQP(broker.AMQPConfig{
				URL:            rabbittest.URL(),
				QueuePrefix:    rabbittest.Unique("eventsproxy-test/") + "/",
				ConnectionName: name,
			})
		},
		NewExchange: func(t *testing.T) string {
			return rabbittest.Exchange(t, rabbittest.Channel(t, conn), "eventsproxy-test/x/")
		},
		MissingExchange: func(*testing.T) string { return rabbittest.Unique("eventsproxy-test/missing/") },
		Publish: func(t *testing.T, exchange, key string, cc []string, body []byte) {
			t.Helper()
			rabbittest.Publish(t, pub, exchange, key, cc, body)
		},
		PublishWith: func(t *testing.T, exchange, key string, cc []string, body []byte, p *broker.Properties) {
			t.Helper()
			h := amqp.Table{}
			maps.Copy(h, p.Headers)
			maps.Copy(h, rabbittest.CCHeader(cc))
			rabbittest.PublishMessage(t, pub, exchange, key, amqp.Publishing{
				Headers: h, ContentType: p.ContentType, ContentEncoding: p.ContentEncoding,
				DeliveryMode: p.DeliveryMode, Priority: p.Priority, CorrelationId: p.CorrelationID,
				ReplyTo: p.ReplyTo, Expiration: p.Expiration, MessageId: p.MessageID,
				Timestamp: p.Timestamp, Type: p.Type, UserId: p.UserID, AppId: p.AppID, Body: body,
			})
		},
		Reference: func(t *testing.T, bs []binding.Binding) func() [][]byte {
			return reference(t, conn, bs)
		},
		QueueBindings: func(t *testing.T, queue string) []binding.Binding {
			t.Helper()
			var out []binding.Binding
			for _, bd := range rabbittest.QueueBindings(t, queue) {
				out = append(out, binding.Binding{Exchange: bd.Source, RoutingKeyPattern: bd.RoutingKey})
			}
			return out
		},
		Disconnect: func(t *testing.T, _ *broker.Broker) {
			t.Helper()
			name, ok := connNames.Load(t)
			if !ok {
				t.Fatal("Disconnect before Dialer")
			}
			rabbittest.CloseConnection(t, name.(string), 30*time.Second)
		},
	})
}

// reference declares a plain exclusive queue on conn, bound with bs, and
// returns a function that reads it until the end message.
func reference(t *testing.T, conn *amqp.Connection, bs []binding.Binding) func() [][]byte {
	t.Helper()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ch.Close() })
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, bd := range bs {
		if err := ch.QueueBind(q.Name, bd.RoutingKeyPattern, bd.Exchange, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	return func() [][]byte {
		t.Helper()
		deliveries, err := ch.Consume(q.Name, "", true, true, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		var bodies [][]byte
		timeout := time.After(10 * time.Second)
		for {
			select {
			case d, ok := <-deliveries:
				if !ok {
					t.Fatalf("reference queue %s: consumer ended", q.Name)
				}
				if brokertest.IsEnd(d.Body) {
					return bodies
				}
				bodies = append(bodies, d.Body)
			case <-timeout:
				t.Fatalf("reference queue %s: no end message within 10s", q.Name)
			}
		}
	}
}

// TestAMQPQueueShape checks the queue that the RabbitMQ Dialer declares:
// exclusive, with the length limits asked for, with its side queues, and gone with its
// connection.
func TestAMQPQueueShape(t *testing.T) {
	d := broker.AMQP(broker.AMQPConfig{
		URL:            rabbittest.URL(),
		QueuePrefix:    rabbittest.Unique("eventsproxy-test/") + "/",
		ConnectionName: "eventsproxy test " + t.Name(),
		QueueMaxLength: 10,
		QueueMaxBytes:  1000,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := d.Dial(ctx)
	if err != nil {
		t.Fatalf("RabbitMQ is required for integration tests: %v", err)
	}
	consumed := make(chan error, 1)
	go func() { consumed <- c.Consume(func(*broker.Message) {}) }()
	var closeOnce sync.Once
	var closeErr error
	closeConn := func() error {
		closeOnce.Do(func() {
			closeErr = c.Close()
			<-consumed
		})
		return closeErr
	}
	t.Cleanup(func() { _ = closeConn() })

	// The queue, and the side queues for what the broker drops from it
	// (the dropped queue capped like the queue, the lost one at one
	// message), all exclusive.
	args := map[string]map[string]any{
		c.Queue(): {"x-max-length": float64(10), "x-max-length-bytes": float64(1000),
			"x-dead-letter-exchange": "", "x-dead-letter-routing-key": c.Queue() + "/dropped"},
		c.Queue() + "/dropped": {"x-max-length": float64(10), "x-max-length-bytes": float64(1000),
			"x-dead-letter-exchange": "", "x-dead-letter-routing-key": c.Queue() + "/lost"},
		c.Queue() + "/lost": {"x-max-length": float64(1)},
	}
	qs := rabbittest.Queues(t, c.Queue())
	if len(qs) != len(args) {
		t.Fatalf("want %d queues, got %+v", len(args), qs)
	}
	for _, q := range qs {
		want, ok := args[q.Name]
		if !ok || !q.Exclusive {
			t.Fatalf("queue %+v: want an exclusive queue of %v", q, args)
		}
		// JSON numbers decode as float64.
		for k, v := range want {
			if got := q.Arguments[k]; got != v {
				t.Errorf("queue %s: %s %v, want %v", q.Name, k, got, v)
			}
		}
		if len(q.Arguments) != len(want) {
			t.Errorf("queue %s: arguments %v, want %v", q.Name, q.Arguments, want)
		}
	}

	if err := closeConn(); err != nil {
		t.Fatal(err)
	}
	brokertest.WaitFor(t, 10*time.Second, "queue gone with its connection", func() bool {
		return len(rabbittest.Queues(t, c.Queue())) == 0
	})
}
