//go:build integration

package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"eventsproxy/internal/broker"
	"eventsproxy/internal/config"
	"eventsproxy/internal/rabbittest"
	"eventsproxy/internal/server"
	"eventsproxy/internal/sse"
)

// These tests stop and start the RabbitMQ application of a node of their
// own, so they may run beside any other test.

// timed runs op, fails t if it fails, and returns how long it took.
func timed(t *testing.T, op func() error) time.Duration {
	t.Helper()
	start := time.Now()
	if err := op(); err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}

// lossWatch passes log records on and notes when the server logs that its
// broker connection is lost, and that it is connected.
type lossWatch struct {
	slog.Handler
	lost, connected chan time.Time
}

func (h *lossWatch) Handle(ctx context.Context, r slog.Record) error {
	var ch chan time.Time
	switch r.Message {
	case "broker connection lost":
		ch = h.lost
	case "broker connected":
		ch = h.connected
	}
	if ch != nil {
		select {
		case ch <- r.Time:
		default:
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h *lossWatch) WithAttrs(as []slog.Attr) slog.Handler {
	return &lossWatch{Handler: h.Handler.WithAttrs(as), lost: h.lost, connected: h.connected}
}

func (h *lossWatch) WithGroup(name string) slog.Handler {
	return &lossWatch{Handler: h.Handler.WithGroup(name), lost: h.lost, connected: h.connected}
}

type running struct {
	node      *rabbittest.Node
	lost      chan time.Time // when the server logged the loss of its broker connection
	connected chan time.Time // when it logged a (re)connection
	url       string
	prefix    string // of its queue's name
	queue     func() string
	cancel    context.CancelFunc
	done      chan error
}

// start runs the whole service in process against a RabbitMQ node of the
// test's own.
func start(t *testing.T) *running {
	t.Helper()
	node := rabbittest.StartNode(t)
	r := startOn(t, node.URL)
	r.node = node
	r.queue = func() string {
		qs := mainQueues(node.Queues(t, r.prefix))
		if len(qs) != 1 {
			t.Fatalf("queues of this process (besides side queues): %d, want 1", len(qs))
		}
		return qs[0].Name
	}
	return r
}

// startOn runs the whole service in process against the broker at amqpURL
// (a URL or a list of them), with a connection named after the test.
func startOn(t *testing.T, amqpURL string) *running {
	t.Helper()
	cfg, err := config.Load(config.Serve, []string{"--amqp-url", amqpURL, "--shutdown-timeout", "5s"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	prefix := rabbittest.Unique("eventsproxy-test/") + "/"
	d := broker.AMQP(broker.AMQPConfig{URL: cfg.AMQPURL, ConnectionName: "eventsproxy test " + t.Name(), QueuePrefix: prefix})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var out io.Writer = io.Discard
	if os.Getenv("TEST_LOG") != "" {
		out = os.Stderr
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{prefix: prefix, cancel: cancel, done: make(chan error, 1), lost: make(chan time.Time, 1), connected: make(chan time.Time, 1)}
	log := slog.New(&lossWatch{Handler: slog.NewTextHandler(out, nil), lost: r.lost, connected: r.connected})
	ready := make(chan string, 1)
	go func() { r.done <- server.Run(ctx, cfg, d, ln, log, func(u string) { ready <- u }) }()
	select {
	case r.url = <-ready:
	case err := <-r.done:
		t.Fatalf("server ended: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("server not ready within 30s")
	}
	return r
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("server.Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("server did not stop within 10s")
	}
}

type stream struct {
	resp   *http.Response
	events chan timedEvent
}

// timedEvent is an event and when the client read it.
type timedEvent struct {
	sse.Event
	at time.Time
}

func open(t *testing.T, base, exchange string) *stream {
	t.Helper()
	return openBinding(t, base, exchange, "#")
}

// openBinding opens a stream of one binding and waits for its ready.
func openBinding(t *testing.T, base, exchange, pattern string) *stream {
	t.Helper()
	return openWith(t, base, exchange, pattern, "")
}

// openWith opens a stream of one binding with more of the query (such as
// "&resume=1") and waits for its ready.
func openWith(t *testing.T, base, exchange, pattern, query string) *stream {
	t.Helper()
	s := connectWith(t, base, exchange, pattern, query)
	if ev := s.next(t, 30*time.Second); ev.Kind != "ready" {
		t.Fatalf("first event %q %s", ev.Kind, ev.Data)
	}
	return s
}

// connectWith is openWith without the wait for ready.
func connectWith(t *testing.T, base, exchange, pattern, query string) *stream {
	t.Helper()
	q, _ := json.Marshal(map[string]any{"bindings": []map[string]string{{"exchange": exchange, "routingKeyPattern": pattern}}})
	resp, err := http.Get(base + "/api/events/v1/connect/?bindings=" + url.QueryEscape(string(q)) + query)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		t.Fatalf("connect: %s", resp.Status)
	}
	t.Cleanup(func() { resp.Body.Close() })
	s := &stream{resp: resp, events: make(chan timedEvent, 16)}
	go s.read()
	return s
}

// read reads the stream's events into s.events until the stream ends.
func (s *stream) read() {
	defer close(s.events)
	r := sse.NewReader(s.resp.Body)
	for {
		ev, err := r.Next()
		if err != nil {
			return
		}
		s.events <- timedEvent{ev, time.Now()}
	}
}

// next returns the stream's next event other than a ping, which the
// stream's timer may send at any moment, however busy the machine.
func (s *stream) next(t *testing.T, d time.Duration) timedEvent {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				t.Fatal("stream ended")
			}
			if ev.Kind == "ping" {
				continue
			}
			return ev
		case <-deadline:
			t.Fatalf("no event within %v", d)
		}
	}
}

func status(t *testing.T, u string) (int, http.Header) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header
}

// expectUnavailable checks that each of streams gets the error of a lost
// broker connection, then ends, and returns the longest time from since to
// such an error.
func expectUnavailable(t *testing.T, streams []*stream, since time.Time) (slowest time.Duration) {
	t.Helper()
	for i, s := range streams {
		ev := s.next(t, 30*time.Second)
		if ev.Kind != "error" {
			t.Fatalf("stream %d: got %q %s, want error", i, ev.Kind, ev.Data)
		}
		var text string
		if err := json.Unmarshal(ev.Data, &text); err != nil || text != "The service is temporarily unavailable; please reconnect later." {
			t.Fatalf("stream %d: error text %s", i, ev.Data)
		}
		slowest = max(slowest, ev.at.Sub(since))
		if _, ok := <-s.events; ok {
			t.Fatalf("stream %d: an event after the error", i)
		}
	}
	return slowest
}

// TestFaultBrokerRestart stops the RabbitMQ application under open streams
// and starts it again: every stream gets an error and ends, the service
// refuses new streams and reports 503 on /__heartbeat__ while the broker is
// away, serves again as soon as it is back, and leaks nothing.
func TestFaultBrokerRestart(t *testing.T) {
	before := goleak.IgnoreCurrent()
	r := start(t)
	conn := r.node.Dial(t, "eventsproxy test publisher")
	ch := rabbittest.Channel(t, conn)
	ex := r.node.Exchange(t, ch, "eventsproxy-test/x/")
	const n = 20
	streams := make([]*stream, n)
	for i := range streams {
		streams[i] = open(t, r.url, ex)
	}

	took := timed(t, r.node.StopApp)
	var lost time.Time
	select {
	case lost = <-r.lost:
	case <-time.After(30 * time.Second):
		t.Fatal("the server did not notice the broker going away within 30s")
	}
	slowest := expectUnavailable(t, streams, lost)
	t.Logf("all %d streams got their error within %v of the server seeing the connection close (stop_app took %v)", n, slowest.Round(time.Microsecond), took.Round(time.Millisecond))

	if code, _ := status(t, r.url+"/__heartbeat__"); code != http.StatusServiceUnavailable {
		t.Fatalf("heartbeat with the broker away: %d, want 503", code)
	}
	if code, hdr := status(t, r.url+"/api/events/v1/connect/?bindings=%7B%7D"); code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" {
		t.Fatalf("connect with the broker away: %d Retry-After %q, want 503 with Retry-After", code, hdr.Get("Retry-After"))
	}

	<-r.connected // the first connection, at start
	took = timed(t, r.node.StartApp)
	back := time.Now()
	select {
	case <-r.connected:
	case <-time.After(30 * time.Second):
		t.Fatal("not connected again 30s after start_app")
	}
	if code, _ := status(t, r.url+"/__heartbeat__"); code != http.StatusOK {
		t.Fatalf("heartbeat after reconnecting: %d, want 200", code)
	}
	t.Logf("serving again %v after start_app returned (start_app took %v)", time.Since(back).Round(time.Millisecond), took.Round(time.Millisecond))

	// A new stream works on a fresh queue; the publisher's connection died
	// with the broker, so publish on a new one.
	conn2 := r.node.Dial(t, "eventsproxy test publisher 2")
	ch2 := rabbittest.Channel(t, conn2)
	ex2 := r.node.Exchange(t, ch2, "eventsproxy-test/x/")
	s := open(t, r.url, ex2)
	rabbittest.Publish(t, ch2, ex2, "k", nil, []byte(`"after"`))
	if ev := s.next(t, 10*time.Second); ev.Kind != "message" {
		t.Fatalf("after the restart: got %q %s", ev.Kind, ev.Data)
	}
	queue := r.queue()
	if bs := r.node.QueueBindings(t, queue); len(bs) != 1 {
		t.Fatalf("bindings of the new queue: %v, want the new stream's one", bs)
	}
	s.resp.Body.Close()
	r.stop(t)
	if qs := r.node.Queues(t, queue); len(qs) != 0 {
		t.Fatalf("queue left after shutdown: %v", qs)
	}
	conn.Close()
	conn2.Close()
	goleak.VerifyNone(t, before)
}

// TestFaultBrokerRestartResumable stops and starts the RabbitMQ application
// under resumable streams, plain ones, and a resumable stream whose client
// has left: the plain streams get their error and end; the resumable ones
// stay open and, once the broker is back and their bindings are bound on
// the new queue, get `gap` `broker` and every message published after it;
// two that lingered, taken over by a reconnect with their tokens, one
// during the outage and one after the restart, get the same.
func TestFaultBrokerRestartResumable(t *testing.T) {
	r := start(t)
	conn := r.node.Dial(t, "eventsproxy test publisher")
	ch := rabbittest.Channel(t, conn)
	// Durable, so that the exchange is there again after start_app; the
	// node goes with the test.
	ex := rabbittest.Unique("eventsproxy-test/durable/")
	if err := ch.ExchangeDeclare(ex, "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	const n = 5
	resumable := make([]*stream, n)
	for i := range resumable {
		resumable[i] = openWith(t, r.url, ex, "#", "&resume=1")
	}
	plain := make([]*stream, n)
	for i := range plain {
		plain[i] = open(t, r.url, ex)
	}
	// Resumable streams whose clients leave: they linger, with their
	// tokens.
	q, _ := json.Marshal(map[string]any{"bindings": []map[string]string{{"exchange": ex, "routingKeyPattern": "#"}}})
	query := r.url + "/api/events/v1/connect/?resume=1&bindings=" + url.QueryEscape(string(q))
	left := []*stream{openWith(t, r.url, ex, "#", "&resume=1"), openWith(t, r.url, ex, "#", "&resume=1")}
	rabbittest.Publish(t, ch, ex, "k", nil, []byte(`{"n":0}`))
	var last []string // the tokens of the message the clients that left processed
	for i, s := range append(append(left[:2:2], resumable...), plain...) {
		ev := s.next(t, 30*time.Second)
		if ev.Kind != "message" {
			t.Fatalf("stream %d before the restart: got %q %s, want message", i, ev.Kind, ev.Data)
		}
		if i < len(left) {
			last = append(last, ev.ID)
		}
	}
	for _, s := range left {
		s.resp.Body.Close()
	}

	took := timed(t, r.node.StopApp)
	select {
	case <-r.lost:
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not notice the broker going away")
	}
	for i, s := range plain {
		if ev := s.next(t, 30*time.Second+took); ev.Kind != "error" {
			t.Fatalf("plain stream %d: got %q %s, want error", i, ev.Kind, ev.Data)
		}
	}
	// Taken over while the broker is away: admitted, not refused. A new
	// resumable stream is admitted too, and waits for the broker.
	during := takeOver(t, query, last[0])
	fresh := connectWith(t, r.url, ex, "#", "&resume=1")
	<-r.connected // the first connection, at start
	timed(t, r.node.StartApp)
	select {
	case <-r.connected:
	case <-time.After(60 * time.Second):
		t.Fatal("not connected again 60s after start_app")
	}
	for i, s := range resumable {
		if ev := s.next(t, 60*time.Second); ev.Kind != "gap" || string(ev.Data) != `{"reason":"broker"}` {
			t.Fatalf("resumable stream %d after the restart: got %q %s, want gap broker", i, ev.Kind, ev.Data)
		}
	}
	// Every resumable stream has its gap, so its binding is on the new
	// queue: what is published now reaches it.
	if bs := r.node.QueueBindings(t, r.queue()); len(bs) == 0 {
		t.Fatal("no binding on the new queue at the gaps")
	}
	if ev := fresh.next(t, 60*time.Second); ev.Kind != "ready" {
		t.Fatalf("the stream that came during the outage: got %q %s, want ready", ev.Kind, ev.Data)
	}
	after := takeOver(t, query, last[1])
	for i, s := range []*stream{during, after} {
		if ev := s.next(t, 60*time.Second); ev.Kind != "gap" || string(ev.Data) != `{"reason":"broker"}` {
			t.Fatalf("takeover %d: got %q %s, want gap broker", i, ev.Kind, ev.Data)
		}
	}

	conn2 := r.node.Dial(t, "eventsproxy test publisher 2")
	ch2 := rabbittest.Channel(t, conn2)
	for i := 1; i <= 3; i++ {
		rabbittest.Publish(t, ch2, ex, "k", nil, []byte(fmt.Sprintf(`{"n":%d}`, i)))
	}
	for i, s := range append(resumable, during, after, fresh) {
		for want := 1; want <= 3; want++ {
			ev := s.next(t, 30*time.Second)
			var m struct{ Payload struct{ N int } }
			if err := json.Unmarshal(ev.Data, &m); ev.Kind != "message" || err != nil || m.Payload.N != want {
				t.Fatalf("resumable stream %d: got %q %s, want message %d", i, ev.Kind, ev.Data, want)
			}
		}
	}
	for _, s := range append(resumable, during, after, fresh) {
		s.resp.Body.Close()
	}
	r.stop(t)
	conn.Close()
	conn2.Close()
}

// takeOver reconnects to the resumable stream of connect URL u with token
// and waits for its ready.
func takeOver(t *testing.T, u, token string) *stream {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Last-Event-ID", token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("takeover: %v %v", resp, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	s := &stream{resp: resp, events: make(chan timedEvent, 16)}
	go s.read()
	if ev := s.next(t, 30*time.Second); ev.Kind != "ready" {
		t.Fatalf("takeover: got %q %s, want ready", ev.Kind, ev.Data)
	}
	return s
}
