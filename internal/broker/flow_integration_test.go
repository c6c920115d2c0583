//go:build integration

package broker

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"eventsproxy/internal/rabbittest"
)

// TestSlowRouterIsBoundedByTheBroker publishes 10 MB to a connection whose
// router is stuck: the process holds no more than about maxBacklog of the
// messages (the rest waits in socket buffers and the queue, or is dropped
// there by the queue's length limit), and once the router goes on the
// connection delivers again.
func TestSlowRouterIsBoundedByTheBroker(t *testing.T) {
	conn := rabbittest.Dial(t, "eventsproxy test "+t.Name())
	pub := rabbittest.Channel(t, conn)
	ex := rabbittest.Exchange(t, pub, "eventsproxy-test/x/")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := AMQP(AMQPConfig{
		URL:            rabbittest.URL(),
		QueuePrefix:    rabbittest.Unique("eventsproxy-test/") + "/",
		ConnectionName: "eventsproxy test " + t.Name(),
		QueueMaxLength: 2000,
	}).Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ac := c.(*amqpConn)
	waits := make(chan struct{}, 1)
	ac.flow.NotifyWait(waits)
	if err := c.Bind(ex, "#"); err != nil {
		t.Fatal(err)
	}
	stuck := make(chan struct{})
	var got atomic.Int64
	last := make(chan struct{})
	consumed := make(chan error, 1)
	go func() {
		consumed <- c.Consume(func(m *Message) {
			if m.drop != dropNone {
				return // a record of a drop, not a message
			}
			if got.Add(1) == 1 {
				<-stuck
			}
			if m.RoutingKey == "last" {
				close(last)
			}
		})
	}()

	// Published without waiting for each confirmation: while reading is
	// stopped the client hears no heartbeats, and a stop of three
	// heartbeat intervals (30 s) would end the connection, however slow
	// the machine is.
	const n = 10_000
	body := []byte(strings.Repeat("x", 1000))
	var conf *amqp.DeferredConfirmation
	for range n {
		conf, err = pub.PublishWithDeferredConfirmWithContext(ctx, ex, "k", false, false, amqp.Publishing{Body: body})
		if err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := conf.WaitContext(ctx); !ok || err != nil {
		t.Fatalf("publishes not confirmed: ok=%v err=%v", ok, err)
	}
	select {
	case <-waits:
	case <-ctx.Done():
		t.Fatal("reading did not stop")
	}
	// A read that starts below the bound may bring a buffer's worth more.
	if b := ac.flow.Backlog(); b > 2*maxBacklog {
		t.Fatalf("%d of %d messages wait in the process, want at most %d", b, n, 2*maxBacklog)
	}
	t.Logf("with the router stuck, %d of %d messages wait in the process", ac.flow.Backlog(), n)

	close(stuck)
	rabbittest.Publish(t, pub, ex, "last", nil, []byte(`{}`))
	select {
	case <-last:
	case <-ctx.Done():
		t.Fatalf("the last message did not arrive (%d received)", got.Load())
	}
	if g := got.Load(); g >= n {
		t.Fatalf("%d received: the queue's length limit should have dropped some of %d", g, n)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	<-consumed
}
