//go:build integration

package broker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	amqp "github.com/rabbitmq/amqp091-go"

	"eventsproxy/internal/binding"
	"eventsproxy/internal/metrics"
	"eventsproxy/internal/rabbittest"
)

// stallDialer dials through d and gives connections whose router can be
// stopped: while mu is held, the message being routed waits, as in a
// process that the machine starves or that the kernel stopped.
type stallDialer struct {
	Dialer
	mu sync.Mutex
}

func (d *stallDialer) Dial(ctx context.Context) (Conn, error) {
	c, err := d.Dialer.Dial(ctx)
	if err != nil {
		return nil, err
	}
	return stallConn{c, d}, nil
}

type stallConn struct {
	Conn
	d *stallDialer
}

func (c stallConn) Consume(handle func(*Message)) error {
	return c.Conn.Consume(func(m *Message) {
		c.d.mu.Lock()
		//lint:ignore SA2001 waiting for the test to let the router go
		c.d.mu.Unlock()
		handle(m)
	})
}

// dropStream is one subscription of the drop tests and what it should get.
type dropStream struct {
	pattern string
	want    []int // the numbers of the messages that match, in order
	sub     *Subscription

	mu        sync.Mutex
	received  int
	announced int // dropped, as Take said
	next      int // the position in want after the last message received
	late      int // messages received before the drops that preceded them were announced
	wrong     []string
	uncounted bool // told of a loss of unknown size
	updated   chan struct{}
}

// accounted is received + announced dropped.
func (st *dropStream) accounted() int { return st.received + st.announced }

// read takes the subscription's messages until ctx is done, checking each
// against want: messages come in order, each once, and when one comes,
// every message before it that did not come has been announced dropped.
// An announcement may come early, before messages that preceded the drop:
// the broker tells of drops on a queue of their own.
func (st *dropStream) read(ctx context.Context) {
	var msgs []*Message
	for {
		select {
		case <-ctx.Done():
			return
		case <-st.sub.Done():
			return
		case <-st.sub.Notify():
		}
		var dropped int
		msgs, dropped = st.sub.Take(msgs[:0])
		uncounted := st.sub.Uncounted()
		st.mu.Lock()
		st.uncounted = st.uncounted || uncounted
		st.announced += dropped
		for _, m := range msgs {
			num, _, _ := strings.Cut(string(m.Body), " ")
			n, err := strconv.Atoi(num)
			if err != nil {
				st.wrong = append(st.wrong, fmt.Sprintf("body %q", m.Body))
				continue
			}
			i := st.index(n)
			switch {
			case i < 0:
				st.wrong = append(st.wrong, fmt.Sprintf("message %d, which does not match", n))
			case i < st.next:
				st.wrong = append(st.wrong, fmt.Sprintf("message %d after message %d (out of order, or twice)", n, st.want[st.next-1]))
			default:
				// The i messages before this one were received or must
				// have been announced.
				if st.received+st.announced < i {
					st.late++
				}
				st.received++
				st.next = i + 1
			}
		}
		st.mu.Unlock()
		select {
		case st.updated <- struct{}{}:
		default:
		}
	}
}

func (st *dropStream) index(n int) int {
	for i, w := range st.want {
		if w == n {
			return i
		}
		if w > n {
			break
		}
	}
	return -1
}

// dropFixture is a Broker on a stallable connection with the streams of
// dropStreams subscribed, and a publisher of numbered messages.
type dropFixture struct {
	t       *testing.T
	ctx     context.Context
	d       *stallDialer
	b       *Broker
	pub     *amqp.Channel
	ex      string
	streams []*dropStream
}

func newDropFixture(t *testing.T, cfg AMQPConfig) *dropFixture {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	conn := rabbittest.Dial(t, "eventsproxy test "+t.Name())
	f := &dropFixture{t: t, ctx: ctx, pub: rabbittest.Channel(t, conn)}
	f.ex = rabbittest.Exchange(t, f.pub, "eventsproxy-test/x/")
	cfg.URL = rabbittest.URL()
	cfg.QueuePrefix = rabbittest.Unique("eventsproxy-test/") + "/"
	cfg.ConnectionName = "eventsproxy test " + t.Name()
	f.d = &stallDialer{Dialer: AMQP(cfg)}
	// Buffers that hold every message of a run: what a stream is told of
	// is then what the broker dropped alone, not also what its buffer did
	// while the test's reader caught up with a batch.
	f.b = New(f.d, Config{Metrics: metrics.New(prometheus.NewRegistry()), ClientBuffer: 100_000, ClientBufferBytes: 1 << 30}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	runCtx, stop := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- f.b.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-f.b.Attempted():
	case <-ctx.Done():
		t.Fatal("no connection attempt")
	}
	if err := f.b.AttemptErr(); err != nil {
		t.Fatal(err)
	}
	return f
}

// subscribe opens a stream per pattern and starts reading them.
func (f *dropFixture) subscribe(patterns ...string) {
	for _, p := range patterns {
		sub, err := f.b.Subscribe(f.ctx, []binding.Binding{{Exchange: f.ex, RoutingKeyPattern: p}})
		if err != nil {
			f.t.Fatal(err)
		}
		f.t.Cleanup(sub.Close)
		st := &dropStream{pattern: p, sub: sub, updated: make(chan struct{}, 1)}
		f.streams = append(f.streams, st)
		go st.read(f.ctx)
	}
}

// key returns the routing key and CC of message i: a.i for even i, b.i for
// odd, with CC cc.i for every third.
func dropKey(i int) (string, []string) {
	key := "a." + strconv.Itoa(i)
	if i%2 == 1 {
		key = "b." + strconv.Itoa(i)
	}
	if i%3 == 0 {
		return key, []string{"cc." + strconv.Itoa(i)}
	}
	return key, nil
}

// publish publishes messages 0 … n-1 with the router stopped, waits for
// the broker's confirmations, and lets the router go. The streams' want
// lists are filled in.
func (f *dropFixture) publish(n, size int) {
	t := f.t
	for _, st := range f.streams {
		p := topicPattern(t, st.pattern)
		for i := range n {
			key, cc := dropKey(i)
			if p(key) || len(cc) > 0 && p(cc[0]) {
				st.want = append(st.want, i)
			}
		}
	}
	f.d.mu.Lock()
	pad := strings.Repeat(" ", size)
	var conf *amqp.DeferredConfirmation
	var err error
	for i := range n {
		key, cc := dropKey(i)
		msg := amqp.Publishing{Body: []byte(strconv.Itoa(i) + pad)}
		if cc != nil {
			msg.Headers = amqp.Table{"CC": []interface{}{cc[0]}}
		}
		// Not waiting for each confirmation: with the router stopped the
		// connection hears no heartbeats, and must not be stopped for
		// three intervals (30 s), however slow the machine is.
		conf, err = f.pub.PublishWithDeferredConfirmWithContext(f.ctx, f.ex, key, false, false, msg)
		if err != nil {
			f.d.mu.Unlock()
			t.Fatal(err)
		}
	}
	ok, err := conf.WaitContext(f.ctx)
	f.d.mu.Unlock()
	if !ok || err != nil {
		t.Fatalf("publishes not confirmed: ok=%v err=%v", ok, err)
	}
}

// topicPattern returns a matcher for a pattern of the forms these tests
// use: "#", "w.#" or a word that matches nothing.
func topicPattern(t *testing.T, p string) func(string) bool {
	switch {
	case p == "#":
		return func(string) bool { return true }
	case strings.HasSuffix(p, ".#"):
		w := strings.TrimSuffix(p, "#")
		return func(k string) bool { return strings.HasPrefix(k, w) }
	case !strings.ContainsAny(p, "#*"):
		return func(k string) bool { return k == p }
	}
	t.Fatalf("pattern %q not supported by the test", p)
	return nil
}

// await waits until done says yes for every stream.
func (f *dropFixture) await(what string, done func(st *dropStream) bool) {
	for _, st := range f.streams {
		for {
			st.mu.Lock()
			ok := done(st)
			pos := st.accounted()
			st.mu.Unlock()
			if ok {
				break
			}
			st.mu.Lock()
			wrong := st.wrong
			st.mu.Unlock()
			if len(wrong) > 0 {
				f.t.Fatalf("stream %q: %v", st.pattern, wrong[:min(len(wrong), 5)])
			}
			select {
			case <-st.updated:
			case <-st.sub.Done():
				f.t.Fatalf("stream %q: %s: the subscription ended: %v (received and announced %d of %d)", st.pattern, what, st.sub.Err(), pos, len(st.want))
			case <-f.ctx.Done():
				f.t.Fatalf("stream %q: %s: not within the deadline (received and announced %d of %d)", st.pattern, what, pos, len(st.want))
			}
		}
	}
}

// TestBrokerDropsReachStreams stops the router while numbered messages
// arrive, so that the queue's length limit drops many of them on the
// broker: every stream must learn of each dropped message that it would
// have had, as an overflow count, before its next message.
func TestBrokerDropsReachStreams(t *testing.T) {
	f := newDropFixture(t, AMQPConfig{QueueMaxLength: 300, DroppedMaxLength: 100_000})
	f.subscribe("a.#", "b.#", "#", "cc.#")
	const n = 10_000
	f.publish(n, 1000)
	f.await("every message received or announced dropped", func(st *dropStream) bool { return st.accounted() >= len(st.want) })
	for _, st := range f.streams {
		st.mu.Lock()
		if len(st.wrong) > 0 {
			t.Errorf("stream %q: %d wrong: %v", st.pattern, len(st.wrong), st.wrong[:min(len(st.wrong), 5)])
		}
		if st.late > 0 {
			t.Errorf("stream %q: %d messages came before the drops that preceded them were announced", st.pattern, st.late)
		}
		if st.uncounted {
			t.Errorf("stream %q told of an uncounted loss", st.pattern)
		}
		if st.accounted() != len(st.want) {
			t.Errorf("stream %q: received %d and announced %d dropped, want %d in all", st.pattern, st.received, st.announced, len(st.want))
		}
		t.Logf("stream %q: received %d, announced %d dropped", st.pattern, st.received, st.announced)
		st.mu.Unlock()
	}
	// The broker dropped messages (#) got all of them.
	all := f.streams[2]
	if got := testutil.ToFloat64(f.b.cfg.Metrics.MessagesBrokerDropped); got != float64(all.announced) {
		t.Errorf("eventsproxy_broker_messages_dropped_total %v, want the %d that stream %q was told of", got, all.announced, all.pattern)
	}
	if all.announced == 0 {
		t.Errorf("the broker dropped nothing of %d messages: the test did not test", n)
	}
}

// TestUncountedDropsReachEveryStream stops the router for longer than the
// queue of dropped messages can hold: the drops it loses in turn cannot be
// counted, and every stream, even one that nothing matched, must be told
// that it may have lost messages.
func TestUncountedDropsReachEveryStream(t *testing.T) {
	f := newDropFixture(t, AMQPConfig{QueueMaxLength: 300, DroppedMaxLength: 50})
	f.subscribe("a.#", "#", "nothing")
	const n = 10_000
	f.publish(n, 1000)
	f.await("told of an uncounted loss", func(st *dropStream) bool { return st.uncounted })
	for _, st := range f.streams {
		st.mu.Lock()
		if len(st.wrong) > 0 {
			t.Errorf("stream %q: %d wrong: %v", st.pattern, len(st.wrong), st.wrong[:min(len(st.wrong), 5)])
		}
		if st.accounted() > len(st.want) {
			t.Errorf("stream %q: received %d and announced %d dropped, more than the %d published", st.pattern, st.received, st.announced, len(st.want))
		}
		st.mu.Unlock()
	}
	if got := testutil.ToFloat64(f.b.cfg.Metrics.BrokerDropsUncounted); got == 0 {
		t.Error("eventsproxy_broker_drops_uncounted_total is 0")
	}
}
