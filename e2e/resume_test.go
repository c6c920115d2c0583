//go:build integration

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"eventsproxy/internal/rabbittest"
)

// A numbered flow: flowMessages small messages published one every
// flowInterval, while a cutter cuts each client connection after a random
// number of bytes in [cutMin, cutMax): about a hundred messages' worth,
// so 20 to 40 cuts over the flow, each wherever the byte count ends,
// mostly in the middle of an event.
const (
	flowMessages = 3000
	flowInterval = 4 * time.Millisecond
	cutMin       = 12 << 10
	cutMax       = 24 << 10
	minCuts      = 20
)

// resumeFlags are those of the replicas that resumable clients watch: a
// client buffer that holds the whole flow, so that no reconnection on a
// busy machine is slow enough for the lingering stream to overflow.
var resumeFlags = []string{"--client-buffer", "10000"}

func TestResumeEventSource(t *testing.T) {
	t.Parallel()
	testResume(t, eventTimeout, func(t *testing.T, u string) *client {
		return startClient(t, eventsourceClient, u)
	})
}

func TestResumeBrowser(t *testing.T) {
	t.Parallel()
	testResume(t, browserStartTimeout, func(t *testing.T, u string) *client {
		c, _ := startBrowser(t, u)
		return c
	})
}

// testResume watches a numbered flow with resume=1 through a cutter, with a
// client that reconnects by itself: it must get every message, in order,
// once, and no gap. Then the cutter sends it to a second replica, where its
// token is unknown (gap unknown), and then holds its reconnection back
// until the second replica's short window has passed (gap expired).
func testResume(t *testing.T, startTimeout time.Duration, start func(t *testing.T, u string) *client) {
	ex := newExchange(t)
	first := startProxy(t, resumeFlags...)
	second := startProxy(t, append([]string{"--resume-window", "2s"}, resumeFlags...)...)
	cut := startCutter(t, hostPort(t, first.URL), "")
	c := start(t, resumeURL(t, "http://"+cut.Addr, ex))
	c.expect(t, "ready", startTimeout)

	began := time.Now()
	cut.cutEvery(cutMin, cutMax)
	published := publishFlow(t, ex, 0, flowMessages)
	waitMessage(t, c, flowMessages-1)
	published()
	cut.cutEvery(0, 0)
	cuts, accepted := cut.counts()
	t.Logf("%d messages, %d connections cut, %d accepted, in %v", flowMessages, cuts, accepted, time.Since(began).Round(time.Millisecond))
	want := numbered(0, flowMessages)
	checkFlow(t, c, want)
	if cuts < minCuts {
		t.Errorf("the cutter cut %d connections, want at least %d: the test did not test what it says", cuts, minCuts)
	}
	checkReconnections(t, c, cuts)
	checkResumes(t, first, cuts)

	// A token that the second replica never gave.
	cut.setUpstream(hostPort(t, second.URL))
	cut.cutAll()
	waitEvent(t, c, "gap unknown")
	ex.publish(t, "flow.n", numberedMessage(flowMessages))
	waitMessage(t, c, flowMessages)
	want = append(want, "gap unknown", "message "+strconv.Itoa(flowMessages))
	checkFlow(t, c, want)

	// A token whose stream the second replica let go, the window passed.
	cut.hold()
	cut.cutAll()
	waitExpired(t, second)
	cut.release()
	waitEvent(t, c, "gap expired")
	ex.publish(t, "flow.n", numberedMessage(flowMessages+1))
	waitMessage(t, c, flowMessages+1)
	want = append(want, "gap expired", "message "+strconv.Itoa(flowMessages+1))
	checkFlow(t, c, want)
	for series, want := range map[string]float64{
		`eventsproxy_resumes_total{reason="unknown",result="gap"}`: 1,
		`eventsproxy_resumes_total{reason="expired",result="gap"}`: 1,
	} {
		if got := metricValue(t, second, series); got != want {
			t.Errorf("the second replica's %s is %v, want %v", series, got, want)
		}
	}
}

// TestResumeBehindProxies runs two replicas behind each proxy that
// docs/operations.md configures (nginx, HAProxy, Caddy), sticky by client
// address as it says, and two resumable clients of the npm eventsource
// package, one served by each replica, whose connections to the proxy a
// cutter cuts over a numbered flow: each client's reconnections reach its
// replica again, and each gets every message, in order, once, and no gap.
func TestResumeBehindProxies(t *testing.T) {
	t.Parallel()
	for _, kind := range edgeKinds {
		t.Run(kind.name, func(t *testing.T) { testResumeBehind(t, kind) })
	}
}

func testResumeBehind(t *testing.T, kind edgeKind) {
	replicas := startReplicas(t, resumeFlags...)
	e := startEdge(t, kind, replicas, false)
	ex := newExchange(t)

	// Which replica serves an address is the proxy's hash: find an
	// address for each.
	var local [2]string
	addrs := newAddrs()
	probe := connectURL(t, e.URL, binding{Exchange: ex.Name, RoutingKeyPattern: "probe.#"})
	for tries := 0; local[0] == "" || local[1] == ""; tries++ {
		if tries == 64 {
			t.Fatalf("%d client addresses all landed on one replica through %s", tries, e.Name)
		}
		a := addrs.next()
		if r := streamOn(t, replicas, func() *stream { return openStream(t, e.client(t, a), probe) }); local[r] == "" {
			local[r] = a
		}
	}

	var cutters [2]*cutter
	var clients [2]*client
	for i := range clients {
		cutters[i], clients[i] = startCutClient(t, e, local[i], ex)
	}
	for i, c := range clients {
		c.expect(t, "ready", eventTimeout)
		waitStreamsOpen(t, replicas[i], 1, "client", local[i], "is served by replica", strconv.Itoa(i))
	}
	for _, cut := range cutters {
		cut.cutEvery(cutMin, cutMax)
	}
	published := publishFlow(t, ex, 0, flowMessages)
	defer published()
	for i, c := range clients {
		waitMessage(t, c, flowMessages-1)
		cutters[i].cutEvery(0, 0)
		cuts, accepted := cutters[i].counts()
		t.Logf("client from %s on replica %d: %d connections cut, %d accepted", local[i], i, cuts, accepted)
		checkFlow(t, c, numbered(0, flowMessages))
		if cuts < minCuts {
			t.Errorf("the cutter cut %d connections of the client from %s, want at least %d", cuts, local[i], minCuts)
		}
		checkReconnections(t, c, cuts)
		checkResumes(t, replicas[i], cuts)
	}
}

// TestResumeBehindProxiesNeedsStickiness runs the proxies of
// TestResumeBehindProxies with the line that makes them sticky taken out
// of docs/operations.md's block: a client's reconnections then reach the
// other replica, where its token is unknown, and it gets `gap` `unknown`.
// So TestResumeBehindProxies would see a proxy that is not sticky.
func TestResumeBehindProxiesNeedsStickiness(t *testing.T) {
	t.Parallel()
	for _, kind := range edgeKinds {
		t.Run(kind.name, func(t *testing.T) {
			replicas := startReplicas(t, resumeFlags...)
			e := startEdge(t, withoutStickiness(kind), replicas, false)
			ex := newExchange(t)
			cut, c := startCutClient(t, e, newAddrs().next(), ex)
			c.expect(t, "ready", eventTimeout)
			cut.cutEvery(cutMin, cutMax)
			publishFlow(t, ex, 0, flowMessages)
			waitEvent(t, c, "gap unknown")
			cut.cutEvery(0, 0)
			cuts, _ := cut.counts()
			t.Logf("through %s, gap unknown after %d cuts", e.Name, cuts)
		})
	}
}

// startCutClient starts a cutter in front of edge e that dials from the
// loopback address local, and a resumable client of the npm eventsource
// package on the flow of ex through it.
func startCutClient(t *testing.T, e *edge, local string, ex *exchange) (*cutter, *client) {
	t.Helper()
	cut := startCutter(t, hostPort(t, e.URL), local)
	c := startClientEnv(t, []string{"NODE_EXTRA_CA_CERTS=" + e.cert}, eventsourceClient,
		resumeURL(t, "https://"+cut.Addr, ex))
	return cut, c
}

// resumeURL is the connect URL of a resumable stream on the flow's
// messages.
func resumeURL(t testing.TB, base string, ex *exchange) string {
	return connectURL(t, base, binding{Exchange: ex.Name, RoutingKeyPattern: "flow.#"}) + "&resume=1"
}

// hostPort returns the HOST:PORT of a URL.
func hostPort(t testing.TB, raw string) string {
	t.Helper()
	return mustParseURL(t, raw).Host
}

// numberedMessage is message n of a flow: {"n": n}.
func numberedMessage(n int) amqp.Publishing {
	return amqp.Publishing{ContentType: "application/json", Body: fmt.Appendf(nil, `{"n":%d}`, n)}
}

// numbered returns what checkFlow expects of messages from to to-1.
func numbered(from, to int) []string {
	var out []string
	for n := from; n < to; n++ {
		out = append(out, "message "+strconv.Itoa(n))
	}
	return out
}

// publishFlow publishes messages from to to-1 on flow.n, one every
// flowInterval, from a goroutine of its own, and returns at once. The
// returned wait waits for that goroutine and fails the test if a publish
// failed; the test's end stops and waits for it too.
func publishFlow(t *testing.T, ex *exchange, from, to int) (wait func()) {
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		tick := time.NewTicker(flowInterval)
		defer tick.Stop()
		for n := from; n < to; n++ {
			select {
			case <-tick.C:
			case <-stop:
				done <- nil
				return
			}
			if err := ex.tryPublish("flow.n", numberedMessage(n)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	var once sync.Once
	wait = func() {
		once.Do(func() {
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(func() {
		close(stop)
		wait()
	})
	return wait
}

// flowEvent is what checkFlow compares of an event: "message N",
// "gap REASON", or the event's kind.
func flowEvent(t testing.TB, ev clientEvent) (string, bool) {
	switch ev.Type {
	case "message":
		var m struct {
			Payload struct{ N *int } `json:"payload"`
		}
		if json.Unmarshal(ev.Data, &m) != nil || m.Payload.N == nil {
			return "message " + string(ev.Data), true
		}
		return "message " + strconv.Itoa(*m.Payload.N), true
	case "gap":
		var g struct{ Reason string }
		_ = json.Unmarshal(ev.Data, &g)
		return "gap " + g.Reason, true
	case "ready", "connection-error", "exit":
		return "", false
	}
	if ev.bookkeeping() {
		return "", false
	}
	return ev.Type + " " + string(ev.Data), true
}

// checkFlow fails the test unless the stream's events are want: each
// message once, in order, no gap but those wanted, nothing else.
func checkFlow(t testing.TB, c *client, want []string) {
	t.Helper()
	var got []string
	for _, ev := range c.all() {
		if s, ok := flowEvent(t, ev); ok {
			got = append(got, s)
		}
	}
	for i := range max(len(got), len(want)) {
		if i >= len(got) || i >= len(want) || got[i] != want[i] {
			t.Fatalf("%s: event %d of the flow is %q, want %q (%d events, want %d)",
				c.script, i, at(got, i), at(want, i), len(got), len(want))
		}
	}
}

func at(s []string, i int) string {
	if i < len(s) {
		return s[i]
	}
	return "(none)"
}

// checkReconnections fails the test unless the client reconnects once per
// cut (a cut after the last message may still be reconnecting), each time
// with a token as Last-Event-ID.
func checkReconnections(t testing.TB, c *client, cuts int) {
	t.Helper()
	requests := func() []string {
		var ids []string
		for _, ev := range c.all() {
			if ev.Type != "request" {
				continue
			}
			switch {
			case ev.LastEventID != nil: // eventsource-client.mjs
				ids = append(ids, *ev.LastEventID)
			case strings.Contains(ev.URL, connectPath): // browser-client.mjs
				ids = append(ids, ev.Headers["last-event-id"])
			case ev.Attempt > 0:
				ids = append(ids, "")
			}
		}
		return ids
	}
	rabbittest.Poll(t, fmt.Sprintf("%s makes a request per cut (%d) and one", c.script, cuts), eventTimeout, func() (bool, string) {
		n := len(requests())
		return n >= cuts+1, fmt.Sprintf("%d requests", n)
	})
	for i, id := range requests()[1:] {
		if id == "" || id == "-" {
			t.Errorf("%s: reconnection %d carried Last-Event-ID %q, want a token", c.script, i+1, id)
		}
	}
}

// checkResumes fails the test unless the replica resumes a stream per cut
// and answered no reconnection with gap.
func checkResumes(t testing.TB, p *proxy, cuts int) {
	t.Helper()
	rabbittest.Poll(t, fmt.Sprintf("replica %s resumes the %d cut streams", p.URL, cuts), eventTimeout, func() (bool, string) {
		ok := metricValue(t, p, `eventsproxy_resumes_total{reason="",result="ok"}`)
		return ok >= float64(cuts), fmt.Sprintf("%v resumed", ok)
	})
	for _, line := range metricLines(t, p) {
		if strings.HasPrefix(line, "eventsproxy_resumes_total{") && strings.Contains(line, `result="gap"`) {
			t.Errorf("replica %s: %s, want no gap", p.URL, line)
		}
	}
}

// waitMessage waits until the client has had message n of the flow; it
// fails the test when the client has no event for eventTimeout.
func waitMessage(t testing.TB, c *client, n int) {
	t.Helper()
	waitEvent(t, c, "message "+strconv.Itoa(n))
}

// waitEvent waits for the client's next event that flowEvent says is want,
// failing the test at a gap that is not want, or when the client has no
// event for eventTimeout.
func waitEvent(t testing.TB, c *client, want string) {
	t.Helper()
	for {
		ev := c.nextEvent(t, eventTimeout)
		s, _ := flowEvent(t, ev)
		if s == want {
			return
		}
		if ev.Type == "gap" {
			t.Fatalf("%s: %s while waiting for %s", c.script, ev.Line, want)
		}
	}
}

// waitExpired waits until the replica holds no stream, open or lingering:
// a stream that its client left lingers before its stream is counted
// closed, so that is when the window of the last one has passed.
func waitExpired(t testing.TB, p *proxy) {
	t.Helper()
	rabbittest.Poll(t, "replica "+p.URL+" holds no stream, open or lingering", eventTimeout, func() (bool, string) {
		open := metricValue(t, p, "eventsproxy_streams_open")
		lingering := metricValue(t, p, "eventsproxy_resume_lingering_streams")
		return open == 0 && lingering == 0, fmt.Sprintf("%v open, %v lingering", open, lingering)
	})
}

// metricValue returns the value of one series (name and labels, as
// /metrics writes them) of a replica, or 0 when it has none.
func metricValue(t testing.TB, p *proxy, series string) float64 {
	t.Helper()
	for _, line := range metricLines(t, p) {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s %q: %v", series, v, err)
			}
			return f
		}
	}
	return 0
}

// metricsClient keeps no connection open after a request.
var metricsClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: eventTimeout}

// metricLines returns the lines of a replica's /metrics.
func metricLines(t testing.TB, p *proxy) []string {
	t.Helper()
	resp, err := metricsClient.Get(p.URL + "/metrics")
	if err != nil {
		t.Fatalf("metrics of %s: %v", p.URL, err)
	}
	defer resp.Body.Close()
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("metrics of %s: %v", p.URL, err)
	}
	return lines
}
