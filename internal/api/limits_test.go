package api_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"eventsproxy/internal/api"
	"eventsproxy/internal/binding"
	"eventsproxy/internal/metrics"
)

// openBlocked opens a stream whose Subscribe blocks (see fakeBroker), so it
// holds its slot until the test ends.
func openBlocked(t *testing.T, u string, header http.Header) *http.Response {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	req.Header = header
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestConnectionLimits(t *testing.T) {
	t.Parallel()
	m := metrics.Discard()
	fb := &fakeBroker{connected: true, called: make(chan []binding.Binding, 16)}
	h := api.NewHandler(api.Config{MaxConnections: 3, MaxConnectionsPerIP: 2, TrustProxy: true, Metrics: m}, fb, slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv := httptest.NewServer(h)
	t.Cleanup(func() { closeServer(t, h, srv) })
	u := connectURL(srv.URL, `{"bindings":[{"exchange":"e","routingKeyPattern":"#"}]}`)
	from := func(ip string) http.Header {
		// The client's own claim comes first; the proxy's entry is last.
		return http.Header{"X-Forwarded-For": {"203.0.113.99, " + ip}}
	}

	expectRefusal := func(resp *http.Response, status int) {
		t.Helper()
		var body struct{ Code, Message string }
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatalf("refusal body: %v", err)
		}
		if resp.StatusCode != status || resp.Header.Get("Retry-After") == "" || body.Code == "" || body.Message == "" {
			t.Fatalf("got %d Retry-After %q body %+v, want %d with Retry-After and a JSON body", resp.StatusCode, resp.Header.Get("Retry-After"), body, status)
		}
	}
	for _, ip := range []string{"192.0.2.1", "192.0.2.1"} {
		if resp := openBlocked(t, u, from(ip)); resp.StatusCode != http.StatusOK {
			t.Fatalf("stream from %s refused: %d", ip, resp.StatusCode)
		}
		<-fb.called
	}
	expectRefusal(openBlocked(t, u, from("192.0.2.1")), http.StatusTooManyRequests)
	if resp := openBlocked(t, u, from("192.0.2.2")); resp.StatusCode != http.StatusOK {
		t.Fatalf("stream from another address refused: %d", resp.StatusCode)
	}
	<-fb.called
	expectRefusal(openBlocked(t, u, from("192.0.2.3")), http.StatusServiceUnavailable)

	if got := testutil.ToFloat64(m.StreamsRefused.WithLabelValues(metrics.RefusedMaxConnectionsPerIP)); got != 1 {
		t.Errorf("refused per address: %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.StreamsRefused.WithLabelValues(metrics.RefusedMaxConnections)); got != 1 {
		t.Errorf("refused in all: %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.StreamsOpen); got != 3 {
		t.Errorf("streams open: %v, want 3", got)
	}
}
