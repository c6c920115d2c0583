//go:build integration

package broker_test

import (
	"context"
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
// exclusive, with the length limits asked for, and gone with its
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

	qs := rabbittest.Queues(t, c.Queue())
	if len(qs) != 1 || !qs[0].Exclusive {
		t.Fatalf("want one exclusive queue %q, got %+v", c.Queue(), qs)
	}
	// JSON numbers decode as float64.
	if got := qs[0].Arguments["x-max-length"]; got != float64(10) {
		t.Errorf("x-max-length %v, want 10", got)
	}
	if got := qs[0].Arguments["x-max-length-bytes"]; got != float64(1000) {
		t.Errorf("x-max-length-bytes %v, want 1000", got)
	}

	if err := closeConn(); err != nil {
		t.Fatal(err)
	}
	brokertest.WaitFor(t, 10*time.Second, "queue gone with its connection", func() bool {
		return len(rabbittest.Queues(t, c.Queue())) == 0
	})
}
