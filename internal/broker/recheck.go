package broker

import (
	"errors"
	"time"

	"eventsproxy/internal/binding"
)

// recheckEvery is how often the worker asks the broker whether each
// exchange with bindings of ours still exists: RabbitMQ deletes an
// exchange's bindings with it and tells no queue, so this bounds how long
// a stream on a deleted exchange stays silent, or a new stream on it could
// be told `ready`. One passive declare per exchange in use, on a channel
// of its own, every period: the broker's cost grows with the exchanges,
// not with the streams or bindings. Tests shorten it.
var recheckEvery = 10 * time.Second

// exchangeChecker is a Conn that can tell whether an exchange exists.
type exchangeChecker interface {
	// CheckExchange returns an error wrapping ErrExchangeNotFound when the
	// broker has no exchange of that name.
	CheckExchange(exchange string) error
}

// recheck asks the broker about each exchange that holds bindings of ours,
// and fails every key of one that is gone (see goneLocked).
func (s *session) recheck() {
	checker, ok := s.conn.(exchangeChecker)
	if !ok {
		return
	}
	s.mu.Lock()
	exchanges := make([]string, 0, len(s.tries))
	for ex := range s.tries {
		exchanges = append(exchanges, ex)
	}
	s.mu.Unlock()
	for _, ex := range exchanges {
		err := checker.CheckExchange(ex)
		if s.ended() {
			return
		}
		if !errors.Is(err, ErrExchangeNotFound) {
			if err != nil {
				s.log.Warn("check exchange", "exchange", ex, "err", err)
			}
			continue
		}
		s.mu.Lock()
		s.goneLocked(ex, err)
		s.mu.Unlock()
	}
}

// goneLocked records that exchange is gone with our bindings to it, or
// refuses them (a re-bind's answer, rebind.go): every
// subscription with a key of it that the broker held ends with a
// *BindError, and those keys are failed, so that a new subscription binds
// them again (and is refused while the exchange is missing).
func (s *session) goneLocked(exchange string, err error) {
	n := 0
	for _, ks := range s.keys {
		if ks.key.exchange != exchange || !(ks.phase.onBroker() || ks.coveredBy != nil) {
			continue
		}
		berr := &BindError{Binding: binding.Binding{Exchange: exchange, RoutingKeyPattern: ks.key.pattern}, Err: err}
		for sub := range ks.subs {
			sub.fail(berr)
			n++
		}
		s.uncoverLocked(ks)
		clear(ks.covering)
		if len(ks.subs) == 0 {
			s.toLocked(ks, keyUnbound)
			s.deleteLocked(ks)
			continue
		}
		s.toLocked(ks, keyFailed)
	}
	s.log.Warn("exchange deleted or refused under its streams; they end", "exchange", exchange, "streams", n, "err", err)
}

// refused records that the broker refused a re-bind of ks, which it held,
// for our user's access (as RabbitMQ's topic permissions refuse one
// binding key and not another): every subscription on ks ends with a
// *BindError naming its exchange and pattern, and ks is failed, so that a
// new subscription binds it again (and is refused). The keys that ks
// covered go on: each moves to another cover, or is returned, in
// keyBinding, for the worker to bind before it unbinds ks (meanwhile the
// broker's binding of ks still brings their messages). A wide key refused
// gives up widening on its exchange for wideBackoff. Only the worker calls
// it.
func (s *session) refused(ks *keyState, err error) (toBind []*keyState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	berr := &BindError{Binding: binding.Binding{Exchange: ks.key.exchange, RoutingKeyPattern: ks.key.pattern}, Err: err}
	n := 0
	for sub := range ks.subs {
		sub.fail(berr)
		n++
	}
	if ks.held {
		if w := s.widenings[ks.key.exchange]; w != nil {
			w.noWidenUntil = time.Now().Add(wideBackoff)
		}
		s.unholdLocked(ks)
	}
	if len(ks.subs) == 0 {
		s.toLocked(ks, keyUnbound)
	} else {
		s.toLocked(ks, keyFailed)
	}
	for c := range ks.covering {
		delete(ks.covering, c)
		c.coveredBy = nil
		if c.phase != keyUnbound || !c.inUse() {
			continue // bound already: a wide key had come to cover it
		}
		if other := s.findCoverLocked(c); other != nil {
			c.coveredBy = other
			other.covering[c] = struct{}{}
			continue
		}
		s.toLocked(c, keyBinding)
		toBind = append(toBind, c)
	}
	if len(ks.subs) == 0 {
		s.deleteLocked(ks)
	}
	s.log.Warn("binding refused under its streams; they end", "exchange", ks.key.exchange, "pattern", ks.key.pattern, "streams", n, "err", err)
	return toBind
}
