package server_test

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"eventsproxy/internal/config"
	"eventsproxy/internal/membroker"
	"eventsproxy/internal/server"
	"eventsproxy/internal/sse"
	"eventsproxy/internal/testcert"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// run starts the service on an in-process broker with args (dev's flags)
// and returns its URL; it stops at the end of the test.
func run(t *testing.T, mb *membroker.Broker, args ...string) string {
	t.Helper()
	cfg, err := config.Load(config.Dev, append([]string{"--listen", "127.0.0.1:0"}, args...), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- server.Run(ctx, cfg, mb, ln, slog.New(slog.NewTextHandler(io.Discard, nil)), func(u string) { ready <- u })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server.Run: %v", err)
		}
	})
	select {
	case u := <-ready:
		return u
	case err := <-done:
		t.Fatalf("server.Run ended: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("server not ready within 10s")
	}
	return ""
}

// TestHTTP2OverTLS serves with --tls-cert/--tls-key and streams to Go's
// HTTP/2 client.
func TestHTTP2OverTLS(t *testing.T) {
	certFile, keyFile, pool := testcert.Write(t)
	mb := membroker.New()
	mb.DeclareExchange("x")
	u := run(t, mb, "--tls-cert", certFile, "--tls-key", keyFile)
	if !strings.HasPrefix(u, "https://") {
		t.Fatalf("URL %q, want https", u)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u+"/api/events/v1/connect/?bindings="+url.QueryEscape(`{"bindings":[{"exchange":"x","routingKeyPattern":"#"}]}`), nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusOK {
		t.Fatalf("got %s %d, want HTTP/2 200", resp.Proto, resp.StatusCode)
	}
	r := sse.NewReader(resp.Body)
	if ev, err := r.Next(); err != nil || ev.Kind != "ready" {
		t.Fatalf("first event %q (%v)", ev.Kind, err)
	}
	if err := mb.Publish("x", "a.b", nil, []byte(`{"over":"h2"}`)); err != nil {
		t.Fatal(err)
	}
	if ev, err := r.Next(); err != nil || ev.Kind != "message" || !strings.Contains(string(ev.Data), `"payload":{"over":"h2"}`) {
		t.Fatalf("got %q %s (%v)", ev.Kind, ev.Data, err)
	}
}

// TestOversizedRequestRefused checks that headers beyond the limit (a
// bindings query of 300 KiB) are refused before any handler runs.
func TestOversizedRequestRefused(t *testing.T) {
	u := run(t, membroker.New())
	resp, err := http.Get(u + "/api/events/v1/connect/?bindings=" + strings.Repeat("a", 300<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %d, want 431", resp.StatusCode)
	}
}
