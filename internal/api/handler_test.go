package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"eventsproxy/internal/api"
	"eventsproxy/internal/binding"
	"eventsproxy/internal/broker"
	"eventsproxy/internal/brokertest"
	"eventsproxy/internal/sse"
)

// fakeBroker stands in for the broker where a test never gets a
// subscription: Subscribe blocks until ctx is done or returns err.
type fakeBroker struct {
	connected bool
	err       error
	called    chan []binding.Binding
}

func (f *fakeBroker) Subscribe(ctx context.Context, bs []binding.Binding, _ broker.SubscribeOptions) (api.Subscription, error) {
	if f.called != nil {
		f.called <- bs
	}
	if f.err != nil {
		return nil, f.err
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

func (f *fakeBroker) Connected() bool { return f.connected }

func newServer(t *testing.T, b api.Broker) *httptest.Server {
	t.Helper()
	h := api.NewHandler(api.Config{}, b, slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv := httptest.NewServer(h)
	t.Cleanup(func() { closeServer(t, h, srv) })
	return srv
}

// closeServer ends the streams of h and stops srv, and fails the test if
// a stream outlives it by 10s.
func closeServer(t testing.TB, h *api.Handler, srv *httptest.Server) {
	t.Helper()
	h.Shutdown()
	srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Wait(ctx); err != nil {
		t.Errorf("streams still open 10s after shutdown: %v", err)
	}
}

func connectURL(base string, query string) string {
	return base + "/api/events/v1/connect/?bindings=" + url.QueryEscape(query)
}

func get(t *testing.T, u string, header http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestLastEventIDGets204(t *testing.T) {
	t.Parallel()
	srv := newServer(t, &fakeBroker{connected: true})
	for _, path := range []string{"/api/events/v1/connect/", "/api/events/v1/connect"} {
		resp := get(t, srv.URL+path+"?bindings="+url.QueryEscape(`{"bindings":[]}`), http.Header{"Last-Event-Id": {"-"}})
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusNoContent || len(body) != 0 || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Fatalf("%s with Last-Event-ID: got %d %q (CORS %q), want 204, no body and the CORS header", path, resp.StatusCode, body, resp.Header.Get("Access-Control-Allow-Origin"))
		}
	}
}

func TestBadBindingsGetErrorEvent(t *testing.T) {
	t.Parallel()
	srv := newServer(t, &fakeBroker{connected: true, err: errors.New("must not be called")})
	cases := []struct {
		name, query, want string
	}{
		{"extra key", `{"bindings":[],"x":1}`, "The json query should have only one key i.e. `bindings`."},
		{"not an array", `{"bindings":"x"}`, "Bindings must be an array of {exchange, routingKeyPattern}"},
		{"missing field", `{"bindings":[{"exchange":"e"}]}`, "Binding must include `exchange` and `routingKeyPattern` fields"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp := get(t, connectURL(srv.URL, tc.query), nil)
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
				t.Fatalf("got %d %q, want 200 text/event-stream", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			r := sse.NewReader(resp.Body)
			ev, err := r.Next()
			if err != nil {
				t.Fatal(err)
			}
			var text string
			if err := json.Unmarshal(ev.Data, &text); err != nil {
				t.Fatalf("error data %q is not a JSON string: %v", ev.Data, err)
			}
			if ev.Kind != "error" || text != tc.want || ev.ID != "-" {
				t.Fatalf("got event %q %q id %q, want error %q id -", ev.Kind, text, ev.ID, tc.want)
			}
			if _, err := r.Next(); err != io.EOF {
				t.Fatalf("after the error event: got %v, want the end of the stream", err)
			}
		})
	}
}

// TestHeadersFlushedAtOnce checks that a client gets the response headers
// while its bindings are still being set up.
func TestHeadersFlushedAtOnce(t *testing.T) {
	t.Parallel()
	fb := &fakeBroker{connected: true, called: make(chan []binding.Binding, 1)}
	srv := newServer(t, fb)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, connectURL(srv.URL, `{"bindings":[{"exchange":"e","routingKeyPattern":"#"}]}`), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	want := map[string]string{
		"Content-Type":                "text/event-stream",
		"Cache-Control":               "no-cache",
		"Access-Control-Allow-Origin": "*",
		"X-Accel-Buffering":           "no",
	}
	for k, v := range want {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("header %s: got %q, want %q", k, got, v)
		}
	}
	select {
	case bs := <-fb.called:
		if len(bs) != 1 || bs[0].Exchange != "e" {
			t.Fatalf("subscribed with %v", bs)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Subscribe not called")
	}
}

func TestUnavailableRefusedBeforeStream(t *testing.T) {
	t.Parallel()
	srv := newServer(t, &fakeBroker{connected: false})
	resp := get(t, connectURL(srv.URL, `{"bindings":[{"exchange":"e","routingKeyPattern":"#"}]}`), nil)
	var body struct{ Code, Message string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || body.Code == "" || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("got %d Retry-After %q body %+v, want 503 with Retry-After and a JSON body", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	hb := get(t, srv.URL+"/__heartbeat__", nil)
	if hb.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("heartbeat with the broker down: got %d, want 503", hb.StatusCode)
	}
}

func TestInternalErrorsSayNothingOfTheCause(t *testing.T) {
	t.Parallel()
	secret := errors.New("dial amqp://user:hunter2@10.0.0.1:5672: connection refused")
	srv := newServer(t, &fakeBroker{connected: true, err: secret})
	resp := get(t, connectURL(srv.URL, `{"bindings":[{"exchange":"e","routingKeyPattern":"#"}]}`), nil)
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), `data: "Unknown Internal Error"`) || strings.Contains(string(body), "hunter2") || strings.Contains(string(body), "10.0.0.1") {
		t.Fatalf("stream %q must carry only the generic error", body)
	}
}

func TestHealthAndNotFound(t *testing.T) {
	t.Parallel()
	srv := newServer(t, &fakeBroker{connected: true})
	cases := []struct {
		path   string
		status int
		want   string
	}{
		{"/api/events/v1/ping", 200, `"alive":true`},
		{"/__lbheartbeat__", 200, `{}`},
		{"/__heartbeat__", 200, `"broker":"up"`},
		{"/__version__", 200, `"version":`},
		{"/api/events/v1/reference", 200, `"openapi":`},
		{"/no/such/thing", 404, `"code":"ResourceNotFound"`},
		{"/inspector/", 404, `"code":"ResourceNotFound"`},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			resp := get(t, srv.URL+tc.path, nil)
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.want) || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
				t.Fatalf("got %d %q (%s), want %d containing %q", resp.StatusCode, body, resp.Header.Get("Content-Type"), tc.status, tc.want)
			}
		})
	}
}

// holdingDialer's connections hold every bind until release is closed.
type holdingDialer struct {
	binding chan struct{} // receives when a bind starts
	release chan struct{}
}

func (d holdingDialer) Dial(context.Context) (broker.Conn, error) {
	return &holdingConn{d: d, closed: make(chan struct{})}, nil
}
func (d holdingDialer) String() string { return "holding broker" }

type holdingConn struct {
	d         holdingDialer
	closed    chan struct{}
	closeOnce sync.Once
}

func (c *holdingConn) Queue() string { return "q" }
func (c *holdingConn) Bind(exchange, pattern string) error {
	c.d.binding <- struct{}{}
	select {
	case <-c.d.release:
		return nil
	case <-c.closed:
		return broker.ErrConnectionLost
	}
}
func (c *holdingConn) Unbind(exchange, pattern string) error { return nil }
func (c *holdingConn) Consume(func(*broker.Message)) error {
	<-c.closed
	return broker.ErrConnectionLost
}
func (c *holdingConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return nil
}

// TestHeaderBeforeBind checks that a stream on the broker sends its
// response's header while its bind is under way, not with `ready`.
func TestHeaderBeforeBind(t *testing.T) {
	d := holdingDialer{binding: make(chan struct{}, 1), release: make(chan struct{})}
	b := brokertest.Start(t, d, broker.Config{})
	srv := newServer(t, api.FromBroker(b))
	got := make(chan *http.Response, 1)
	go func() {
		resp, err := http.Get(connectURL(srv.URL, `{"bindings":[{"exchange":"x","routingKeyPattern":"a.#"}]}`))
		if err != nil {
			t.Error(err)
			close(got)
			return
		}
		got <- resp
	}()
	select {
	case <-d.binding:
	case <-time.After(30 * time.Second):
		t.Fatal("no bind within 30s")
	}
	var resp *http.Response
	select {
	case resp = <-got:
	case <-time.After(30 * time.Second):
		close(d.release)
		t.Fatal("no response header within 30s while the bind is held")
	}
	if resp == nil {
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	close(d.release)
	ev, err := sse.NewReader(resp.Body).Next()
	if err != nil || ev.Kind != "ready" {
		t.Fatalf("first event %q, %v; want ready", ev.Kind, err)
	}
}
