package broker

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"eventsproxy/internal/binding"
	"eventsproxy/internal/metrics"
)

// Config shapes what the Broker gives each subscription and how it
// reconnects. Zero values mean the defaults given.
type Config struct {
	// ClientBuffer, ClientBufferBytes and MaxMessageBytes bound each
	// subscription's buffer and the messages it takes (see Limits).
	ClientBuffer, ClientBufferBytes, MaxMessageBytes int
	// MinBackoff and MaxBackoff bound the wait between reconnection
	// attempts; defaults 250ms and 5s, so that service resumes within
	// seconds of the broker's return.
	MinBackoff, MaxBackoff time.Duration
	// BindRate caps the broker operations (binds and unbinds) per second,
	// in bursts of up to BindBurst (at least 1), so that many new streams
	// cannot flood a shared broker: their binds wait their turn. Zero: no
	// cap.
	BindRate  float64
	BindBurst int
	// RebindPeriod is how often each binding is bound again, with
	// RebindRate the most such re-binds per second; defaults
	// DefaultRebindPeriod and DefaultRebindRate. A negative period turns
	// re-binding off, a negative rate lifts its cap (see rebind.go).
	RebindPeriod time.Duration
	RebindRate   float64
	// Wide says when to bind an exchange wide and serve its patterns from
	// that one binding (see WidePolicy); the zero value never does.
	Wide WidePolicy
	// Metrics receives the broker's figures; nil discards them.
	Metrics *metrics.Metrics

	// recheckEvery overrides recheckEvery; tests set it (export_test.go).
	recheckEvery time.Duration
}

// Broker is eventsproxy's supervised connection to a broker, shared by every
// subscription. Subscribe, Connected, Sync and QueueName may be called from
// any goroutine; Run must be called once.
type Broker struct {
	dialer Dialer
	cfg    Config
	log    *slog.Logger

	attemptOnce sync.Once
	attempted   chan struct{}
	attemptErr  error // the first attempt's, set before attempted is closed

	binds *rate.Limiter // nil: no cap
	every intervals

	// props counts the subscriptions that ask for properties, across
	// connections (survivors keep asking): see PropertyTaker.
	props atomic.Int32

	mu      sync.Mutex
	current *session
	stopped bool
}

// New returns a Broker that connects through d when Run is called.
func New(d Dialer, cfg Config, log *slog.Logger) *Broker {
	lim := Limits{cfg.ClientBuffer, cfg.ClientBufferBytes, cfg.MaxMessageBytes}.withDefaults()
	cfg.ClientBuffer, cfg.ClientBufferBytes, cfg.MaxMessageBytes = lim.ClientBuffer, lim.ClientBufferBytes, lim.MaxMessageBytes
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 250 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Second
	}
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.MinBackoff)
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.Discard()
	}
	if cfg.RebindPeriod == 0 {
		cfg.RebindPeriod = DefaultRebindPeriod
	}
	if cfg.RebindRate == 0 {
		cfg.RebindRate = DefaultRebindRate
	}
	every := intervals{recheck: recheckEvery, rebind: cfg.RebindPeriod}
	if cfg.recheckEvery != 0 {
		every.recheck = cfg.recheckEvery
	}
	if cfg.RebindRate > 0 {
		every.rebindGap = time.Duration(float64(time.Second) / cfg.RebindRate)
	}
	return &Broker{
		dialer:    d,
		cfg:       cfg,
		log:       log.With("component", "broker"),
		attempted: make(chan struct{}),
		binds:     newBindLimiter(cfg.BindRate, cfg.BindBurst),
		every:     every,
	}
}

// Attempted returns a channel that is closed once Run's first connection
// attempt is over, whether it succeeded or not.
func (b *Broker) Attempted() <-chan struct{} { return b.attempted }

// AttemptErr returns why Run's first connection attempt failed, or nil if
// it succeeded. It is meant to be called once Attempted is closed: a
// caller may refuse to start on an error that retrying cannot mend, such
// as ErrLoginRefused.
func (b *Broker) AttemptErr() error {
	select {
	case <-b.attempted:
		return b.attemptErr
	default:
		return nil
	}
}

func (b *Broker) attemptedYet() bool {
	select {
	case <-b.attempted:
		return true
	default:
		return false
	}
}

func (b *Broker) markAttempted() { b.attemptOnce.Do(func() { close(b.attempted) }) }

// markAttemptFailed records err as the first attempt's, if this is it.
func (b *Broker) markAttemptFailed(err error) {
	b.attemptOnce.Do(func() {
		b.attemptErr = err
		close(b.attempted)
	})
}

// Run connects to the broker and keeps a connection up until ctx is done,
// reconnecting with capped exponential backoff and jitter. When a connection
// is lost, every subscription it served is done, but the surviving ones
// (SubscribeSurviving), which the next connection serves. Run returns nil
// after ctx is done and the connection is closed, which removes our queue
// and its bindings from the broker; surviving subscriptions are done then,
// with ErrClosed. When the very first attempt is refused for
// the login (ErrLoginRefused), Run returns that error at once: the
// configuration is wrong, and retrying would only hide it. A refusal
// later, such as a password rotated under a running service, is retried
// and logged at ERROR.
func (b *Broker) Run(ctx context.Context) error {
	var survivors []*Subscription
	defer func() {
		b.mu.Lock()
		b.stopped = true
		b.mu.Unlock()
		b.markAttempted()
		for _, sub := range survivors {
			sub.fail(ErrClosed)
		}
	}()
	backoff := b.cfg.MinBackoff
	for {
		started := time.Now()
		first := !b.attemptedYet()
		var err error
		survivors, err = b.serveOnce(ctx, survivors)
		if ctx.Err() != nil {
			return nil
		}
		if first && errors.Is(err, ErrLoginRefused) {
			return err
		}
		if time.Since(started) > b.cfg.MaxBackoff {
			backoff = b.cfg.MinBackoff
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		if errors.Is(err, ErrLoginRefused) {
			// Not a passing fault: someone must fix the user or password.
			b.log.Error("broker refused the login; retrying", "err", err, "in", wait.Round(time.Millisecond))
		} else {
			b.log.Warn("broker connection down; reconnecting", "err", err, "in", wait.Round(time.Millisecond),
				"surviving", len(survivors))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		backoff = min(backoff*2, b.cfg.MaxBackoff)
	}
}

// serveOnce connects, serves one session until the connection is lost or
// ctx is done, and tears it down. The session adopts survivors, the
// surviving subscriptions of the sessions before; serveOnce returns those
// of this one (survivors again when it could not connect).
func (b *Broker) serveOnce(ctx context.Context, survivors []*Subscription) ([]*Subscription, error) {
	conn, err := b.dialer.Dial(ctx)
	if err != nil {
		b.markAttemptFailed(err)
		return survivors, err
	}
	m := b.cfg.Metrics
	if pt, ok := conn.(PropertyTaker); ok {
		pt.TakeProperties(&b.props)
	}
	s := startSessionCounting(limitBinds(conn, b.binds), Limits{b.cfg.ClientBuffer, b.cfg.ClientBufferBytes, b.cfg.MaxMessageBytes}, b.every, m, b.log, &b.props)
	s.setWidePolicy(b.cfg.Wide)
	// Current before it adopts: a survivor may report its gap as soon as
	// its bindings are confirmed, and whoever hears of it may ask for the
	// queue at once.
	b.setCurrent(s)
	s.adopt(survivors)
	b.markAttempted()
	m.BrokerConnects.Inc()
	m.BrokerConnected.Set(1)
	m.QueuesHeld.Set(1)
	b.log.Info("broker connected", "broker", b.dialer.String(), "queue", conn.Queue(), "adopted", len(survivors))

	select {
	case <-ctx.Done():
		err = ErrClosed
	case <-s.done:
		err = s.error()
	}
	b.setCurrent(nil)
	m.BrokerConnected.Set(0)
	survivors = s.end(ErrConnectionLost)
	// The queue and its bindings went with the connection.
	m.QueuesHeld.Set(0)
	m.BindingsHeld.Set(0)
	m.WideBindings.Set(0)
	return survivors, err
}

func (b *Broker) setCurrent(s *session) {
	b.mu.Lock()
	b.current = s
	b.mu.Unlock()
}

func (b *Broker) session() (*session, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.stopped:
		return nil, ErrClosed
	case b.current == nil:
		return nil, ErrUnavailable
	}
	return b.current, nil
}

// Connected reports whether a broker connection is up to serve new
// subscriptions.
func (b *Broker) Connected() bool {
	s, err := b.session()
	return err == nil && !s.ended()
}

// Subscribe registers a subscription for bs and returns once every binding
// is in place on the broker: any message routed after Subscribe returns is
// delivered to it. bs must be valid (see package binding). The error is a
// *BindError for a binding the broker refused, ErrUnavailable when there is
// no connection, or ctx's error. The caller must Close the subscription.
func (b *Broker) Subscribe(ctx context.Context, bs []binding.Binding) (*Subscription, error) {
	s, err := b.session()
	if err != nil {
		return nil, err
	}
	return s.subscribe(ctx, bs, false)
}

// BeforeWait returns a copy of ctx with f, which Subscribe and
// SubscribeSurviving called with it call, once and on the calling
// goroutine, before they wait for the broker; one that needs no broker
// round trip (every binding is in place, or covered by one that is)
// returns without calling f. When f returns a channel, the wait ends
// when it receives too, with ErrWaitLimit: a time limit that costs a
// Subscribe that does not wait nothing. A stream uses it to send its
// response's header at once when it must wait, and together with `ready`
// when not, and to bound its wait for `ready`.
func BeforeWait(ctx context.Context, f func() <-chan time.Time) context.Context {
	return context.WithValue(ctx, beforeWaitKey{}, f)
}

type beforeWaitKey struct{}

// BeforeWaitFunc returns the function that BeforeWait put in ctx, or nil.
func BeforeWaitFunc(ctx context.Context) func() <-chan time.Time {
	f, _ := ctx.Value(beforeWaitKey{}).(func() <-chan time.Time)
	return f
}

// ErrWaitLimit is Subscribe's error when the channel of BeforeWait's
// function received before the broker confirmed the bindings.
var ErrWaitLimit = errors.New("the wait for the broker reached its limit")

// SubscribeSurviving is Subscribe for a subscription that outlives a lost
// broker connection. Its Done is not closed when the connection goes: the
// Broker's next connection binds its bindings again, and once they are
// all confirmed the subscription reports a gap (TakeGap), after the
// messages it still held, and then gets every message routed to it. Done
// is closed for a binding refused or gone on a connection, and when Run
// returns.
func (b *Broker) SubscribeSurviving(ctx context.Context, bs []binding.Binding) (*Subscription, error) {
	s, err := b.session()
	if err != nil {
		return nil, err
	}
	return s.subscribe(ctx, bs, true)
}

// SubscribeOptions are what a subscription asks for beyond its bindings.
type SubscribeOptions struct {
	// Survive: the subscription outlives a lost broker connection, as
	// SubscribeSurviving says.
	Survive bool
	// Properties: the subscription's messages carry their properties and
	// headers (Message.Props). While any subscription asks for them, the
	// connection takes them from every message, at an allocation each; a
	// message taken before this subscription was in the router (and so
	// without them) does not reach it: it came before Subscribe returned.
	Properties bool
}

// SubscribeWith is Subscribe with opts.
func (b *Broker) SubscribeWith(ctx context.Context, bs []binding.Binding, opts SubscribeOptions) (*Subscription, error) {
	s, err := b.session()
	if err != nil {
		return nil, err
	}
	return s.subscribeWith(ctx, bs, opts)
}

// Sync waits until every change of broker bindings that subscriptions asked
// for before the call (binds for new ones, unbinds after Close) is done on
// the broker. It returns ErrUnavailable when there is no connection.
func (b *Broker) Sync(ctx context.Context) error {
	s, err := b.session()
	if err != nil {
		return err
	}
	return s.sync(ctx)
}

// QueueName returns the name of the current connection's queue, or "" when
// there is no connection.
func (b *Broker) QueueName() string {
	s, err := b.session()
	if err != nil {
		return ""
	}
	return s.conn.Queue()
}
