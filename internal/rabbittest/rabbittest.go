package rabbittest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"eventsproxy/internal/randomname"
)

// Broker is a RabbitMQ broker as tests reach it. Its methods may be called
// from parallel tests.
type Broker struct {
	// URL is its AMQP URL, with credentials.
	URL string
	// ManagementURL is its management API's base URL, with credentials.
	ManagementURL string
}

// The package's broker, set by Main: $AMQP_URL's, or a node of its own.
var (
	defaultMu     sync.Mutex
	defaultBroker *Broker
	defaultNode   *Node // when defaultBroker is a node of ours
)

// Default returns the test binary's broker: the one $AMQP_URL (and
// $RABBITMQ_MANAGEMENT_URL) name, or else the node that Main started. It
// panics when there is neither: tests never fall back to whatever broker
// happens to listen on port 5672.
func Default() Broker {
	defaultMu.Lock()
	defer defaultMu.Unlock()
	if defaultBroker == nil {
		if b, ok := fromEnvironment(); ok {
			return b
		}
		panic("rabbittest: no broker for this test: set AMQP_URL, or call rabbittest.Main from TestMain in a build with -tags integration, which starts a node of the test binary's own")
	}
	return *defaultBroker
}

func setDefault(b *Broker, n *Node) {
	defaultMu.Lock()
	defaultBroker, defaultNode = b, n
	defaultMu.Unlock()
}

// Ctl runs rabbitmqctl with args against the default broker and returns its
// output: against the node Main started, or, with AMQP_URL set, against
// the local node that rabbitmqctl reaches by default.
func Ctl(tb testing.TB, args ...string) string {
	tb.Helper()
	Default() // fails without a broker
	defaultMu.Lock()
	n := defaultNode
	defaultMu.Unlock()
	var out string
	var err error
	if n != nil {
		out, err = n.Ctl(args...)
	} else {
		var b []byte
		b, err = exec.Command("rabbitmqctl", args...).CombinedOutput()
		out = string(b)
	}
	if err != nil {
		tb.Fatalf("rabbitmqctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// fromEnvironment returns the broker that $AMQP_URL names (its first URL,
// when it lists several), with the management API of
// $RABBITMQ_MANAGEMENT_URL or else port 15672 of the same host and
// credentials.
func fromEnvironment() (Broker, bool) {
	u := os.Getenv("AMQP_URL")
	if u == "" {
		return Broker{}, false
	}
	u, _, _ = strings.Cut(u, ",")
	u = strings.TrimSpace(u)
	b := Broker{URL: u, ManagementURL: strings.TrimSuffix(os.Getenv("RABBITMQ_MANAGEMENT_URL"), "/")}
	if b.ManagementURL == "" {
		m := &url.URL{Scheme: "http", Host: "127.0.0.1:15672", User: url.UserPassword("guest", "guest")}
		if p, err := url.Parse(u); err == nil && p.Hostname() != "" {
			m.Host = p.Hostname() + ":15672"
			if p.User != nil {
				m.User = p.User
			}
		}
		b.ManagementURL = m.String()
	}
	return b, true
}

// URL returns the AMQP URL of the test binary's broker (see Default).
func URL() string { return Default().URL }

// ManagementURL returns the management API's base URL, with credentials,
// of the test binary's broker (see Default).
func ManagementURL() string { return Default().ManagementURL }

// Unique returns prefix followed by random hex digits, for names that no
// other test or run shares.
func Unique(prefix string) string { return randomname.New(prefix) }

// Dial opens a named connection to the default broker (see Broker.Dial).
func Dial(tb testing.TB, name string) *amqp.Connection {
	tb.Helper()
	return Default().Dial(tb, name)
}

// Dial opens a named connection to b and closes it at cleanup. A broker
// that cannot be reached fails the test.
func (b Broker) Dial(tb testing.TB, name string) *amqp.Connection {
	tb.Helper()
	conn, err := amqp.DialConfig(b.URL, amqp.Config{
		Properties: amqp.Table{"connection_name": name},
		Dial:       amqp.DefaultDial(5 * time.Second),
	})
	if err != nil {
		tb.Fatalf("dial RabbitMQ for the test: %v", err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	return conn
}

// Channel opens a channel on conn, in confirm mode, closed at cleanup.
func Channel(tb testing.TB, conn *amqp.Connection) *amqp.Channel {
	tb.Helper()
	ch, err := conn.Channel()
	if err != nil {
		tb.Fatalf("open channel: %v", err)
	}
	if err := ch.Confirm(false); err != nil {
		tb.Fatalf("confirm mode: %v", err)
	}
	tb.Cleanup(func() { _ = ch.Close() })
	return ch
}

// Exchange declares an exchange on the default broker (see
// Broker.Exchange).
func Exchange(tb testing.TB, ch *amqp.Channel, prefix string) string {
	tb.Helper()
	return Default().Exchange(tb, ch, prefix)
}

// Exchange declares a topic exchange with a unique name under prefix on ch,
// a channel to b, and deletes it at cleanup (on a connection of its own, so
// it works whatever the test did to its channels).
func (b Broker) Exchange(tb testing.TB, ch *amqp.Channel, prefix string) string {
	tb.Helper()
	name := Unique(prefix)
	if err := ch.ExchangeDeclare(name, amqp.ExchangeTopic, false, false, false, false, nil); err != nil {
		tb.Fatalf("declare exchange %q: %v", name, err)
	}
	tb.Cleanup(func() {
		conn, err := amqp.Dial(b.URL)
		if err != nil {
			tb.Errorf("delete exchange %q: %v", name, err)
			return
		}
		defer conn.Close()
		c, err := conn.Channel()
		if err == nil {
			err = c.ExchangeDelete(name, false, false)
		}
		if err != nil {
			tb.Errorf("delete exchange %q: %v", name, err)
		}
	})
	return name
}

// Publish publishes body to exchange with routing key and CC keys on a
// confirm-mode channel and waits for the broker's confirmation.
func Publish(tb testing.TB, ch *amqp.Channel, exchange, key string, cc []string, body []byte) {
	tb.Helper()
	PublishMessage(tb, ch, exchange, key, amqp.Publishing{Body: body, ContentType: "application/json", Headers: CCHeader(cc)})
}

// PublishMessage publishes msg to exchange with routing key on a
// confirm-mode channel and returns once the broker has confirmed it, so
// that it has been routed before the test looks for it. A refusal (nack)
// fails the test.
func PublishMessage(tb testing.TB, ch *amqp.Channel, exchange, key string, msg amqp.Publishing) {
	tb.Helper()
	if err := TryPublish(ch, exchange, key, msg); err != nil {
		tb.Fatal(err)
	}
}

// TryPublish is PublishMessage for a goroutine other than the test's: it
// returns what went wrong. One goroutine at a time may publish on ch.
func TryPublish(ch *amqp.Channel, exchange, key string, msg amqp.Publishing) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conf, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, false, false, msg)
	if err != nil {
		return fmt.Errorf("publish to %q with key %q: %w", exchange, key, err)
	}
	ok, err := conf.WaitContext(ctx)
	if err != nil {
		return fmt.Errorf("wait for the broker to confirm the publish to %q: %w", exchange, err)
	}
	if !ok {
		return fmt.Errorf("the broker refused (nack) the publish to %q", exchange)
	}
	return nil
}

// CCHeader is the CC header for routing keys, an AMQP array of strings, as
// Taskcluster sends it; nil for none.
func CCHeader(cc []string) amqp.Table {
	if len(cc) == 0 {
		return nil
	}
	keys := make([]any, len(cc))
	for i, k := range cc {
		keys[i] = k
	}
	return amqp.Table{"CC": keys}
}

// String describes b for test messages, without credentials.
func (b Broker) String() string {
	u, err := url.Parse(b.URL)
	if err != nil {
		return "(unparsable URL)"
	}
	return fmt.Sprintf("%s://%s", u.Scheme, u.Host)
}

// RemoveBinding removes the binding of queue to exchange with routingKey
// (and no arguments) on the default broker, inside the broker as an
// operator's `rabbitmqctl eval` would: neither AMQP nor the management API
// may touch an exclusive queue of another connection, such as the
// service's. The names may not hold `"` or `\`.
func RemoveBinding(tb testing.TB, exchange, queue, routingKey string) {
	tb.Helper()
	for _, s := range []string{exchange, queue, routingKey} {
		if strings.ContainsAny(s, `"\`) {
			tb.Fatalf("RemoveBinding: %q holds a quote or a backslash", s)
		}
	}
	expr := fmt.Sprintf(`rabbit_binding:remove({binding, {resource, <<"/">>, exchange, <<"%s">>}, <<"%s">>, {resource, <<"/">>, queue, <<"%s">>}, []}, <<"eventsproxy-test">>).`,
		exchange, routingKey, queue)
	if out := strings.TrimSpace(Ctl(tb, "eval", expr)); out != "ok" {
		tb.Fatalf("remove binding %s -[%s]-> %s: %s", exchange, routingKey, queue, out)
	}
}
