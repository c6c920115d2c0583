package broker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"eventsproxy/internal/binding"
	"eventsproxy/internal/metrics"
)

// benchConn is a Conn whose binds succeed at once and whose queue never
// delivers: benchmarks call the session's router themselves.
type benchConn struct {
	closed    chan struct{}
	closeOnce sync.Once
}

func (c *benchConn) Queue() string                   { return "bench" }
func (c *benchConn) Bind(exchange, p string) error   { return nil }
func (c *benchConn) Unbind(exchange, p string) error { return nil }
func (c *benchConn) Consume(func(*Message)) error {
	<-c.closed
	return ErrConnectionLost
}
func (c *benchConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return nil
}

// benchSession returns a session on a benchConn, ended when b ends, with
// re-binds as `serve` has them.
func benchSession(b *testing.B) *session {
	b.Helper()
	every := intervals{rebind: DefaultRebindPeriod, rebindGap: time.Second / DefaultRebindRate}
	s := startSession(&benchConn{closed: make(chan struct{})}, Limits{ClientBuffer: 50}.withDefaults(), every, metrics.Discard(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	b.Cleanup(func() { s.end(ErrClosed) })
	return s
}

func benchSubscribe(b *testing.B, s *session, bs ...binding.Binding) *Subscription {
	b.Helper()
	sub, err := s.subscribe(context.Background(), bs, false)
	if err != nil {
		b.Fatal(err)
	}
	return sub
}

// cpuTime returns the CPU time the process has used: fan-out benchmarks
// report it per subscription beside wall time, which a shared machine
// disturbs more (it counts the readers' goroutines too).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

const benchExchange = "exchange/taskcluster-queue/v1/task-completed"

// benchMessage is a Pulse task-completed message: a 10-word routing key and
// two CC routes.
func benchMessage(body []byte) *Message {
	return &Message{
		Exchange:   benchExchange,
		RoutingKey: "primary.YTpD5kiRQt2iJbUbA8sUvw.0.us-east-1.i-0c4d1e2f3a4b5c6d7.aws-provisioner-v1.gecko-t-linux-large.gecko-level-3.VrvpkJeBQ9mfez0-ezFBPw._",
		CC: []string{
			"route.index.gecko.v2.mozilla-central.latest.firefox.linux64-opt",
			"route.tc-treeherder.v2.mozilla-central.3f2b6c1e9a7d4e5f8a0b1c2d3e4f5a6b7c8d9e0f.41234",
		},
		Body:     body,
		Received: time.Now(),
	}
}

// benchPatterns returns n distinct patterns of the kinds Pulse users bind:
// a task's messages, a worker type's, a scheduler's, an index route's.
// Three of them (when n >= 3) match benchMessage.
func benchPatterns(n int) []string {
	ps := []string{
		"primary.*.*.*.*.*.gecko-t-linux-large.#",
		"#.gecko-level-3.#",
		"primary.YTpD5kiRQt2iJbUbA8sUvw.#",
	}
	for i := 0; len(ps) < n; i++ {
		switch i % 10 {
		case 7:
			ps = append(ps, fmt.Sprintf("primary.*.*.*.*.*.worker-type-%d.#", i))
		case 8:
			ps = append(ps, fmt.Sprintf("#.scheduler-%d.#", i))
		case 9:
			ps = append(ps, fmt.Sprintf("route.index.project.p%d.#", i))
		default:
			ps = append(ps, fmt.Sprintf("primary.task%018d.#", i))
		}
	}
	return ps[:n]
}

// BenchmarkRoute matches one message against 1, 100 and 10,000 distinct
// bindings on its exchange, each with one subscription, through the
// session's router. Three bindings match; their subscriptions' buffers are
// full, so each push also drops the oldest message.
func BenchmarkRoute(b *testing.B) {
	for _, n := range []int{1, 100, 10000} {
		b.Run(fmt.Sprintf("bindings=%d", n), func(b *testing.B) {
			s := benchSession(b)
			for _, p := range benchPatterns(n) {
				benchSubscribe(b, s, binding.Binding{Exchange: benchExchange, RoutingKeyPattern: p})
			}
			m := benchMessage([]byte(`{}`))
			b.ReportAllocs()
			for b.Loop() {
				s.router.route(m)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/binding")
		})
	}
}

// BenchmarkFanout routes one message to 1,000 and 10,000 subscriptions that
// share one binding: the cost of pushing into their buffers. Nobody reads,
// so the notify channel is full and the buffers drop their oldest.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("subscriptions=%d", n), func(b *testing.B) {
			s := benchSession(b)
			for range n {
				benchSubscribe(b, s, binding.Binding{Exchange: benchExchange, RoutingKeyPattern: "primary.#"})
			}
			m := benchMessage([]byte(`{}`))
			b.ReportAllocs()
			cpu := cpuTime()
			for b.Loop() {
				s.router.route(m)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/subscription")
			b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N)/float64(n), "cpu-ns/subscription")
		})
	}
}

// BenchmarkFanoutToReaders routes one message to n subscriptions, each read
// by a goroutine of its own as a stream does (Notify, then Take), and waits
// until every reader has taken it: the push, the wake-up and the take.
func BenchmarkFanoutToReaders(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("subscriptions=%d", n), func(b *testing.B) {
			s := benchSession(b)
			var taken atomic.Int64
			all := make(chan struct{}, 1)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for range n {
				sub := benchSubscribe(b, s, binding.Binding{Exchange: benchExchange, RoutingKeyPattern: "primary.#"})
				wg.Add(1)
				go func() {
					defer wg.Done()
					var msgs []*Message
					for {
						select {
						case <-stop:
							return
						case <-sub.Notify():
							msgs, _ = sub.Take(msgs[:0])
							if taken.Add(int64(len(msgs))) == int64(n) {
								all <- struct{}{}
							}
							clear(msgs)
						}
					}
				}()
			}
			b.Cleanup(func() {
				close(stop)
				wg.Wait()
			})
			m := benchMessage([]byte(`{}`))
			b.ReportAllocs()
			cpu := cpuTime()
			for b.Loop() {
				taken.Store(0)
				s.router.route(m)
				<-all
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/subscription")
			b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N)/float64(n), "cpu-ns/subscription")
		})
	}
}

// pulseBody is a Pulse task-completed message body of about 1.3 KB, compact
// JSON as Taskcluster publishes it.
var pulseBody = []byte(`{"version":1,"status":{"taskId":"YTpD5kiRQt2iJbUbA8sUvw","provisionerId":"aws-provisioner-v1",` +
	`"workerType":"gecko-t-linux-large","schedulerId":"gecko-level-3","taskGroupId":"VrvpkJeBQ9mfez0-ezFBPw",` +
	`"deadline":"2018-11-21T13:04:11.513Z","expires":"2019-11-20T13:04:11.513Z","retriesLeft":5,"state":"completed",` +
	`"runs":[{"runId":0,"state":"completed","reasonCreated":"scheduled","scheduled":"2018-11-20T13:04:12.087Z",` +
	`"workerGroup":"us-east-1","workerId":"i-0c4d1e2f3a4b5c6d7","takenUntil":"2018-11-20T13:26:40.331Z",` +
	`"started":"2018-11-20T13:06:40.331Z","reasonResolved":"completed","resolved":"2018-11-20T13:19:02.915Z"}]},` +
	`"task":{"tags":{"kind":"test","label":"test-linux64/opt-mochitest-browser-chrome-e10s-3","os":"linux",` +
	`"createdForUser":"someone@example.com"}},"runId":0,"workerGroup":"us-east-1","workerId":"i-0c4d1e2f3a4b5c6d7"}`)

// loadBody is what the load tool publishes: 512 bytes with a send time.
var loadBody = []byte(`{"t":1767225600000000000,"s":12345,"p":"` + strings.Repeat("x", 512-42) + `"}`)

// BenchmarkEncode encodes one message's data and a frame around it in one
// buffer, as Message.Framed does once per message, whatever the number of
// streams that send it.
func BenchmarkEncode(b *testing.B) {
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"pulse-1.3KB", pulseBody},
		{"load-512B", loadBody},
		{"text-512B", []byte(strings.Repeat("not json\n", 57))},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(tc.body)))
			b.ReportAllocs()
			for b.Loop() {
				benchMessage(tc.body).Framed("event: message\ndata: ", "\nid: -\n\n")
			}
		})
	}
}

// BenchmarkEncodeProperties is the cost, once per message, of the data
// with properties that streams with properties=1 share, on top of Framed:
// a Pulse message with its content type, delivery mode and CC header.
func BenchmarkEncodeProperties(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		m := benchMessage(pulseBody)
		m.Props = &Properties{ContentType: "application/json", DeliveryMode: 2,
			Headers: amqp.Table{"CC": []any{m.CC[0], m.CC[1]}}}
		m.FramedProperties("event: message\ndata: ", "\nid: -\n\n")
	}
}

// BenchmarkMessageFromDelivery is the per-message cost of taking a delivery
// from amqp091-go.
func BenchmarkMessageFromDelivery(b *testing.B) {
	m := benchMessage(loadBody)
	d := amqp.Delivery{
		Exchange:   m.Exchange,
		RoutingKey: m.RoutingKey,
		Headers:    amqp.Table{"CC": []any{m.CC[0], m.CC[1]}},
		Body:       loadBody,
	}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		messageFromDelivery(&d, now)
	}
}

// BenchmarkSubscribe subscribes and closes one stream with a pattern of its
// own while n other streams hold bound patterns of their own on the same
// exchange, as many idle streams each watching one task do: the session's
// cost of a connect, without the broker's round trip (the fake binds at
// once). With covered, one more
// stream holds primary.#, which covers every new pattern: the search for a
// cover among the n bound wildcard keys finds it, and the new stream needs
// no bind at all.
func BenchmarkSubscribe(b *testing.B) {
	for _, tc := range []struct {
		held    int
		covered bool
	}{{0, false}, {1000, false}, {10000, false}, {10000, true}} {
		name := fmt.Sprintf("held=%d", tc.held)
		if tc.covered {
			name += ",covered"
		}
		b.Run(name, func(b *testing.B) {
			s := benchSession(b)
			for i := range tc.held {
				benchSubscribe(b, s, binding.Binding{Exchange: benchExchange, RoutingKeyPattern: fmt.Sprintf("primary.held%d.#", i)})
			}
			if tc.covered {
				benchSubscribe(b, s, binding.Binding{Exchange: benchExchange, RoutingKeyPattern: "primary.#"})
			}
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				i++
				benchSubscribe(b, s, binding.Binding{Exchange: benchExchange, RoutingKeyPattern: "primary.new" + strconv.Itoa(i) + ".#"}).Close()
			}
		})
	}
}
