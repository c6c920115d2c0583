//go:build integration

package api_test

import (
	"fmt"
	"strings"
	"testing"

	"eventsproxy/internal/api"
	"eventsproxy/internal/binding"
	"eventsproxy/internal/broker"
	"eventsproxy/internal/rabbittest"
)

// TestTwoReplicasShareOneBroker runs two replicas against the same
// RabbitMQ: clients on either get every message they bind to (the same
// message reaching clients of both), and each replica holds one queue.
func TestTwoReplicasShareOneBroker(t *testing.T) {
	replicas := []*proxy{
		startProxy(t, api.Config{}, broker.Config{}),
		startProxy(t, api.Config{}, broker.Config{}),
	}
	conn := rabbittest.Dial(t, "eventsproxy test "+t.Name())
	ch := rabbittest.Channel(t, conn)
	ex := rabbittest.Exchange(t, ch, "exchange/eventsproxy-test/v1/task-completed/")

	// On each replica: one client on every message, one on its own key.
	type pair struct{ all, own *client }
	pairs := make([]pair, len(replicas))
	for i, p := range replicas {
		pairs[i] = pair{
			all: open(t, p.URL, []binding.Binding{{Exchange: ex, RoutingKeyPattern: "#"}}, nil),
			own: open(t, p.URL, []binding.Binding{{Exchange: ex, RoutingKeyPattern: fmt.Sprintf("only.%d", i)}}, nil),
		}
		pairs[i].all.expect("ready")
		pairs[i].own.expect("ready")
	}
	keys := []string{"only.0", "only.1", "other"}
	for _, k := range keys {
		rabbittest.Publish(t, ch, ex, k, nil, []byte(`"`+k+`"`))
	}
	for i, pr := range pairs {
		for _, k := range keys {
			if m := decodeMessage(t, pr.all.expect("message")); m.RoutingKey != k {
				t.Fatalf("replica %d, client on #: got %q, want %q", i, m.RoutingKey, k)
			}
		}
		if m := decodeMessage(t, pr.own.expect("message")); m.RoutingKey != fmt.Sprintf("only.%d", i) {
			t.Fatalf("replica %d, client on its own key: got %q", i, m.RoutingKey)
		}
	}
	for i, p := range replicas {
		queue := p.Broker.QueueName()
		prefix := queue[:strings.LastIndex(queue, "/")+1]
		if qs := rabbittest.Queues(t, prefix); len(qs) != broker.QueuesPerConnection {
			t.Fatalf("replica %d holds %d queues, want %d", i, len(qs), broker.QueuesPerConnection)
		}
	}
}
