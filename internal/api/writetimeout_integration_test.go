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

// TestStalledClientIsDropped checks that a client that stops reading is
// dropped once a write has waited WriteTimeout, and that it held no more
// than its bounded buffer meanwhile.
func TestStalledClientIsDropped(t *testing.T) {
	p := startProxy(t, api.Config{WriteTimeout: 300 * time.Millisecond}, broker.Config{ClientBuffer: 10})
	conn := rabbittest.Dial(t, "eventsproxy test "+t.Name())
	ch := rabbittest.Channel(t, conn)
	ex := rabbittest.Exchange(t, ch, "eventsproxy-test/x/")
	bs := []binding.Binding{{Exchange: ex, RoutingKeyPattern: "#"}}
	resume := make(chan struct{})
	stalled := open(t, p.URL, bs, resume)
	reader := open(t, p.URL, bs, nil)
	reader.expect("ready")

	filler := strings.Repeat("x", 64<<10)
	const n = 400
	for i := range n {
		rabbittest.Publish(t, ch, ex, "k", nil, fmt.Appendf(nil, `{"n":%d,"pad":%q}`, i, filler))
	}
	readAll(t, reader, n)

	ended := p.Metrics.StreamsEnded.WithLabelValues("write")
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(ended) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the stalled stream was not dropped within 10s")
		}
		// Publishing keeps the stalled stream's writer trying.
		rabbittest.Publish(t, ch, ex, "k", nil, []byte(`{}`))
	}
	if got := testutil.ToFloat64(p.Metrics.StreamsOpen); got != 1 {
		t.Fatalf("streams open after the drop: %v, want 1 (the reader)", got)
	}
	// What the stalled client gets now is what sat in socket buffers; then
	// the stream ends without a word, as there is no one to tell.
	close(resume)
	timeout := time.After(10 * time.Second)
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
