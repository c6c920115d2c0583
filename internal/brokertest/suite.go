package brokertest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"eventsproxy/internal/binding"
	"eventsproxy/internal/broker"
)

// Run runs the conformance suite against the implementation h adapts.
// Its tests run in parallel with each other, except the one that
// disconnects, which runs alone after them.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.Dialer == nil || h.NewExchange == nil || h.MissingExchange == nil || h.Publish == nil || h.PublishWith == nil ||
		h.Reference == nil || h.QueueBindings == nil || h.Disconnect == nil {
		t.Fatal("brokertest: every function of the Harness must be set")
	}
	// The group returns once its parallel tests are done.
	t.Run("Isolated", func(t *testing.T) {
		t.Run("RoutingAgreesWithReference", func(t *testing.T) {
			t.Parallel()
			testRouting(t, h)
		})
		t.Run("BindingsFollowSubscriptions", func(t *testing.T) {
			t.Parallel()
			testBindingsFollowSubscriptions(t, h)
		})
		t.Run("MissingExchange", func(t *testing.T) {
			t.Parallel()
			testMissingExchange(t, h)
		})
		t.Run("ChurnNeverMissesAfterReady", func(t *testing.T) {
			t.Parallel()
			testChurn(t, h)
		})
		t.Run("CoveringBindings", func(t *testing.T) {
			t.Parallel()
			testCovering(t, h)
		})
		t.Run("NormalForm", func(t *testing.T) {
			t.Parallel()
			testNormalForm(t, h)
		})
		t.Run("Properties", func(t *testing.T) {
			t.Parallel()
			testProperties(t, h)
		})
	})
	t.Run("ConnectionLost", func(t *testing.T) { testConnectionLost(t, h) })
	t.Run("SurvivesConnectionLost", func(t *testing.T) { testSurviving(t, h) })
}

// randomPattern returns a pattern of 0 to 4 words from a small alphabet with
// wildcards, so that patterns and keys collide often.
func randomPattern(r *rand.Rand) string {
	return randomWords(r, []string{"a", "b", "c", "", "*", "#", "*", "#"})
}

// randomKey returns a routing key of 0 to 4 words from the alphabet of
// randomPattern, without wildcards.
func randomKey(r *rand.Rand) string {
	return randomWords(r, []string{"a", "b", "c", ""})
}

func randomWords(r *rand.Rand, words []string) string {
	ws := make([]string, r.IntN(5))
	for i := range ws {
		ws[i] = words[r.IntN(len(words))]
	}
	return strings.Join(ws, ".")
}

// testRouting checks that every subscription receives exactly what a plain
// queue bound with the same patterns receives, in the same order, across
// exchanges and CC keys.
func testRouting(t *testing.T, h Harness) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 42))

	b := startBroker(t, h, broker.Config{ClientBuffer: 100000})
	exchanges := []string{h.NewExchange(t), h.NewExchange(t), h.NewExchange(t)}
	end := h.NewExchange(t)

	const clients = 16
	type client struct {
		bindings []binding.Binding
		read     func() [][]byte
		sub      *broker.Subscription
	}
	cs := make([]*client, clients)
	for i := range cs {
		c := &client{}
		seen := map[binding.Binding]bool{}
		for range 1 + r.IntN(4) {
			bd := binding.Binding{Exchange: exchanges[r.IntN(len(exchanges))], RoutingKeyPattern: randomPattern(r)}
			if !seen[bd] {
				seen[bd] = true
				c.bindings = append(c.bindings, bd)
			}
		}
		c.bindings = append(c.bindings, binding.Binding{Exchange: end, RoutingKeyPattern: "end"})
		c.read = h.Reference(t, c.bindings)
		c.sub = subscribe(t, b, c.bindings...)
		cs[i] = c
	}

	const messages = 400
	for n := range messages {
		var cc []string
		for range r.IntN(3) {
			cc = append(cc, randomKey(r))
		}
		h.Publish(t, exchanges[r.IntN(len(exchanges))], randomKey(r), cc, numberBody(t, n))
	}
	h.Publish(t, end, "end", nil, endBody)

	for i, c := range cs {
		want := numbers(t, c.read())
		got, dropped := takeUntilEnd(t, c.sub)
		if dropped != 0 {
			t.Errorf("client %d dropped %d", i, dropped)
		}
		if !slices.Equal(got, want) {
			t.Errorf("client %d with bindings %q:\n got %v\nwant %v", i, c.bindings, got, want)
		}
	}
}

// patterns returns the sorted patterns of the bindings in bs that are on
// exchange.
func patterns(t *testing.T, bs []binding.Binding, exchange string) []string {
	t.Helper()
	var ps []string
	for _, bd := range bs {
		if bd.Exchange == exchange {
			ps = append(ps, bd.RoutingKeyPattern)
		}
	}
	slices.Sort(ps)
	return ps
}

func testBindingsFollowSubscriptions(t *testing.T, h Harness) {
	b := startBroker(t, h, broker.Config{})
	ex := h.NewExchange(t)
	queue := b.QueueName()
	bound := func() []string { return patterns(t, h.QueueBindings(t, queue), ex) }

	ctx := context.Background()
	a, err := b.Subscribe(ctx, []binding.Binding{{Exchange: ex, RoutingKeyPattern: "a.#"}, {Exchange: ex, RoutingKeyPattern: "shared"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	c, err := b.Subscribe(ctx, []binding.Binding{{Exchange: ex, RoutingKeyPattern: "shared"}, {Exchange: ex, RoutingKeyPattern: "*.c"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if got, want := bound(), []string{"*.c", "a.#", "shared"}; !slices.Equal(got, want) {
		t.Fatalf("bindings with two subscriptions: got %q, want %q", got, want)
	}
	a.Close()
	a.Close() // idempotent
	syncBroker(t, b)
	if got, want := bound(), []string{"*.c", "shared"}; !slices.Equal(got, want) {
		t.Fatalf("bindings after the first closed: got %q, want %q", got, want)
	}
	// The shared binding still serves the other subscription; "a.x"
	// matched only the closed one's bindings.
	h.Publish(t, ex, "a.x", nil, numberBody(t, 0))
	h.Publish(t, ex, "shared", nil, numberBody(t, 1))
	h.Publish(t, ex, "end.c", nil, endBody)
	got, _ := takeUntilEnd(t, c)
	if !slices.Equal(got, []int{1}) {
		t.Fatalf("second subscription got %v, want [1]", got)
	}
	c.Close()
	syncBroker(t, b)
	if got := bound(); len(got) != 0 {
		t.Fatalf("bindings after all closed: %q", got)
	}
}

// testMissingExchange checks that a refused bind fails only the
// subscription that asked, and that everything else goes on.
func testMissingExchange(t *testing.T, h Harness) {
	b := startBroker(t, h, broker.Config{})
	ex := h.NewExchange(t)
	missing := h.MissingExchange(t)

	// The failing subscriptions' valid bindings are on another exchange,
	// where nothing covers them: they really are bound, then given back.
	ex2 := h.NewExchange(t)
	ok := subscribe(t, b, binding.Binding{Exchange: ex, RoutingKeyPattern: "#"})
	for i := range 3 {
		_, err := b.Subscribe(context.Background(), []binding.Binding{
			{Exchange: ex2, RoutingKeyPattern: fmt.Sprintf("only.mine.%d", i)},
			{Exchange: missing, RoutingKeyPattern: "#"},
		})
		var berr *broker.BindError
		if !errors.As(err, &berr) || !errors.Is(err, broker.ErrExchangeNotFound) || berr.Binding.Exchange != missing {
			t.Fatalf("subscribe with a missing exchange: got %v, want BindError for %q with ErrExchangeNotFound", err, missing)
		}
		h.Publish(t, ex, "k", nil, numberBody(t, i))
	}
	h.Publish(t, ex, "k", nil, endBody)
	got, dropped := takeUntilEnd(t, ok)
	if !slices.Equal(got, []int{0, 1, 2}) || dropped != 0 {
		t.Fatalf("the other subscription got %v (dropped %d), want [0 1 2]", got, dropped)
	}
	if !b.Connected() {
		t.Fatal("broker connection went down after a refused bind")
	}
	// New subscriptions are served after the refusal, and the failed
	// subscriptions' valid bindings are gone.
	later := subscribe(t, b, binding.Binding{Exchange: ex2, RoutingKeyPattern: "later"})
	syncBroker(t, b)
	bs := h.QueueBindings(t, b.QueueName())
	if got, want := patterns(t, bs, ex), []string{"#"}; !slices.Equal(got, want) {
		t.Fatalf("bindings on the first exchange: got %q, want %q", got, want)
	}
	if got, want := patterns(t, bs, ex2), []string{"later"}; !slices.Equal(got, want) {
		t.Fatalf("bindings on the second exchange: got %q, want %q", got, want)
	}
	h.Publish(t, ex2, "later", nil, endBody)
	if got, _ := takeUntilEnd(t, later); len(got) != 0 {
		t.Fatalf("later subscription got %v", got)
	}
}

// testChurn subscribes and closes the same few keys from many tests at
// once, so that binds and unbinds of one key race; each subscription must
// get a message published right after it is ready, and no binding may
// remain once all are closed.
func testChurn(t *testing.T, h Harness) {
	const workers, rounds = 16, 40
	// A subscription gets the messages of every worker on its key while it
	// waits for its own. With a buffer smaller than all the messages of
	// the test, a reader that the scheduler holds back while the others
	// run on would drop its own message as the oldest, which is overflow,
	// not a miss.
	b := startBroker(t, h, broker.Config{ClientBuffer: workers * rounds})
	ex := h.NewExchange(t)

	// The group returns once every worker is done.
	t.Run("workers", func(t *testing.T) {
		for w := range workers {
			t.Run(fmt.Sprint(w), func(t *testing.T) {
				t.Parallel()
				for i := range rounds {
					key := fmt.Sprintf("k%d", (w+i)%3)
					sub, err := b.Subscribe(context.Background(), []binding.Binding{{Exchange: ex, RoutingKeyPattern: key}})
					if err != nil {
						t.Fatalf("round %d key %s: subscribe: %v", i, key, err)
					}
					tag := fmt.Sprintf("%d-%d", w, i)
					h.Publish(t, ex, key, nil, []byte(tag))
					err = waitForBody(sub, tag)
					sub.Close()
					if err != nil {
						t.Fatalf("round %d key %s: %v", i, key, err)
					}
				}
			})
		}
	})
	syncBroker(t, b)
	if bs := h.QueueBindings(t, b.QueueName()); len(bs) != 0 {
		t.Fatalf("bindings left after churn: %v", bs)
	}
}

// waitForBody waits until sub gets a message with body; other messages
// (published by other workers on the same key) are skipped. A drop ends the
// wait with an error, since the dropped message may be the one it waits for.
func waitForBody(sub *broker.Subscription, body string) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var msgs []*broker.Message
	for {
		select {
		case <-sub.Notify():
		case <-sub.Done():
			return sub.Err()
		case <-timer.C:
			return fmt.Errorf("message %q not received within %v", body, timeout)
		}
		var dropped int
		msgs, dropped = sub.Take(msgs[:0])
		if dropped > 0 {
			return fmt.Errorf("waiting for message %q: the subscription's buffer overflowed and dropped %d", body, dropped)
		}
		for _, m := range msgs {
			if string(m.Body) == body {
				return nil
			}
		}
	}
}

// testConnectionLost checks that a lost connection ends its subscriptions
// with ErrConnectionLost, and that once the Broker has reconnected a new
// subscription is served, on a new queue.
func testConnectionLost(t *testing.T, h Harness) {
	b := startBroker(t, h, broker.Config{MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second})
	ex := h.NewExchange(t)
	before := subscribe(t, b, binding.Binding{Exchange: ex, RoutingKeyPattern: "#"})
	queue := b.QueueName()

	h.Disconnect(t, b)
	// Outages through RabbitMQ's management API take a few seconds to
	// find the connection.
	const outage = 30 * time.Second
	select {
	case <-before.Done():
	case <-time.After(outage):
		t.Fatalf("subscription not done within %v of the disconnection", outage)
	}
	if err := before.Err(); !errors.Is(err, broker.ErrConnectionLost) {
		t.Fatalf("subscription ended with %v, want ErrConnectionLost", err)
	}
	before.Close()

	WaitFor(t, outage, "broker reconnected", b.Connected)
	if q := b.QueueName(); q == "" || q == queue {
		t.Fatalf("queue after reconnecting: %q, want a new one (was %q)", q, queue)
	}
	after := subscribe(t, b, binding.Binding{Exchange: ex, RoutingKeyPattern: "#"})
	h.Publish(t, ex, "k", nil, numberBody(t, 1))
	h.Publish(t, ex, "k", nil, endBody)
	if got, dropped := takeUntilEnd(t, after); !slices.Equal(got, []int{1}) || dropped != 0 {
		t.Fatalf("subscription after reconnecting got %v (dropped %d), want [1]", got, dropped)
	}
}

// testSurviving checks that a surviving subscription outlives a lost
// connection: it is not done, its bindings are on the new queue before it
// reports its gap, nothing reaches it before the gap, and every matching
// message published after the gap does, in order; a surviving subscription
// closed meanwhile leaves no binding behind, while a plain one ends as
// testConnectionLost says.
func testSurviving(t *testing.T, h Harness) {
	b := startBroker(t, h, broker.Config{MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second})
	ex := h.NewExchange(t)
	sub := subscribeSurviving(t, b, binding.Binding{Exchange: ex, RoutingKeyPattern: "a.#"}, binding.Binding{Exchange: ex, RoutingKeyPattern: "b.*"})
	closed := subscribeSurviving(t, b, binding.Binding{Exchange: ex, RoutingKeyPattern: "c"})
	plain := subscribe(t, b, binding.Binding{Exchange: ex, RoutingKeyPattern: "#"})
	queue := b.QueueName()
	// One message before the loss: the first after it is the new
	// connection's first too, which must not pass for one it has.
	h.Publish(t, ex, "a", nil, endBody)
	if got, _ := takeUntilEnd(t, sub); len(got) != 0 {
		t.Fatalf("before the loss: got %v", got)
	}

	h.Disconnect(t, b)
	const outage = 30 * time.Second
	select {
	case <-plain.Done():
	case <-time.After(outage):
		t.Fatalf("plain subscription not done within %v of the disconnection", outage)
	}
	if err := plain.Err(); !errors.Is(err, broker.ErrConnectionLost) {
		t.Fatalf("plain subscription ended with %v, want ErrConnectionLost", err)
	}
	plain.Close()
	closed.Close()

	awaitGap(t, sub, outage)
	q := b.QueueName()
	if q == "" || q == queue {
		t.Fatalf("queue after the gap: %q, want a new one (was %q)", q, queue)
	}
	want := []string{"a.#", "b.*"}
	if got := patterns(t, h.QueueBindings(t, q), ex); !slices.Contains(got, want[0]) || !slices.Contains(got, want[1]) {
		t.Fatalf("bindings of the new queue at the gap: %q, want %q among them", got, want)
	}
	syncBroker(t, b)
	if got := patterns(t, h.QueueBindings(t, q), ex); !slices.Equal(got, want) {
		t.Fatalf("bindings of the new queue: %q, want %q", got, want)
	}
	h.Publish(t, ex, "b.x", nil, numberBody(t, 2))
	h.Publish(t, ex, "c", nil, numberBody(t, 99))
	h.Publish(t, ex, "a", nil, numberBody(t, 3))
	h.Publish(t, ex, "a.y", []string{"b.z"}, numberBody(t, 4))
	h.Publish(t, ex, "a", nil, endBody)
	if got, dropped := takeUntilEnd(t, sub); !slices.Equal(got, []int{2, 3, 4}) || dropped != 0 {
		t.Fatalf("after the gap: got %v (dropped %d), want [2 3 4]", got, dropped)
	}
	if sub.TakeGap() {
		t.Fatal("a second gap for one lost connection")
	}
	if err := sub.Err(); err != nil {
		t.Fatalf("surviving subscription: %v", err)
	}
}

// awaitGap waits until sub reports a gap, and fails t when a message comes
// first or no gap within d.
func awaitGap(t *testing.T, sub *broker.Subscription, d time.Duration) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-sub.Notify():
		case <-sub.Done():
			t.Fatalf("surviving subscription done: %v", sub.Err())
		case <-timer.C:
			t.Fatalf("no gap within %v", d)
		}
		if sub.TakeGap() {
			return
		}
		if msgs, _ := sub.Take(nil); len(msgs) > 0 {
			t.Fatalf("a message before the gap: %s", msgs[0].Body)
		}
	}
}

// testCovering checks that a key that a bound wider key covers is served
// without a binding of its own, and that when the wider key goes, the keys
// it covered get their own bindings first: a stream of messages published
// all along reaches them without a gap.
func testCovering(t *testing.T, h Harness) {
	b := startBroker(t, h, broker.Config{ClientBuffer: 100000})
	ex := h.NewExchange(t)
	bound := func() []string {
		syncBroker(t, b)
		return patterns(t, h.QueueBindings(t, b.QueueName()), ex)
	}

	wide := subscribe(t, b, binding.Binding{Exchange: ex, RoutingKeyPattern: "primary.#"})
	narrow := []*broker.Subscription{
		subscribe(t, b, binding.Binding{Exchange: ex, RoutingKeyPattern: "primary.a.#"}),
		subscribe(t, b, binding.Binding{Exchange: ex, RoutingKeyPattern: "primary.*.x"}),
	}
	if got, want := bound(), []string{"primary.#"}; !slices.Equal(got, want) {
		t.Fatalf("bindings with the wide key in use: got %q, want %q", got, want)
	}

	// Publish without pause while the wide key's last user leaves.
	const n = 300
	published := make(chan struct{})
	go func() {
		defer close(published)
		for i := range n {
			h.Publish(t, ex, "primary.a.x", nil, numberBody(t, i))
			if i == n/3 {
				wide.Close()
			}
		}
		h.Publish(t, ex, "primary.a.x", nil, endBody)
	}()
	for i, sub := range narrow {
		got, dropped := takeUntilEnd(t, sub)
		want := make([]int, n)
		for j := range want {
			want[j] = j
		}
		if dropped != 0 || !slices.Equal(got, want) {
			t.Fatalf("covered subscription %d got %d of %d messages (dropped %d): %v", i, len(got), n, dropped, got)
		}
	}
	<-published
	if got, want := bound(), []string{"primary.*.x", "primary.a.#"}; !slices.Equal(got, want) {
		t.Fatalf("bindings after the wide key went: got %q, want %q", got, want)
	}
	for _, sub := range narrow {
		sub.Close()
	}
	if got := bound(); len(got) != 0 {
		t.Fatalf("bindings after all closed: %q", got)
	}
}

// testProperties: a subscription that asks for properties gets each
// message's properties and headers as the publisher sent them, CC among
// the headers; once none asks, messages come without them.
func testProperties(t *testing.T, h Harness) {
	b := startBroker(t, h, broker.Config{})
	ex := h.NewExchange(t)
	bs := []binding.Binding{{Exchange: ex, RoutingKeyPattern: "k.#"}}
	plain := subscribe(t, b, bs...)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	withProps, err := b.SubscribeWith(ctx, bs, broker.SubscribeOptions{Properties: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(withProps.Close)

	ts := time.Unix(1764645255, 0)
	sent := &broker.Properties{
		ContentType: "application/json", ContentEncoding: "identity", DeliveryMode: 2, Priority: 3,
		CorrelationID: "corr", ReplyTo: "reply", Expiration: "600000", MessageID: "id-1",
		Timestamp: ts, Type: "kind", AppID: "app",
		Headers: amqp.Table{"s": "text", "n": int32(-7), "t": amqp.Table{"ok": true}, "a": []any{"x", int64(1)}},
	}
	h.PublishWith(t, ex, "k.1", []string{"route.r"}, numberBody(t, 1), sent)
	h.Publish(t, ex, "k.end", nil, endBody)

	got := takeMessagesUntilEnd(t, withProps)
	if len(got) != 1 || got[0].Props == nil {
		t.Fatalf("with properties: got %d messages, want 1 with properties", len(got))
	}
	p := got[0].Props
	if p.ContentType != sent.ContentType || p.ContentEncoding != sent.ContentEncoding || p.DeliveryMode != 2 ||
		p.Priority != 3 || p.CorrelationID != "corr" || p.ReplyTo != "reply" || p.Expiration != "600000" ||
		p.MessageID != "id-1" || !p.Timestamp.Equal(ts) || p.Type != "kind" || p.AppID != "app" {
		t.Errorf("properties: got %+v, want %+v", p, sent)
	}
	want := amqp.Table{"s": "text", "n": int32(-7), "t": amqp.Table{"ok": true}, "a": []any{"x", int64(1)},
		"CC": []any{"route.r"}}
	if !reflect.DeepEqual(p.Headers, want) {
		t.Errorf("headers: got %#v, want %#v", p.Headers, want)
	}
	if len(takeMessagesUntilEnd(t, plain)) != 1 {
		t.Fatal("the subscription without properties did not get the message")
	}

	// None asks now: the next message comes without.
	withProps.Close()
	h.PublishWith(t, ex, "k.2", nil, numberBody(t, 2), sent)
	h.Publish(t, ex, "k.end", nil, endBody)
	if got := takeMessagesUntilEnd(t, plain); len(got) != 1 || got[0].Props != nil {
		t.Fatalf("with none asking: got %d messages (the first with properties %v), want 1 without", len(got), len(got) > 0 && got[0].Props != nil)
	}
}
