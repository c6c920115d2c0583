//go:build integration

package e2e

import (
	"encoding/json"
	"net/http"
	"testing"

	"eventsproxy/internal/broker"
	"eventsproxy/internal/rabbittest"
	"eventsproxy/internal/sse"
)

// TestSIGTERMDrains sends SIGTERM to the real binary under open streams:
// each stream gets an `error` event and ends, the process exits 0, and the
// broker holds no queue of the process afterwards.
func TestSIGTERMDrains(t *testing.T) {
	prefix := rabbittest.Unique("eventsproxy-e2e/") + "/"
	p := startProxy(t, "--queue-prefix", prefix)
	ex := newExchange(t)
	if qs := rabbittest.Queues(t, prefix); len(qs) != broker.QueuesPerConnection {
		t.Fatalf("queues of the proxy: %d, want %d", len(qs), broker.QueuesPerConnection)
	}

	const n = 5
	readers := make([]*sse.Reader, n)
	for i := range readers {
		resp, err := http.Get(connectURL(t, p.URL, binding{Exchange: ex.Name, RoutingKeyPattern: "#"}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		readers[i] = sse.NewReader(resp.Body)
		if ev, err := readers[i].Next(); err != nil || ev.Kind != "ready" {
			t.Fatalf("stream %d: first event %q (%v)", i, ev.Kind, err)
		}
	}

	// stop sends SIGTERM, waits for the exit and fails the test unless it
	// is 0 within proxyStopTimeout.
	p.stop(t)
	for i, r := range readers {
		ev, err := r.Next()
		var text string
		if err != nil || ev.Kind != "error" || json.Unmarshal(ev.Data, &text) != nil || text != "The server is shutting down; please reconnect." {
			t.Fatalf("stream %d on SIGTERM: %q %s (%v), want the shutdown error", i, ev.Kind, ev.Data, err)
		}
		if _, err := r.Next(); err == nil {
			t.Fatalf("stream %d: an event after the error", i)
		}
	}
	if qs := rabbittest.Queues(t, prefix); len(qs) != 0 {
		t.Fatalf("queues of the proxy after exit: %v", qs)
	}
}
