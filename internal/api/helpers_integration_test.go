//go:build integration

package api_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"eventsproxy/internal/api"
	"eventsproxy/internal/binding"
	"eventsproxy/internal/broker"
	"eventsproxy/internal/brokertest"
	"eventsproxy/internal/metrics"
	"eventsproxy/internal/rabbittest"
	"eventsproxy/internal/sse"
)

// proxy is a running API on a real broker.
type proxy struct {
	URL     string
	Broker  *broker.Broker
	Handler *api.Handler
	Metrics *metrics.Metrics
}

// startProxy runs the API on the real RabbitMQ until the test ends. Streams
// that tests open are closed first (their cleanups run before this one's).
func startProxy(t *testing.T, acfg api.Config, bcfg broker.Config) *proxy {
	t.Helper()
	d := broker.AMQP(broker.AMQPConfig{
		URL:            rabbittest.URL(),
		QueuePrefix:    rabbittest.Unique("eventsproxy-test/") + "/",
		ConnectionName: "eventsproxy test " + t.Name(),
	})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if acfg.Metrics == nil {
		acfg.Metrics = metrics.Discard()
	}
	bcfg.Metrics = acfg.Metrics
	b := brokertest.Start(t, d, bcfg)
	h := api.NewHandler(acfg, api.FromBroker(b), log)
	srv := httptest.NewServer(h)
	t.Cleanup(func() { closeServer(t, h, srv) })
	return &proxy{URL: srv.URL, Broker: b, Handler: h, Metrics: acfg.Metrics}
}

// syncBroker waits until every binding change asked for is done.
func (p *proxy) syncBroker(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Broker.Sync(ctx); err != nil {
		t.Fatalf("sync: %v", err)
	}
}

// client is one SSE stream read by a goroutine into a channel.
type client struct {
	t      testing.TB
	resp   *http.Response
	cancel context.CancelFunc
	events chan sse.Event
	errc   chan error
}

func bindingsQuery(t testing.TB, bs []binding.Binding) string {
	t.Helper()
	q, err := json.Marshal(map[string]any{"bindings": bs})
	if err != nil {
		t.Fatal(err)
	}
	return string(q)
}

// open connects a client with bindings; reading starts at once unless
// paused. A paused client reads the stream's first event, `ready` (its
// bindings are in place), and then nothing until resume is closed: a test
// waits for that event before it publishes what the client must get, since
// the response's header comes before the bindings are made.
func open(t testing.TB, base string, bs []binding.Binding, resume <-chan struct{}) *client {
	t.Helper()
	return openWith(t, base, bs, nil, resume)
}

// openWith is open with hdr as the request's header (nil: none).
func openWith(t testing.TB, base string, bs []binding.Binding, hdr http.Header, resume <-chan struct{}) *client {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, connectURL(base, bindingsQuery(t, bs)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if hdr != nil {
		req.Header = hdr
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		t.Fatalf("connect: %s", resp.Status)
	}
	c := &client{t: t, resp: resp, cancel: cancel, events: make(chan sse.Event, 1024), errc: make(chan error, 1)}
	go func() {
		defer close(c.events)
		r := sse.NewReader(resp.Body)
		if resume != nil {
			ev, err := r.Next()
			if err != nil {
				c.errc <- err
				return
			}
			c.events <- ev
			select {
			case <-resume:
			case <-ctx.Done():
				c.errc <- ctx.Err()
				return
			}
		}
		for {
			ev, err := r.Next()
			if err != nil {
				c.errc <- err
				return
			}
			c.events <- ev
		}
	}()
	t.Cleanup(c.close)
	return c
}

// close ends the stream as a browser closing its tab would.
func (c *client) close() {
	c.cancel()
	c.resp.Body.Close()
	for range c.events {
	}
}

// next returns the next event, failing the test after d.
func (c *client) next(d time.Duration) sse.Event {
	c.t.Helper()
	select {
	case ev, ok := <-c.events:
		if !ok {
			c.t.Fatalf("stream ended: %v", <-c.errc)
		}
		return ev
	case <-time.After(d):
		c.t.Fatalf("no event within %v", d)
	}
	return sse.Event{}
}

// eventWait is how long a test waits for a stream's next event: long
// enough for a machine that is busy with other work.
const eventWait = 30 * time.Second

// expect returns the next event and fails unless it is of kind. Pings are
// skipped unless kind is "ping": a stream sends one whenever the ping
// interval has passed, and a test on a busy machine may take longer.
func (c *client) expect(kind string) sse.Event {
	c.t.Helper()
	ev := c.next(eventWait)
	for ev.Kind == "ping" && kind != "ping" {
		ev = c.next(eventWait)
	}
	if ev.Kind != kind {
		c.t.Fatalf("got event %q %s, want %q", ev.Kind, ev.Data, kind)
	}
	if ev.ID != "-" {
		c.t.Fatalf("event %q has id %q, want -", ev.Kind, ev.ID)
	}
	return ev
}

// messageData is the data of a `message` event.
type messageData struct {
	Exchange    string          `json:"exchange"`
	RoutingKey  string          `json:"routingKey"`
	Redelivered bool            `json:"redelivered"`
	Routes      []string        `json:"routes"`
	Payload     json.RawMessage `json:"payload"`
}

func decodeMessage(t testing.TB, ev sse.Event) messageData {
	t.Helper()
	var m messageData
	if err := json.Unmarshal(ev.Data, &m); err != nil {
		t.Fatalf("message data %q: %v", ev.Data, err)
	}
	return m
}

// httpClient keeps no idle connections, so that every cycle of a churn test
// is a connection of its own and nothing idles after the test.
var httpClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

func newRequest(ctx context.Context, u string) (*http.Request, error) {
	return http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
}

// publishNoWait publishes without waiting for a confirm.
func publishNoWait(ch *amqp.Channel, ex, key string, body []byte) error {
	return ch.PublishWithContext(context.Background(), ex, key, false, false, amqp.Publishing{Body: body})
}
