//go:build integration

package api_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"eventsproxy/internal/api"
	"eventsproxy/internal/binding"
	"eventsproxy/internal/broker"
	"eventsproxy/internal/rabbittest"
)

// TestBurstReachesABehindReader fills the socket buffers of a client that
// reads nothing, then publishes a burst of 400 messages of 8 KB; once the
// client reads, it gets every message of the burst: with the default
// buffer, a reader that falls behind by a burst of that size loses none of
// it. (With the old default of 50 messages it lost most of them.)
func TestBurstReachesABehindReader(t *testing.T) {
	p := startProxy(t, api.Config{WriteTimeout: time.Hour}, broker.Config{})
	conn := rabbittest.Dial(t, "eventsproxy test "+t.Name())
	ch := rabbittest.Channel(t, conn)
	ex := rabbittest.Exchange(t, ch, "eventsproxy-test/x/")
	resume := make(chan struct{})
	c := open(t, p.URL, []binding.Binding{{Exchange: ex, RoutingKeyPattern: "fill"}, {Exchange: ex, RoutingKeyPattern: "burst"}}, resume)
	c.expect("ready")
	// More than the socket buffers between the server and the client
	// hold, so that the burst waits in the stream's buffer.
	fill := []byte(`{"fill":"` + strings.Repeat("x", 64<<10) + `"}`)
	for range 320 {
		rabbittest.Publish(t, ch, ex, "fill", nil, fill)
	}
	const n = 400
	pad := strings.Repeat("x", 8<<10)
	for i := range n {
		rabbittest.Publish(t, ch, ex, "burst", nil, fmt.Appendf(nil, `{"n":%d,"pad":%q}`, i, pad))
	}
	close(resume)
	received, dropped := 0, 0
	for received < n {
		ev := c.next(eventWait)
		switch ev.Kind {
		case "overflow":
			// Of the filler, which is older.
			var o struct{ Dropped int }
			_ = json.Unmarshal(ev.Data, &o)
			dropped += o.Dropped
		case "message":
			m := decodeMessage(t, ev)
			if m.RoutingKey != "burst" {
				if received > 0 {
					t.Fatalf("filler after message %d of the burst", received)
				}
				continue
			}
			var payload struct{ N int }
			if err := json.Unmarshal(m.Payload, &payload); err != nil || payload.N != received {
				t.Fatalf("burst message %d where %d was due (%v): the burst lost messages", payload.N, received, err)
			}
			received++
		case "ping":
		default:
			t.Fatalf("unexpected event %q", ev.Kind)
		}
	}
	t.Logf("the whole burst of %d arrived; %d of the filler dropped before it", n, dropped)
}

// TestStalledStreamHoldsItsByteBudget stalls a client with a buffer of many
// messages but few bytes: the stream holds no more than its byte budget
// (and one message), and is told what it lost.
func TestStalledStreamHoldsItsByteBudget(t *testing.T) {
	const budget = 1 << 20
	p := startProxy(t, api.Config{WriteTimeout: time.Hour}, broker.Config{ClientBuffer: 100000, ClientBufferBytes: budget})
	conn := rabbittest.Dial(t, "eventsproxy test "+t.Name())
	ch := rabbittest.Channel(t, conn)
	ex := rabbittest.Exchange(t, ch, "eventsproxy-test/x/")
	resume := make(chan struct{})
	c := open(t, p.URL, []binding.Binding{{Exchange: ex, RoutingKeyPattern: "#"}}, resume)
	// What is published before `ready` may or may not reach the stream.
	c.expect("ready")
	const n = 400
	pad := strings.Repeat("x", 64<<10)
	most := 0.0
	for i := range n {
		rabbittest.Publish(t, ch, ex, "k", nil, fmt.Appendf(nil, `{"n":%d,"pad":%q}`, i, pad))
		most = max(most, testutil.ToFloat64(p.Metrics.BufferedBytes))
	}
	if most > budget {
		t.Fatalf("the stalled stream held %v bytes, over its budget of %d", most, budget)
	}
	close(resume)
	received, dropped := readAll(t, c, n)
	if dropped == 0 {
		t.Fatalf("nothing dropped (received %d)", received)
	}
	t.Logf("received %d, dropped %d of %d; at most %v bytes buffered", received, dropped, n, most)
}

// TestTooLargeMessageIsDropped checks that a body over MaxMessageBytes is
// not delivered, and that the stream is told with an overflow before the
// next message.
func TestTooLargeMessageIsDropped(t *testing.T) {
	p := startProxy(t, api.Config{}, broker.Config{MaxMessageBytes: 1024})
	conn := rabbittest.Dial(t, "eventsproxy test "+t.Name())
	ch := rabbittest.Channel(t, conn)
	ex := rabbittest.Exchange(t, ch, "eventsproxy-test/x/")
	c := open(t, p.URL, []binding.Binding{{Exchange: ex, RoutingKeyPattern: "#"}}, nil)
	c.expect("ready")
	rabbittest.Publish(t, ch, ex, "k", nil, []byte(`{"n":0}`))
	rabbittest.Publish(t, ch, ex, "k", nil, fmt.Appendf(nil, `{"n":1,"pad":%q}`, strings.Repeat("x", 1024)))
	rabbittest.Publish(t, ch, ex, "k", nil, []byte(`{"n":2}`))
	if received, dropped := readAll(t, c, 3); received != 2 || dropped != 1 {
		t.Fatalf("received %d, dropped %d; want 2, 1", received, dropped)
	}
	if got := testutil.ToFloat64(p.Metrics.MessagesTooLarge); got != 1 {
		t.Fatalf("messages too large: %v, want 1", got)
	}
}
