package listen

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"eventsproxy/internal/api"
	"eventsproxy/internal/binding"
	"eventsproxy/internal/broker"
	"eventsproxy/internal/brokertest"
	"eventsproxy/internal/membroker"
)

// cuttable is a transport whose connections the test can cut, as a
// network failure would.
type cuttable struct {
	http.Transport
	mu    sync.Mutex
	conns []net.Conn
}

func newCuttable() *cuttable {
	c := &cuttable{}
	c.DisableKeepAlives = true
	c.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			c.mu.Lock()
			c.conns = append(c.conns, conn)
			c.mu.Unlock()
		}
		return conn, err
	}
	return c
}

// cut closes every connection made so far.
func (c *cuttable) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		conn.Close()
	}
	c.conns = nil
}

// TestRunResumeAgainstTheService runs listen --resume against the service
// on the in-process broker: a cut connection is resumed without a loss or a
// duplicate and without a gap, and a lost broker connection is a gap
// warning after which messages go on.
func TestRunResumeAgainstTheService(t *testing.T) {
	mb := membroker.New()
	mb.DeclareExchange("amq.topic")
	b := brokertest.Start(t, mb, broker.Config{MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	h := api.NewHandler(api.Config{}, api.FromBroker(b), slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv := httptest.NewServer(h)
	defer func() {
		h.Shutdown()
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.Wait(ctx); err != nil {
			t.Error(err)
		}
	}()
	publish := func(n string) {
		t.Helper()
		if err := mb.Publish("amq.topic", "a.b", nil, []byte(`{"n":`+n+`}`)); err != nil {
			t.Fatal(err)
		}
	}

	tr := newCuttable()
	defer tr.CloseIdleConnections()
	stdout, stderr := newNotifyBuffer(), newNotifyBuffer()
	opts := &Options{URL: srv.URL, Bindings: []binding.Binding{{Exchange: "amq.topic", RoutingKeyPattern: "a.#"}},
		Resume: true, Count: 4, Client: &http.Client{Transport: tr}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, opts, stdout, stderr) }()

	stderr.waitFor(t, "listening: 1 binding\n")
	publish("1")
	stdout.waitFor(t, `{"n":1}`)
	tr.cut()
	publish("2") // while the client is away, or just back
	stderr.waitFor(t, "listening again: 1 binding\n")
	stdout.waitFor(t, `{"n":2}`)

	mb.Disconnect()
	stderr.waitFor(t, "warning: messages may be missing here (gap: broker)\n")
	publish("3")
	publish("4")
	if err := <-done; err != nil {
		t.Fatalf("Run: %v (stderr %q)", err, stderr.String())
	}
	var ns []string
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		i := strings.Index(line, `"payload":`)
		ns = append(ns, line[i+len(`"payload":`):len(line)-1])
	}
	if got := strings.Join(ns, " "); got != `{"n":1} {"n":2} {"n":3} {"n":4}` {
		t.Errorf("messages %s, want 1 to 4 once each, in order", got)
	}
	if n := strings.Count(stderr.String(), "gap:"); n != 1 {
		t.Errorf("%d gaps, want the broker's alone; stderr %q", n, stderr.String())
	}
}
