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
