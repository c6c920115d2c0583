package broker

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"eventsproxy/internal/binding"
)

// Config says how to reach the broker and how to shape what we hold on it.
type Config struct {
	// URL is the amqp:// or amqps:// URL of the broker. Required.
	URL string
	// ConnectionName is shown in the broker's management UI; default
	// "eventsproxy".
	ConnectionName string
	// QueuePrefix starts the name of our queue; a random suffix follows.
	// Pulse requires "queue/<user>/"; default "eventsproxy/".
	QueuePrefix string
	// QueueMaxLength caps the messages waiting in our queue, so the broker
	// is protected if the process stalls (oldest dropped). Zero: no cap.
	QueueMaxLength int
	// QueueMaxBytes caps the bytes waiting in our queue. Zero: no cap.
	QueueMaxBytes int
	// ClientBuffer is how many messages each subscription buffers before
	// the oldest is dropped; default 50.
	ClientBuffer int
	// MinBackoff and MaxBackoff bound the wait between reconnection
	// attempts; defaults 250ms and 10s.
	MinBackoff, MaxBackoff time.Duration
}

// Broker is eventsproxy's supervised connection to RabbitMQ. Subscribe and
// Connected may be called from any goroutine; Run must be called once.
type Broker struct {
	cfg Config
	log *slog.Logger

	attemptOnce sync.Once
	attempted   chan struct{}

	mu      sync.Mutex
	current *session
	stopped bool
}

// New returns a Broker for cfg; it connects when Run is called.
func New(cfg Config, log *slog.Logger) *Broker {
	if cfg.ConnectionName == "" {
		cfg.ConnectionName = "eventsproxy"
	}
	if cfg.QueuePrefix == "" {
		cfg.QueuePrefix = "eventsproxy/"
	}
	if cfg.ClientBuffer <= 0 {
		cfg.ClientBuffer = 50
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 250 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(10*time.Second, cfg.MinBackoff)
	}
	return &Broker{cfg: cfg, log: log.With("component", "broker"), attempted: make(chan struct{})}
}

// Attempted returns a channel that is closed once Run's first connection
// attempt is over, whether it succeeded or not.
func (b *Broker) Attempted() <-chan struct{} { return b.attempted }

func (b *Broker) markAttempted() { b.attemptOnce.Do(func() { close(b.attempted) }) }

// Run connects to the broker and keeps a connection up until ctx is done,
// reconnecting with capped exponential backoff and jitter. When a connection
// is lost, every subscription it served is done. Run returns nil after ctx
// is done and the connection is closed, which removes our queue and its
// bindings from the broker.
func (b *Broker) Run(ctx context.Context) error {
	defer func() {
		b.mu.Lock()
		b.stopped = true
		b.mu.Unlock()
		b.markAttempted()
	}()
	backoff := b.cfg.MinBackoff
	for {
		started := time.Now()
		err := b.serveOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(started) > b.cfg.MaxBackoff {
			backoff = b.cfg.MinBackoff
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		b.log.Warn("broker connection down; reconnecting", "err", err, "in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		backoff = min(backoff*2, b.cfg.MaxBackoff)
	}
}

// serveOnce dials, serves one session until the connection is lost or ctx
// is done, and tears it down.
func (b *Broker) serveOnce(ctx context.Context) error {
	conn, err := amqp.DialConfig(b.cfg.URL, amqp.Config{
		Heartbeat:  10 * time.Second,
		Locale:     "en_US",
		Properties: amqp.Table{"connection_name": b.cfg.ConnectionName},
		Dial:       amqp.DefaultDial(10 * time.Second),
	})
	if err != nil {
		b.markAttempted()
		return fmt.Errorf("dial %s: %w", Redact(b.cfg.URL), err)
	}
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	s, err := startSession(conn, &b.cfg, b.log)
	if err != nil {
		_ = conn.Close()
		b.markAttempted()
		return fmt.Errorf("set up queue: %w", err)
	}
	b.setCurrent(s)
	b.markAttempted()
	b.log.Info("broker connected", "url", Redact(b.cfg.URL))

	var cause error
	select {
	case <-ctx.Done():
		cause = ErrClosed
	case aerr, ok := <-closed:
		cause = ErrConnectionLost
		if ok && aerr != nil {
			err = aerr
		} else {
			err = errors.New("connection closed")
		}
	case <-s.done:
		err = s.error()
	}
	b.setCurrent(nil)
	s.end(cause)
	return err
}

func (b *Broker) setCurrent(s *session) {
	b.mu.Lock()
	b.current = s
	b.mu.Unlock()
}

// Connected reports whether a broker connection is up to serve new
// subscriptions.
func (b *Broker) Connected() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.current != nil && !b.current.ended()
}

// Subscribe registers a subscription for bs and returns once every binding
// is in place on the broker: any message routed after Subscribe returns is
// delivered to it. bs must be valid (see package binding). The error is a
// *BindError for a binding the broker refused, ErrUnavailable when there is
// no connection, or ctx's error. The caller must Close the subscription.
func (b *Broker) Subscribe(ctx context.Context, bs []binding.Binding) (*Subscription, error) {
	b.mu.Lock()
	s, stopped := b.current, b.stopped
	b.mu.Unlock()
	if stopped {
		return nil, ErrClosed
	}
	if s == nil {
		return nil, ErrUnavailable
	}
	return s.subscribe(ctx, bs)
}

// Sync waits until every change of broker bindings that subscriptions asked
// for before the call (binds for new ones, unbinds after Close) is done on
// the broker. It returns ErrUnavailable when there is no connection.
func (b *Broker) Sync(ctx context.Context) error {
	b.mu.Lock()
	s := b.current
	b.mu.Unlock()
	if s == nil {
		return ErrUnavailable
	}
	return s.sync(ctx)
}

// QueueName returns the name of the current connection's queue, or "" when
// there is no connection.
func (b *Broker) QueueName() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.current == nil {
		return ""
	}
	return b.current.queue
}

// Redact returns u with its password replaced by "xxxxx", for logs.
func Redact(u string) string {
	parsed, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	return parsed.Redacted()
}

// randomName returns 16 random hex digits for our queue's name.
func randomName() string {
	var b [8]byte
	_, _ = crand.Read(b[:])
	return hex.EncodeToString(b[:])
}
