//go:build integration

package api_test

import (
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

// TestStalledClientIsDropped checks, on RabbitMQ, that a client that stops
// reading is dropped once a write has waited WriteTimeout. (The unit tests
// check the timing on a fake clock, with a reading client beside it.)
func TestStalledClientIsDropped(t *testing.T) {
	p := startProxy(t, api.Config{WriteTimeout: 300 * time.Millisecond}, broker.Config{ClientBuffer: 10})
	conn := rabbittest.Dial(t, "eventsproxy test "+t.Name())
	ch := rabbittest.Channel(t, conn)
	ex := rabbittest.Exchange(t, ch, "eventsproxy-test/x/")
	bs := []binding.Binding{{Exchange: ex, RoutingKeyPattern: "#"}}
	resume := make(chan struct{})
	stalled := open(t, p.URL, bs, resume)
	stalled.expect("ready")

	// Enough to fill the socket buffers between the server and the
	// stalled client many times over; then more, which keeps the stalled
	// stream's writer trying, until it is dropped.
	filler := strings.Repeat("x", 64<<10)
	ended := p.Metrics.StreamsEnded.WithLabelValues("write")
	deadline := time.Now().Add(time.Minute)
	for i := 0; testutil.ToFloat64(ended) < 1; i++ {
		if time.Now().After(deadline) {
			t.Fatal("the stalled stream was not dropped within a minute")
		}
		rabbittest.Publish(t, ch, ex, "k", nil, fmt.Appendf(nil, `{"n":%d,"pad":%q}`, i, filler))
	}
	if got := testutil.ToFloat64(p.Metrics.StreamsOpen); got != 0 {
		t.Fatalf("streams open after the drop: %v, want 0", got)
	}
	// What the stalled client gets now is what sat in socket buffers; then
	// the stream ends without a word, as there is no one to tell.
	close(resume)
	timeout := time.After(time.Minute)
	for {
		select {
		case _, ok := <-stalled.events:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("the stalled client's stream did not end")
		}
	}
}
