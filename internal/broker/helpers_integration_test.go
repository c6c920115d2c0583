//go:build integration

package broker

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"eventsproxy/internal/binding"
	"eventsproxy/internal/rabbittest"
)

// startBroker runs a Broker against the real RabbitMQ until the test ends,
// and waits until it is connected.
func startBroker(tb testing.TB, cfg Config) *Broker {
	tb.Helper()
	d := AMQP(AMQPConfig{
		URL:            rabbittest.URL(),
		QueuePrefix:    rabbittest.Unique("eventsproxy-test/") + "/",
		ConnectionName: "eventsproxy test " + tb.Name(),
	})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	b := New(d, cfg, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = b.Run(ctx)
	}()
	tb.Cleanup(func() {
		cancel()
		<-done
	})
	select {
	case <-b.Attempted():
	case <-time.After(10 * time.Second):
		tb.Fatal("broker did not attempt to connect within 10s")
	}
	if !b.Connected() {
		tb.Fatalf("broker did not connect to %s", d)
	}
	return b
}

// subscribe subscribes with a deadline and closes the subscription at cleanup.
func subscribe(tb testing.TB, b *Broker, bs ...binding.Binding) *Subscription {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sub, err := b.Subscribe(ctx, bs)
	if err != nil {
		tb.Fatalf("subscribe %v: %v", bs, err)
	}
	tb.Cleanup(sub.Close)
	return sub
}

// syncBroker waits until the broker has done every binding change asked for.
func syncBroker(tb testing.TB, b *Broker) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Sync(ctx); err != nil {
		tb.Fatalf("sync: %v", err)
	}
}

// testBody is the JSON body of the messages tests publish.
type testBody struct {
	N   int  `json:"n"`
	End bool `json:"end,omitempty"`
}

// takeUntil reads sub's messages until one whose body has End set, or the
// deadline, and returns their bodies' numbers in order and the drops seen.
func takeUntilEnd(tb testing.TB, sub *Subscription, deadline time.Duration) (ns []int, dropped int) {
	tb.Helper()
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	var msgs []*Message
	for {
		select {
		case <-sub.Notify():
		case <-sub.Done():
			tb.Fatalf("subscription done: %v", sub.Err())
		case <-timer.C:
			tb.Fatalf("no end message within %v; got %d messages: %v", deadline, len(ns), ns)
		}
		var d int
		msgs, d = sub.Take(msgs[:0])
		dropped += d
		for _, m := range msgs {
			var body testBody
			if err := json.Unmarshal(m.Body, &body); err != nil {
				tb.Fatalf("body %q: %v", m.Body, err)
			}
			if body.End {
				return ns, dropped
			}
			ns = append(ns, body.N)
		}
	}
}

func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
