//go:build integration

package e2e

import (
	"encoding/json"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"

	"eventsproxy/internal/rabbittest"
)

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
	ch := rabbittest.Channel(t, rabbittest.Dial(t, "eventsproxy-e2e "+t.Name()))
	return &exchange{Name: rabbittest.Exchange(t, ch, "exchange/e2e-test/"), ch: ch}
}

// publish publishes msg with routing key key and returns once the broker has
// confirmed it, so that it has been routed before the test looks for it.
func (e *exchange) publish(t testing.TB, key string, msg amqp.Publishing) {
	t.Helper()
	rabbittest.PublishMessage(t, e.ch, e.Name, key, msg)
}

// tryPublish is publish for a goroutine other than the test's: it returns
// what went wrong. One goroutine at a time may publish.
func (e *exchange) tryPublish(key string, msg amqp.Publishing) error {
	return rabbittest.TryPublish(e.ch, e.Name, key, msg)
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
		Headers:      rabbittest.CCHeader(cc),
		Body:         b,
	}
}
