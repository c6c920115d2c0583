package membroker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"eventsproxy/internal/binding"
	"eventsproxy/internal/broker"
	"eventsproxy/internal/brokertest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestConformance runs the suite that the RabbitMQ Dialer passes too.
func TestConformance(t *testing.T) {
	mb := New()
	var exchanges atomic.Int64
	brokertest.Run(t, brokertest.Harness{
		Dialer: func(*testing.T) broker.Dialer { return mb },
		NewExchange: func(t *testing.T) string {
			name := fmt.Sprintf("exchange/test/%d", exchanges.Add(1))
			mb.DeclareExchange(name)
			t.Cleanup(func() { mb.DeleteExchange(name) })
			return name
		},
		MissingExchange: func(*testing.T) string { return "exchange/test/missing" },
		Publish: func(t *testing.T, exchange, key string, cc []string, body []byte) {
			t.Helper()
			if err := mb.Publish(exchange, key, cc, body); err != nil {
				t.Fatal(err)
			}
		},
		PublishWith: func(t *testing.T, exchange, key string, cc []string, body []byte, p *broker.Properties) {
			t.Helper()
			if err := mb.PublishWith(exchange, key, cc, body, p); err != nil {
				t.Fatal(err)
			}
		},
		Reference: func(t *testing.T, bs []binding.Binding) func() [][]byte {
			return reference(t, mb, bs)
		},
		QueueBindings: func(_ *testing.T, queue string) []binding.Binding { return mb.QueueBindings(queue) },
		Disconnect:    func(*testing.T, *broker.Broker) { mb.Disconnect() },
	})
}

// reference is the suite's plain queue: a connection of its own, bound
// with bs, whose messages a goroutine collects until the end message.
func reference(t *testing.T, mb *Broker, bs []binding.Binding) func() [][]byte {
	t.Helper()
	c, err := mb.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, bd := range bs {
		if err := c.Bind(bd.Exchange, bd.RoutingKeyPattern); err != nil {
			t.Fatal(err)
		}
	}
	// Only the consumer writes bodies, and only before it closes end.
	var bodies [][]byte
	end := make(chan struct{})
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		ended := false
		_ = c.Consume(func(m *broker.Message) {
			switch {
			case ended:
			case brokertest.IsEnd(m.Body):
				ended = true
				close(end)
			default:
				bodies = append(bodies, m.Body)
			}
		})
	}()
	t.Cleanup(func() {
		_ = c.Close()
		<-consumed
	})
	return func() [][]byte {
		t.Helper()
		select {
		case <-end:
			return bodies
		case <-time.After(10 * time.Second):
			t.Fatalf("reference queue %s: no end message within 10s", c.Queue())
			return nil
		}
	}
}

// consumer runs Consume on a connection and hands its messages over a
// channel.
type consumer struct {
	conn broker.Conn
	msgs chan *broker.Message
	err  chan error // Consume's result
}

// consume starts consuming c until the test ends.
func consume(t *testing.T, c broker.Conn) *consumer {
	t.Helper()
	co := &consumer{conn: c, msgs: make(chan *broker.Message, 10000), err: make(chan error, 1)}
	go func() { co.err <- c.Consume(func(m *broker.Message) { co.msgs <- m }) }()
	t.Cleanup(func() {
		_ = c.Close()
		select {
		case <-co.err:
		case <-time.After(5 * time.Second):
			t.Error("Consume did not return within 5s of Close")
		}
	})
	return co
}

// next returns the next message the consumer got.
func (co *consumer) next(t *testing.T) *broker.Message {
	t.Helper()
	select {
	case m := <-co.msgs:
		return m
	case <-time.After(5 * time.Second):
		t.Fatalf("queue %s: no message within 5s", co.conn.Queue())
		return nil
	}
}

// bodies returns the bodies of the next n messages.
func (co *consumer) bodies(t *testing.T, n int) []string {
	t.Helper()
	out := make([]string, n)
	for i := range out {
		out[i] = string(co.next(t).Body)
	}
	return out
}

// stopped waits until Consume returns and returns its error.
func (co *consumer) stopped(t *testing.T) error {
	t.Helper()
	select {
	case err := <-co.err:
		co.err <- err // for the cleanup
		return err
	case <-time.After(5 * time.Second):
		t.Fatalf("queue %s: Consume did not return within 5s", co.conn.Queue())
		return nil
	}
}

func dial(t *testing.T, mb *Broker, bs ...binding.Binding) broker.Conn {
	t.Helper()
	c, err := mb.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, bd := range bs {
		if err := c.Bind(bd.Exchange, bd.RoutingKeyPattern); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func publish(t *testing.T, mb *Broker, exchange, key string, cc []string, body string) {
	t.Helper()
	if err := mb.Publish(exchange, key, cc, []byte(body)); err != nil {
		t.Fatal(err)
	}
}

func TestRouting(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		patterns []string
		key      string
		cc       []string
		routed   bool
	}{
		{"hash matches the empty key", []string{"#"}, "", nil, true},
		{"star needs a word", []string{"*"}, "", nil, false},
		{"empty words count", []string{"a.*.b"}, "a..b", nil, true},
		{"an empty last word counts", []string{"a.b"}, "a.b.", nil, false},
		{"routed by a CC key", []string{"cc.#"}, "primary.x", []string{"cc.one", "other"}, true},
		{"no key matches", []string{"cc.#"}, "primary.x", []string{"other"}, false},
		{"once for several bindings and keys", []string{"#", "a.#", "cc.#"}, "a.b", []string{"cc.one", "cc.two"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mb := New()
			mb.DeclareExchange("x")
			mb.DeclareExchange("other")
			var bs []binding.Binding
			for _, p := range tt.patterns {
				bs = append(bs, binding.Binding{Exchange: "x", RoutingKeyPattern: p})
			}
			bs = append(bs, binding.Binding{Exchange: "other", RoutingKeyPattern: "#"})
			co := consume(t, dial(t, mb, bs...))
			before := time.Now()
			publish(t, mb, "x", tt.key, tt.cc, "m")
			publish(t, mb, "other", "end", nil, "end")
			m := co.next(t)
			if !tt.routed {
				if string(m.Body) != "end" {
					t.Fatalf("got %q, want it not routed", m.Body)
				}
				return
			}
			want := broker.Message{Exchange: "x", RoutingKey: tt.key, CC: tt.cc, Body: []byte("m")}
			if m.Exchange != want.Exchange || m.RoutingKey != want.RoutingKey || !slices.Equal(m.CC, want.CC) ||
				string(m.Body) != "m" || m.Redelivered || m.Received.Before(before) {
				t.Fatalf("got %+v, want %+v received after %v", m, &want, before)
			}
			if next := co.next(t); string(next.Body) != "end" {
				t.Fatalf("after the message: got %q, want the end (a message goes to a queue once)", next.Body)
			}
		})
	}
}

// TestQueueDropsOldest checks that a queue that nobody consumes keeps its
// newest messages, as a RabbitMQ queue with x-max-length does.
func TestQueueDropsOldest(t *testing.T) {
	t.Parallel()
	mb := New()
	mb.maxLength = 3
	mb.DeclareExchange("x")
	c := dial(t, mb, binding.Binding{Exchange: "x", RoutingKeyPattern: "#"})
	for i := 1; i <= 5; i++ {
		publish(t, mb, "x", "k", nil, strconv.Itoa(i))
	}
	co := consume(t, c)
	if got, want := co.bodies(t, 3), []string{"3", "4", "5"}; !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	publish(t, mb, "x", "k", nil, "6")
	if got := string(co.next(t).Body); got != "6" {
		t.Fatalf("after the drops: got %q, want 6", got)
	}
	cc := c.(*conn)
	cc.mu.Lock()
	dropped := cc.dropped
	cc.mu.Unlock()
	if dropped != 2 {
		t.Fatalf("dropped %d, want 2", dropped)
	}
}

// TestDisconnect checks that Disconnect ends every connection as an outage
// would, and that the broker serves new connections right away.
func TestDisconnect(t *testing.T) {
	t.Parallel()
	mb := New()
	mb.DeclareExchange("x")
	bd := binding.Binding{Exchange: "x", RoutingKeyPattern: "#"}
	c1, c2 := dial(t, mb, bd), dial(t, mb, bd)
	co1, co2 := consume(t, c1), consume(t, c2)
	mb.Disconnect()
	for _, co := range []*consumer{co1, co2} {
		if err := co.stopped(t); !errors.Is(err, broker.ErrConnectionLost) {
			t.Errorf("Consume returned %v, want ErrConnectionLost", err)
		}
		if bs := mb.QueueBindings(co.conn.Queue()); bs != nil {
			t.Errorf("bindings of a lost queue: %v", bs)
		}
		if err := co.conn.Bind("x", "#"); !errors.Is(err, broker.ErrConnectionLost) {
			t.Errorf("Bind after Disconnect: %v, want ErrConnectionLost", err)
		}
	}
	publish(t, mb, "x", "k", nil, "lost") // reaches nobody
	c3 := dial(t, mb, bd)
	if c3.Queue() == c1.Queue() || c3.Queue() == c2.Queue() {
		t.Fatalf("queue name %q reused", c3.Queue())
	}
	co3 := consume(t, c3)
	publish(t, mb, "x", "k", nil, "new")
	if got := string(co3.next(t).Body); got != "new" {
		t.Fatalf("new connection got %q", got)
	}
}

// TestClose checks that Close ends Consume and removes the queue's
// bindings, and that it is idempotent.
func TestClose(t *testing.T) {
	t.Parallel()
	mb := New()
	mb.DeclareExchange("x")
	c := dial(t, mb, binding.Binding{Exchange: "x", RoutingKeyPattern: "#"})
	co := consume(t, c)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := co.stopped(t); err == nil {
		t.Fatal("Consume returned nil after Close")
	}
	if bs := mb.QueueBindings(c.Queue()); bs != nil {
		t.Fatalf("bindings of a closed queue: %v", bs)
	}
	publish(t, mb, "x", "k", nil, "after")
}

// TestExchanges checks refusals for unknown exchanges, that a refused Bind
// leaves the connection usable, and that deleting an exchange drops its
// bindings.
func TestExchanges(t *testing.T) {
	t.Parallel()
	mb := New()
	if err := mb.Publish("missing", "k", nil, nil); !errors.Is(err, broker.ErrExchangeNotFound) {
		t.Fatalf("Publish to a missing exchange: %v, want ErrExchangeNotFound", err)
	}
	mb.DeclareExchange("x")
	c := dial(t, mb)
	if err := c.Bind("missing", "#"); !errors.Is(err, broker.ErrExchangeNotFound) {
		t.Fatalf("Bind to a missing exchange: %v, want ErrExchangeNotFound", err)
	}
	if err := c.Unbind("missing", "#"); err != nil {
		t.Fatalf("Unbind from a missing exchange: %v", err)
	}
	if err := c.Bind("x", "a"); err != nil {
		t.Fatalf("Bind after a refusal: %v", err)
	}
	if err := c.Bind("x", "a"); err != nil {
		t.Fatalf("Bind twice: %v", err)
	}
	mb.DeclareExchange("x") // idempotent: keeps the binding
	want := []binding.Binding{{Exchange: "x", RoutingKeyPattern: "a"}}
	if got := mb.QueueBindings(c.Queue()); !slices.Equal(got, want) {
		t.Fatalf("bindings: got %v, want %v", got, want)
	}
	co := consume(t, c)
	publish(t, mb, "x", "a", nil, "1")
	if got := string(co.next(t).Body); got != "1" {
		t.Fatalf("got %q, want 1", got)
	}

	mb.DeleteExchange("x")
	if got := mb.QueueBindings(c.Queue()); got != nil {
		t.Fatalf("bindings after DeleteExchange: %v", got)
	}
	mb.DeclareExchange("x")
	if err := c.Bind("x", "end"); err != nil {
		t.Fatal(err)
	}
	publish(t, mb, "x", "a", nil, "2") // the old binding went with the exchange
	publish(t, mb, "x", "end", nil, "end")
	if got := string(co.next(t).Body); got != "end" {
		t.Fatalf("got %q, want end", got)
	}
	if err := c.Unbind("x", "end"); err != nil {
		t.Fatal(err)
	}
	if got := mb.QueueBindings(c.Queue()); got != nil {
		t.Fatalf("bindings after Unbind: %v", got)
	}
}

// TestGlobalOrder publishes from many goroutines at once to two exchanges
// and checks that queues see one order: a queue bound to one exchange gets
// exactly the messages of a queue bound to both, filtered, in the same
// order, and each publisher's messages in the order it published them.
func TestGlobalOrder(t *testing.T) {
	t.Parallel()
	mb := New()
	mb.DeclareExchange("x1")
	mb.DeclareExchange("x2")
	both := consume(t, dial(t, mb, binding.Binding{Exchange: "x1", RoutingKeyPattern: "#"}, binding.Binding{Exchange: "x2", RoutingKeyPattern: "#"}))
	both2 := consume(t, dial(t, mb, binding.Binding{Exchange: "x2", RoutingKeyPattern: "#"}, binding.Binding{Exchange: "x1", RoutingKeyPattern: "#"}))
	one := consume(t, dial(t, mb, binding.Binding{Exchange: "x1", RoutingKeyPattern: "#"}))

	const publishers, each = 8, 200
	var wg sync.WaitGroup
	errs := make(chan error, publishers)
	for p := range publishers {
		wg.Go(func() {
			for i := range each {
				ex := "x1"
				if (p+i)%2 == 0 {
					ex = "x2"
				}
				if err := mb.Publish(ex, "k", nil, []byte(fmt.Sprintf("%s %d %d", ex, p, i))); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	all := both.bodies(t, publishers*each)
	if got := both2.bodies(t, publishers*each); !slices.Equal(got, all) {
		t.Fatal("two queues bound alike got different orders")
	}
	var onX1 []string
	last := make(map[int]int)
	for _, body := range all {
		var ex string
		var p, i int
		if _, err := fmt.Sscanf(body, "%s %d %d", &ex, &p, &i); err != nil {
			t.Fatal(err)
		}
		if prev, ok := last[p]; ok && i <= prev {
			t.Fatalf("publisher %d: message %d after %d", p, i, prev)
		}
		last[p] = i
		if ex == "x1" {
			onX1 = append(onX1, body)
		}
	}
	if got := one.bodies(t, len(onX1)); !slices.Equal(got, onX1) {
		t.Fatal("the queue bound to x1 only got another order than the one bound to both")
	}
}
