//go:build integration

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"eventsproxy/internal/rabbittest"
	"eventsproxy/internal/sse"
)

// The margin by which an event through a proxy may come later than the same
// event on a direct connection, in the median of latencyRounds events. It
// is wide because the machine is busy; what it must catch is a proxy that
// holds events back (HAProxy without http-no-delay: about 200 ms each).
const (
	latencyMargin = 50 * time.Millisecond
	latencyRounds = 15
)

// shutdownText is the error event of a stream that a drain ends.
const shutdownText = "The server is shutting down; please reconnect."

// TestBehindProxies runs two replicas behind each proxy that
// docs/operations.md configures, with that very configuration: events pass
// at once, per-address limits count real client addresses, and a SIGTERM on
// one replica drains its streams while the other serves.
func TestBehindProxies(t *testing.T) {
	for _, kind := range edgeKinds {
		t.Run(kind.name, func(t *testing.T) {
			replicas := startReplicas(t, "--max-connections-per-ip", "1",
				// No ping ends a stream whose client left behind a proxy
				// that does not tell the replica.
				"--ping-interval", "1m")
			e := startEdge(t, kind, replicas, false)
			plain := startEdge(t, kind, replicas, true)
			ex := newExchange(t)
			// Each stream of the test comes from a loopback address of its
			// own, since a replica admits one stream per address.
			addrs := newAddrs()

			t.Run("unbuffered", func(t *testing.T) { testUnbuffered(t, e, replicas, ex, addrs) })
			t.Run("unbuffered plain", func(t *testing.T) { testUnbuffered(t, plain, replicas, ex, addrs) })
			t.Run("client leaves", func(t *testing.T) { testClientLeaves(t, e, replicas, ex, addrs) })
			t.Run("client address", func(t *testing.T) { testClientAddress(t, e, ex, addrs) })
			t.Run("sticky by address", func(t *testing.T) { testStickyByAddress(t, e, replicas, ex, addrs) })
			t.Run("drain", func(t *testing.T) { testDrain(t, e, replicas, ex, addrs) })
		})
	}
}

// testUnbuffered publishes events one at a time, each once the last has
// arrived through the proxy, over HTTP/2 and over HTTP/1.1, and on a direct
// connection to a replica, and compares the arrival times.
func testUnbuffered(t *testing.T, e *edge, replicas [2]*proxy, ex *exchange, addrs *addrs) {
	key := "unbuffered." + t.Name()
	b := binding{Exchange: ex.Name, RoutingKeyPattern: "unbuffered.#"}
	direct := openStream(t, directClient(t, addrs.next()), connectURL(t, replicas[0].URL, b))
	through := map[int]*stream{
		1: openStream(t, e.client1(t, addrs.next()), connectURL(t, e.URL, b)),
	}
	if strings.HasPrefix(e.URL, "https:") {
		through[2] = openStream(t, e.client(t, addrs.next()), connectURL(t, e.URL, b))
	}
	lags := make(map[int][]time.Duration)
	for proto, s := range through {
		if s.proto != proto {
			t.Fatalf("through %s: a stream came over HTTP/%d, want HTTP/%d", e.Name, s.proto, proto)
		}
	}

	for i := range latencyRounds {
		ex.publish(t, key, jsonMessage(t, map[string]int{"n": i}))
		d := direct.nextMessage(t, i)
		for proto, s := range through {
			lags[proto] = append(lags[proto], s.nextMessage(t, i).Sub(d))
		}
	}
	for proto, l := range lags {
		slices.Sort(l)
		median := l[len(l)/2]
		t.Logf("through %s over HTTP/%d, later than direct by: median %v, min %v, max %v", e.Name, proto, median, l[0], l[len(l)-1])
		if median > latencyMargin {
			t.Errorf("through %s over HTTP/%d, events came %v later than on a direct connection (median of %d), want at most %v: the proxy holds them back", e.Name, proto, median, latencyRounds, latencyMargin)
		}
	}
}

// testClientLeaves checks that a stream ends on its replica when its
// client leaves the proxy, over HTTP/1.1 and over HTTP/2.
func testClientLeaves(t *testing.T, e *edge, replicas [2]*proxy, ex *exchange, addrs *addrs) {
	u := connectURL(t, e.URL, binding{Exchange: ex.Name, RoutingKeyPattern: "leaves.#"})
	for _, r := range replicas {
		waitStreamsOpen(t, r, 0)
	}
	for proto, c := range map[int]*http.Client{1: e.client1(t, addrs.next()), 2: e.client(t, addrs.next())} {
		s := openStream(t, c, u)
		if got := streamsOpen(t, replicas[0], "open") + streamsOpen(t, replicas[1], "open"); got != 1 {
			t.Fatalf("the replicas hold %d streams, want 1", got)
		}
		s.close()
		for _, r := range replicas {
			waitStreamsOpen(t, r, 0, fmt.Sprintf("the client of an HTTP/%d stream left %s", proto, e.Name))
		}
	}
}

// testClientAddress checks that the replicas, started with --trust-proxy
// and --max-connections-per-ip 1, see each client's own address: a second
// stream from one address is refused, also when it claims another address
// in an X-Forwarded-For of its own, and a stream from another address is
// served.
func testClientAddress(t *testing.T, e *edge, ex *exchange, addrs *addrs) {
	u := connectURL(t, e.URL, binding{Exchange: ex.Name, RoutingKeyPattern: "limits.#"})
	first := addrs.next()
	c := e.client(t, first)
	openStream(t, c, u)

	for _, header := range [][]string{nil, {"X-Forwarded-For", addrs.next()}} {
		ctx, cancel := context.WithTimeout(context.Background(), eventTimeout)
		resp, err := get(ctx, c, u, header...)
		if err != nil {
			cancel()
			t.Fatalf("a second stream from %s (header %q): %v", first, header, err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		cancel()
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Errorf("a second stream from %s through %s (header %q): %s %s, want 429: the replica did not see the client's own address", first, e.Name, header, resp.Status, body)
		}
	}

	openStream(t, e.client(t, addrs.next()), u)
}

// testDrain opens streams through the proxy until both replicas hold some,
// stops the first replica with SIGTERM, and checks that its streams got the
// shutdown error and ended while the second replica's streams went on, and
// that the clients of the first are served by the second when they
// reconnect.
func testDrain(t *testing.T, e *edge, replicas [2]*proxy, ex *exchange, addrs *addrs) {
	b := binding{Exchange: ex.Name, RoutingKeyPattern: "drain.#"}
	u := connectURL(t, e.URL, b)
	type client struct {
		addr   string
		stream *stream
	}
	var clients []client
	// The streams of the other subtests end on the replicas a moment after
	// their clients went.
	for _, r := range replicas {
		waitStreamsOpen(t, r, 0)
	}
	// Sticky by address: which replica serves an address is the proxy's
	// hash, so open streams from new addresses until both replicas have
	// two or more.
	var onFirst, onSecond int
	for len(clients) < 64 && (onFirst < 2 || onSecond < 2) {
		a := addrs.next()
		clients = append(clients, client{a, openStream(t, e.client(t, a), u)})
		onFirst, onSecond = streamsOpen(t, replicas[0], "drain"), streamsOpen(t, replicas[1], "drain")
	}
	if onFirst < 2 || onSecond < 2 {
		t.Fatalf("after %d streams through %s from as many addresses: %d on the first replica and %d on the second, want both", len(clients), e.Name, onFirst, onSecond)
	}

	replicas[0].stop(t)
	ex.publish(t, "drain.after", jsonMessage(t, map[string]string{"after": "drain"}))
	var drained []string
	for _, c := range clients {
		ev := c.stream.next(t)
		switch ev.Kind {
		case "message":
			continue
		case "error":
			var text string
			if json.Unmarshal(ev.Data, &text) != nil || text != shutdownText {
				t.Fatalf("stream from %s: error %s, want %q", c.addr, ev.Data, shutdownText)
			}
			if ev, ok := c.stream.tryNext(t); ok {
				t.Fatalf("stream from %s: event %q %s after the shutdown error, want the end of the stream", c.addr, ev.Kind, ev.Data)
			}
			drained = append(drained, c.addr)
		default:
			t.Fatalf("stream from %s after SIGTERM on a replica: %q %s, want the message or the shutdown error", c.addr, ev.Kind, ev.Data)
		}
	}
	if len(drained) != onFirst {
		t.Fatalf("%d streams drained, want the %d of the stopped replica", len(drained), onFirst)
	}
	t.Logf("through %s: %d streams drained by the stopped replica, %d served on by the other", e.Name, len(drained), len(clients)-len(drained))

	// The drained clients reconnect, as EventSource-based pages do after an
	// error. The proxy may take a few tries to see that the replica is gone.
	for _, a := range drained {
		s := reconnect(t, e.client(t, a), u, e.Name)
		ex.publish(t, "drain.again", jsonMessage(t, map[string]string{"from": a}))
		if ev := s.next(t); ev.Kind != "message" {
			t.Fatalf("stream from %s after reconnecting: %q %s, want a message", a, ev.Kind, ev.Data)
		}
	}
	if n := streamsOpen(t, replicas[1], "drain"); n != len(clients) {
		t.Fatalf("the remaining replica holds %d streams, want all %d", n, len(clients))
	}
}

// reconnect opens a stream, trying again while the proxy answers with an
// error status (it has not yet noticed that a replica stopped), until
// eventTimeout.
func reconnect(t *testing.T, c *http.Client, u, edgeName string) *stream {
	t.Helper()
	var s *stream
	tries := 0
	// A page's EventSource waits too before it reconnects.
	rabbittest.Poll(t, "reconnect through "+edgeName, eventTimeout, func() (bool, string) {
		tries++
		var status int
		var err error
		s, status, err = tryOpenStream(t, c, u)
		return err == nil, fmt.Sprintf("%v (status %d) after %d tries", err, status, tries)
	})
	if tries > 1 {
		t.Logf("through %s: ready after %d tries", edgeName, tries)
	}
	return s
}

// startReplicas starts two replicas of one deployment, as an edge proxy
// spreads clients over them: a queue prefix of their own, --trust-proxy,
// and flags.
func startReplicas(t testing.TB, flags ...string) [2]*proxy {
	t.Helper()
	prefix := rabbittest.Unique("eventsproxy-e2e/") + "/"
	var replicas [2]*proxy
	for i := range replicas {
		replicas[i] = startProxy(t, append([]string{"--queue-prefix", prefix, "--trust-proxy"}, flags...)...)
	}
	return replicas
}

// streamsOpen returns a replica's eventsproxy_streams_open, read from its
// /metrics.
func streamsOpen(t testing.TB, p *proxy, what string) int {
	t.Helper()
	resp, err := http.Get(p.URL + "/metrics")
	if err != nil {
		t.Fatalf("%s: metrics: %v", what, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "eventsproxy_streams_open "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: eventsproxy_streams_open %q: %v", what, v, err)
			}
			return int(n)
		}
	}
	t.Fatalf("%s: no eventsproxy_streams_open in %s/metrics", what, p.URL)
	return 0
}

// directClient returns an HTTP client that connects from the loopback
// address local.
func directClient(t testing.TB, local string) *http.Client {
	t.Helper()
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 10 * time.Second}
	tr := &http.Transport{DialContext: dialer.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// waitStreamsOpen waits until a replica holds n streams (a stream whose
// client left ends on the server as soon as it notices), failing the test
// after eventTimeout, with why's words if given.
func waitStreamsOpen(t testing.TB, p *proxy, n int, why ...string) {
	t.Helper()
	what := fmt.Sprintf("replica %s holds %d streams", p.URL, n)
	if len(why) > 0 {
		what = strings.Join(why, " ") + ": " + what
	}
	rabbittest.Poll(t, what, eventTimeout, func() (bool, string) {
		got := streamsOpen(t, p, what)
		return got == n, fmt.Sprintf("it holds %d", got)
	})
}

// addrs hands out loopback addresses, one per simulated client: Linux
// routes all of 127.0.0.0/8 to lo.
type addrs struct{ n int }

func newAddrs() *addrs { return &addrs{n: 10} }

func (a *addrs) next() string {
	a.n++
	return fmt.Sprintf("127.0.%d.%d", a.n/250, a.n%250+2)
}

// stream is one open SSE stream whose events a goroutine reads as they
// arrive, noting when each came.
type stream struct {
	proto  int
	events chan timedEvent // closed at the end of the stream
	// close ends the stream from the client's side and waits for its
	// reader; the test's cleanup calls it too.
	close func()
}

type timedEvent struct {
	sse.Event
	at time.Time
}

// openStream opens a stream and returns once its ready event has arrived.
func openStream(t testing.TB, c *http.Client, u string) *stream {
	t.Helper()
	s, status, err := tryOpenStream(t, c, u)
	if err != nil {
		t.Fatalf("open stream: %v (status %d)", err, status)
	}
	return s
}

// tryOpenStream opens a stream; it returns an error unless the answer is
// 200 and the first event ready. The stream is closed at the end of the
// test.
func tryOpenStream(t testing.TB, c *http.Client, u string) (*stream, int, error) {
	ctx, cancel := context.WithCancel(context.Background())
	resp, err := get(ctx, c, u)
	if err != nil {
		cancel()
		return nil, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		cancel()
		return nil, resp.StatusCode, fmt.Errorf("%s: %s", resp.Status, body)
	}
	s := &stream{proto: resp.ProtoMajor, events: make(chan timedEvent, 64)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(s.events)
		r := sse.NewReader(resp.Body)
		for {
			ev, err := r.Next()
			if err != nil {
				return
			}
			if ev.Kind == "ping" {
				continue
			}
			select {
			case s.events <- timedEvent{ev, time.Now()}:
			case <-ctx.Done():
				return
			}
		}
	}()
	var once sync.Once
	s.close = func() {
		once.Do(func() {
			cancel()
			resp.Body.Close()
			<-done
		})
	}
	t.Cleanup(s.close)
	select {
	case ev, ok := <-s.events:
		if !ok || ev.Kind != "ready" {
			return nil, resp.StatusCode, fmt.Errorf("first event %q %s, want ready", ev.Kind, ev.Data)
		}
	case <-time.After(eventTimeout):
		return nil, resp.StatusCode, fmt.Errorf("no ready within %v", eventTimeout)
	}
	return s, resp.StatusCode, nil
}

// next returns the stream's next event, failing the test at the end of the
// stream or after eventTimeout.
func (s *stream) next(t testing.TB) timedEvent {
	t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			t.Fatal("the stream ended; want an event")
		}
		return ev
	case <-time.After(eventTimeout):
		t.Fatalf("no event within %v", eventTimeout)
	}
	return timedEvent{}
}

// tryNext returns the next event, or false at the end of the stream; it
// fails the test if the stream neither ends nor sends within eventTimeout.
func (s *stream) tryNext(t testing.TB) (timedEvent, bool) {
	t.Helper()
	select {
	case ev, ok := <-s.events:
		return ev, ok
	case <-time.After(eventTimeout):
		t.Fatalf("the stream neither ended nor sent an event within %v", eventTimeout)
	}
	return timedEvent{}, false
}

// nextMessage returns when message number n arrived, failing the test if
// the next event is not that message.
func (s *stream) nextMessage(t testing.TB, n int) time.Time {
	t.Helper()
	ev := s.next(t)
	var m struct {
		Payload struct{ N int } `json:"payload"`
	}
	if ev.Kind != "message" || json.Unmarshal(ev.Data, &m) != nil || m.Payload.N != n {
		t.Fatalf("event %q %s, want message %d", ev.Kind, ev.Data, n)
	}
	return ev.at
}
