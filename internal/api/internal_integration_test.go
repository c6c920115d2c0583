//go:build integration

package api_test

import (
	"encoding/json"
	"testing"

	"eventsproxy/internal/api"
	"eventsproxy/internal/binding"
	"eventsproxy/internal/broker"
)

// TestFirehoseRefused checks that RabbitMQ's trace exchange, which every
// vhost has and which carries a copy of every message published once
// tracing is on, cannot be bound unless --allowed-exchanges names it.
func TestFirehoseRefused(t *testing.T) {
	t.Parallel()
	trace := []binding.Binding{{Exchange: "amq.rabbitmq.trace", RoutingKeyPattern: "publish.#"}}

	p := startProxy(t, api.Config{}, broker.Config{})
	c := open(t, p.URL, trace, nil)
	var text string
	if err := json.Unmarshal(c.expect("error").Data, &text); err != nil {
		t.Fatal(err)
	}
	if want := `bindings[0]: exchange "amq.rabbitmq.trace" is internal to RabbitMQ and not allowed.`; text != want {
		t.Fatalf("error %q, want %q", text, want)
	}

	named := startProxy(t, api.Config{Limits: binding.Limits{AllowedExchanges: []string{"amq.rabbitmq.trace"}}}, broker.Config{})
	open(t, named.URL, trace, nil).expect("ready")
}
