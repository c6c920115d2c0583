package broker

import (
	"errors"
	"time"

	"eventsproxy/internal/binding"

	amqp "github.com/rabbitmq/amqp091-go"
)

// maxBindsInRow is how many binds the worker does in a row while unbinds
// wait: binds go first, since a new stream waits for them, but unbinds must
// not starve under a steady flow of binds, or bindings of ended streams
// would pile up on the broker. Past maxQueuedUnbinds waiting, binds and
// unbinds take turns.
const (
	maxBindsInRow    = 16
	maxQueuedUnbinds = 1000
)

// poke tells the worker that there is work to look at.
func (s *session) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// next takes the next key that needs a broker operation off the work queues
// and moves it to keyBinding or keyUnbinding; it returns nil when there is
// none. Binds go before unbinds (up to maxBindsInRow at a time, one while
// more than maxQueuedUnbinds wait): a new stream waits for its binds,
// while nobody waits for the unbinds of streams that have ended. What a key
// needs is decided by its state when it is taken, not by the queue it was
// put on: an unbind that a new subscription made moot is skipped, and a key
// queued for a bind whose subscriptions have all gone since moves to the
// unbinds.
func (s *session) next() (ks *keyState, bind bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		limit := maxBindsInRow
		if len(s.unbinds) > maxQueuedUnbinds {
			limit = 1
		}
		if len(s.binds) > 0 && (s.bindsInRow < limit || len(s.unbinds) == 0) {
			ks = s.binds[0]
			s.binds[0] = nil
			s.binds = s.binds[1:]
			if ks.wantsWork() && ks.phase == keyBound {
				s.unbinds = append(s.unbinds, ks) // still queued
				continue
			}
			ks.queued = false
			if ks.wantsWork() && !s.coverNowLocked(ks) {
				s.toLocked(ks, keyBinding)
				s.bindsInRow++
				return ks, true
			}
			continue
		}
		if len(s.unbinds) == 0 {
			break
		}
		ks = s.unbinds[0]
		s.unbinds[0] = nil
		s.unbinds = s.unbinds[1:]
		ks.queued = false
		s.bindsInRow = 0
		if ks.wantsWork() {
			if ks.phase == keyUnbound {
				if s.coverNowLocked(ks) {
					continue
				}
				s.toLocked(ks, keyBinding)
				return ks, true
			}
			s.toLocked(ks, keyUnbinding)
			return ks, false
		}
	}
	s.binds, s.unbinds = nil, nil // let the backing arrays go
	for _, ch := range s.idle {
		close(ch)
	}
	s.idle = nil
	return nil, false
}

// coverNowLocked serves ks, which is about to be bound, from a cover that
// the broker has bound since ks was queued (a wide key, say), if there is
// one, and answers its waiters: no bind is needed.
func (s *session) coverNowLocked(ks *keyState) bool {
	cover := s.findCoverLocked(ks)
	if cover == nil {
		return false
	}
	ks.coveredBy = cover
	cover.covering[ks] = struct{}{}
	s.metrics.BindOps.WithLabelValues("bind", "covered").Inc()
	for _, w := range ks.waiters {
		w.answer <- nil
	}
	ks.waiters = nil
	return true
}

// bindLoop is the worker: it alone binds and unbinds, and brings the
// broker's bindings in line with what the subscriptions need, one operation
// at a time, binds first (see next). Between operations it checks the
// exchanges (recheck) and binds bound keys again (rebind), each on its own
// clock.
func (s *session) bindLoop() {
	var recheck <-chan time.Time
	if s.every.recheck > 0 {
		tick := time.NewTicker(s.every.recheck)
		defer tick.Stop()
		recheck = tick.C
	}
	rebind := time.NewTimer(time.Hour)
	rebind.Stop()
	defer rebind.Stop()
	review := time.NewTicker(wideReviewEvery)
	defer review.Stop()
	for {
		select {
		case <-s.wake:
		case <-recheck:
			s.recheck()
		case <-rebind.C:
			s.rebind()
		case <-review.C:
			s.reviewWide()
		case <-s.done:
			return
		}
		for {
			ks, bind := s.next()
			if ks == nil {
				break
			}
			var err error
			if bind {
				err = s.conn.Bind(ks.key.exchange, ks.key.pattern)
			} else {
				// The keys this one covers get bindings of their own (or
				// another cover) before it goes.
				for _, covered := range s.handover(ks) {
					berr := s.conn.Bind(covered.key.exchange, covered.key.pattern)
					s.uncover(covered)
					s.settle(covered, true, berr)
				}
				err = s.conn.Unbind(ks.key.exchange, ks.key.pattern)
			}
			s.settle(ks, bind, err)
			if err != nil && s.ended() {
				return
			}
		}
		s.armRebind(rebind)
	}
}

// settle records the outcome of a bind or unbind of ks and answers waiters.
func (s *session) settle(ks *keyState, bind bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	op, result := "unbind", "ok"
	if bind {
		op = "bind"
	}
	switch {
	case err == nil && bind:
		s.toLocked(ks, keyBound)
	case err == nil:
		s.toLocked(ks, keyUnbound)
	case bind:
		result = "error"
		refused := isRefusal(err)
		if refused {
			result = "refused"
		}
		s.toLocked(ks, keyFailed)
		berr := &BindError{Binding: binding.Binding{Exchange: ks.key.exchange, RoutingKeyPattern: ks.key.pattern}, Err: err}
		if !s.ended() {
			msg := "bind failed"
			if refused {
				msg = "bind refused"
			}
			s.log.Info(msg, "exchange", ks.key.exchange, "pattern", ks.key.pattern, "err", err)
		}
		// Streams past their ready on ks (a cover's handover, or a cover
		// refused, moved them to a bind of its own) wait for nothing: a
		// refusal, or another channel error of the broker's while the
		// connection stays up, ends them here, not in silence. A lost
		// connection's error does not: its loss ends them, or carries
		// survivors on (session.end). A subscription waiting for ks (a
		// new one, or a survivor being bound again) gets berr as its
		// answer instead.
		if endsStreams(err) && !s.ended() && len(ks.subs) > 0 {
			waiting := make(map[*Subscription]struct{}, len(ks.waiters))
			for _, w := range ks.waiters {
				waiting[w.sub] = struct{}{}
			}
			for sub := range ks.subs {
				if _, ok := waiting[sub]; !ok {
					sub.fail(berr)
				}
			}
		}
		for _, w := range ks.waiters {
			w.answer <- berr
		}
		ks.waiters = nil
	default:
		// An unbind that failed leaves at worst an unused binding, which
		// goes with the queue; a missing exchange took it already.
		result = "error"
		s.toLocked(ks, keyUnbound)
		if !s.ended() {
			s.log.Warn("unbind", "exchange", ks.key.exchange, "pattern", ks.key.pattern, "err", err)
		}
	}
	s.metrics.BindOps.WithLabelValues(op, result).Inc()
	if ks.phase == keyBound && len(ks.subs) > 0 {
		for _, w := range ks.waiters {
			w.answer <- nil
		}
		ks.waiters = nil
	}
	s.settleWideLocked(ks, bind)
	if ks.wantsWork() {
		s.enqueueLocked(ks)
	} else if !ks.inUse() && !ks.phase.onBroker() {
		s.deleteLocked(ks)
	}
}

// channelError reports whether err is a channel exception that the broker
// raised (its channel closed, the connection still up), as opposed to the
// connection's loss, which amqp091-go reports as a connection error or as
// amqp.ErrClosed.
func channelError(err error) bool {
	var aerr *amqp.Error
	return errors.As(err, &aerr) && aerr.Server && aerr.Recover
}

// isRefusal reports whether a bind's err is the broker's refusal of it.
func isRefusal(err error) bool {
	return errors.Is(err, ErrExchangeNotFound) || errors.Is(err, ErrAccessRefused) || errors.Is(err, ErrNotTopic)
}

// endsStreams reports whether a bind's err ends the streams waiting for
// it or past their ready on it: a refusal, or another channel error of the
// broker's. Any other error is the connection's loss, which ends its
// session, and that ends them or carries survivors on.
func endsStreams(err error) bool {
	return isRefusal(err) || channelError(err)
}
