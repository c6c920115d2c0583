package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	amqp "github.com/rabbitmq/amqp091-go"

	"eventsproxy/internal/access"
	"eventsproxy/internal/accesstest"
	"eventsproxy/internal/api"
	"eventsproxy/internal/binding"
	"eventsproxy/internal/broker"
	"eventsproxy/internal/sse"
)

// eachResume runs test in each protocol, in a bubble, on an env of cfg
// whose subscriptions hold 100 messages.
func eachResume(t *testing.T, cfg api.Config, test func(t *testing.T, e *env)) {
	each(t, func(t *testing.T, proto string) {
		e := newEnv(t, proto, cfg, 100)
		defer e.close()
		test(t, e)
	})
}

// another returns an env of cfg in e's protocol: another process, whose
// tokens e does not know. The caller closes it.
func (e *env) another(cfg api.Config) *env {
	return newEnv(e.t, e.proto, cfg, 100)
}

// openResume opens a resumable stream, with last as its Last-Event-ID.
func (e *env) openResume(last string) *pipeClient {
	e.t.Helper()
	return e.connect(allOfEx, "&resume=1", last, nil)
}

// resumable opens a new resumable stream and returns it after its `ready`,
// which must carry a token, with its subscription.
func (e *env) resumable() (*pipeClient, *fakeSub) {
	e.t.Helper()
	c := e.openResume("")
	sub := <-e.b.subs
	if ev := c.next(); ev.Kind != "ready" || ev.ID == "-" || ev.ID == "" || len(ev.ID) > 128 {
		e.t.Fatalf("%s: got %q id %q, want ready with a token", c.proto, ev.Kind, ev.ID)
	}
	return c, sub
}

// resume reconnects with the token last and returns the stream after its
// `ready`.
func (e *env) resume(last string) *pipeClient {
	e.t.Helper()
	r := e.openResume(last)
	r.expectKind("ready")
	return r
}

// lingering opens a resumable stream whose client leaves once it has
// processed message 0, and returns its subscription and that message's id.
func (e *env) lingering() (*fakeSub, string) {
	e.t.Helper()
	c, sub := e.resumable()
	sub.push(message(0, ""))
	last := c.nextMessage(0)
	c.leave()
	return sub, last
}

// leave closes the client's connection and waits until the server is done
// with it.
func (c *pipeClient) leave() {
	c.close()
	synctest.Wait()
}

// expectKind fails the test unless the next event is of kind.
func (c *pipeClient) expectKind(kind string) sse.Event {
	c.t.Helper()
	ev := c.next()
	if ev.Kind != kind {
		c.t.Fatalf("%s: got %q %s, want %s", c.proto, ev.Kind, ev.Data, kind)
	}
	return ev
}

// expectGap fails the test unless the next event is `gap` for reason,
// with a token, which it returns.
func (c *pipeClient) expectGap(reason string) string {
	c.t.Helper()
	ev := c.next()
	if want := `{"reason":"` + reason + `"}`; ev.Kind != "gap" || string(ev.Data) != want || ev.ID == "-" || ev.ID == "" {
		c.t.Fatalf("%s: got %q %s id %q, want gap %s with a token", c.proto, ev.Kind, ev.Data, ev.ID, reason)
	}
	return ev.ID
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
	eachResume(t, api.Config{}, func(t *testing.T, e *env) {
		c, sub := e.resumable()
		for n := range 5 {
			sub.push(message(n, ""))
		}
		c.nextMessage(0)
		last := c.nextMessage(1)
		// The client processed 0 and 1; 2 to 4 were written but are lost
		// with the connection, and 5 to 7 come while it is away.
		c.leave()
		if sub.isClosed() {
			t.Fatal("the subscription of a resumable stream closed when its client left")
		}
		sub.push(message(5, ""), message(6, ""), message(7, ""))
		r := e.resume(last)
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
	eachResume(t, api.Config{}, func(t *testing.T, e *env) {
		other := e.another(api.Config{})
		defer other.close()
		sub, last := e.lingering()
		// The token means nothing to another process.
		r := other.resume(last)
		<-other.b.subs
		r.expectGap("unknown")
		// Past the window, the stream is gone.
		time.Sleep(api.DefaultResumeWindow + time.Second)
		synctest.Wait()
		if !sub.isClosed() {
			t.Fatal("a lingering subscription outlived the window")
		}
		r = e.resume(last)
		<-e.b.subs
		r.expectGap("expired")
	})
}

// TestResumeTakesOverAServedStream reconnects before the server saw the
// old connection go: the old one lets go, and nothing is lost or doubled.
func TestResumeTakesOverAServedStream(t *testing.T) {
	eachResume(t, api.Config{}, func(t *testing.T, e *env) {
		c, sub := e.resumable()
		sub.push(message(0, ""), message(1, ""), message(2, ""))
		last := c.nextMessage(0)
		c.nextMessage(1)
		c.nextMessage(2)
		r := e.resume(last)
		r.nextMessage(1)
		r.nextMessage(2)
		for range c.events {
		}
		sub.push(message(3, ""))
		r.nextMessage(3)
	})
}

func TestResumeOtherBindingsAndShutdown(t *testing.T) {
	eachResume(t, api.Config{}, func(t *testing.T, e *env) {
		sub, last := e.lingering()
		// The same token with other bindings: gap, and the old
		// subscription is given back.
		r := e.connect(`{"bindings":[{"exchange":"ex","routingKeyPattern":"other"}]}`, "&resume=1&lastEventId="+last, "", nil)
		<-e.b.subs
		r.expectKind("ready")
		r.expectGap("bindings")
		synctest.Wait()
		if !sub.isClosed() {
			t.Fatal("the lingering subscription outlived a takeover with other bindings")
		}
		// On shutdown a resumable stream just ends, for EventSource to
		// reconnect.
		e.h.Shutdown()
		r.expectEnd()
	})
}

// TestResumeNotAskedFor: without resume=1, a Last-Event-ID still gets 204.
func TestResumeNotAskedFor(t *testing.T) {
	eachResume(t, api.Config{}, func(t *testing.T, e *env) {
		req, _ := http.NewRequest(http.MethodGet, connectURL("http://proxy", allOfEx), nil)
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
	eachResume(t, api.Config{ResumeBytes: 1}, func(t *testing.T, e *env) {
		c, sub := e.resumable()
		sub.push(message(0, ""), message(1, ""))
		last := c.nextMessage(0)
		c.nextMessage(1)
		c.leave()
		sub.push(message(2, ""))
		r := e.resume(last)
		r.expectGap("evicted")
		r.nextMessage(2)
	})
}

// TestResumeBrokerGap: a resumable stream asks for a subscription that
// survives a lost broker connection, and tells its client `gap` `broker`
// where the subscription has its gap: after the messages from before it,
// served or lingering; a stream without resume asks for one that ends.
func TestResumeBrokerGap(t *testing.T) {
	eachResume(t, api.Config{}, func(t *testing.T, e *env) {
		plain := e.open(nil)
		if plain.sub.resumable {
			t.Fatal("a stream without resume asked for a surviving subscription")
		}
		plain.next()
		c, sub := e.resumable()
		if !sub.resumable {
			t.Fatal("a resumable stream asked for a subscription that ends with the broker connection")
		}
		sub.push(message(0, ""), message(1, ""))
		sub.gap()
		sub.push(message(2, ""))
		c.nextMessage(0)
		c.nextMessage(1)
		c.expectGap("broker")
		last := c.nextMessage(2)
		// Lingering: the gap is told after the messages from before it.
		c.leave()
		sub.push(message(3, ""))
		sub.gap()
		sub.push(message(4, ""))
		r := e.resume(last)
		r.nextMessage(3)
		r.expectGap("broker")
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
	eachResume(t, api.Config{}, func(t *testing.T, e *env) {
		c, sub := e.resumable()
		sub.push(message(0, ""))
		last := c.nextMessage(0)
		// No time passes in the bubble: the stream gathers.
		sub.push(message(1, ""))
		c.leave()
		r := e.resume(last)
		r.nextMessage(1)
	})
}

// TestResumeWhileTheBrokerIsDown: while the broker connection is down, a
// reconnect with a token is admitted: it takes its lingering stream over,
// which gets `gap` `broker` once the broker is back; one whose stream is
// gone waits for the broker, as a new resumable stream does, and then gets
// `ready` and its `gap` (a 503 would make an EventSource give up).
func TestResumeWhileTheBrokerIsDown(t *testing.T) {
	eachResume(t, api.Config{}, func(t *testing.T, e *env) {
		sub, last := e.lingering()
		e.b.down.Store(true)
		r := e.resume(last)
		sub.gap()
		sub.push(message(1, ""))
		r.expectGap("broker")
		r.nextMessage(1)
		// A token from another process: no stream to take over, and no
		// broker to subscribe with yet.
		other := e.another(api.Config{PingInterval: 20 * time.Second})
		defer other.close()
		other.b.down.Store(true)
		o := other.openResume(last)
		// And a new one, waiting beside it.
		n := other.openResume("")
		time.Sleep(time.Minute)
		synctest.Wait()
		other.b.down.Store(false)
		<-other.b.subs
		<-other.b.subs
		o.expectKind("ready")
		o.expectGap("unknown")
		n.expectKind("ready")
	})
}

// TestResumeNewStreamWaitsForTheBroker: a new resumable stream that comes
// while the broker connection is down gets 200, its `retry:` field and a
// comment at once, a comment every ping interval and no event until the
// broker is back; then it subscribes and gets `ready`. A stream without
// resume still gets 503.
func TestResumeNewStreamWaitsForTheBroker(t *testing.T) {
	eachResume(t, api.Config{PingInterval: 20 * time.Second}, func(t *testing.T, e *env) {
		e.b.down.Store(true)
		q := connectURL("http://proxy", allOfEx)
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
	eachResume(t, api.Config{}, func(t *testing.T, e *env) {
		other := e.another(api.Config{})
		defer other.close()
		_, last := e.lingering()
		refused := error(&broker.BindError{Binding: binding.Binding{Exchange: "ex", RoutingKeyPattern: "#"}, Err: broker.ErrExchangeNotFound})
		other.b.refuse.Store(&refused)
		o := other.openResume(last)
		if ev := o.expectKind("error"); string(ev.Data) != `"Exchange \"ex\" does not exist."` {
			t.Fatalf("got error %s, want the refusal", ev.Data)
		}
		o.expectEnd()
		if got := testutil.CollectAndCount(other.m.Resumes); got != 0 {
			t.Fatalf("eventsproxy_resumes_total has %d series after a refused reconnect, want none", got)
		}
		other.b.refuse.Store(nil)
		o = other.resume(last)
		<-other.b.subs
		o.expectGap("unknown")
		synctest.Wait()
		if got := testutil.ToFloat64(other.m.Resumes.WithLabelValues("gap", "unknown")); got != 1 {
			t.Fatalf("eventsproxy_resumes_total{gap,unknown} = %v, want 1", got)
		}
	})
}

// TestResumeRetellsAGapTheClientMissed: a `gap` is an event of the
// stream's history like a message: a client that reconnects with the
// token of an event before it, the gap written but lost with the
// connection, is told it again, in its place; one that processed it is
// not told twice.
func TestResumeRetellsAGapTheClientMissed(t *testing.T) {
	eachResume(t, api.Config{}, func(t *testing.T, e *env) {
		c, sub := e.resumable()
		sub.push(message(0, ""))
		before := c.nextMessage(0)
		sub.gap()
		sub.push(message(1, ""))
		c.expectGap("broker")
		c.nextMessage(1)
		c.leave()
		r := e.resume(before)
		r.expectGap("broker")
		r.nextMessage(1)
		r.leave()
		// The gap's own token: what follows it, and no gap again.
		c, sub = e.resumable()
		sub.gap()
		sub.push(message(2, ""))
		gap := c.expectGap("broker")
		c.nextMessage(2)
		c.leave()
		r = e.resume(gap)
		r.nextMessage(2)

		// The gap after `ready` of a token this process does not know.
		other := e.another(api.Config{})
		defer other.close()
		o := other.openResume(before)
		<-other.b.subs
		ready := o.expectKind("ready")
		o.expectGap("unknown")
		o.leave()
		o = other.resume(ready.ID)
		o.expectGap("unknown")
	})
}

// TestResumeRefusedStreamLeavesTheIDAlone: an `error` before a resumable
// stream has its token carries no id, so that EventSource keeps the one
// it had: none for a new stream (its reconnect is a new stream again, not
// a `gap unknown`), the token for a reconnect (whose next try gets the
// gap of that token).
func TestResumeRefusedStreamLeavesTheIDAlone(t *testing.T) {
	eachResume(t, api.Config{}, func(t *testing.T, e *env) {
		_, last := e.lingering()
		refused := error(&broker.BindError{Binding: binding.Binding{Exchange: "ex", RoutingKeyPattern: "#"}, Err: broker.ErrExchangeNotFound})
		other := e.another(api.Config{})
		defer other.close()
		other.b.refuse.Store(&refused)
		for _, token := range []string{"", last} {
			o := other.openResume(token)
			if ev := o.expectKind("error"); ev.ID != "" {
				t.Fatalf("error before the stream's token with Last-Event-ID %q: id %q, want none", token, ev.ID)
			}
			o.expectEnd()
		}
	})
}

// TestResumeProperties: a resumable stream with properties=1 asks its
// subscription for them, and its messages, replayed too, carry them; a
// reconnect that asks for the other form does not take it over: `gap`
// `bindings`, as for other bindings.
func TestResumeProperties(t *testing.T) {
	withProps := func(n int) *broker.Message {
		m := message(n, "")
		m.Props = &broker.Properties{ContentType: "text/x", Headers: amqp.Table{"h": int32(n)}}
		return m
	}
	eachResume(t, api.Config{}, func(t *testing.T, e *env) {
		c := e.connect(allOfEx, "&resume=1&properties=1", "", nil)
		sub := <-e.b.subs
		if !sub.props || !sub.resumable {
			t.Fatalf("the subscription asks for properties %v, resumable %v; want both", sub.props, sub.resumable)
		}
		c.expectKind("ready")
		sub.push(withProps(0), withProps(1))
		last := c.nextMessage(0)
		c.nextMessage(1)
		c.leave()

		r := e.connect(allOfEx, "&resume=1&properties=1", last, nil)
		r.expectKind("ready")
		ev := r.expectKind("message")
		if want := `,"properties":{"contentType":"text/x"},"headers":{"h":1}}`; !strings.HasSuffix(string(ev.Data), want) {
			t.Fatalf("%s: the replayed message is %s, want it to end with %s", r.proto, ev.Data, want)
		}
		r.leave()

		o := e.connect(allOfEx, "&resume=1", ev.ID, nil)
		<-e.b.subs
		o.expectKind("ready")
		o.expectGap("bindings")
	})
}

// TestResumeReadyTimeout: a resumable stream whose bindings are not in
// place within ReadyTimeout, while the broker connection is up, gets the
// error any stream gets and ends; it does not wait for the broker, nor
// subscribe again.
func TestResumeReadyTimeout(t *testing.T) {
	const timeout = api.DefaultReadyTimeout // = api.DefaultWriteTimeout
	eachResume(t, api.Config{ReadyTimeout: timeout}, func(t *testing.T, e *env) {
		e.b.hold.Store(true)
		start := time.Now()
		c := e.openResume("")
		select {
		case ev, ok := <-c.events:
			if !ok {
				t.Fatalf("%s: the stream ended with %v and no event, want the error", c.proto, c.err)
			}
			var text string
			_ = json.Unmarshal(ev.Data, &text)
			if ev.Kind != "error" || text != "The service is temporarily unavailable; please reconnect later." {
				t.Fatalf("%s: got %q %s, want the unavailable error", c.proto, ev.Kind, ev.Data)
			}
		case <-time.After(10 * timeout):
			t.Fatalf("%s: no event %v after the stream opened (%d subscribes), want the error after %v",
				c.proto, time.Since(start), e.b.held.Load(), timeout)
		}
		if d := time.Since(start); d != timeout {
			t.Errorf("the error came after %v, want %v", d, timeout)
		}
		c.expectEnd()
		if n := e.b.held.Load(); n != 1 {
			t.Errorf("%d subscribes, want 1", n)
		}
	})
}

// TestResumeWaitingStreamExpires: a resumable stream that waits for the
// broker ends when its token expires, with the error a live stream gets.
func TestResumeWaitingStreamExpires(t *testing.T) {
	each(t, func(t *testing.T, proto string) {
		az, err := access.Open(access.Config{HMACSecrets: [][]byte{secret}, Leeway: -1}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		defer az.Close()
		e := newEnv(t, proto, api.Config{Access: az, PingInterval: 20 * time.Second}, 100)
		defer e.close()
		e.b.down.Store(true)
		const life = time.Minute
		c := accesstest.Grants("frank", "ex", "#")
		c["exp"] = time.Now().Add(life).Unix()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, connectURL("http://proxy", allOfEx)+"&resume=1", nil)
		req.Header.Set("Authorization", "Bearer "+accesstest.Sign(t, secret, "HS256", "", c))
		start := time.Now()
		resp, err := (&http.Client{Transport: e.tr}).Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("a resumable stream with the broker down: %v %v, want 200", resp, err)
		}
		defer resp.Body.Close()
		events := make(chan sse.Event, 16)
		go func() {
			defer close(events)
			rd := sse.NewReader(resp.Body)
			for {
				ev, err := rd.Next()
				if err != nil {
					return
				}
				events <- ev
			}
		}()
		select {
		case ev, ok := <-events:
			if !ok || ev.Kind != "error" || !strings.Contains(string(ev.Data), "expired") {
				t.Fatalf("got %q %s (ok %v), want an error saying the token expired", ev.Kind, ev.Data, ok)
			}
		case <-time.After(10 * life):
			t.Fatalf("no event %v after the stream opened, want the expiry error after %v", time.Since(start), life)
		}
		if d := time.Since(start); d > life {
			t.Errorf("the error came after %v, want %v at most", d, life)
		}
		if ev, ok := <-events; ok {
			t.Fatalf("after the error: %q %s, want the end of the stream", ev.Kind, ev.Data)
		}
	})
}
