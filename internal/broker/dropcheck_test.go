package broker

import (
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"eventsproxy/internal/amqpflow"
)

// batchConn returns an amqpConn that takes deliveries from the returned
// channel, its drop checks checkEvery apart.
func batchConn(checkEvery time.Duration) (*amqpConn, chan amqp.Delivery) {
	deliveries := make(chan amqp.Delivery)
	return &amqpConn{flow: amqpflow.New(nil, maxBacklog), deliveries: deliveries, lost: make(chan amqp.Delivery), checkEvery: checkEvery}, deliveries
}

// takeBatchAsync runs takeBatch and returns what it returned on a channel.
func takeBatchAsync(c *amqpConn) <-chan bool {
	done := make(chan bool, 1)
	go func() {
		ok, err := c.takeBatch(func(*Message) {})
		done <- ok && err == nil
	}()
	return done
}

func awaitBatch(t *testing.T, done <-chan bool) {
	t.Helper()
	select {
	case ok := <-done:
		if !ok {
			t.Fatal("takeBatch failed")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("takeBatch did not return")
	}
}

// TestBatchAfterOldCheckIsNotHeld: a delivery that comes when the last
// drop check is older than checkEvery goes to its check at once, alone.
func TestBatchAfterOldCheckIsNotHeld(t *testing.T) {
	t.Parallel()
	c, deliveries := batchConn(time.Hour)
	c.checked = time.Now().Add(-time.Hour)
	done := takeBatchAsync(c)
	deliveries <- amqp.Delivery{RoutingKey: "a"}
	awaitBatch(t, done)
	if len(c.batch) != 1 || len(c.arrived) != 1 {
		t.Fatalf("batch of %d (%d times), want 1", len(c.batch), len(c.arrived))
	}
}

// TestBatchAfterRecentCheckIsHeld: after a recent check, takeBatch goes on
// taking deliveries until checkEvery has passed or the batch is full, so
// that one check covers them all.
func TestBatchAfterRecentCheckIsHeld(t *testing.T) {
	t.Parallel()
	t.Run("until full", func(t *testing.T) {
		t.Parallel()
		c, deliveries := batchConn(time.Hour)
		c.checked = time.Now()
		done := takeBatchAsync(c)
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for range maxBatch {
				// Unbuffered: each send is taken by takeBatch.
				select {
				case deliveries <- amqp.Delivery{}:
				case <-stop:
					return
				}
			}
		}()
		awaitBatch(t, done)
		if len(c.batch) != maxBatch || len(c.arrived) != maxBatch {
			t.Fatalf("batch of %d (%d times), want %d", len(c.batch), len(c.arrived), maxBatch)
		}
	})
	t.Run("until the interval has passed", func(t *testing.T) {
		t.Parallel()
		const every = 50 * time.Millisecond
		c, deliveries := batchConn(every)
		c.checked = time.Now()
		done := takeBatchAsync(c)
		deliveries <- amqp.Delivery{}
		awaitBatch(t, done)
		if since := time.Since(c.checked); since < every {
			t.Fatalf("batch returned %v after the last check, want at least %v", since, every)
		}
		if len(c.batch) != 1 {
			t.Fatalf("batch of %d, want 1", len(c.batch))
		}
	})
}
