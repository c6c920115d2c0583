//go:build integration

package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"eventsproxy/internal/api"
	"eventsproxy/internal/binding"
	"eventsproxy/internal/broker"
	"eventsproxy/internal/rabbittest"
	"eventsproxy/internal/sse"
)

func TestStreamDeliversMessages(t *testing.T) {
	p := startProxy(t, api.Config{}, broker.Config{})
	conn := rabbittest.Dial(t, "eventsproxy test "+t.Name())
	ch := rabbittest.Channel(t, conn)
	ex := rabbittest.Exchange(t, ch, "exchange/eventsproxy-test/v1/task-completed/")

	c := open(t, p.URL, []binding.Binding{{Exchange: ex, RoutingKeyPattern: "primary.#"}}, nil)
	c.expect("ready")

	cases := []struct {
		name        string
		key         string
		cc          []string
		body        string
		wantRoutes  []string
		wantPayload string
	}{
		{"json with routes", "primary.abc._", []string{"route.index.foo", "other.x", "route.tc-treeherder.v2"},
			"{\n  \"status\": {\"state\": \"completed\"}\n}", []string{"index.foo", "tc-treeherder.v2"}, `{"status":{"state":"completed"}}`},
		{"no CC", "primary.x", nil, `[1,2]`, []string{}, `[1,2]`},
		{"injection inside a JSON string", "primary.y", nil, `{"s":"\n\nevent: ready\ndata: {}\n\n"}`, []string{}, `{"s":"\n\nevent: ready\ndata: {}\n\n"}`},
		{"text body", "primary.z", nil, "plain text\n\nevent: ready\ndata: {}\n", []string{}, `"plain text\n\nevent: ready\ndata: {}\n"`},
		{"invalid UTF-8", "primary.w", nil, "\xff\xfe", []string{}, `"\ufffd\ufffd"`},
	}
	for _, tc := range cases {
		rabbittest.Publish(t, ch, ex, tc.key, tc.cc, []byte(tc.body))
	}
	// Not bound: must not arrive.
	rabbittest.Publish(t, ch, ex, "secondary.x", nil, []byte(`{}`))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev := c.expect("message")
			if bytes.ContainsAny(ev.Data, "\r\n") {
				t.Fatalf("data %q is not one line", ev.Data)
			}
			m := decodeMessage(t, ev)
			if m.Exchange != ex || m.RoutingKey != tc.key || m.Redelivered || !slices.Equal(m.Routes, tc.wantRoutes) || m.Routes == nil {
				t.Fatalf("got %+v, want exchange %q key %q routes %q", m, ex, tc.key, tc.wantRoutes)
			}
			var got, want any
			if err := json.Unmarshal(m.Payload, &got); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(tc.wantPayload), &want); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("payload %s, want %s", m.Payload, tc.wantPayload)
			}
		})
	}
	rabbittest.Publish(t, ch, ex, "primary.last", nil, []byte(`"last"`))
	if m := decodeMessage(t, c.expect("message")); m.RoutingKey != "primary.last" {
		t.Fatalf("an unbound message arrived: %+v", m)
	}
}

// TestOrderAcrossExchanges checks that a client sees messages from several
// exchanges in the order in which they were published (which is the order
// a queue of its own would have had).
func TestOrderAcrossExchanges(t *testing.T) {
	p := startProxy(t, api.Config{}, broker.Config{ClientBuffer: 1000})
	conn := rabbittest.Dial(t, "eventsproxy test "+t.Name())
	ch := rabbittest.Channel(t, conn)
	var exs []string
	var bs []binding.Binding
	for _, name := range []string{"task-pending", "task-running", "task-completed"} {
		ex := rabbittest.Exchange(t, ch, "exchange/eventsproxy-test/v1/"+name+"/")
		exs = append(exs, ex)
		bs = append(bs, binding.Binding{Exchange: ex, RoutingKeyPattern: "primary.#"})
	}
	c := open(t, p.URL, bs, nil)
	c.expect("ready")
	const n = 300
	for i := range n {
		rabbittest.Publish(t, ch, exs[i%3], "primary.t", nil, fmt.Appendf(nil, `{"n":%d}`, i))
	}
	for i := range n {
		m := decodeMessage(t, c.expect("message"))
		if want := fmt.Sprintf(`{"n":%d}`, i); string(m.Payload) != want || m.Exchange != exs[i%3] {
			t.Fatalf("message %d: got %s from %s, want %s from %s", i, m.Payload, m.Exchange, want, exs[i%3])
		}
	}
}

// TestSlowClientOverflowAndNoDelay stalls one client while another reads:
// the reader gets everything, and the stalled one is told exactly how many
// messages it lost.
//
// The stalled client must outlive the reading: however long that takes, its
// writes never time out.
func TestSlowClientOverflowAndNoDelay(t *testing.T) {
	const buffer = 10
	p := startProxy(t, api.Config{WriteTimeout: time.Hour}, broker.Config{ClientBuffer: buffer})
	conn := rabbittest.Dial(t, "eventsproxy test "+t.Name())
	ch := rabbittest.Channel(t, conn)
	ex := rabbittest.Exchange(t, ch, "eventsproxy-test/x/")
	bs := []binding.Binding{{Exchange: ex, RoutingKeyPattern: "#"}}

	resume := make(chan struct{})
	slow := open(t, p.URL, bs, resume)
	slow.expect("ready")
	fast := open(t, p.URL, bs, nil)
	fast.expect("ready")

	// Big enough to fill the socket buffers between the server and the
	// stalled client many times over.
	const n = 400
	filler := strings.Repeat("x", 64<<10)
	for i := range n {
		rabbittest.Publish(t, ch, ex, "k", nil, fmt.Appendf(nil, `{"n":%d,"pad":%q}`, i, filler))
	}
	// The reader gets every message, unless it cannot keep up with the
	// router (a loaded machine, the race detector): then it is told what it
	// lost, like any client. Either way it finishes while the other client
	// is still stalled.
	received, dropped := readAll(t, fast, n)
	t.Logf("reading client: received %d, dropped %d of %d", received, dropped, n)
	// The router has pushed all n messages to the stalled client's buffer
	// by now, since it pushed them to the fast one.
	close(resume)
	received, dropped = readAll(t, slow, n)
	if dropped == 0 {
		t.Fatalf("stalled client: nothing dropped (received %d)", received)
	}
	t.Logf("stalled client: received %d, dropped %d of %d (buffer %d)", received, dropped, n, buffer)
}

// readAll reads messages numbered 0 to n-1 and overflow events until the
// last message, checking that messages come in order and that the received
// and the dropped add up to n. Pings may come at any time, however long
// the reading takes, and are skipped.
func readAll(t *testing.T, c *client, n int) (received, dropped int) {
	t.Helper()
	last := -1
	for last < n-1 {
		ev := c.next(eventWait)
		switch ev.Kind {
		case "overflow":
			var o struct{ Dropped int }
			if err := json.Unmarshal(ev.Data, &o); err != nil || o.Dropped <= 0 {
				t.Fatalf("overflow data %s", ev.Data)
			}
			dropped += o.Dropped
		case "message":
			var payload struct{ N int }
			if err := json.Unmarshal(decodeMessage(t, ev).Payload, &payload); err != nil {
				t.Fatal(err)
			}
			if payload.N <= last {
				t.Fatalf("message %d after %d", payload.N, last)
			}
			last = payload.N
			received++
		case "ping":
			// A loaded machine may take longer than the ping interval.
		default:
			t.Fatalf("unexpected event %q", ev.Kind)
		}
	}
	if received+dropped != n {
		t.Fatalf("received %d + dropped %d != %d published", received, dropped, n)
	}
	return received, dropped
}

// TestManyClientsEachGetTheirOwn runs 200 concurrent streams, each bound to
// a pattern of its own, and checks that each gets exactly its messages and
// that the broker holds one queue with one binding per distinct pattern,
// all gone when the streams end.
func TestManyClientsEachGetTheirOwn(t *testing.T) {
	const clients = 200
	p := startProxy(t, api.Config{}, broker.Config{})
	conn := rabbittest.Dial(t, "eventsproxy test "+t.Name())
	ch := rabbittest.Channel(t, conn)
	ex := rabbittest.Exchange(t, ch, "eventsproxy-test/x/")

	cs := make([]*client, clients)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	for i := range cs {
		cs[i] = open(t, p.URL, []binding.Binding{{Exchange: ex, RoutingKeyPattern: fmt.Sprintf("c.%d.#", i)}}, nil)
	}
	for _, c := range cs {
		c.expect("ready")
	}
	queue := p.Broker.QueueName()
	if got := len(rabbittest.QueueBindings(t, queue)); got != clients {
		t.Fatalf("broker bindings: got %d, want %d", got, clients)
	}
	for i := range clients {
		rabbittest.Publish(t, ch, ex, fmt.Sprintf("c.%d.first", i), nil, fmt.Appendf(nil, `{"to":%d}`, i))
	}
	for i := range clients {
		rabbittest.Publish(t, ch, ex, "x", []string{fmt.Sprintf("c.%d.cc", i)}, fmt.Appendf(nil, `{"to":%d}`, i))
	}
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for got := 0; got < 2; {
				var ev sse.Event
				select {
				case ev = <-c.events:
				case <-time.After(eventWait):
				}
				if ev.Kind == "ping" {
					// 200 streams on a busy machine may take longer
					// than the ping interval.
					continue
				}
				got++
				var m messageData
				_ = json.Unmarshal(ev.Data, &m)
				if ev.Kind != "message" || string(m.Payload) != fmt.Sprintf(`{"to":%d}`, i) {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("client %d got %q %s", i, ev.Kind, ev.Data))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d failures, first: %s", len(failures), failures[0])
	}
	if qs := rabbittest.Queues(t, strings.TrimSuffix(queue, queue[strings.LastIndex(queue, "/")+1:])); len(qs) != broker.QueuesPerConnection {
		t.Fatalf("broker queues of this process: %d, want %d", len(qs), broker.QueuesPerConnection)
	}
	for _, c := range cs {
		c.close()
	}
	// Each stream's end is seen by the server asynchronously; wait until
	// every binding is gone.
	waitNoBindings(t, p, queue)
}

// waitNoBindings waits until the proxy's queue has no binding left: streams
// end asynchronously after their clients close, so the test waits for the
// broker worker to go idle with nothing bound, with a deadline.
func waitNoBindings(t *testing.T, p *proxy, queue string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		p.syncBroker(t)
		bs := rabbittest.QueueBindings(t, queue)
		if len(bs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d bindings left a minute after all streams closed, e.g. %v", len(bs), bs[0])
		}
	}
}

func TestMissingExchangeStream(t *testing.T) {
	p := startProxy(t, api.Config{}, broker.Config{})
	conn := rabbittest.Dial(t, "eventsproxy test "+t.Name())
	ch := rabbittest.Channel(t, conn)
	ex := rabbittest.Exchange(t, ch, "eventsproxy-test/x/")
	missing := rabbittest.Unique("eventsproxy-test/missing/")

	other := open(t, p.URL, []binding.Binding{{Exchange: ex, RoutingKeyPattern: "#"}}, nil)
	other.expect("ready")
	bad := open(t, p.URL, []binding.Binding{{Exchange: ex, RoutingKeyPattern: "a"}, {Exchange: missing, RoutingKeyPattern: "#"}}, nil)
	ev := bad.expect("error")
	var text string
	if err := json.Unmarshal(ev.Data, &text); err != nil || text != fmt.Sprintf("Exchange %q does not exist.", missing) {
		t.Fatalf("error text %s", ev.Data)
	}
	select {
	case _, ok := <-bad.events:
		if ok {
			t.Fatal("an event after error")
		}
	case <-time.After(eventWait):
		t.Fatal("stream not ended after error")
	}
	rabbittest.Publish(t, ch, ex, "a", nil, []byte(`1`))
	if m := decodeMessage(t, other.expect("message")); string(m.Payload) != "1" {
		t.Fatalf("other stream got %s", m.Payload)
	}
	p.syncBroker(t)
	if bs := rabbittest.QueueBindings(t, p.Broker.QueueName()); len(bs) != 1 || bs[0].RoutingKey != "#" {
		t.Fatalf("bindings after the failed stream: %v, want only the other stream's", bs)
	}
}

// TestVanishingClientsReleaseEverything closes clients while messages are
// being delivered to them; afterwards no binding of theirs remains.
func TestVanishingClientsReleaseEverything(t *testing.T) {
	p := startProxy(t, api.Config{}, broker.Config{})
	conn := rabbittest.Dial(t, "eventsproxy test "+t.Name())
	ch := rabbittest.Channel(t, conn)
	ex := rabbittest.Exchange(t, ch, "eventsproxy-test/x/")
	var cs []*client
	for i := range 20 {
		c := open(t, p.URL, []binding.Binding{{Exchange: ex, RoutingKeyPattern: fmt.Sprintf("k.%d", i%5)}, {Exchange: ex, RoutingKeyPattern: "all"}}, nil)
		c.expect("ready")
		cs = append(cs, c)
	}
	for i := range 200 {
		rabbittest.Publish(t, ch, ex, fmt.Sprintf("k.%d", i%5), []string{"all"}, []byte(strings.Repeat("y", 4096)))
		if i%10 == 0 {
			cs[i/10].close()
		}
	}
	waitNoBindings(t, p, p.Broker.QueueName())
}

func TestShutdownEndsStreams(t *testing.T) {
	p := startProxy(t, api.Config{}, broker.Config{})
	conn := rabbittest.Dial(t, "eventsproxy test "+t.Name())
	ch := rabbittest.Channel(t, conn)
	ex := rabbittest.Exchange(t, ch, "eventsproxy-test/x/")
	c := open(t, p.URL, []binding.Binding{{Exchange: ex, RoutingKeyPattern: "#"}}, nil)
	c.expect("ready")
	p.Handler.Shutdown()
	ev := c.expect("error")
	if !strings.Contains(string(ev.Data), "shutting down") {
		t.Fatalf("error on shutdown: %s", ev.Data)
	}
}

func TestPing(t *testing.T) {
	p := startProxy(t, api.Config{PingInterval: 50 * time.Millisecond}, broker.Config{})
	conn := rabbittest.Dial(t, "eventsproxy test "+t.Name())
	ch := rabbittest.Channel(t, conn)
	ex := rabbittest.Exchange(t, ch, "eventsproxy-test/x/")
	c := open(t, p.URL, []binding.Binding{{Exchange: ex, RoutingKeyPattern: "#"}}, nil)
	c.expect("ready")
	ev := c.expect("ping")
	var ping struct{ Time string }
	if err := json.Unmarshal(ev.Data, &ping); err != nil {
		t.Fatal(err)
	}
	if ts, err := time.Parse(time.RFC3339, ping.Time); err != nil || !strings.HasSuffix(ping.Time, "Z") || time.Since(ts) > time.Minute {
		t.Fatalf("ping time %q: %v", ping.Time, err)
	}
}

// TestThousandStreamsOneQueue opens 1,000 streams, each with a binding of
// its own, and checks the broker's footprint: one queue, two channels. It
// logs the time from request to `ready`.
func TestThousandStreamsOneQueue(t *testing.T) {
	const clients = 1000
	p := startProxy(t, api.Config{}, broker.Config{})
	conn := rabbittest.Dial(t, "eventsproxy test "+t.Name())
	ch := rabbittest.Channel(t, conn)
	ex := rabbittest.Exchange(t, ch, "eventsproxy-test/x/")

	// The first streams connect one at a time (the latency of one connect
	// on an idle proxy), the rest 20 at a time (binds queue up behind
	// each other on the broker).
	const sequential = 200
	cs := make([]*client, clients)
	readies := make([]time.Duration, clients)
	connect := func(i int) {
		start := time.Now()
		cs[i] = open(t, p.URL, []binding.Binding{{Exchange: ex, RoutingKeyPattern: fmt.Sprintf("primary.%d.#", i)}}, nil)
		if ev := <-cs[i].events; ev.Kind != "ready" {
			t.Errorf("client %d: first event %q", i, ev.Kind)
		}
		readies[i] = time.Since(start)
	}
	for i := range sequential {
		connect(i)
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 20)
	for i := sequential; i < clients; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			connect(i)
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	report := func(what string, ds []time.Duration) {
		ds = slices.Clone(ds)
		slices.Sort(ds)
		r := func(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }
		t.Logf("%s: request to ready p50 %v, p99 %v, max %v over %d connects", what, r(ds[len(ds)/2]), r(ds[len(ds)*99/100]), r(ds[len(ds)-1]), len(ds))
	}
	report("one at a time", readies[:sequential])
	report("20 at a time", readies[sequential:])
	queue := p.Broker.QueueName()
	prefix := queue[:strings.LastIndex(queue, "/")+1]
	if qs := rabbittest.Queues(t, prefix); len(qs) != broker.QueuesPerConnection {
		t.Fatalf("broker queues of this process: %d, want %d", len(qs), broker.QueuesPerConnection)
	}
	if got := len(rabbittest.QueueBindings(t, queue)); got != clients {
		t.Fatalf("broker bindings: %d, want %d", got, clients)
	}
	channels := connectionChannels(t, "eventsproxy test "+t.Name())
	if channels != 2 {
		t.Fatalf("channels on the proxy's connection: %d, want 2", channels)
	}
	t.Logf("broker holds 1 queue, %d bindings and %d channels for %d streams", clients, channels, clients)
}

// connectionChannels asks rabbitmqctl (live, unlike the management API's
// statistics) how many channels the connection of that name has open.
func connectionChannels(t *testing.T, name string) int {
	t.Helper()
	out := rabbittest.Ctl(t, "-q", "list_connections", "client_properties", "channels")
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, `"`+name+`"`) || strings.Contains(line, "<<\""+name+"\">>") {
			fields := strings.Fields(line)
			var n int
			if _, err := fmt.Sscan(fields[len(fields)-1], &n); err == nil {
				return n
			}
		}
	}
	t.Fatalf("connection %q not found in:\n%s", name, out)
	return 0
}
