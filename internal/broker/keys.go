package broker

import (
	"time"

	"eventsproxy/internal/topic"
)

// bindKey names one broker binding of our queue: the exchange and the
// normal form of the pattern (topic.Normalize).
type bindKey struct{ exchange, pattern string }

// keyPhase is where a key stands with the broker. The worker moves a key
// from one phase to the next, by session.toLocked:
//
//	keyUnbound  → keyBinding   the worker starts a bind
//	keyBinding  → keyBound     the broker confirmed it
//	keyBinding  → keyFailed    the broker refused it
//	keyBound    → keyUnbinding the worker starts an unbind
//	keyUnbinding → keyUnbound  done (a failed unbind too: see settle)
//	keyFailed   → keyUnbound   a new subscription wants the key again
type keyPhase uint8

const (
	keyUnbound   keyPhase = iota // not on the broker, nothing in flight
	keyBinding                   // a bind is in flight
	keyBound                     // the broker has confirmed the binding
	keyUnbinding                 // an unbind is in flight; still bound until it is done
	keyFailed                    // the last bind failed; retried only for a new waiter
)

// onBroker reports whether the broker holds the binding in phase p.
func (p keyPhase) onBroker() bool { return p == keyBound || p == keyUnbinding }

// waiter is a subscription waiting for a key's bind, and where the worker
// answers it.
type waiter struct {
	sub    *Subscription
	answer chan<- error
}

// keyState is one (exchange, pattern) that at least one subscription uses or
// that is still bound on the broker. Guarded by session.mu.
type keyState struct {
	key     bindKey
	pattern *topic.Pattern
	subs    map[*Subscription]struct{}
	phase   keyPhase
	queued  bool // on one of the worker's queues (which is not a phase: a key in any phase may be)
	waiters []waiter
	// held says that the wide-binding policy keeps the key in use, with
	// or without subscriptions: it is its exchange's wide key (wide.go).
	held bool

	// A key whose every message a bound wildcard key of the same exchange
	// brings anyway needs no binding of its own: coveredBy is that key,
	// which lists the keys it covers in covering. Before a covering key is
	// unbound, the keys it covers are bound or covered again (handover), so
	// no message is missed when covering keys come and go. A covered key is
	// not bound, so it never covers others in turn.
	coveredBy *keyState
	covering  map[*keyState]struct{}

	// In keyBound, the key's place in the session's rebinds, and when it
	// was last bound (rebind.go).
	rbPrev, rbNext *keyState
	boundAt        time.Time
}

// inUse reports whether the key is wanted: by a subscription, or by the
// wide-binding policy.
func (ks *keyState) inUse() bool { return len(ks.subs) > 0 || ks.held }

// wantsWork reports whether the broker's state differs from what the
// subscriptions need, with no operation in flight to mend it: a key in use
// and not covered wants a bind; a bound key that is not in use, or that a
// wide key has come to cover, wants an unbind.
func (ks *keyState) wantsWork() bool {
	switch ks.phase {
	case keyUnbound:
		return ks.inUse() && ks.coveredBy == nil
	case keyBound:
		return !ks.inUse() || ks.coveredBy != nil
	}
	return false // busy, or failed: retried only for a new waiter
}

// toLocked moves ks to phase p, keeping the count of keys on the broker.
func (s *session) toLocked(ks *keyState, p keyPhase) {
	s.trackLocked(ks, ks.phase, p)
	was := ks.phase.onBroker()
	ks.phase = p
	switch is := p.onBroker(); {
	case is && !was:
		s.bound++
	case was && !is:
		s.bound--
	default:
		return
	}
	s.metrics.BindingsHeld.Set(float64(s.bound))
}

// enqueueLocked puts ks on the worker's queue for what it needs by the
// look of it now: a bind while it is unbound and in use, else an unbind.
// next checks again when it takes ks.
func (s *session) enqueueLocked(ks *keyState) {
	if ks.queued {
		return
	}
	ks.queued = true
	if ks.phase != keyBound && ks.inUse() {
		s.binds = append(s.binds, ks)
	} else {
		s.unbinds = append(s.unbinds, ks)
	}
}

// findCoverLocked returns a bound key, in use, that covers ks, or nil. It
// asks the exchange's routing trie, which holds every key of the exchange,
// for the keys that cover ks: the work grows with ks's words, not with the
// number of keys, so no cover is missed however many there are.
func (s *session) findCoverLocked(ks *keyState) *keyState {
	trie := s.tries[ks.key.exchange]
	if trie == nil {
		return nil
	}
	var cover *keyState
	trie.Covering(ks.pattern, func(k *keyState) bool {
		// ks is in the trie too, and a pattern covers itself: ks is no
		// cover of its own. Nor is a key that is not bound (a covered
		// one among them), one being unbound, or one without
		// subscriptions, which is on its way out, nor one that a wide
		// key has come to cover, which is on its way out too.
		if k == ks || k.phase != keyBound || !k.inUse() || k.coveredBy != nil {
			return true
		}
		cover = k
		return false
	})
	if cover != nil && cover.covering == nil {
		cover.covering = make(map[*keyState]struct{})
	}
	return cover
}

// handover prepares the unbind of cover: each key it covers that is still
// in use moves to another cover, or is returned, in keyBinding, for the
// worker to bind before the unbind.
func (s *session) handover(cover *keyState) []*keyState {
	s.mu.Lock()
	defer s.mu.Unlock()
	var toBind []*keyState
	for ks := range cover.covering {
		if ks.phase == keyBound {
			// Still bound: a wide key had come to cover it, and its
			// unbind is queued. It serves itself, then.
			delete(cover.covering, ks)
			ks.coveredBy = nil
			continue
		}
		if other := s.findCoverLocked(ks); other != nil {
			delete(cover.covering, ks)
			ks.coveredBy = other
			other.covering[ks] = struct{}{}
			continue
		}
		s.toLocked(ks, keyBinding)
		toBind = append(toBind, ks)
	}
	return toBind
}

// uncover detaches ks from the key that covered it.
func (s *session) uncover(ks *keyState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.uncoverLocked(ks)
}

func (s *session) uncoverLocked(ks *keyState) {
	if ks.coveredBy != nil {
		delete(ks.coveredBy.covering, ks)
		ks.coveredBy = nil
	}
}

// deleteLocked forgets ks, which no subscription uses and the broker does
// not hold.
func (s *session) deleteLocked(ks *keyState) {
	if s.keys[ks.key] != ks {
		return
	}
	s.uncoverLocked(ks)
	s.unholdLocked(ks)
	// Whoever still waits for it left (a key in use is not deleted); an
	// answer lets a wait that outlives its subscription, such as an
	// adoption's, go on.
	for _, w := range ks.waiters {
		w.answer <- errReleased
	}
	ks.waiters = nil
	delete(s.keys, ks.key)
	trie := s.tries[ks.key.exchange]
	trie.Delete(ks.pattern)
	if trie.Len() == 0 {
		delete(s.tries, ks.key.exchange)
	}
}
