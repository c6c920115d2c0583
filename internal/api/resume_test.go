package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"eventsproxy/internal/api"
	"eventsproxy/internal/binding"
	"eventsproxy/internal/broker"
	"eventsproxy/internal/sse"
)

// openResume opens a resumable stream, with last as its Last-Event-ID.
func (e *env) openResume(last string) *pipeClient {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	q := `{"bindings":[{"exchange":"ex","routingKeyPattern":"#"}]}`
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, connectURL("http://proxy", q)+"&resume=1", nil)
	if last != "" {
		req.Header.Set("Last-Event-ID", last)
	}
	resp, err := (&http.Client{Transport: e.tr}).Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		cancel()
		e.t.Fatalf("connect: %v %v", resp, err)
	}
	c := &pipeClient{t: e.t, proto: resp.Proto, body: resp.Body, cancel: cancel, events: make(chan sse.Event, 1024)}
	go func() {
		defer close(c.events)
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

// lingering opens a resumable stream whose client leaves once it has
// processed message 0, and returns its subscription and that message's id.
func (e *env) lingering() (*fakeSub, string) {
	e.t.Helper()
	c := e.openResume("")
	sub := <-e.b.subs
	c.next()
	sub.push(message(0, ""))
	last := c.nextMessage(0)
	c.close()
	synctest.Wait()
	return sub, last
}

// nextMessage returns the next event, which must be message n, and its id.
func (c *pipeClient) nextMessage(n int) string {
	c.t.Helper()
	ev := c.next()
	var m struct{ Payload struct{ N int } }
	if err := json.Unmarshal(ev.Data, &m); ev.Kind != "message" || err != nil || m.Payload.N != n || ev.ID == "-" || ev.ID == "" {
		c.t.Fatalf("%s: got event %q %.80s id %q, want message %d with a token", c.proto, ev.Kind, ev.Data, ev.ID, n)
	}
	return ev.ID
}

func TestResumeReplaysWhatTheClientMissed(t *testing.T) {
	each(t, func(t *testing.T, proto string) {
		e := newEnv(t, proto, api.Config{}, 100)
		defer e.close()
		c := e.openResume("")
		sub := <-e.b.subs
		if ev := c.next(); ev.Kind != "ready" || ev.ID == "-" || ev.ID == "" || len(ev.ID) > 128 {
			t.Fatalf("got %q id %q, want ready with a token", ev.Kind, ev.ID)
		}
		for n := range 5 {
			sub.push(message(n, ""))
		}
		c.nextMessage(0)
		last := c.nextMessage(1)
		// The client processed 0 and 1; 2 to 4 were written but are lost
		// with the connection, and 5 to 7 come while it is away.
		c.close()
		synctest.Wait()
		if sub.isClosed() {
			t.Fatal("the subscription of a resumable stream closed when its client left")
		}
		sub.push(message(5, ""), message(6, ""), message(7, ""))
		r := e.openResume(last)
		if ev := r.next(); ev.Kind != "ready" {
			t.Fatalf("got %q %s, want ready", ev.Kind, ev.Data)
		}
		for n := 2; n < 8; n++ {
			r.nextMessage(n)
		}
		sub.push(message(8, ""))
		r.nextMessage(8)
		select {
		case s := <-e.b.subs:
			t.Fatalf("a resume subscribed anew: %v", s)
		default:
		}
	})
}

func TestResumeGaps(t *testing.T) {
	each(t, func(t *testing.T, proto string) {
		e := newEnv(t, proto, api.Config{}, 100)
		defer e.close()
		other := newEnv(t, proto, api.Config{}, 100)
		defer other.close()
		sub, last := e.lingering()
		// The token means nothing to another process.
		r := other.openResume(last)
		<-other.b.subs
		r.next()
		if ev := r.next(); ev.Kind != "gap" || string(ev.Data) != `{"reason":"unknown"}` {
			t.Fatalf("got %q %s, want gap unknown", ev.Kind, ev.Data)
		}
		// Past the window, the stream is gone.
		time.Sleep(api.DefaultResumeWindow + time.Second)
		synctest.Wait()
		if !sub.isClosed() {
			t.Fatal("a lingering subscription outlived the window")
		}
		r = e.openResume(last)
		<-e.b.subs
		r.next()
		if ev := r.next(); ev.Kind != "gap" || string(ev.Data) != `{"reason":"expired"}` {
			t.Fatalf("got %q %s, want gap expired", ev.Kind, ev.Data)
		}
	})
}

// TestResumeTakesOverAServedStream reconnects before the server saw the
// old connection go: the old one lets go, and nothing is lost or doubled.
func TestResumeTakesOverAServedStream(t *testing.T) {
	each(t, func(t *testing.T, proto string) {
		e := newEnv(t, proto, api.Config{}, 100)
		defer e.close()
		c := e.openResume("")
		sub := <-e.b.subs
		c.next()
		sub.push(message(0, ""), message(1, ""), message(2, ""))
		last := c.nextMessage(0)
		c.nextMessage(1)
		c.nextMessage(2)
		r := e.openResume(last)
		if ev := r.next(); ev.Kind != "ready" {
			t.Fatalf("got %q %s, want ready", ev.Kind, ev.Data)
		}
		r.nextMessage(1)
		r.nextMessage(2)
		for range c.events {
		}
		sub.push(message(3, ""))
		r.nextMessage(3)
	})
}

func TestResumeOtherBindingsAndShutdown(t *testing.T) {
	each(t, func(t *testing.T, proto string) {
		e := newEnv(t, proto, api.Config{}, 100)
		defer e.close()
		sub, last := e.lingering()
		// The same token with other bindings: gap, and the old
		// subscription is given back.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		q := `{"bindings":[{"exchange":"ex","routingKeyPattern":"other"}]}`
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, connectURL("http://proxy", q)+"&resume=1&lastEventId="+last, nil)
		resp, err := (&http.Client{Transport: e.tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		<-e.b.subs
		rd := sse.NewReader(resp.Body)
		rd.Next()
		if ev, err := rd.Next(); err != nil || ev.Kind != "gap" || string(ev.Data) != `{"reason":"bindings"}` {
			t.Fatalf("got %q %s %v, want gap bindings", ev.Kind, ev.Data, err)
		}
		synctest.Wait()
		if !sub.isClosed() {
			t.Fatal("the lingering subscription outlived a takeover with other bindings")
		}
		// On shutdown a resumable stream just ends, for EventSource to
		// reconnect.
		e.h.Shutdown()
		if ev, err := rd.Next(); err == nil {
			t.Fatalf("got %q %s on shutdown, want the end of the stream", ev.Kind, ev.Data)
		}
	})
}

// TestResumeNotAskedFor: without resume=1, a Last-Event-ID still gets 204.
func TestResumeNotAskedFor(t *testing.T) {
	each(t, func(t *testing.T, proto string) {
		e := newEnv(t, proto, api.Config{}, 100)
		defer e.close()
		req, _ := http.NewRequest(http.MethodGet, connectURL("http://proxy", `{"bindings":[{"exchange":"ex","routingKeyPattern":"#"}]}`), nil)
		req.Header.Set("Last-Event-ID", "-")
		resp, err := (&http.Client{Transport: e.tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("status %s, want 204", resp.Status)
		}
	})
}

// TestResumeEvicted: more was written after the token than the history
// keeps, so the resumed stream says gap before going on.
func TestResumeEvicted(t *testing.T) {
	each(t, func(t *testing.T, proto string) {
		e := newEnv(t, proto, api.Config{ResumeBytes: 1}, 100)
		defer e.close()
		c := e.openResume("")
		sub := <-e.b.subs
		c.next()
		sub.push(message(0, ""), message(1, ""))
		last := c.nextMessage(0)
		c.nextMessage(1)
		c.close()
		synctest.Wait()
		sub.push(message(2, ""))
		r := e.openResume(last)
		r.next()
		if ev := r.next(); ev.Kind != "gap" || string(ev.Data) != `{"reason":"evicted"}` {
			t.Fatalf("got %q %s, want gap evicted", ev.Kind, ev.Data)
		}
		r.nextMessage(2)
	})
}

// TestResumeBrokerGap: a resumable stream asks for a subscription that
// survives a lost broker connection, and tells its client `gap` `broker`
// where the subscription has its gap: after the messages from before it,
// served or lingering; a stream without resume asks for one that ends.
func TestResumeBrokerGap(t *testing.T) {
	each(t, func(t *testing.T, proto string) {
		e := newEnv(t, proto, api.Config{}, 100)
		defer e.close()
		plain := e.open(nil)
		if plain.sub.resumable {
			t.Fatal("a stream without resume asked for a surviving subscription")
		}
		plain.next()
		c := e.openResume("")
		sub := <-e.b.subs
		if !sub.resumable {
			t.Fatal("a resumable stream asked for a subscription that ends with the broker connection")
		}
		c.next()
		sub.push(message(0, ""), message(1, ""))
		sub.gap()
		sub.push(message(2, ""))
		c.nextMessage(0)
		c.nextMessage(1)
		if ev := c.next(); ev.Kind != "gap" || string(ev.Data) != `{"reason":"broker"}` || ev.ID == "-" || ev.ID == "" {
			t.Fatalf("got %q %s id %q, want gap broker with a token", ev.Kind, ev.Data, ev.ID)
		}
		last := c.nextMessage(2)
		// Lingering: the gap is told after the messages from before it.
		c.close()
		synctest.Wait()
		sub.push(message(3, ""))
		sub.gap()
		sub.push(message(4, ""))
		r := e.openResume(last)
		if ev := r.next(); ev.Kind != "ready" {
			t.Fatalf("got %q %s, want ready", ev.Kind, ev.Data)
		}
		r.nextMessage(3)
		if ev := r.next(); ev.Kind != "gap" || string(ev.Data) != `{"reason":"broker"}` {
			t.Fatalf("got %q %s, want gap broker", ev.Kind, ev.Data)
		}
		r.nextMessage(4)
		if got := testutil.ToFloat64(e.m.Resumes.WithLabelValues("gap", "broker")); got != 2 {
			t.Fatalf("eventsproxy_resumes_total{gap,broker} = %v, want 2", got)
		}
	})
}

// TestResumeAfterAGatherCut: the client leaves while its stream waits for
// more messages to gather into one write; the message that woke it is
// still in the buffer, and the reconnect that takes the stream over gets
// it without waiting for another.
func TestResumeAfterAGatherCut(t *testing.T) {
	each(t, func(t *testing.T, proto string) {
		e := newEnv(t, proto, api.Config{}, 100)
		defer e.close()
		c := e.openResume("")
		sub := <-e.b.subs
		c.next()
		sub.push(message(0, ""))
		last := c.nextMessage(0)
		// No time passes in the bubble: the stream gathers.
		sub.push(message(1, ""))
		c.close()
		synctest.Wait()
		r := e.openResume(last)
		if ev := r.next(); ev.Kind != "ready" {
			t.Fatalf("got %q %s, want ready", ev.Kind, ev.Data)
		}
		r.nextMessage(1)
	})
}

// TestResumeWhileTheBrokerIsDown: while the broker connection is down, a
// reconnect with a token is admitted: it takes its lingering stream over,
// which gets `gap` `broker` once the broker is back; one whose stream is
// gone waits for the broker, as a new resumable stream does, and then gets
// `ready` and its `gap` (a 503 would make an EventSource give up).
func TestResumeWhileTheBrokerIsDown(t *testing.T) {
	each(t, func(t *testing.T, proto string) {
		e := newEnv(t, proto, api.Config{}, 100)
		defer e.close()
		sub, last := e.lingering()
		e.b.down.Store(true)
		r := e.openResume(last)
		if ev := r.next(); ev.Kind != "ready" {
			t.Fatalf("got %q %s, want ready", ev.Kind, ev.Data)
		}
		sub.gap()
		sub.push(message(1, ""))
		if ev := r.next(); ev.Kind != "gap" || string(ev.Data) != `{"reason":"broker"}` {
			t.Fatalf("got %q %s, want gap broker", ev.Kind, ev.Data)
		}
		r.nextMessage(1)
		// A token from another process: no stream to take over, and no
		// broker to subscribe with yet.
		other := newEnv(t, proto, api.Config{PingInterval: 20 * time.Second}, 100)
		defer other.close()
		other.b.down.Store(true)
		o := other.openResume(last)
		time.Sleep(time.Minute)
		synctest.Wait()
		other.b.down.Store(false)
		<-other.b.subs
		if ev := o.next(); ev.Kind != "ready" {
			t.Fatalf("got %q %s, want ready", ev.Kind, ev.Data)
		}
		if ev := o.next(); ev.Kind != "gap" || string(ev.Data) != `{"reason":"unknown"}` {
			t.Fatalf("got %q %s, want gap unknown", ev.Kind, ev.Data)
		}
	})
}

// TestResumeNewStreamWaitsForTheBroker: a new resumable stream that comes
// while the broker connection is down gets 200, its `retry:` field and a
// comment at once, a comment every ping interval and no event until the
// broker is back; then it subscribes and gets `ready`. A stream without
// resume still gets 503.
func TestResumeNewStreamWaitsForTheBroker(t *testing.T) {
	each(t, func(t *testing.T, proto string) {
		e := newEnv(t, proto, api.Config{PingInterval: 20 * time.Second}, 100)
		defer e.close()
		e.b.down.Store(true)
		q := connectURL("http://proxy", `{"bindings":[{"exchange":"ex","routingKeyPattern":"#"}]}`)
		client := &http.Client{Transport: e.tr}
		if resp, err := client.Get(q); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("a stream without resume with the broker down: %v %v, want 503", resp, err)
		} else {
			resp.Body.Close()
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, q+"&resume=1", nil)
		resp, err := client.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("a new resumable stream with the broker down: %v %v, want 200", resp, err)
		}
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		line := func() string {
			t.Helper()
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("reading the stream: %v", err)
			}
			return l
		}
		if l := line(); !strings.HasPrefix(l, "retry: ") {
			t.Fatalf("first line %q, want the retry field", l)
		}
		// Three ping intervals: a comment each, and nothing else.
		for range 4 {
			if l := line(); !strings.HasPrefix(l, ":") {
				t.Fatalf("got %q while the broker is down, want a comment", l)
			}
			if l := line(); l != "\n" {
				t.Fatalf("got %q after a comment, want a blank line", l)
			}
		}
		select {
		case s := <-e.b.subs:
			t.Fatalf("subscribed while the broker is down: %v", s)
		default:
		}
		e.b.down.Store(false)
		sub := <-e.b.subs
		if !sub.resumable {
			t.Fatal("a waiting resumable stream asked for a subscription that ends with the broker connection")
		}
		rd := sse.NewReader(br)
		if ev, err := rd.Next(); err != nil || ev.Kind != "ready" || ev.ID == "-" || ev.ID == "" {
			t.Fatalf("got %q %s id %q %v, want ready with a token", ev.Kind, ev.Data, ev.ID, err)
		}
		sub.push(message(0, ""))
		if ev, err := rd.Next(); err != nil || ev.Kind != "message" {
			t.Fatalf("got %q %s %v, want message", ev.Kind, ev.Data, err)
		}
	})
}

// TestResumeMetricCountsWhatHappened: a reconnect with a token that is
// refused before its stream starts (the broker refuses its binding) gets
// its error and no `gap`, and counts as no resume; one that gets its `gap`
// counts once.
func TestResumeMetricCountsWhatHappened(t *testing.T) {
	each(t, func(t *testing.T, proto string) {
		e := newEnv(t, proto, api.Config{}, 100)
		defer e.close()
		other := newEnv(t, proto, api.Config{}, 100)
		defer other.close()
		_, last := e.lingering()
		refused := error(&broker.BindError{Binding: binding.Binding{Exchange: "ex", RoutingKeyPattern: "#"}, Err: broker.ErrExchangeNotFound})
		other.b.refuse.Store(&refused)
		o := other.openResume(last)
		if ev := o.next(); ev.Kind != "error" || string(ev.Data) != `"Exchange \"ex\" does not exist."` {
			t.Fatalf("got %q %s, want the refusal", ev.Kind, ev.Data)
		}
		for ev := range o.events {
			t.Fatalf("got %q %s after the refusal, want the end of the stream", ev.Kind, ev.Data)
		}
		if got := testutil.CollectAndCount(other.m.Resumes); got != 0 {
			t.Fatalf("eventsproxy_resumes_total has %d series after a refused reconnect, want none", got)
		}
		other.b.refuse.Store(nil)
		o = other.openResume(last)
		<-other.b.subs
		o.next()
		if ev := o.next(); ev.Kind != "gap" {
			t.Fatalf("got %q %s, want gap", ev.Kind, ev.Data)
		}
		synctest.Wait()
		if got := testutil.ToFloat64(other.m.Resumes.WithLabelValues("gap", "unknown")); got != 1 {
			t.Fatalf("eventsproxy_resumes_total{gap,unknown} = %v, want 1", got)
		}
	})
}
