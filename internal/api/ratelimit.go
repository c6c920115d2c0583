package api

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"eventsproxy/internal/binding"
	"eventsproxy/internal/broker"
	"eventsproxy/internal/metrics"
)

// connectRates is a token bucket per client address for connect requests:
// each connect may cost a broker bind, and a cap on open streams alone lets
// one address open and close them as fast as it likes. IPv6 addresses are
// counted by their /64, which one client usually holds in full. Buckets
// that have filled up again are forgotten, so the map holds only the
// addresses seen within the time one bucket takes to fill. It is safe for
// concurrent use.
type connectRates struct {
	limit rate.Limit
	burst int
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
	sweepAt int // sweep when the map holds this many
}

// newConnectRates returns the buckets for perSecond connects per address
// with bursts of burst, or nil (no limit) when perSecond is zero.
func newConnectRates(perSecond float64, burst int) *connectRates {
	if perSecond <= 0 {
		return nil
	}
	return &connectRates{
		limit:   rate.Limit(perSecond),
		burst:   max(burst, 1),
		now:     time.Now,
		buckets: make(map[string]*rate.Limiter),
		sweepAt: 1024,
	}
}

// take takes a token of addr's bucket, or returns how long until it holds
// one.
func (c *connectRates) take(addr string) (wait time.Duration, ok bool) {
	key := rateKey(addr)
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.buckets[key]
	if b == nil {
		if len(c.buckets) >= c.sweepAt {
			c.sweepLocked(now)
		}
		b = rate.NewLimiter(c.limit, c.burst)
		c.buckets[key] = b
	}
	r := b.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d, false
	}
	return 0, true
}

// sweepLocked forgets the buckets that are full again: a new one would be
// the same.
func (c *connectRates) sweepLocked(now time.Time) {
	for k, b := range c.buckets {
		if b.TokensAt(now) >= float64(c.burst) {
			delete(c.buckets, k)
		}
	}
	c.sweepAt = max(1024, 2*len(c.buckets))
}

// rateKey returns the bucket of addr: the address itself, or its /64 for
// IPv6.
func rateKey(addr string) string {
	ip := net.ParseIP(addr)
	if ip == nil || ip.To4() != nil {
		return addr
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// allowConnect refuses the request with 429 and Retry-After, and returns
// false, when its address connects faster than the configured rate.
func (h *Handler) allowConnect(w http.ResponseWriter, addr string) bool {
	if h.connectRates == nil {
		return true
	}
	wait, ok := h.connectRates.take(addr)
	if ok {
		return true
	}
	h.cfg.Metrics.StreamsRefused.WithLabelValues(metrics.RefusedConnectRate).Inc()
	refuse(w, http.StatusTooManyRequests, "TooManyConnectsFromAddress",
		"Your address opens streams too fast; retry later.", int(math.Ceil(wait.Seconds())))
	return false
}

// errReadyTimeout ends a Subscribe that waited ReadyTimeout for its
// bindings; the broker's bind rate limit makes such waits possible.
var errReadyTimeout = errors.New("bindings not ready in time")

// readyBound bounds how long a stream waits for its bindings: past
// timeout it gets the answer a broker outage gets, and may reconnect later.
type readyBound struct {
	Broker
	timeout time.Duration
}

func (b readyBound) tellsWait() bool { return tellsWait(b.Broker) }

func (b readyBound) Subscribe(ctx context.Context, bs []binding.Binding, opts broker.SubscribeOptions) (Subscription, error) {
	if tellsWait(b.Broker) {
		// The clock starts when Subscribe starts to wait: most
		// subscriptions need no broker round trip, and a timer (and a
		// context) each would cost them more than the rest of it.
		// What a function already in ctx returns is dropped: connect's
		// returns nothing.
		next := broker.BeforeWaitFunc(ctx)
		var timer *time.Timer
		sub, err := b.Broker.Subscribe(broker.BeforeWait(ctx, func() <-chan time.Time {
			if next != nil {
				next()
			}
			timer = time.NewTimer(b.timeout)
			return timer.C
		}), bs, opts)
		if timer != nil {
			timer.Stop()
		}
		if errors.Is(err, broker.ErrWaitLimit) {
			return nil, fmt.Errorf("%w after %v: %w", errReadyTimeout, b.timeout, broker.ErrUnavailable)
		}
		return sub, err
	}
	sctx, cancel := context.WithTimeoutCause(ctx, b.timeout, errReadyTimeout)
	defer cancel()
	sub, err := b.Broker.Subscribe(sctx, bs, opts)
	if err != nil && ctx.Err() == nil && errors.Is(context.Cause(sctx), errReadyTimeout) {
		return nil, fmt.Errorf("%w after %v: %w", errReadyTimeout, b.timeout, broker.ErrUnavailable)
	}
	return sub, err
}
