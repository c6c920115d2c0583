package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"eventsproxy/internal/api"
	"eventsproxy/internal/binding"
	"eventsproxy/internal/broker"
	"eventsproxy/internal/metrics"
	"eventsproxy/internal/sse"
)

// The stream contract, on both transports, without a broker: a fake
// subscription feeds the stream, the client talks to the handler over
// in-memory connections, and everything runs in a synctest bubble, so
// pings and write timeouts happen on the bubble's clock, however busy the
// machine is.

// fakeSub is a subscription the test fills: a bounded buffer that drops
// its oldest message when full, as broker.Subscription does.
type fakeSub struct {
	size   int
	notify chan struct{}
	half   chan struct{}
	done   chan struct{}

	// resumable: asked for by a resumable stream (it may get a gap).
	resumable bool
	// props: asked for by a stream with properties=1.
	props bool

	mu        sync.Mutex
	buf       []*broker.Message
	dropped   int
	uncounted bool
	err       error
	closed    bool
	// gapped: a gap after the first gapAt messages of buf.
	gapped bool
	gapAt  int
}

func newFakeSub(size int) *fakeSub {
	return &fakeSub{size: size, notify: make(chan struct{}, 1), half: make(chan struct{}, 1), done: make(chan struct{})}
}

// push adds msgs at once, as the router would before the stream wakes up.
func (s *fakeSub) push(msgs ...*broker.Message) {
	s.mu.Lock()
	for _, m := range msgs {
		if len(s.buf) == s.size {
			s.buf = s.buf[1:]
			s.dropped++
			if s.gapped && s.gapAt > 0 {
				s.gapAt--
			}
		}
		s.buf = append(s.buf, m)
	}
	half := len(s.buf) >= (s.size+1)/2
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
	if half {
		select {
		case s.half <- struct{}{}:
		default:
		}
	}
}

// gap puts a gap after the buffered messages, as a surviving subscription
// gets once its bindings are back after a lost broker connection.
func (s *fakeSub) gap() {
	s.mu.Lock()
	if !s.gapped {
		s.gapped, s.gapAt = true, len(s.buf)
	}
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

func (s *fakeSub) TakeGap() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.gapped || s.gapAt > 0 {
		return false
	}
	s.gapped = false
	return true
}

// end ends the subscription as a lost broker connection does.
func (s *fakeSub) end(err error) {
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
	close(s.done)
}

func (s *fakeSub) Notify() <-chan struct{} { return s.notify }
func (s *fakeSub) Half() <-chan struct{}   { return s.half }
func (s *fakeSub) Done() <-chan struct{}   { return s.done }

func (s *fakeSub) Uncounted() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.uncounted
	s.uncounted = false
	return u
}

// lose marks a loss nobody could count, as the router does, with dropped
// counted besides.
func (s *fakeSub) lose(dropped int) {
	s.mu.Lock()
	s.uncounted = true
	s.dropped += dropped
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

func (s *fakeSub) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *fakeSub) TakeUpTo(dst []*broker.Message, maxBytes int) ([]*broker.Message, int) {
	s.mu.Lock()
	taken := 0
	limit := len(s.buf)
	if s.gapped {
		limit = s.gapAt
	}
	for ; limit > 0 && (taken == 0 || taken+s.buf[0].Size() <= maxBytes); limit-- {
		taken += s.buf[0].Size()
		dst = append(dst, s.buf[0])
		s.buf = s.buf[1:]
		if s.gapped {
			s.gapAt--
		}
	}
	left := len(s.buf) > 0 || s.gapped
	dropped := s.dropped
	s.dropped = 0
	s.mu.Unlock()
	if left {
		select {
		case s.notify <- struct{}{}:
		default:
		}
	}
	return dst, dropped
}

func (s *fakeSub) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
}

func (s *fakeSub) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// subBroker hands out fake subscriptions of size messages.
type subBroker struct {
	size int
	subs chan *fakeSub
	down atomic.Bool // the broker connection is down: Subscribe fails
	// refuse, when set, is Subscribe's error (a binding the broker
	// refused, say).
	refuse atomic.Pointer[error]
	// hold: Subscribe never confirms the bindings; it returns only when
	// its context ends. held counts such calls.
	hold atomic.Bool
	held atomic.Int32
}

func (b *subBroker) Subscribe(ctx context.Context, bs []binding.Binding, opts broker.SubscribeOptions) (api.Subscription, error) {
	if b.down.Load() {
		return nil, broker.ErrUnavailable
	}
	if err := b.refuse.Load(); err != nil {
		return nil, *err
	}
	if b.hold.Load() {
		b.held.Add(1)
		<-ctx.Done()
		return nil, ctx.Err()
	}
	sub := newFakeSub(b.size)
	sub.resumable = opts.Survive
	sub.props = opts.Properties
	b.subs <- sub
	return sub, nil
}

func (b *subBroker) Connected() bool { return !b.down.Load() }

// pipeListener accepts the server ends of in-memory connections.
type pipeListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 80} }

func (l *pipeListener) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// env is the handler served over in-memory connections, in one protocol.
type env struct {
	t       *testing.T
	proto   string
	h       *api.Handler
	m       *metrics.Metrics
	b       *subBroker
	srv     *http.Server
	ln      *pipeListener
	tr      *http.Transport
	served  chan error
	streams []*pipeClient
}

// protocols are the two transports a stream may have.
var protocols = []string{"HTTP/1.1", "HTTP/2"}

func newEnv(t *testing.T, proto string, cfg api.Config, size int) *env {
	if cfg.PingInterval == 0 {
		// Out of the way of tests that are not about pings.
		cfg.PingInterval = time.Hour
	}
	cfg.Metrics = metrics.Discard()
	e := &env{
		t:      t,
		proto:  proto,
		m:      cfg.Metrics,
		b:      &subBroker{size: size, subs: make(chan *fakeSub, 16)},
		ln:     &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})},
		served: make(chan error, 1),
	}
	e.h = api.NewHandler(cfg, e.b, slog.New(slog.NewTextHandler(io.Discard, nil)))
	var p http.Protocols
	if proto == "HTTP/2" {
		p.SetUnencryptedHTTP2(true)
	} else {
		p.SetHTTP1(true)
	}
	e.srv = &http.Server{Handler: e.h, Protocols: &p}
	e.tr = &http.Transport{DialContext: e.ln.dial, Protocols: &p}
	go func() { e.served <- e.srv.Serve(e.ln) }()
	return e
}

// close ends every stream and the server, and waits for them all.
func (e *env) close() {
	for _, c := range e.streams {
		c.close()
	}
	e.h.Shutdown()
	_ = e.srv.Close()
	<-e.served
	if err := e.h.Wait(context.Background()); err != nil {
		e.t.Error(err)
	}
	e.tr.CloseIdleConnections()
}

// pipeClient is one stream, read into events by a goroutine once resume is
// closed (at once if it is nil).
type pipeClient struct {
	t      *testing.T
	proto  string
	sub    *fakeSub
	body   io.ReadCloser
	cancel context.CancelFunc
	events chan sse.Event
	err    error // why the stream ended, once events is closed
}

func (e *env) open(resume <-chan struct{}) *pipeClient {
	e.t.Helper()
	c := e.connect(allOfEx, "", "", resume)
	c.sub = <-e.b.subs
	return c
}

// allOfEx is the bindings of the streams that tests open: `#` on "ex".
const allOfEx = `{"bindings":[{"exchange":"ex","routingKeyPattern":"#"}]}`

// connect sends a connect request for bindings (the query's JSON) with
// more of the query (such as "&resume=1"), and last as its Last-Event-ID
// unless it is "", and returns the stream, whose events a goroutine reads
// once resume is closed (at once if it is nil).
func (e *env) connect(bindings, query, last string, resume <-chan struct{}) *pipeClient {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, connectURL("http://proxy", bindings)+query, nil)
	if last != "" {
		req.Header.Set("Last-Event-ID", last)
	}
	resp, err := (&http.Client{Transport: e.tr}).Do(req)
	if err != nil {
		cancel()
		e.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		e.t.Fatalf("connect: %s", resp.Status)
	}
	c := &pipeClient{t: e.t, proto: resp.Proto, body: resp.Body, cancel: cancel, events: make(chan sse.Event, 1024)}
	go func() {
		defer close(c.events)
		if resume != nil {
			select {
			case <-resume:
			case <-ctx.Done():
				c.err = ctx.Err()
				return
			}
		}
		r := sse.NewReader(resp.Body)
		for {
			ev, err := r.Next()
			if err != nil {
				c.err = err
				return
			}
			c.events <- ev
		}
	}()
	e.streams = append(e.streams, c)
	return c
}

func (c *pipeClient) close() {
	c.cancel()
	c.body.Close()
	for range c.events {
	}
}

// next returns the next event; in the bubble, waiting for one that never
// comes is a deadlock, which fails the test.
func (c *pipeClient) next() sse.Event {
	c.t.Helper()
	ev, ok := <-c.events
	if !ok {
		c.t.Fatalf("%s: stream ended: %v", c.proto, c.err)
	}
	return ev
}

func (c *pipeClient) expect(kind, data string) {
	c.t.Helper()
	ev := c.next()
	if ev.Kind != kind || data != "" && string(ev.Data) != data || ev.ID != "-" {
		c.t.Fatalf("%s: got event %q %s id %q, want %q %s id -", c.proto, ev.Kind, ev.Data, ev.ID, kind, data)
	}
}

// expectEnd checks that the stream ends with no other event.
func (c *pipeClient) expectEnd() {
	c.t.Helper()
	if ev, ok := <-c.events; ok {
		c.t.Fatalf("%s: got event %q %s, want the end of the stream", c.proto, ev.Kind, ev.Data)
	}
	if !errors.Is(c.err, io.EOF) {
		c.t.Fatalf("%s: stream ended with %v, want EOF", c.proto, c.err)
	}
}

func message(n int, pad string) *broker.Message {
	return &broker.Message{Exchange: "ex", RoutingKey: "k", Body: fmt.Appendf(nil, `{"n":%d,"pad":%q}`, n, pad), Received: time.Now()}
}

// expectMessages checks that the next events are messages from to to-1.
func (c *pipeClient) expectMessages(from, to int) {
	c.t.Helper()
	for n := from; n < to; n++ {
		ev := c.next()
		var m struct{ Payload struct{ N int } }
		if err := json.Unmarshal(ev.Data, &m); ev.Kind != "message" || err != nil || m.Payload.N != n {
			c.t.Fatalf("%s: got event %q %.80s, want message %d", c.proto, ev.Kind, ev.Data, n)
		}
	}
}

// each runs test on both transports, each in a bubble of its own.
func each(t *testing.T, test func(t *testing.T, proto string)) {
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { test(t, proto) })
		})
	}
}

func ended(e *env, why string) float64 {
	return testutil.ToFloat64(e.m.StreamsEnded.WithLabelValues(why))
}

func TestStreamReadyAndTransport(t *testing.T) {
	each(t, func(t *testing.T, proto string) {
		e := newEnv(t, proto, api.Config{}, 10)
		defer e.close()
		c := e.open(nil)
		if (c.proto == "HTTP/2.0") != (proto == "HTTP/2") {
			t.Fatalf("stream over %s, want %s", c.proto, proto)
		}
		c.expect("ready", "{}")
	})
}

func TestStreamPings(t *testing.T) {
	each(t, func(t *testing.T, proto string) {
		e := newEnv(t, proto, api.Config{PingInterval: 20 * time.Second}, 10)
		defer e.close()
		start := time.Now()
		c := e.open(nil)
		c.expect("ready", "{}")
		for i := 1; i <= 3; i++ {
			want := start.Add(time.Duration(i) * 20 * time.Second).UTC().Format("2006-01-02T15:04:05.000Z")
			c.expect("ping", `{"time":"`+want+`"}`)
		}
		// A message between pings does not move them.
		time.Sleep(5 * time.Second)
		c.sub.push(message(0, ""))
		c.expectMessages(0, 1)
		c.expect("ping", `{"time":"`+start.Add(80*time.Second).UTC().Format("2006-01-02T15:04:05.000Z")+`"}`)
	})
}

// TestStreamPingsSlowerThanWriteTimeout: a ping interval longer than the
// write timeout leaves an idle stream open on both transports (HTTP/2
// resets a stream whose write deadline passes, even with no write
// pending, so a deadline left in place after a write would cut it).
func TestStreamPingsSlowerThanWriteTimeout(t *testing.T) {
	each(t, func(t *testing.T, proto string) {
		const every = 2 * time.Minute // > api.DefaultWriteTimeout
		e := newEnv(t, proto, api.Config{PingInterval: every}, 10)
		defer e.close()
		start := time.Now()
		c := e.open(nil)
		c.expect("ready", "{}")
		for i := 1; i <= 2; i++ {
			want := start.Add(time.Duration(i) * every).UTC().Format("2006-01-02T15:04:05.000Z")
			c.expect("ping", `{"time":"`+want+`"}`)
		}
	})
}

func TestStreamOrderAndOverflow(t *testing.T) {
	each(t, func(t *testing.T, proto string) {
		e := newEnv(t, proto, api.Config{}, 3)
		defer e.close()
		c := e.open(nil)
		c.expect("ready", "{}")
		// A burst of five into a buffer of three: the two oldest are
		// dropped, and said so before the rest.
		c.sub.push(message(0, ""), message(1, ""), message(2, ""), message(3, ""), message(4, ""))
		c.expect("overflow", `{"dropped":2}`)
		c.expectMessages(2, 5)
		// Then messages one by one, each once the stream has done what it
		// does with the one before, in order and with no overflow.
		for n := 5; n < 50; n++ {
			c.sub.push(message(n, ""))
			synctest.Wait()
		}
		c.expectMessages(5, 50)
		synctest.Wait()
		if got := testutil.ToFloat64(e.m.MessagesDropped); got != 2 {
			t.Fatalf("messages dropped: %v, want 2", got)
		}
		if got := testutil.ToFloat64(e.m.MessagesDelivered); got != 48 {
			t.Fatalf("messages delivered: %v, want 48", got)
		}
	})
}

// TestStreamUncountedOverflow checks the wire form of a loss that nobody
// could count: an overflow that says so, with what was counted, alone or
// before the messages taken with it.
func TestStreamUncountedOverflow(t *testing.T) {
	each(t, func(t *testing.T, proto string) {
		e := newEnv(t, proto, api.Config{}, 3)
		defer e.close()
		c := e.open(nil)
		c.expect("ready", "{}")
		c.sub.lose(0)
		c.expect("overflow", `{"dropped":0,"uncounted":true}`)
		c.sub.lose(2)
		c.sub.push(message(0, ""))
		c.expect("overflow", `{"dropped":2,"uncounted":true}`)
		c.expectMessages(0, 1)
		c.sub.push(message(1, ""))
		c.expectMessages(1, 2)
	})
}

// TestStreamWriteTimeout stalls one client: its stream is dropped once a
// write has waited WriteTimeout, and the reading client beside it gets
// everything. An idle stream, whose writes are all taken, lives on.
func TestStreamWriteTimeout(t *testing.T) {
	each(t, func(t *testing.T, proto string) {
		const timeout = 30 * time.Second
		e := newEnv(t, proto, api.Config{WriteTimeout: timeout, PingInterval: 20 * time.Second}, 10)
		defer e.close()
		resume := make(chan struct{})
		stalled := e.open(resume)
		reader := e.open(nil)
		reader.expect("ready", "{}")
		// More than the socket buffers and HTTP/2's flow control window
		// (4 MiB for Go's client) take.
		pad := strings.Repeat("x", 64<<10)
		for n := range 100 {
			stalled.sub.push(message(n, pad))
			reader.sub.push(message(n, ""))
			reader.expectMessages(n, n+1)
		}
		synctest.Wait()
		if got := ended(e, "write"); got != 0 {
			t.Fatalf("a stream was dropped before its write waited %v", timeout)
		}
		time.Sleep(timeout)
		synctest.Wait()
		if got := ended(e, "write"); got != 1 || !stalled.sub.isClosed() {
			t.Fatalf("%v streams dropped for a write, stalled subscription closed: %v; want 1, true", got, stalled.sub.isClosed())
		}
		// The reader, idle but for pings, lives on.
		time.Sleep(10 * time.Minute)
		for range 31 {
			reader.expect("ping", "")
		}
		if got := testutil.ToFloat64(e.m.StreamsOpen); got != 1 {
			t.Fatalf("streams open: %v, want 1", got)
		}
		close(resume)
		stalled.close()
	})
}

func TestStreamShutdown(t *testing.T) {
	each(t, func(t *testing.T, proto string) {
		e := newEnv(t, proto, api.Config{}, 10)
		defer e.close()
		c := e.open(nil)
		c.expect("ready", "{}")
		e.h.Shutdown()
		c.expect("error", `"The server is shutting down; please reconnect."`)
		c.expectEnd()
		synctest.Wait()
		if !c.sub.isClosed() || ended(e, "shutdown") != 1 {
			t.Fatalf("subscription closed %v, streams ended for shutdown %v; want true, 1", c.sub.isClosed(), ended(e, "shutdown"))
		}
	})
}

func TestStreamSubscriptionEnds(t *testing.T) {
	for _, tc := range []struct {
		name, why, text string
		err             error
	}{
		{"connection lost", "broker", `"The service is temporarily unavailable; please reconnect later."`, fmt.Errorf("consume: %w", broker.ErrConnectionLost)},
		{"unforeseen", "internal", `"Unknown Internal Error"`, errors.New("amqp://user:secret@10.0.0.1 said no")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			each(t, func(t *testing.T, proto string) {
				e := newEnv(t, proto, api.Config{}, 10)
				defer e.close()
				c := e.open(nil)
				c.expect("ready", "{}")
				c.sub.push(message(0, ""))
				c.expectMessages(0, 1)
				c.sub.end(tc.err)
				c.expect("error", tc.text)
				c.expectEnd()
				synctest.Wait()
				if !c.sub.isClosed() || ended(e, tc.why) != 1 {
					t.Fatalf("subscription closed %v, streams ended for %s %v; want true, 1", c.sub.isClosed(), tc.why, ended(e, tc.why))
				}
			})
		})
	}
}

func TestStreamClientGoes(t *testing.T) {
	each(t, func(t *testing.T, proto string) {
		e := newEnv(t, proto, api.Config{}, 10)
		defer e.close()
		c := e.open(nil)
		c.expect("ready", "{}")
		c.close()
		synctest.Wait()
		if !c.sub.isClosed() || ended(e, "client") != 1 || testutil.ToFloat64(e.m.StreamsOpen) != 0 {
			t.Fatalf("subscription closed %v, streams ended by the client %v, open %v; want true, 1, 0",
				c.sub.isClosed(), ended(e, "client"), testutil.ToFloat64(e.m.StreamsOpen))
		}
	})
}

// TestStreamPacesBusyWrites feeds one stream a message every 100 µs: it
// writes at most once per pace, each write carrying what gathered, every
// message within a pace of its push and in order. Messages further apart
// than the pace are written as each comes.
func TestStreamPacesBusyWrites(t *testing.T) {
	each(t, func(t *testing.T, proto string) {
		e := newEnv(t, proto, api.Config{}, 1000)
		defer e.close()
		c := e.open(nil)
		c.expect("ready", "{}")
		for _, gap := range []time.Duration{100 * time.Microsecond, 5 * api.MinPace} {
			const n = 200
			pushed := make(chan time.Time, n)
			go func() {
				for i := range n {
					pushed <- time.Now()
					c.sub.push(message(i, ""))
					time.Sleep(gap)
				}
			}()
			var writes []time.Time
			for i := range n {
				c.expectMessages(i, i+1)
				now, at := time.Now(), <-pushed
				if late := now.Sub(at); late > api.MinPace {
					t.Fatalf("%s, a message every %v: message %d came %v after its push, want at most %v", proto, gap, i, late, api.MinPace)
				}
				if gap > api.MinPace && !now.Equal(at) {
					t.Fatalf("%s, a message every %v: message %d came %v after its push, want at once", proto, gap, i, now.Sub(at))
				}
				if len(writes) == 0 || !now.Equal(writes[len(writes)-1]) {
					writes = append(writes, now)
				}
			}
			for i := 1; i < len(writes) && gap < api.MinPace; i++ {
				if d := writes[i].Sub(writes[i-1]); d < api.MinPace {
					t.Fatalf("%s, a message every %v: writes %v apart, want at least %v", proto, gap, d, api.MinPace)
				}
			}
			t.Logf("%s, a message every %v: %d messages in %d writes", proto, gap, n, len(writes))
			time.Sleep(time.Second)
		}
	})
}
