package api_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"eventsproxy/internal/api"
	"eventsproxy/internal/broker"
	"eventsproxy/internal/brokertest"
	"eventsproxy/internal/membroker"
	"eventsproxy/internal/sse"
)

// memProxy is the API on the in-process broker, with one exchange "ex".
type memProxy struct {
	mb      *membroker.Broker
	handler *api.Handler
	srv     *httptest.Server
}

func startMemProxy(t *testing.T) *memProxy {
	t.Helper()
	mb := membroker.New()
	mb.DeclareExchange("ex")
	b := brokertest.Start(t, mb, broker.Config{})
	h := api.NewHandler(api.Config{}, api.FromBroker(b), slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv := httptest.NewServer(h)
	t.Cleanup(func() { closeServer(t, h, srv) })
	return &memProxy{mb: mb, handler: h, srv: srv}
}

// rawConnect sends a connect request for `#` on "ex" in the given HTTP
// version over a plain TCP connection and returns the parsed response.
func rawConnect(t *testing.T, base, proto string) (*http.Response, net.Conn) {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	q := url.QueryEscape(`{"bindings":[{"exchange":"ex","routingKeyPattern":"#"}]}`)
	if _, err := fmt.Fprintf(conn, "GET /api/events/v1/connect/?bindings=%s %s\r\nHost: %s\r\n\r\n", q, proto, u.Host); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, base, nil)
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp, conn
}

func expectEvent(t *testing.T, rd *sse.Reader, kind, dataPart string) {
	t.Helper()
	ev, err := rd.Next()
	if err != nil {
		t.Fatalf("waiting for %s: %v", kind, err)
	}
	if ev.Kind != kind || !strings.Contains(string(ev.Data), dataPart) {
		t.Fatalf("got %s %s, want %s containing %q", ev.Kind, ev.Data, kind, dataPart)
	}
}

// TestHijackedStreamWire checks what an HTTP/1.x client gets from a stream
// that the handler writes itself: net/http's header, a chunked body on
// HTTP/1.1 and a body that ends with the connection on HTTP/1.0, and a
// proper end of the body when the server ends the stream.
func TestHijackedStreamWire(t *testing.T) {
	for _, tc := range []struct {
		proto   string
		chunked bool
	}{
		{"HTTP/1.1", true},
		{"HTTP/1.0", false},
	} {
		t.Run(tc.proto, func(t *testing.T) {
			p := startMemProxy(t)
			resp, _ := rawConnect(t, p.srv.URL, tc.proto)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if got := len(resp.TransferEncoding) == 1 && resp.TransferEncoding[0] == "chunked"; got != tc.chunked {
				t.Fatalf("Transfer-Encoding %q, want chunked: %v", resp.TransferEncoding, tc.chunked)
			}
			if !resp.Close {
				t.Fatal("no Connection: close")
			}
			for k, want := range map[string]string{
				"Content-Type":                "text/event-stream",
				"Cache-Control":               "no-cache",
				"Access-Control-Allow-Origin": "*",
			} {
				if got := resp.Header.Get(k); got != want {
					t.Fatalf("%s: %q, want %q", k, got, want)
				}
			}
			if _, err := http.ParseTime(resp.Header.Get("Date")); err != nil {
				t.Fatalf("Date: %v", err)
			}
			rd := sse.NewReader(resp.Body)
			expectEvent(t, rd, "ready", "{}")
			if err := p.mb.Publish("ex", "a.b", nil, []byte(`{"n":1}`)); err != nil {
				t.Fatal(err)
			}
			expectEvent(t, rd, "message", `"payload":{"n":1}`)
			p.handler.Shutdown()
			expectEvent(t, rd, "error", "shutting down")
			// On HTTP/1.1 the body must end with its last chunk, which
			// net/http's reader reports as io.EOF (a cut connection would
			// be io.ErrUnexpectedEOF).
			if _, err := rd.Next(); err != io.EOF {
				t.Fatalf("after the error event: %v, want io.EOF", err)
			}
		})
	}
}

// TestWaitClosesStreamsAtDeadline checks that Wait, once its context ends,
// closes the connections of the streams still open and returns.
func TestWaitClosesStreamsAtDeadline(t *testing.T) {
	p := startMemProxy(t)
	resp, _ := rawConnect(t, p.srv.URL, "HTTP/1.1")
	rd := sse.NewReader(resp.Body)
	expectEvent(t, rd, "ready", "{}")
	// Without Shutdown the stream has no reason to end by itself.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := p.handler.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait: %v, want the context's deadline", err)
	}
	if _, err := rd.Next(); err != io.ErrUnexpectedEOF {
		t.Fatalf("after Wait: %v, want the connection cut (io.ErrUnexpectedEOF)", err)
	}
}

// gatedDialer dials mb, or fails as an unreachable broker does while down
// is set.
type gatedDialer struct {
	mb   *membroker.Broker
	down atomic.Bool
}

func (d *gatedDialer) Dial(ctx context.Context) (broker.Conn, error) {
	if d.down.Load() {
		return nil, errors.New("dial in-process broker: connection refused")
	}
	return d.mb.Dial(ctx)
}

func (d *gatedDialer) String() string { return d.mb.String() }

// TestResumableStreamWaitsOutAnOutage: on the in-process broker, cut and
// kept away, a new resumable stream is served (200, `retry:`) and waits;
// it gets `ready` once the broker is back, then what is published. A new
// stream without resume is refused with 503, as before.
func TestResumableStreamWaitsOutAnOutage(t *testing.T) {
	mb := membroker.New()
	mb.DeclareExchange("ex")
	d := &gatedDialer{mb: mb}
	b := brokertest.Start(t, d, broker.Config{MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	h := api.NewHandler(api.Config{}, api.FromBroker(b), slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv := httptest.NewServer(h)
	t.Cleanup(func() { closeServer(t, h, srv) })

	plain, _ := rawConnect(t, srv.URL, "HTTP/1.1")
	rd := sse.NewReader(plain.Body)
	expectEvent(t, rd, "ready", "{}")
	d.down.Store(true)
	mb.Disconnect()
	// The plain stream's error comes once the broker is seen to be gone.
	expectEvent(t, rd, "error", "temporarily unavailable")

	q := srv.URL + "/api/events/v1/connect/?bindings=" + url.QueryEscape(`{"bindings":[{"exchange":"ex","routingKeyPattern":"#"}]}`)
	if resp, err := http.Get(q); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a new stream without resume during the outage: %v %v, want 503", resp, err)
	} else {
		resp.Body.Close()
	}
	resp, err := http.Get(q + "&resume=1")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("a new resumable stream during the outage: %v %v, want 200", resp, err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if l, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(l, "retry: ") {
		t.Fatalf("first line %q %v, want the retry field", l, err)
	}
	if l, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(l, ":") {
		t.Fatalf("second line %q %v, want a comment", l, err)
	}
	d.down.Store(false)
	rd = sse.NewReader(br)
	ev, err := rd.Next()
	if err != nil || ev.Kind != "ready" || ev.ID == "-" || ev.ID == "" {
		t.Fatalf("got %q %s id %q %v, want ready with a token", ev.Kind, ev.Data, ev.ID, err)
	}
	if err := mb.Publish("ex", "a.b", nil, []byte(`{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	expectEvent(t, rd, "message", `"payload":{"n":1}`)
}
