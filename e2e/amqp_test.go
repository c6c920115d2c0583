//go:build integration

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// publishTimeout bounds one publish and the wait for the broker's confirm.
const publishTimeout = 10 * time.Second

// exchange is a topic exchange of one test's own on the real RabbitMQ, with
// a channel in confirm mode to publish on. The exchange is deleted and the
// connection closed at the end of the test.
type exchange struct {
	// Name is exchange/e2e-test/<random>.
	Name string

	ch *amqp.Channel
}

// newExchange declares a fresh topic exchange over a connection named after
// the test.
func newExchange(t testing.TB) *exchange {
	t.Helper()
	cfg := amqp.Config{Properties: amqp.NewConnectionProperties()}
	cfg.Properties.SetClientConnectionName("eventsproxy-e2e " + t.Name())
	conn, err := amqp.DialConfig(amqpURL, cfg)
	if err != nil {
		t.Fatalf("dial RabbitMQ at %s (.ci/run starts it): %v", redactURL(amqpURL), err)
	}
	t.Cleanup(func() {
		if err := conn.Close(); err != nil {
			t.Errorf("close AMQP connection: %v", err)
		}
	})
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("open AMQP channel: %v", err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatalf("put the channel in confirm mode: %v", err)
	}
	e := &exchange{Name: "exchange/e2e-test/" + strings.ToLower(rand.Text()), ch: ch}
	err = ch.ExchangeDeclare(e.Name, amqp.ExchangeTopic, false, false, false, false, nil)
	if err != nil {
		t.Fatalf("declare exchange %q: %v", e.Name, err)
	}
	t.Cleanup(func() {
		if err := ch.ExchangeDelete(e.Name, false, false); err != nil {
			t.Errorf("delete exchange %q: %v", e.Name, err)
		}
	})
	return e
}

// publish publishes msg with routing key key and returns once the broker has
// confirmed it, so that it has been routed before the test looks for it.
func (e *exchange) publish(t testing.TB, key string, msg amqp.Publishing) {
	t.Helper()
	if err := e.tryPublish(key, msg); err != nil {
		t.Fatal(err)
	}
}

// tryPublish is publish for a goroutine other than the test's: it returns
// what went wrong. One goroutine at a time may publish.
func (e *exchange) tryPublish(key string, msg amqp.Publishing) error {
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	confirm, err := e.ch.PublishWithDeferredConfirmWithContext(ctx, e.Name, key, false, false, msg)
	if err != nil {
		return fmt.Errorf("publish to %q with key %q: %w", e.Name, key, err)
	}
	acked, err := confirm.WaitContext(ctx)
	if err != nil {
		return fmt.Errorf("wait for the broker to confirm the publish to %q: %w", e.Name, err)
	}
	if !acked {
		return fmt.Errorf("the broker refused (nack) the publish to %q", e.Name)
	}
	return nil
}

// jsonMessage is a message with a JSON body and the given CC routing keys,
// as Taskcluster publishes them.
func jsonMessage(t testing.TB, body any, cc ...string) amqp.Publishing {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	return amqp.Publishing{
		ContentType:  "application/json",
		DeliveryMode: amqp.Transient,
		Headers:      ccHeader(cc),
		Body:         b,
	}
}

// ccHeader is the CC header for routing keys: an AMQP array of strings.
func ccHeader(cc []string) amqp.Table {
	if len(cc) == 0 {
		return nil
	}
	keys := make([]any, len(cc))
	for i, k := range cc {
		keys[i] = k
	}
	return amqp.Table{"CC": keys}
}

// redactURL hides the password of an AMQP URL.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(an AMQP URL that does not parse)"
	}
	return u.Redacted()
}
