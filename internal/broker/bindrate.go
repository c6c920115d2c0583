package broker

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// DefaultBindRate is the broker operations (binds and unbinds) per second
// that `serve` allows by default: about half of what one RabbitMQ channel
// took on a small machine (docs/performance.md), so that a flood of new
// streams, each with patterns of its own, leaves the shared broker room
// for everyone else; the streams wait for `ready` instead.
const DefaultBindRate = 1000

// newBindLimiter returns the limiter of perSecond broker operations in
// bursts of burst (at least 1), or nil when perSecond is zero: no limit.
func newBindLimiter(perSecond float64, burst int) *rate.Limiter {
	if perSecond <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(perSecond), max(burst, 1))
}

// limitedConn is a Conn whose Bind and Unbind wait for lim first. A wait
// ends early, with ErrConnectionLost, when the connection is closed. The
// limiter outlives connections: one Broker's operations share it.
type limitedConn struct {
	Conn
	lim *rate.Limiter

	closeOnce sync.Once
	closed    chan struct{}
}

// limitBinds returns c with its broker operations paced by lim, or c when
// lim is nil.
func limitBinds(c Conn, lim *rate.Limiter) Conn {
	if lim == nil {
		return c
	}
	return &limitedConn{Conn: c, lim: lim, closed: make(chan struct{})}
}

func (c *limitedConn) Bind(exchange, pattern string) error {
	if err := c.wait(); err != nil {
		return err
	}
	return c.Conn.Bind(exchange, pattern)
}

func (c *limitedConn) Unbind(exchange, pattern string) error {
	if err := c.wait(); err != nil {
		return err
	}
	return c.Conn.Unbind(exchange, pattern)
}

// CheckExchange asks the connection, unpaced: it binds nothing.
func (c *limitedConn) CheckExchange(exchange string) error {
	if ch, ok := c.Conn.(exchangeChecker); ok {
		return ch.CheckExchange(exchange)
	}
	return nil
}

// RecheckTopic asks the connection, unpaced: it binds nothing.
func (c *limitedConn) RecheckTopic(exchange string) error {
	if ch, ok := c.Conn.(topicRechecker); ok {
		return ch.RecheckTopic(exchange)
	}
	return nil
}

func (c *limitedConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// wait waits until lim allows one more operation, or the connection is
// closed.
func (c *limitedConn) wait() error {
	r := c.lim.Reserve()
	d := r.Delay()
	if d == 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-c.closed:
		r.Cancel()
		return ErrConnectionLost
	}
}
