package broker

import (
	"strings"
	"time"

	"eventsproxy/internal/topic"
)

// The wide-binding policy trades broker operations for broker traffic. A
// stream with a pattern of its own costs the broker a bind and an unbind,
// and RabbitMQ takes only about a thousand of those a second: pages that
// each watch their own task come and go faster than that. So when an
// exchange holds many patterns of its own, or sees many new ones in a
// second, the session binds one wide pattern there (the first word most of
// its patterns share, then #, such as primary.#; or # itself) and serves
// every pattern it covers from it, matching in process, with no broker
// operation per stream. When the wide binding brings much more traffic that
// no stream wants than the broker operations it saves are worth, or no
// stream uses the exchange any more, the session narrows again.
//
// Handover keeps the covering guarantees: a pattern is served by the wide
// key only once the broker has confirmed it (so `ready` is only said when a
// binding is in place), a key bound before the widening is unbound only
// after the wide key is bound, and before the wide key is unbound every
// pattern it covers is bound again (handover, in the worker).

// WidePolicy shapes when a session binds wide. The zero value never does.
type WidePolicy struct {
	// Keys is how many patterns of an exchange make it wide: an exchange
	// is bound wide once its streams hold Keys distinct patterns, or Keys
	// patterns needed binds of their own within a second. Zero: never.
	Keys int
	// MaxUnwanted is the messages per second that a wide binding may
	// bring for no stream, over a review period, before the exchange is
	// narrowed again (and stays narrow for wideBackoff). Zero: no limit.
	MaxUnwanted float64
}

// DefaultWideKeys and DefaultWideMaxUnwanted are the policy that `serve`
// uses by default: widen at 16 patterns, about what the broker binds in
// 16 ms (so that a flood of new patterns pays for few binds before it is
// served in process), and narrow when more than 2,000 messages a second reach the
// process for nobody, which costs it about what a thousand binds and
// unbinds a second cost the broker (docs/performance.md).
const (
	DefaultWideKeys        = 16
	DefaultWideMaxUnwanted = 2000
)

// wideReviewEvery is how often the worker reviews the wide keys (the
// period over which their unwanted traffic is measured), and wideBackoff
// how long an exchange narrowed for its traffic stays narrow. Tests
// shorten them.
var (
	wideReviewEvery = 10 * time.Second
	wideBackoff     = time.Minute
)

// widening is the policy's state for one exchange. Guarded by session.mu.
type widening struct {
	key *keyState // the wide key held, or nil

	// Binds asked since windowStart, a window of a second.
	windowStart time.Time
	windowBinds int

	noWidenUntil time.Time // set when narrowed for its traffic, or refused
	narrowings   int       // times narrowed for its traffic

	// Messages of the exchange since the last review while key was held,
	// and how many of those reached a stream.
	received, wanted uint64
	reviewed         time.Time
}

// trafficBackoff is how long an exchange stays narrow after its n-th
// narrowing for unwanted traffic (from 0): wideBackoff, doubling each
// time up to 64 times that, so that streams that keep asking cannot make
// the broker send an exchange's whole traffic every minute.
func trafficBackoff(n int) time.Duration {
	return wideBackoff << min(n, 6)
}

// setWidePolicy sets the session's policy; until it is called, the
// session never binds wide.
func (s *session) setWidePolicy(p WidePolicy) {
	s.mu.Lock()
	s.wide = p
	s.mu.Unlock()
}

// noteBindLocked is told that ks, of an exchange, needs a bind of its own,
// and widens the exchange when the policy says so.
func (s *session) noteBindLocked(ks *keyState) {
	if s.wide.Keys <= 0 {
		return
	}
	ex := ks.key.exchange
	w := s.widenings[ex]
	if w == nil {
		w = &widening{}
		s.widenings[ex] = w
	}
	if w.key != nil {
		// Wide already: the wide key is being bound (and will serve ks
		// once it is), or it does not cover ks.
		return
	}
	now := time.Now()
	if now.Sub(w.windowStart) > time.Second {
		w.windowStart, w.windowBinds = now, 0
	}
	w.windowBinds++
	if w.windowBinds < s.wide.Keys && s.tries[ex].Len() < s.wide.Keys {
		return
	}
	if now.Before(w.noWidenUntil) {
		return
	}
	s.widenLocked(ex, w, now)
}

// widenLocked holds a wide key for exchange ex and asks the worker to bind
// it before any other key.
func (s *session) widenLocked(ex string, w *widening, now time.Time) {
	k := bindKey{ex, s.widePatternLocked(ex)}
	ks := s.keys[k]
	if ks == nil {
		p, err := topic.Compile(k.pattern)
		if err != nil {
			return // cannot happen: # after a word of a valid pattern
		}
		ks = &keyState{key: k, pattern: p, subs: make(map[*Subscription]struct{})}
		s.keys[k] = ks
		s.tries[ex].Insert(ks.pattern, ks)
	}
	ks.held = true
	w.key, w.received, w.wanted, w.reviewed = ks, 0, 0, now
	s.metrics.WideChanges.WithLabelValues("widen").Inc()
	s.metrics.WideBindings.Inc()
	s.log.Info("binding wide", "exchange", ex, "pattern", k.pattern, "patterns", s.tries[ex].Len()-1)
	switch {
	case ks.phase == keyBound:
		s.coverUnderLocked(ks)
	case ks.phase == keyFailed:
		s.toLocked(ks, keyUnbound)
		fallthrough
	case ks.phase == keyUnbound && ks.coveredBy == nil:
		if cover := s.findCoverLocked(ks); cover != nil {
			ks.coveredBy = cover
			cover.covering[ks] = struct{}{}
			return
		}
		// First in line: every bind queued behind it is served by it
		// once it is bound.
		if !ks.queued {
			ks.queued = true
			s.binds = append([]*keyState{ks}, s.binds...)
		}
		s.poke()
	}
}

// widePatternLocked returns the wide pattern for exchange ex: w.# when
// most of its keys start with the literal word w, else #.
func (s *session) widePatternLocked(ex string) string {
	count := make(map[string]int)
	n := 0
	for k := range s.keys {
		if k.exchange != ex {
			continue
		}
		n++
		first, _, _ := strings.Cut(k.pattern, ".")
		if first != "*" && first != "#" {
			count[first]++
		}
	}
	best, most := "", 0
	for w, c := range count {
		if c > most || (c == most && w < best) {
			best, most = w, c
		}
	}
	if 2*most <= n {
		return "#"
	}
	return best + ".#"
}

// coverUnderLocked makes the wide key ks, now bound, the cover of every key
// of its exchange that it covers and that is in use: one waiting for its
// bind is ready at once, one bound is unbound (its streams are served by
// ks meanwhile), and what such a key covered moves under ks.
func (s *session) coverUnderLocked(ks *keyState) {
	if ks.covering == nil {
		ks.covering = make(map[*keyState]struct{})
	}
	for _, k := range s.keys {
		if k == ks || k.key.exchange != ks.key.exchange || !k.inUse() || k.coveredBy != nil ||
			!(k.phase == keyUnbound || k.phase == keyBound) || !ks.pattern.Covers(k.pattern) {
			continue
		}
		for c := range k.covering {
			delete(k.covering, c)
			c.coveredBy = ks
			ks.covering[c] = struct{}{}
		}
		k.coveredBy = ks
		ks.covering[k] = struct{}{}
		for _, w := range k.waiters {
			w.answer <- nil
		}
		k.waiters = nil
		if k.phase == keyBound {
			s.enqueueLocked(k)
		}
	}
	s.poke()
}

// settleWideLocked follows up the outcome of an operation on ks for the
// policy: a wide key bound covers its exchange's keys; one refused gives
// up widening there for wideBackoff.
func (s *session) settleWideLocked(ks *keyState, bind bool) {
	if !ks.held || !bind {
		return
	}
	switch ks.phase {
	case keyBound:
		if ks.coveredBy == nil {
			s.coverUnderLocked(ks)
		}
	case keyFailed:
		if w := s.widenings[ks.key.exchange]; w != nil {
			w.noWidenUntil = time.Now().Add(wideBackoff)
		}
		s.narrowLocked(ks, "refused")
	}
}

// narrowLocked lets the wide key ks go: the worker binds the keys it
// covers again (handover) before it unbinds it.
func (s *session) narrowLocked(ks *keyState, why string) {
	s.unholdLocked(ks)
	s.log.Info("narrowing", "exchange", ks.key.exchange, "pattern", ks.key.pattern, "why", why)
	switch {
	case ks.inUse(), ks.phase == keyBinding, ks.phase == keyUnbinding:
		// A stream's key now, or settle sees to it.
	case ks.phase == keyBound:
		s.enqueueLocked(ks)
		s.poke()
	default:
		s.deleteLocked(ks)
	}
}

// unholdLocked makes ks an ordinary key again, if it was its exchange's
// wide key.
func (s *session) unholdLocked(ks *keyState) {
	if !ks.held {
		return
	}
	ks.held = false
	if w := s.widenings[ks.key.exchange]; w != nil && w.key == ks {
		w.key = nil
	}
	s.metrics.WideChanges.WithLabelValues("narrow").Inc()
	s.metrics.WideBindings.Dec()
}

// noteRoutedLocked counts a message of exchange ex for the review of its
// wide key: wanted says that it reached a stream.
func (s *session) noteRoutedLocked(ex string, wanted bool) {
	w := s.widenings[ex]
	if w == nil || w.key == nil {
		return
	}
	w.received++
	if wanted {
		w.wanted++
	}
}

// reviewWide narrows each exchange whose wide key brought more than
// MaxUnwanted messages a second for no stream since the last review
// (and keeps it narrow for wideBackoff), or that no stream uses any more.
// It forgets the state of exchanges that have no keys.
func (s *session) reviewWide() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for ex, w := range s.widenings {
		if w.key == nil {
			if s.tries[ex] == nil && now.After(w.noWidenUntil) {
				delete(s.widenings, ex)
			}
			continue
		}
		ks := w.key
		secs := now.Sub(w.reviewed).Seconds()
		unwanted := float64(w.received-w.wanted) / max(secs, 1e-3)
		w.received, w.wanted, w.reviewed = 0, 0, now
		switch {
		case ks.phase == keyFailed:
			w.noWidenUntil = now.Add(wideBackoff)
			s.narrowLocked(ks, "refused")
		case s.wide.MaxUnwanted > 0 && unwanted > s.wide.MaxUnwanted:
			w.noWidenUntil = now.Add(trafficBackoff(w.narrowings))
			w.narrowings++
			s.narrowLocked(ks, "unwanted traffic")
		case s.tries[ex].Len() == 1 && len(ks.subs) == 0:
			s.narrowLocked(ks, "no stream")
		}
	}
}
