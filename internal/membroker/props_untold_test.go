package membroker

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"eventsproxy/internal/binding"
	"eventsproxy/internal/broker"
)

// hidingDialer dials mb's connections behind a wrapper that embeds
// broker.Conn, and so hides their TakeProperties, as a metrics or
// fault-injection wrapper would.
type hidingDialer struct{ mb *Broker }

func (d hidingDialer) Dial(ctx context.Context) (broker.Conn, error) {
	c, err := d.mb.Dial(ctx)
	if err != nil {
		return nil, err
	}
	return struct{ broker.Conn }{c}, nil
}

func (hidingDialer) String() string { return "hiding" }

// TestUntoldConnGivesProperties checks that a connection never told how
// many subscriptions ask for properties gives them with every message:
// a properties subscription behind a wrapper that hides TakeProperties
// gets its messages, with their properties, not silence.
func TestUntoldConnGivesProperties(t *testing.T) {
	t.Parallel()
	mb := New()
	mb.DeclareExchange("amq.topic")

	// The connection alone, never told.
	c := dial(t, mb, binding.Binding{Exchange: "amq.topic", RoutingKeyPattern: "a.#"})
	co := consume(t, c)
	if err := mb.PublishWith("amq.topic", "a.b", nil, []byte(`{}`), &broker.Properties{ContentType: "text/plain"}); err != nil {
		t.Fatal(err)
	}
	if m := co.next(t); m.Props == nil || m.Props.ContentType != "text/plain" {
		t.Fatalf("untold connection: properties %+v, want content type text/plain", m.Props)
	}

	// A Broker behind the wrapper.
	b := broker.New(hidingDialer{mb}, broker.Config{MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-b.Attempted()
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer scancel()
	sub, err := b.SubscribeWith(sctx, []binding.Binding{{Exchange: "amq.topic", RoutingKeyPattern: "p.*"}}, broker.SubscribeOptions{Properties: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if err := mb.PublishWith("amq.topic", "p.q", nil, []byte(`{}`), &broker.Properties{ContentType: "text/plain"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(30 * time.Second)
	for {
		select {
		case <-sub.Notify():
		case <-sub.Done():
			t.Fatalf("subscription done: %v", sub.Err())
		case <-deadline:
			t.Fatal("a properties subscription behind a wrapper got no message within 30s")
		}
		if msgs, _ := sub.Take(nil); len(msgs) > 0 {
			if msgs[0].Props == nil || msgs[0].Props.ContentType != "text/plain" {
				t.Fatalf("properties %+v, want content type text/plain", msgs[0].Props)
			}
			return
		}
	}
}
