package rabbittest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

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

// String returns a short description of b for test messages.
func (b Binding) String() string {
	return fmt.Sprintf("%s -[%s]-> %s", b.Source, b.RoutingKey, b.Destination)
}

// Queue is a queue as the management API lists it.
type Queue struct {
	Name      string         `json:"name"`
	Exclusive bool           `json:"exclusive"`
	Arguments map[string]any `json:"arguments"`
	// Node is the cluster node that holds the queue.
	Node string `json:"node"`
}

// Connection is a client connection as the management API lists it.
type Connection struct {
	// Name is the broker's name for the connection ("host:port -> host:port").
	Name string `json:"name"`
	// Node is the cluster node the client is connected to.
	Node             string `json:"node"`
	ClientProperties struct {
		// ConnectionName is the name the client gave itself.
		ConnectionName string `json:"connection_name"`
	} `json:"client_properties"`
}

// QueueBindings lists queue's bindings on the default broker (see
// Broker.QueueBindings).
func QueueBindings(tb testing.TB, queue string) []Binding {
	tb.Helper()
	return Default().QueueBindings(tb, queue)
}

// Queues lists queues of the default broker (see Broker.Queues).
func Queues(tb testing.TB, prefix string) []Queue {
	tb.Helper()
	return Default().Queues(tb, prefix)
}

// Connections lists the default broker's connections (see
// Broker.Connections).
func Connections(tb testing.TB) []Connection {
	tb.Helper()
	return Default().Connections(tb)
}

// CloseConnection closes connections of the default broker (see
// Broker.CloseConnection).
func CloseConnection(tb testing.TB, connectionName string, within time.Duration) {
	tb.Helper()
	Default().CloseConnection(tb, connectionName, within)
}

// QueueBindings returns the bindings whose destination is queue (without the
// default exchange's implicit one).
func (b Broker) QueueBindings(tb testing.TB, queue string) []Binding {
	tb.Helper()
	var all []Binding
	b.getJSON(tb, "/api/queues/%2F/"+url.PathEscape(queue)+"/bindings", &all)
	var out []Binding
	for _, bd := range all {
		if bd.Source != "" {
			out = append(out, bd)
		}
	}
	return out
}

// Bindings returns every binding of the default vhost.
func (b Broker) Bindings(tb testing.TB) []Binding {
	tb.Helper()
	var out []Binding
	b.getJSON(tb, "/api/bindings/%2F", &out)
	return out
}

// Queues returns the queues of the default vhost whose names start with
// prefix.
func (b Broker) Queues(tb testing.TB, prefix string) []Queue {
	tb.Helper()
	var all []Queue
	b.getJSON(tb, "/api/queues/%2F?columns=name,exclusive,arguments,node", &all)
	var out []Queue
	for _, q := range all {
		if strings.HasPrefix(q.Name, prefix) {
			out = append(out, q)
		}
	}
	return out
}

// Connections returns the client connections that the management API
// lists. It lists a new connection only after its first statistics
// emission (a few seconds on a broker with the default interval).
func (b Broker) Connections(tb testing.TB) []Connection {
	tb.Helper()
	var out []Connection
	b.getJSON(tb, "/api/connections?columns=name,node,client_properties", &out)
	return out
}

// CloseConnection closes every connection whose client-given name is
// connectionName through the management API, as a broker outage would. It
// waits up to within for the API to list such a connection, and fails the
// test when none shows up.
func (b Broker) CloseConnection(tb testing.TB, connectionName string, within time.Duration) {
	tb.Helper()
	var names []string
	Poll(tb, fmt.Sprintf("a connection named %q listed by the management API", connectionName), within, func() (bool, string) {
		names = names[:0]
		for _, c := range b.Connections(tb) {
			if c.ClientProperties.ConnectionName == connectionName {
				names = append(names, c.Name)
			}
		}
		return len(names) > 0, "none listed"
	})
	for _, name := range names {
		b.deleteConnection(tb, name)
	}
}

// deleteConnection closes the connection the broker names name. One that is
// gone already is not an error.
func (b Broker) deleteConnection(tb testing.TB, name string) {
	tb.Helper()
	path := "/api/connections/" + url.PathEscape(name)
	req, err := managementRequest(b.ManagementURL, http.MethodDelete, path)
	if err != nil {
		tb.Fatalf("management request: %v", err)
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

func (b Broker) getJSON(tb testing.TB, path string, v any) {
	tb.Helper()
	req, err := managementRequest(b.ManagementURL, http.MethodGet, path)
	if err != nil {
		tb.Fatalf("management request: %v", err)
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

// managementRequest returns a request for path on the management API at
// base, whose credentials go in a header.
func managementRequest(base, method, path string) (*http.Request, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("management URL: %w", err)
	}
	req, err := http.NewRequest(method, u.Scheme+"://"+u.Host+path, nil)
	if err != nil {
		return nil, err
	}
	if u.User != nil {
		pw, _ := u.User.Password()
		req.SetBasicAuth(u.User.Username(), pw)
	}
	return req, nil
}
