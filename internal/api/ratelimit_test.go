package api_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"eventsproxy/internal/api"
	"eventsproxy/internal/binding"
	"eventsproxy/internal/broker"
	"eventsproxy/internal/brokertest"
	"eventsproxy/internal/metrics"
	"eventsproxy/internal/sse"
)

func TestConnectRate(t *testing.T) {
	t.Parallel()
	m := metrics.Discard()
	fb := &fakeBroker{connected: true, called: make(chan []binding.Binding, 16)}
	// One connect per 1000 s after a burst of 2: no token comes back while
	// the test runs, however slow the machine.
	h := api.NewHandler(api.Config{ConnectRate: 0.001, ConnectBurst: 2, TrustProxy: true, Metrics: m}, fb, slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv := httptest.NewServer(h)
	t.Cleanup(func() { closeServer(t, h, srv) })
	u := connectURL(srv.URL, `{"bindings":[{"exchange":"e","routingKeyPattern":"#"}]}`)
	from := func(ip string) http.Header { return http.Header{"X-Forwarded-For": {ip}} }

	for range 2 {
		if resp := openBlocked(t, u, from("192.0.2.1")); resp.StatusCode != http.StatusOK {
			t.Fatalf("connect within the burst refused: %d", resp.StatusCode)
		}
		<-fb.called
	}
	resp := openBlocked(t, u, from("192.0.2.1"))
	var body struct{ Code, Message string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("refusal body: %v", err)
	}
	retry, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	if resp.StatusCode != http.StatusTooManyRequests || body.Code != "TooManyConnectsFromAddress" || retry < 900 || retry > 1000 {
		t.Fatalf("got %d Retry-After %q %+v, want 429 TooManyConnectsFromAddress with Retry-After about 1000", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	// Another address has a bucket of its own; another address of the
	// same IPv6 /64 does not.
	if resp := openBlocked(t, u, from("192.0.2.2")); resp.StatusCode != http.StatusOK {
		t.Fatalf("another address refused: %d", resp.StatusCode)
	}
	<-fb.called
	for _, ip := range []string{"2001:db8::1", "2001:db8::2"} {
		if resp := openBlocked(t, u, from(ip)); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s refused: %d", ip, resp.StatusCode)
		}
		<-fb.called
	}
	if resp := openBlocked(t, u, from("2001:db8::3")); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("a third address of one /64: got %d, want 429", resp.StatusCode)
	}
	if resp := openBlocked(t, u, from("2001:db8:0:1::1")); resp.StatusCode != http.StatusOK {
		t.Fatalf("an address of another /64 refused: %d", resp.StatusCode)
	}
	<-fb.called
	if got := testutil.ToFloat64(m.StreamsRefused.WithLabelValues(metrics.RefusedConnectRate)); got != 2 {
		t.Errorf("refused for rate: %v, want 2", got)
	}
}

// TestReadyTimeout checks that a stream whose bindings are not ready in
// time gets the error a broker outage gets, and ends.
func TestReadyTimeout(t *testing.T) {
	t.Parallel()
	fb := &fakeBroker{connected: true} // Subscribe waits for ever
	h := api.NewHandler(api.Config{ReadyTimeout: 50 * time.Millisecond}, fb, slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv := httptest.NewServer(h)
	t.Cleanup(func() { closeServer(t, h, srv) })
	resp := get(t, connectURL(srv.URL, `{"bindings":[{"exchange":"e","routingKeyPattern":"#"}]}`), nil)
	r := sse.NewReader(resp.Body)
	ev, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	var text string
	_ = json.Unmarshal(ev.Data, &text)
	if ev.Kind != "error" || text != "The service is temporarily unavailable; please reconnect later." {
		t.Fatalf("got %q %q, want the unavailable error", ev.Kind, text)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("after the error: %v, want the end of the stream", err)
	}
}

// TestReadyTimeoutOnBroker is TestReadyTimeout on the broker, whose
// Subscribe starts the clock only when it must wait for a bind (here, one
// that never ends).
func TestReadyTimeoutOnBroker(t *testing.T) {
	d := holdingDialer{binding: make(chan struct{}, 1), release: make(chan struct{})}
	b := brokertest.Start(t, d, broker.Config{})
	t.Cleanup(func() { close(d.release) })
	h := api.NewHandler(api.Config{ReadyTimeout: 50 * time.Millisecond}, api.FromBroker(b), slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv := httptest.NewServer(h)
	t.Cleanup(func() { closeServer(t, h, srv) })
	resp := get(t, connectURL(srv.URL, `{"bindings":[{"exchange":"e","routingKeyPattern":"#"}]}`), nil)
	r := sse.NewReader(resp.Body)
	ev, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	var text string
	_ = json.Unmarshal(ev.Data, &text)
	if ev.Kind != "error" || text != "The service is temporarily unavailable; please reconnect later." {
		t.Fatalf("got %q %q, want the unavailable error", ev.Kind, text)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("after the error: %v, want the end of the stream", err)
	}
}
