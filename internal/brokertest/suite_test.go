package brokertest

import (
	"strings"
	"testing"
	"time"

	"eventsproxy/internal/binding"
	"eventsproxy/internal/broker"
	"eventsproxy/internal/membroker"
)

// TestWaitForBodyReportsOverflow replays what made the churn check fail:
// its reader is held back while more messages than the subscription's
// buffer holds are published on its key after its own, so the buffer drops
// its own message, oldest first. The wait must say so at once, not wait out
// its deadline and call the overflow a lost message.
func TestWaitForBodyReportsOverflow(t *testing.T) {
	mb := membroker.New()
	const ex = "exchange/test"
	mb.DeclareExchange(ex)
	b := Start(t, mb, broker.Config{ClientBuffer: 2})
	sub := subscribe(t, b, binding.Binding{Exchange: ex, RoutingKeyPattern: "k"})
	last := subscribe(t, b, binding.Binding{Exchange: ex, RoutingKeyPattern: "last"})
	for _, m := range [][2]string{{"k", "mine"}, {"k", "other-1"}, {"k", "other-2"}, {"last", "last"}} {
		if err := mb.Publish(ex, m[0], nil, []byte(m[1])); err != nil {
			t.Fatal(err)
		}
	}
	// The router takes messages in order: once the last has arrived, the
	// two after "mine" have pushed it out of sub's buffer.
	if err := waitForBody(last, "last"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := waitForBody(sub, "mine")
	if err == nil || !strings.Contains(err.Error(), "dropped") {
		t.Fatalf("waitForBody: got %v, want an error naming the drop", err)
	}
	if waited := time.Since(start); waited >= timeout {
		t.Fatalf("waitForBody took %v: it waited out its deadline", waited)
	}
}
