//go:build integration

package rabbittest_test

import (
	"os"
	"strings"
	"testing"

	"eventsproxy/internal/rabbittest"
)

func TestMain(m *testing.M) { rabbittest.Main(m) }

// TestDefaultBroker checks that without AMQP_URL the tests get a node of
// their own, never the broker on port 5672, and that it serves AMQP and its
// management API.
func TestDefaultBroker(t *testing.T) {
	b := rabbittest.Default()
	if os.Getenv("AMQP_URL") == "" && (strings.Contains(b.URL, ":5672/") || strings.Contains(b.ManagementURL, ":15672")) {
		t.Fatalf("the tests' own node is %s, %s: the system broker's ports", b.URL, b.ManagementURL)
	}
	conn := b.Dial(t, "rabbittest "+t.Name())
	ch := rabbittest.Channel(t, conn)
	q, err := ch.QueueDeclare(rabbittest.Unique("rabbittest/"), false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if qs := b.Queues(t, q.Name); len(qs) != 1 || !qs[0].Exclusive {
		t.Fatalf("the management API lists %v, want the exclusive queue %s", qs, q.Name)
	}
}
