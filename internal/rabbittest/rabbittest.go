package rabbittest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"eventsproxy/internal/randomname"
)

// URL returns the broker URL for tests: $AMQP_URL, else the local guest
// account.
func URL() string {
	if u := os.Getenv("AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

// ManagementURL returns the management API's base URL with credentials:
// $RABBITMQ_MANAGEMENT_URL, else the local guest account on port 15672.
func ManagementURL() string {
	if u := os.Getenv("RABBITMQ_MANAGEMENT_URL"); u != "" {
		return strings.TrimSuffix(u, "/")
	}
	return "http://guest:guest@127.0.0.1:15672"
}

// Unique returns prefix followed by random hex digits, for names that no
// other test or run shares.
func Unique(prefix string) string { return randomname.New(prefix) }

// Dial opens a named connection to the broker and closes it at cleanup. A
// broker that cannot be reached fails the test.
func Dial(tb testing.TB, name string) *amqp.Connection {
	tb.Helper()
	conn, err := amqp.DialConfig(URL(), amqp.Config{
		Properties: amqp.Table{"connection_name": name},
		Dial:       amqp.DefaultDial(5 * time.Second),
	})
	if err != nil {
		tb.Fatalf("RabbitMQ is required for integration tests (start it with `rabbitmq-server -detached`): %v", err)
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

// Exchange declares a topic exchange with a unique name under prefix and
// deletes it at cleanup (on a connection of its own, so it works whatever
// the test did to its channels).
func Exchange(tb testing.TB, ch *amqp.Channel, prefix string) string {
	tb.Helper()
	name := Unique(prefix)
	if err := ch.ExchangeDeclare(name, amqp.ExchangeTopic, false, false, false, false, nil); err != nil {
		tb.Fatalf("declare exchange %q: %v", name, err)
	}
	tb.Cleanup(func() {
		conn, err := amqp.Dial(URL())
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
	msg := amqp.Publishing{Body: body, ContentType: "application/json"}
	if cc != nil {
		arr := make([]interface{}, len(cc))
		for i, k := range cc {
			arr[i] = k
		}
		msg.Headers = amqp.Table{"CC": arr}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conf, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, false, false, msg)
	if err != nil {
		tb.Fatalf("publish to %q: %v", exchange, err)
	}
	ok, err := conf.WaitContext(ctx)
	if err != nil || !ok {
		tb.Fatalf("publish to %q not confirmed: ok=%v err=%v", exchange, ok, err)
	}
}

// mgmtClient keeps no idle connections, so that tests checking for leaked
// goroutines see none of ours.
var mgmtClient = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true},
}

// Binding is a binding as the management API lists it.
type Binding struct {
	Source          string `json:"source"`
	Destination     string `json:"destination"`
	DestinationType string `json:"destination_type"`
	RoutingKey      string `json:"routing_key"`
}

// Queue is a queue as the management API lists it.
type Queue struct {
	Name      string         `json:"name"`
	Exclusive bool           `json:"exclusive"`
	Arguments map[string]any `json:"arguments"`
}

// QueueBindings returns the bindings whose destination is queue (without the
// default exchange's implicit one).
func QueueBindings(tb testing.TB, queue string) []Binding {
	tb.Helper()
	var all []Binding
	getJSON(tb, "/api/queues/%2F/"+url.PathEscape(queue)+"/bindings", &all)
	var out []Binding
	for _, b := range all {
		if b.Source != "" {
			out = append(out, b)
		}
	}
	return out
}

// Queues returns the queues of the default vhost whose names start with prefix.
func Queues(tb testing.TB, prefix string) []Queue {
	tb.Helper()
	var all []Queue
	getJSON(tb, "/api/queues/%2F?columns=name,exclusive,arguments", &all)
	var out []Queue
	for _, q := range all {
		if strings.HasPrefix(q.Name, prefix) {
			out = append(out, q)
		}
	}
	return out
}

func getJSON(tb testing.TB, path string, v any) {
	tb.Helper()
	u, err := url.Parse(ManagementURL())
	if err != nil {
		tb.Fatalf("management URL: %v", err)
	}
	req, err := http.NewRequest(http.MethodGet, u.Scheme+"://"+u.Host+path, nil)
	if err != nil {
		tb.Fatalf("management request: %v", err)
	}
	if u.User != nil {
		pw, _ := u.User.Password()
		req.SetBasicAuth(u.User.Username(), pw)
	}
	resp, err := mgmtClient.Do(req)
	if err != nil {
		tb.Fatalf("RabbitMQ's management API is required (rabbitmq-plugins enable rabbitmq_management): %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		tb.Fatalf("GET %s: decode: %v", path, err)
	}
}

// String returns a short description of b for test messages.
func (b Binding) String() string {
	return fmt.Sprintf("%s -[%s]-> %s", b.Source, b.RoutingKey, b.Destination)
}

// Connection is a client connection as the management API lists it.
type Connection struct {
	// Name is the broker's name for the connection ("host:port -> host:port").
	Name             string `json:"name"`
	ClientProperties struct {
		// ConnectionName is the name the client gave itself.
		ConnectionName string `json:"connection_name"`
	} `json:"client_properties"`
}

// Connections returns the client connections that the management API lists.
// It lists a new connection only after a few seconds (its statistics
// interval).
func Connections(tb testing.TB) []Connection {
	tb.Helper()
	var out []Connection
	getJSON(tb, "/api/connections?columns=name,client_properties", &out)
	return out
}

// CloseConnection closes every connection whose client-given name is
// connectionName through the management API, as a broker outage would. It
// waits up to within for the API to list such a connection, and fails the
// test when none shows up.
func CloseConnection(tb testing.TB, connectionName string, within time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for {
		var names []string
		for _, c := range Connections(tb) {
			if c.ClientProperties.ConnectionName == connectionName {
				names = append(names, c.Name)
			}
		}
		if len(names) > 0 {
			for _, name := range names {
				deleteConnection(tb, name)
			}
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("no connection named %q listed by the management API within %v", connectionName, within)
		}
		time.Sleep(100 * time.Millisecond) // the API offers nothing to wait on
	}
}

// deleteConnection closes the connection the broker names name. One that is
// gone already is not an error.
func deleteConnection(tb testing.TB, name string) {
	tb.Helper()
	u, err := url.Parse(ManagementURL())
	if err != nil {
		tb.Fatalf("management URL: %v", err)
	}
	path := "/api/connections/" + url.PathEscape(name)
	req, err := http.NewRequest(http.MethodDelete, u.Scheme+"://"+u.Host+path, nil)
	if err != nil {
		tb.Fatalf("management request: %v", err)
	}
	if u.User != nil {
		pw, _ := u.User.Password()
		req.SetBasicAuth(u.User.Username(), pw)
	}
	req.Header.Set("X-Reason", "eventsproxy test: simulated outage")
	resp, err := mgmtClient.Do(req)
	if err != nil {
		tb.Fatalf("RabbitMQ's management API is required (rabbitmq-plugins enable rabbitmq_management): %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNotFound {
		tb.Fatalf("DELETE %s: %s", path, resp.Status)
	}
}
