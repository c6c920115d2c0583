package broker

import (
	"errors"
	"time"
)

// RabbitMQ can lose a binding of ours and tell no queue: when an exchange
// is deleted and declared again, its bindings are gone and stay gone, and
// nothing in AMQP 0-9-1 tells whether a binding exists (queue.bind and
// queue.unbind succeed either way; the management API is not ours on
// Pulse). So the worker binds each bound key again, idempotently, at least
// once every rebind period, oldest first, at no more than a rate of its
// own, and only when no stream waits for a bind or unbind. A lost binding
// is back within about a period (longer when the keys are more than the
// period's worth at that rate: keys/rate); what the broker routed in
// between is lost without a word, since neither answer says whether the
// binding was missing. A key shared by many streams or covering others
// costs one re-bind per period, and a new stream on it still gets `ready`
// at once; but when a new stream joins a key last bound more than
// freshFor ago, that key goes first (freshenLocked), so that a lost
// binding that streams keep coming to is back within moments of the next
// one's `ready`.

// DefaultRebindPeriod and DefaultRebindRate are `serve`'s defaults: each
// binding bound again every 30 s, at most 100 re-binds/s (a tenth of
// DefaultBindRate), so that up to 3,000 bindings are each re-bound within
// the period.
const (
	DefaultRebindPeriod = 30 * time.Second
	DefaultRebindRate   = 100
)

// freshFor is how long after its last bind a key that a new stream joins
// waits for its periodic re-bind; past it, the key is re-bound next (but
// never more often than this, whatever the streams that come).
const freshFor = 5 * time.Second

// intervals are the worker's periodic duties; zero or less turns one off.
type intervals struct {
	recheck   time.Duration // exchange existence checks (recheck.go)
	rebind    time.Duration // longest time between two binds of a key
	rebindGap time.Duration // least time between two re-binds
}

// rebindList holds the keys in keyBound, the one bound longest ago first;
// guarded by session.mu. Its links live in keyState (rbPrev, rbNext), so
// tracking a key allocates nothing.
type rebindList struct{ head, tail *keyState }

func (l *rebindList) pushBack(ks *keyState, at time.Time) {
	ks.boundAt = at
	ks.rbPrev, ks.rbNext = l.tail, nil
	if l.tail != nil {
		l.tail.rbNext = ks
	} else {
		l.head = ks
	}
	l.tail = ks
}

func (l *rebindList) pushFront(ks *keyState, at time.Time) {
	ks.boundAt = at
	ks.rbPrev, ks.rbNext = nil, l.head
	if l.head != nil {
		l.head.rbPrev = ks
	} else {
		l.tail = ks
	}
	l.head = ks
}

func (l *rebindList) remove(ks *keyState) {
	if ks.rbPrev != nil {
		ks.rbPrev.rbNext = ks.rbNext
	} else if l.head == ks {
		l.head = ks.rbNext
	}
	if ks.rbNext != nil {
		ks.rbNext.rbPrev = ks.rbPrev
	} else if l.tail == ks {
		l.tail = ks.rbPrev
	}
	ks.rbPrev, ks.rbNext = nil, nil
}

// trackLocked keeps the rebind list in step with ks's move from phase
// was to phase is.
func (s *session) trackLocked(ks *keyState, was, is keyPhase) {
	switch {
	case is == keyBound && was != keyBound:
		s.rebinds.pushBack(ks, time.Now())
	case was == keyBound && is != keyBound:
		s.rebinds.remove(ks)
	}
}

// freshenLocked makes the bound key that serves ks (ks, or the key that
// covers it) the next to be re-bound, and due now, if it was last bound
// more than freshFor ago (or a period, if that is shorter), unless the
// re-binds are behind: then it keeps its turn, so that streams coming and
// going on some keys cannot starve the others' re-binds. It reports whether
// the worker has a new re-bind to look at.
func (s *session) freshenLocked(ks *keyState) bool {
	if ks.coveredBy != nil {
		ks = ks.coveredBy
	}
	if s.every.rebind <= 0 || ks.phase != keyBound {
		return false
	}
	now := time.Now()
	if now.Sub(ks.boundAt) < min(freshFor, s.every.rebind) {
		return false
	}
	if head := s.rebinds.head; now.Sub(head.boundAt) >= s.every.rebind {
		return false // behind: the head is due already
	}
	s.rebinds.remove(ks)
	s.rebinds.pushFront(ks, now.Add(-s.every.rebind))
	return true
}

// armRebind sets t to fire when the next re-bind is due, or stops it when
// none is. Only the worker calls it.
func (s *session) armRebind(t *time.Timer) {
	if s.every.rebind <= 0 {
		return
	}
	s.mu.Lock()
	head := s.rebinds.head
	var due time.Time
	if head != nil {
		due = head.boundAt.Add(s.every.rebind)
	}
	s.mu.Unlock()
	if head == nil {
		t.Stop()
		return
	}
	if next := s.lastRebind.Add(s.every.rebindGap); due.Before(next) {
		due = next
	}
	t.Reset(time.Until(due))
}

// rebind binds the key bound longest ago again, if it is due. Only the
// worker calls it, so no bind or unbind of the key runs meanwhile: the key
// stays in keyBound, and a new stream on it gets `ready` at once.
func (s *session) rebind() {
	now := time.Now()
	s.mu.Lock()
	ks := s.rebinds.head
	// Streams waiting for a bind or unbind go first: the worker comes
	// back here once they are served.
	if ks == nil || now.Before(ks.boundAt.Add(s.every.rebind)) || len(s.binds) > 0 || len(s.unbinds) > 0 {
		s.mu.Unlock()
		return
	}
	// Its turn comes again a period after this bind was asked for.
	s.rebinds.remove(ks)
	s.rebinds.pushBack(ks, now)
	idle := !ks.inUse() || ks.coveredBy != nil // on its way to an unbind
	s.mu.Unlock()
	if idle {
		return
	}
	s.lastRebind = now
	err := s.recheckType(ks.key.exchange, now)
	if err == nil {
		err = s.conn.Bind(ks.key.exchange, ks.key.pattern)
	}
	result := "ok"
	switch {
	case err == nil:
	case errors.Is(err, ErrAccessRefused):
		// RabbitMQ's topic permissions refuse a binding key, not an
		// exchange: the exchange's other keys are left as they are, and
		// each comes to its own re-bind.
		result = "refused"
		for _, c := range s.refused(ks, err) {
			s.settle(c, true, s.conn.Bind(c.key.exchange, c.key.pattern))
		}
		// The broker keeps the binding it refused to bind again; most
		// likely it refuses the unbind too, and the binding goes with
		// the queue.
		unbound := "ok"
		if s.conn.Unbind(ks.key.exchange, ks.key.pattern) != nil {
			unbound = "error"
		}
		s.metrics.BindOps.WithLabelValues("unbind", unbound).Inc()
	case errors.Is(err, ErrNotTopic):
		result = "refused"
		s.typeChanged(ks.key.exchange, err)
	case errors.Is(err, ErrExchangeNotFound):
		// What refuses one key of an exchange refuses them all.
		result = "refused"
		s.mu.Lock()
		s.goneLocked(ks.key.exchange, err)
		s.mu.Unlock()
	default:
		result = "error"
		if !s.ended() {
			s.log.Warn("re-bind", "exchange", ks.key.exchange, "pattern", ks.key.pattern, "err", err)
		}
	}
	s.metrics.BindOps.WithLabelValues("rebind", result).Inc()
}

// topicRechecker is a Conn that can learn an exchange's type afresh.
type topicRechecker interface {
	// RecheckTopic returns an *ExchangeTypeError when exchange exists
	// and is not a topic exchange, whatever was known of it before.
	RecheckTopic(exchange string) error
}

// recheckType probes the type of exchange again before a re-bind on it,
// if it was last probed half a period ago or more, and returns an
// *ExchangeTypeError when the exchange is no longer a topic exchange
// (deleted and declared again as another type: the re-bind would bind
// it, and its streams get what the new type routes, filtered with topic
// rules). Every key is re-bound within a period, so a change of type is
// found within a period of it, at a cost of at most two probes per
// exchange per period, whatever its keys. Only the worker calls it.
func (s *session) recheckType(exchange string, now time.Time) error {
	rc, ok := s.conn.(topicRechecker)
	if !ok {
		return nil
	}
	if at, ok := s.typeChecked[exchange]; ok && now.Sub(at) < s.every.rebind/2 {
		return nil
	}
	if s.typeChecked == nil {
		s.typeChecked = make(map[string]time.Time)
	}
	s.typeChecked[exchange] = now
	if len(s.typeChecked) > 2*len(s.tries)+16 {
		// Forget the exchanges that hold no keys any more.
		s.mu.Lock()
		for ex := range s.typeChecked {
			if s.tries[ex] == nil {
				delete(s.typeChecked, ex)
			}
		}
		s.mu.Unlock()
	}
	err := rc.RecheckTopic(exchange)
	switch {
	case errors.Is(err, ErrNotTopic):
		return err
	case err != nil && !s.ended():
		s.log.Warn("check exchange type", "exchange", exchange, "err", err)
	}
	return nil
}

// typeChanged ends every stream on exchange, which is no longer a topic
// exchange, with err (see goneLocked), and unbinds what the broker may
// hold of ours there: a re-bind since the change of type may have bound
// a key to it. A new stream on it is refused, as at connect. Only the
// worker calls it.
func (s *session) typeChanged(exchange string, err error) {
	s.mu.Lock()
	var held []bindKey
	for _, ks := range s.keys {
		if ks.key.exchange == exchange && ks.phase.onBroker() {
			held = append(held, ks.key)
		}
	}
	s.goneLocked(exchange, err)
	s.mu.Unlock()
	for _, k := range held {
		result := "ok"
		if uerr := s.conn.Unbind(k.exchange, k.pattern); uerr != nil {
			result = "error"
			if !s.ended() {
				s.log.Warn("unbind", "exchange", k.exchange, "pattern", k.pattern, "err", uerr)
			}
		}
		s.metrics.BindOps.WithLabelValues("unbind", result).Inc()
	}
}
